"""The samplers on hand-made distributions: top-p keeps the smallest set that reaches p, top-k 1 and a temperature
near 0 are greedy, CTRL's penalty, one row's draw does not depend on its batch, bad settings are errors."""

import pytest
import torch

from nlp_rnn.errors import NlpRnnError
from nlp_rnn.sampling import (
    check_sampling,
    next_tokens,
    penalize_repetition,
    row_generators,
    top_k_filter,
    top_p_filter,
)


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    probabilities = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])
    logits = probabilities.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False, False]  # 0.5 reaches 0.5
    assert kept(0.6) == [True, True, False, False, False]  # 0.7 >= 0.6, 0.5 is not
    assert kept(0.85) == [True, True, True, False, False]  # exactly 0.85
    assert kept(0.86) == [True, True, True, True, False]
    assert kept(0.01) == [True, False, False, False, False]  # the top token always
    assert kept(1.0) == [True] * 5
    shuffled = logits[:, [3, 0, 4, 2, 1]]  # the order of the vocabulary does not matter
    assert torch.isfinite(top_p_filter(shuffled, 0.6))[0].tolist() == [False, True, False, False, True]


def test_top_k_temperature_and_penalty():
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5], [0.0, 1.0, -2.0, 4.0]])
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [[True, False, True, False], [False, True, False, True]]
    greedy = next_tokens(logits, None)
    assert greedy.tolist() == [2, 3]
    assert next_tokens(logits, row_generators(0, 2), top_k=1).tolist() == greedy.tolist()  # top-k 1 = greedy
    for seed in range(20):  # temperature -> 0 = greedy
        assert next_tokens(logits, row_generators(seed, 2), temperature=1e-4).tolist() == greedy.tolist()
    seen = torch.tensor([[True, True, False, False], [False, False, False, False]])
    penalized = penalize_repetition(logits, seen, 2.0)
    assert penalized.tolist() == [[1.0, -2.0, 3.0, 0.5], [0.0, 1.0, -2.0, 4.0]]  # positive / 2, negative * 2


def test_one_row_samples_alike_in_any_batch():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    together = next_tokens(logits, row_generators(7, 3))
    alone = [next_tokens(logits[i : i + 1], [torch.Generator().manual_seed(7 + i)]).item() for i in range(3)]
    assert together.tolist() == alone


@pytest.mark.parametrize("settings, message", [((0.0, None, None, 1.0), "temperature must be > 0"),
                                               ((-1.0, None, None, 1.0), "temperature must be > 0"),
                                               ((1.0, 0, None, 1.0), "top_k must be >= 1"),
                                               ((1.0, None, 0.0, 1.0), "top_p must be in (0, 1]"),
                                               ((1.0, None, 1.5, 1.0), "top_p must be in (0, 1]"),
                                               ((1.0, None, None, 0.5), "repetition_penalty")])
def test_bad_sampling_settings_are_errors(settings, message):
    with pytest.raises(NlpRnnError, match=message.replace("(", r"\(").replace("]", r"\]")):
        check_sampling(*settings)
