"""Attention: padding gets exactly zero weight, every variant against a hand computation, step = all steps."""

import pytest
import torch

from nlp_rnn.attention import ATTENTIONS, BahdanauAttention, LuongAttention, make_attention
from nlp_rnn.config import TranslatorConfig, choices

torch.manual_seed(0)
VARIANTS = list(choices(TranslatorConfig, "attention"))  # every variant the config accepts


def inputs(batch=3, src_len=6, size=8):
    values = torch.randn(batch, src_len, size)
    lengths = torch.tensor([6, 3, 1])[:batch]
    mask = torch.arange(src_len).unsqueeze(0) < lengths.unsqueeze(1)
    return values * mask.unsqueeze(-1), mask


@pytest.mark.parametrize("kind", VARIANTS)
def test_padding_gets_exactly_zero_weight_and_weights_sum_to_one(kind):
    attention = make_attention(kind, 8, 8, 5)
    values, mask = inputs()
    context, weights = attention(torch.randn(3, 8), attention.project_keys(values), values, mask)
    assert context.shape == (3, 8) and weights.shape == (3, 6)
    assert torch.all(weights[~mask] == 0.0)
    assert torch.allclose(weights.sum(-1), torch.ones(3))


@pytest.mark.parametrize("kind", VARIANTS)
def test_padding_values_never_reach_the_context(kind):
    attention = make_attention(kind, 8, 8, 5)
    values, mask = inputs()
    noisy = values + 100.0 * (~mask).unsqueeze(-1)  # garbage at padded positions
    query = torch.randn(3, 8)
    clean = attention(query, attention.project_keys(values), values, mask)[0]
    dirty = attention(query, attention.project_keys(noisy), noisy, mask)[0]
    assert torch.allclose(clean, dirty, atol=1e-6)


@pytest.mark.parametrize("kind", VARIANTS)
def test_all_steps_at_once_equal_one_step_at_a_time(kind):
    attention = make_attention(kind, 8, 8, 5)
    values, mask = inputs()
    keys = attention.project_keys(values)
    queries = torch.randn(3, 4, 8)  # (batch, steps, query)
    context, weights = attention(queries, keys, values, mask)
    for t in range(4):
        step_context, step_weights = attention(queries[:, t], keys, values, mask)
        assert torch.allclose(context[:, t], step_context, atol=1e-6)
        assert torch.allclose(weights[:, t], step_weights, atol=1e-6)


def test_bahdanau_matches_the_paper_formula():
    attention = BahdanauAttention(query_size=4, value_size=6, attention_size=5)
    values, mask = inputs(batch=2, size=6)
    query = torch.randn(2, 4)
    _, weights = attention(query, attention.project_keys(values), values, mask)
    W_q, W_k, v = attention.query_layer.weight, attention.key_layer.weight, attention.energy_layer.weight[0]
    for b in range(2):
        real = int(mask[b].sum())
        energies = torch.stack([v @ torch.tanh(W_q @ query[b] + W_k @ values[b, j]) for j in range(real)])
        assert torch.allclose(weights[b, :real], energies.softmax(0), atol=1e-6)


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_luong_matches_the_paper_formula(kind):
    attention = LuongAttention(query_size=6, value_size=6, kind=kind)
    values, mask = inputs(batch=2, size=6)
    query = torch.randn(2, 6)
    context, weights = attention(query, attention.project_keys(values), values, mask)
    W = attention.key_layer.weight if kind == "general" else torch.eye(6)
    for b in range(2):
        real = int(mask[b].sum())
        scores = torch.stack([query[b] @ (W @ values[b, j]) for j in range(real)])
        expected = scores.softmax(0)
        assert torch.allclose(weights[b, :real], expected, atol=1e-6)
        assert torch.allclose(context[b], expected @ values[b, :real], atol=1e-6)


def test_dot_attention_needs_equal_sizes():
    with pytest.raises(ValueError, match="dot attention"):
        make_attention("luong_dot", 4, 6, 5)


def test_the_attentions_are_exactly_the_configs_choices():
    """One list of names; each builds its own variant, and an unknown name is refused, never a default."""
    assert set(ATTENTIONS) == set(VARIANTS)
    bahdanau, dot, general = (make_attention(kind, 8, 8, 5) for kind in ("bahdanau", "luong_dot", "luong_general"))
    assert isinstance(bahdanau, BahdanauAttention)
    assert isinstance(dot, LuongAttention) and dot.key_layer is None
    assert isinstance(general, LuongAttention) and general.key_layer is not None
    with pytest.raises(ValueError, match="unknown attention 'luong_concat'.*bahdanau"):
        make_attention("luong_concat", 8, 8, 5)
