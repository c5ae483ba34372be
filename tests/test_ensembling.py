"""The mixture of members' probabilities that classifier and translator ensembles predict."""

import math

import pytest
import torch

from nlp_rnn.ensembling import mixture_log_probs


def test_mixture_equals_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    logits = [torch.randn(4, 3, 7) for _ in range(3)]
    expected = torch.stack([member.softmax(-1) for member in logits]).mean(0).log()
    torch.testing.assert_close(mixture_log_probs(logits), expected)


def test_temperatures_divide_each_members_logits():
    torch.manual_seed(1)
    logits = [torch.randn(5, 2), torch.randn(5, 2)]
    expected = ((logits[0] / 2.0).softmax(-1) + (logits[1] / 0.5).softmax(-1)).div(2).log()
    torch.testing.assert_close(mixture_log_probs(logits, [2.0, 0.5]), expected)
    assert not torch.allclose(mixture_log_probs(logits), expected)


def test_one_member_is_its_own_log_softmax_and_tiny_probabilities_stay_finite():
    member = torch.tensor([[0.0, -200.0, 300.0]], dtype=torch.bfloat16)
    torch.testing.assert_close(mixture_log_probs([member]), member.float().log_softmax(-1))
    mixed = mixture_log_probs([member, member.flip(-1)])
    assert torch.isfinite(mixed).all()
    assert mixed.dtype == torch.float32
    assert math.isclose(mixed.exp().sum().item(), 1.0, rel_tol=1e-5)


def test_members_and_temperatures_must_match():
    with pytest.raises(ValueError):
        mixture_log_probs([])
    with pytest.raises(ValueError):
        mixture_log_probs([torch.zeros(2, 3)], [1.0, 2.0])
