"""The recurrent encoder: equal to torch's fused bidirectional RNNs, and blind to padding."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nlp_rnn.cells import FUSED_CELLS, available_cells
from nlp_rnn.encoder import RecurrentEncoder, lengths_to_mask, reverse_within_length

VOCAB, EMBEDDING, HIDDEN, LAYERS = 20, 5, 4, 2
LENGTHS = [6, 3, 1, 5]


def make_encoder(cell: str, packed: str = "auto", bidirectional: bool = True, seed: int = 0) -> RecurrentEncoder:
    torch.manual_seed(seed)
    return RecurrentEncoder(VOCAB, EMBEDDING, HIDDEN, cell=cell, num_layers=LAYERS, bidirectional=bidirectional,
                            dropout=0.0, packed=packed).eval()


def make_batch(lengths=LENGTHS, extra_padding: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (batch, max_len + extra_padding), 0 after each row's length; lengths (batch,) int64."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    src = torch.randint(1, VOCAB, (len(lengths), int(lengths.max()) + extra_padding), generator=generator)
    return src * lengths_to_mask(lengths, src.size(1)), lengths


def copy_into_fused(encoder: RecurrentEncoder, reference: nn.RNNBase) -> None:
    """Our layers[l][d] are one-layer, one-direction modules; torch names the same weights *_l{l}[_reverse]."""
    copied = set()
    with torch.no_grad():
        for layer, directions in enumerate(encoder.layers):
            for direction, module in enumerate(directions):
                suffix = "_reverse" if direction == 1 else ""
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    name = f"{kind}_l{layer}{suffix}"
                    getattr(reference, name).copy_(getattr(module, f"{kind}_l0"))
                    copied.add(name)
    assert copied == {name for name, _ in reference.named_parameters()}


@pytest.mark.parametrize("packed", ["auto", "always"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_matches_torch_bidirectional_module_on_packed_input(cell, packed):
    encoder = make_encoder(cell, packed)
    reference = FUSED_CELLS[cell](EMBEDDING, HIDDEN, num_layers=LAYERS, bidirectional=True, batch_first=True).eval()
    copy_into_fused(encoder, reference)
    src, lengths = make_batch(extra_padding=1)  # a column of padding beyond the longest row, too
    with torch.no_grad():
        ours = encoder(src, lengths)
        packed_inputs = pack_padded_sequence(encoder.embedding(src), lengths, batch_first=True, enforce_sorted=False)
        packed_outputs, final = reference(packed_inputs)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=src.size(1))
    final_hidden = final[0] if cell == "lstm" else final  # (layers * dirs, batch, hidden)
    assert ours.outputs.shape == (len(LENGTHS), src.size(1), 2 * HIDDEN)
    assert ours.final_hidden.shape == final_hidden.shape == (LAYERS * 2, len(LENGTHS), HIDDEN)
    mask = ours.mask
    torch.testing.assert_close(ours.outputs[mask], outputs[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.final_hidden, final_hidden, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", sorted(FUSED_CELLS))
def test_packed_always_equals_packed_never(cell):
    src, lengths = make_batch()
    with torch.no_grad():
        always = make_encoder(cell, "always")(src, lengths)
        never = make_encoder(cell, "never")(src, lengths)  # same seed: same weights
    torch.testing.assert_close(always.outputs, never.outputs, atol=1e-5, rtol=0)
    torch.testing.assert_close(always.final_hidden, never.final_hidden, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", available_cells())
def test_padding_in_a_batch_changes_nothing(cell, bidirectional):
    encoder = make_encoder(cell, bidirectional=bidirectional)
    src, lengths = make_batch()
    row = 1  # length 3, padded to 6 in the batch
    length = int(lengths[row])
    with torch.no_grad():
        batched = encoder(src, lengths)
        alone = encoder(src[row : row + 1, :length], lengths[row : row + 1])
    torch.testing.assert_close(batched.outputs[row, :length], alone.outputs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.final_hidden[:, row], alone.final_hidden[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("packed", ["never", "always"])
@pytest.mark.parametrize("cell", available_cells())
def test_padded_positions_are_exactly_zero(cell, packed):
    src, lengths = make_batch(extra_padding=2)
    with torch.no_grad():
        encoded = make_encoder(cell, packed)(src, lengths)
    assert torch.equal(encoded.mask, lengths_to_mask(lengths, src.size(1)))
    assert torch.equal(encoded.outputs[~encoded.mask], torch.zeros_like(encoded.outputs[~encoded.mask]))
    assert encoded.outputs[encoded.mask].abs().min() > 0  # real positions are not zeroed too


def test_final_states_are_read_at_each_rows_last_real_step():
    encoder = make_encoder("gru", bidirectional=True)
    src, lengths = make_batch(extra_padding=1)
    with torch.no_grad():
        encoded = encoder(src, lengths)
    top = encoded.outputs  # (batch, len, 2 * hidden)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(encoded.final_hidden[-2, row], top[row, length - 1, :HIDDEN])
        torch.testing.assert_close(encoded.final_hidden[-1, row], top[row, 0, HIDDEN:])


def test_empty_sequence_is_rejected():
    encoder = make_encoder("lstm")
    with pytest.raises(ValueError, match="at least one token"):
        encoder(torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 0]))


def test_reverse_within_length():
    lengths = torch.tensor([4, 2, 1, 3])
    sequences = torch.arange(4 * 5 * 2, dtype=torch.float).view(4, 5, 2)  # (batch, time, features)
    mask = lengths_to_mask(lengths, 5)
    reversed_ = reverse_within_length(sequences, lengths)
    torch.testing.assert_close(reverse_within_length(reversed_, lengths), sequences)  # its own inverse
    assert torch.equal(reversed_[~mask], sequences[~mask])  # padding stays where it was
    for row, length in enumerate(lengths.tolist()):
        assert torch.equal(reversed_[row, :length], sequences[row, :length].flip(0))
