"""Masked poolings: padding never leaks into the pooled vector, attention gives it exactly zero weight."""

import pytest
import torch

from nlp_rnn.config import ModelConfig, choices
from nlp_rnn.encoder import EncoderOutput, RecurrentEncoder, lengths_to_mask
from nlp_rnn.pooling import POOLINGS, Pooling

HIDDEN = 3
SIZE = 2 * HIDDEN  # bidirectional
LENGTHS = torch.tensor([5, 2, 1, 4])
HUGE = 1e9  # finite, so a leak shows up as a wrong number rather than as nan


def poisoned_output(seed: int = 0) -> EncoderOutput:
    """Random outputs with HUGE at every padded position (the encoder would put zeros there)."""
    generator = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(LENGTHS, int(LENGTHS.max()) + 1)  # (batch, len)
    outputs = torch.randn(*mask.shape, SIZE, generator=generator).masked_fill(~mask.unsqueeze(-1), HUGE)
    final_hidden = torch.randn(2, len(LENGTHS), HIDDEN, generator=generator)
    return EncoderOutput(outputs, final_hidden, mask)


def row_alone(encoded: EncoderOutput, row: int) -> EncoderOutput:
    length = int(LENGTHS[row])
    return EncoderOutput(encoded.outputs[row : row + 1, :length], encoded.final_hidden[:, row : row + 1],
                         encoded.mask[row : row + 1, :length])


def test_max_ignores_padding():
    encoded = poisoned_output()
    pooled, weights = Pooling("max", SIZE, 2)(encoded)
    assert weights is None
    for row, length in enumerate(LENGTHS.tolist()):
        assert torch.equal(pooled[row], encoded.outputs[row, :length].max(dim=0).values)
    assert pooled.abs().max() < HUGE


def test_mean_ignores_padding():
    encoded = poisoned_output()
    pooled, weights = Pooling("mean", SIZE, 2)(encoded)
    assert weights is None
    for row, length in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(pooled[row], encoded.outputs[row, :length].mean(dim=0))


def test_max_mean_is_max_then_mean():
    encoded = poisoned_output()
    pooled, _ = Pooling("max_mean", SIZE, 2)(encoded)
    maximum, _ = Pooling("max", SIZE, 2)(encoded)
    mean, _ = Pooling("mean", SIZE, 2)(encoded)
    assert Pooling("max_mean", SIZE, 2).output_size == pooled.size(-1) == 2 * SIZE
    torch.testing.assert_close(pooled, torch.cat([maximum, mean], dim=-1))


def test_attention_gives_padding_exactly_zero_weight():
    torch.manual_seed(0)
    pooling = Pooling("attention", SIZE, 2)
    encoded = poisoned_output()
    pooled, weights = pooling(encoded)
    assert weights.shape == encoded.mask.shape
    assert torch.equal(weights[~encoded.mask], torch.zeros_like(weights[~encoded.mask]))
    assert (weights[encoded.mask] > 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(len(LENGTHS)))
    for row in range(len(LENGTHS)):  # the padded row pools exactly as the row alone does
        alone, alone_weights = pooling(row_alone(encoded, row))
        torch.testing.assert_close(pooled[row], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(weights[row, : int(LENGTHS[row])], alone_weights[0])


@pytest.mark.parametrize("kind", ["mean", "max", "max_mean"])
def test_padded_row_pools_as_the_row_alone(kind):
    pooling = Pooling(kind, SIZE, 2)
    encoded = poisoned_output(seed=1)
    pooled, _ = pooling(encoded)
    for row in range(len(LENGTHS)):
        alone, _ = pooling(row_alone(encoded, row))
        torch.testing.assert_close(pooled[row], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_last_is_the_top_layers_final_states(bidirectional):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(12, 4, HIDDEN, cell="lstm", num_layers=2, bidirectional=bidirectional).eval()
    src = torch.randint(1, 12, (len(LENGTHS), int(LENGTHS.max()))) * lengths_to_mask(LENGTHS, int(LENGTHS.max()))
    with torch.no_grad():
        encoded = encoder(src, LENGTHS)
    pooled, weights = Pooling("last", encoder.output_size, encoder.num_directions)(encoded)
    assert weights is None
    if bidirectional:
        expected = torch.cat([encoded.final_hidden[-2], encoded.final_hidden[-1]], dim=-1)
    else:
        expected = encoded.final_hidden[-1]
    torch.testing.assert_close(pooled, expected)
    for row, length in enumerate(LENGTHS.tolist()):  # forward: last real step; backward: first step
        torch.testing.assert_close(pooled[row, :HIDDEN], encoded.outputs[row, length - 1, :HIDDEN])
        if bidirectional:
            torch.testing.assert_close(pooled[row, HIDDEN:], encoded.outputs[row, 0, HIDDEN:])


def test_unknown_pooling_names_the_valid_ones():
    with pytest.raises(ValueError, match="max_mean"):
        Pooling("sum", SIZE, 2)


def test_the_poolings_are_exactly_the_configs_choices():
    """One list of names: a pooling the config accepts is implemented, and one implemented is accepted."""
    assert set(POOLINGS) == set(choices(ModelConfig, "pooling"))
    for kind in choices(ModelConfig, "pooling"):
        pooled, weights = Pooling(kind, SIZE, 2)(poisoned_output())
        assert pooled.shape == (len(LENGTHS), Pooling(kind, SIZE, 2).output_size)
        assert (weights is not None) == (kind == "attention")
