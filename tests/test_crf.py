"""The linear-chain CRF against enumerating every tag path on tiny inputs; padding never changes a score."""

import itertools

import pytest
import torch

from nlp_rnn.crf import CRF


@torch.no_grad()
def brute_force(crf: CRF, emissions: torch.Tensor, length: int):
    """Every path's score over one row's first ``length`` positions: (log Z, best path, per-token marginals)."""
    num_tags = crf.num_tags
    scores = {}
    for path in itertools.product(range(num_tags), repeat=length):
        tags = torch.tensor([path])
        scores[path] = float(crf.path_score(emissions[:, :length], tags, torch.ones(1, length, dtype=torch.bool)))
    values = torch.tensor(list(scores.values()))
    log_z = float(torch.logsumexp(values, 0))
    marginals = torch.zeros(length, num_tags)
    for path, score in scores.items():
        for t, tag in enumerate(path):
            marginals[t, tag] += torch.exp(torch.tensor(score - log_z))
    return log_z, list(max(scores, key=scores.get)), marginals


def random_crf(num_tags=3, seed=0):
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_partition_best_path_and_marginals_equal_brute_force(seed):
    crf = random_crf(seed=seed)
    lengths = [4, 2, 1]
    emissions = torch.randn(3, 4, 3)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask)
    paths, best_scores = crf.viterbi(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for row, length in enumerate(lengths):
        expected_z, expected_path, expected_marginals = brute_force(crf, emissions[row : row + 1], length)
        assert float(log_z[row]) == pytest.approx(expected_z, abs=1e-5)
        assert paths[row] == expected_path
        tags = torch.tensor([expected_path])
        expected_best = crf.path_score(emissions[row : row + 1, :length], tags, torch.ones(1, length, dtype=bool))
        assert float(best_scores[row]) == pytest.approx(float(expected_best), abs=1e-5)
        assert torch.allclose(marginals[row, :length], expected_marginals, atol=1e-5)
        assert torch.all(marginals[row, length:] == 0)


def test_padding_never_changes_a_score():
    crf = random_crf(seed=3)
    emissions = torch.randn(1, 3, 3)
    tags = torch.tensor([[0, 2, 1]])
    padded = torch.cat([emissions, 100 * torch.randn(1, 4, 3)], dim=1)  # wild scores at padded positions
    padded_tags = torch.cat([tags, torch.tensor([[2, 0, 1, 2]])], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 4])
    full = torch.ones(1, 3, dtype=torch.bool)
    assert torch.allclose(crf.nll(padded, padded_tags, mask), crf.nll(emissions, tags, full), atol=1e-5)
    assert crf.viterbi(padded, mask)[0] == crf.viterbi(emissions, full)[0]
    assert torch.allclose(crf.marginals(padded, mask)[:, :3], crf.marginals(emissions, full), atol=1e-5)


def test_forbidden_transitions_are_never_decoded():
    crf = CRF(3)  # tags O, B-X, I-X
    emissions = torch.tensor([[[0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])  # the argmax: I O I
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert crf.viterbi(emissions, mask)[0] == [[2, 0, 2]]
    allowed = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])  # no O -> I-X
    allowed_start = torch.tensor([True, True, False])
    path = crf.viterbi(emissions, mask, allowed, allowed_start)[0][0]
    assert path[0] != 2 and not any(a == 0 and b == 2 for a, b in itertools.pairwise(path))
