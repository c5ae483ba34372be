"""Cells: our peephole LSTM and torch's fused cells against hand-written equations; the cell registry."""

import pytest
import torch
from torch import nn

from nlp_rnn import cells
from nlp_rnn.cells import CellLayer, PeepholeLSTMCell, RecurrentCell, make_sequence_layer, register_cell
from nlp_rnn.config import ConfigError, config_from_dict
from nlp_rnn.encoder import RecurrentEncoder

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 4


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the cell registry, so test registrations do not leak into other tests."""
    monkeypatch.setattr(cells, "_REGISTRY", dict(cells._REGISTRY))
    return cells._REGISTRY


def peephole_reference(cell: PeepholeLSTMCell, x, h, c):
    """One step of Gers & Schmidhuber's peephole LSTM, written out gate by gate (Greff et al. 2017)."""
    W_i, W_f, W_c, W_o = cell.weight_ih.chunk(4)
    U_i, U_f, U_c, U_o = cell.weight_hh.chunk(4)
    b_i, b_f, b_c, b_o = cell.bias.chunk(4)
    p_i, p_f, p_o = cell.peephole
    i = torch.sigmoid(x @ W_i.T + h @ U_i.T + p_i * c + b_i)
    f = torch.sigmoid(x @ W_f.T + h @ U_f.T + p_f * c + b_f)
    c_new = f * c + i * torch.tanh(x @ W_c.T + h @ U_c.T + b_c)
    o = torch.sigmoid(x @ W_o.T + h @ U_o.T + p_o * c_new + b_o)
    return o * torch.tanh(c_new), c_new


def test_peephole_cell_matches_the_equations():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(INPUT, HIDDEN)
    inputs = torch.randn(BATCH, STEPS, INPUT)
    h, c = torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN)  # non-zero start: every term matters
    state = (h, c)
    projected = cell.project_input(inputs)  # (batch, steps, 4 * hidden)
    with torch.no_grad():
        for step in range(STEPS):
            output, state = cell(projected[:, step], state)
            h, c = peephole_reference(cell, inputs[:, step], h, c)
            torch.testing.assert_close(output, h)
            torch.testing.assert_close(state[0], h)
            torch.testing.assert_close(state[1], c)


def test_peephole_weights_matter():
    """Guards the reference test against a cell that ignores its peepholes."""
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(INPUT, HIDDEN)
    projected = cell.project_input(torch.randn(BATCH, INPUT))
    state = (torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN))
    with torch.no_grad():
        before, _ = cell(projected, state)
        cell.peephole.add_(1.0)
        after, _ = cell(projected, state)
    assert not torch.allclose(before, after)


class TanhCell(RecurrentCell):
    """The docstring's example: h_t = tanh(W x_t + b + U h_{t-1})."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.hidden_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def project_input(self, inputs):
        return self.input_proj(inputs)

    def forward(self, projected_t, state):
        (h,) = state
        h = torch.tanh(projected_t + self.hidden_proj(h))
        return h, (h,)


@pytest.mark.parametrize("cell_class", [PeepholeLSTMCell, TanhCell])
def test_cell_layer_equals_stepping_by_hand(cell_class):
    torch.manual_seed(1)
    cell = cell_class(INPUT, HIDDEN)
    layer = CellLayer(cell)
    inputs = torch.randn(BATCH, STEPS, INPUT)
    with torch.no_grad():
        outputs, extra = layer(inputs)
        state = tuple(torch.zeros(BATCH, HIDDEN) for _ in range(cell.state_size))
        expected = []
        for step in range(STEPS):
            output, state = cell(cell.project_input(inputs[:, step]), state)
            expected.append(output)
    for final, by_hand in zip(extra, state, strict=True):  # the final state, as nn.LSTM returns it
        torch.testing.assert_close(final, by_hand)
    assert outputs.shape == (BATCH, STEPS, HIDDEN)
    torch.testing.assert_close(outputs, torch.stack(expected, dim=1))
    with torch.no_grad():  # from a given state: the second half continues the first
        first, middle = layer(inputs[:, :3])
        second, _ = layer(inputs[:, 3:], middle)
    torch.testing.assert_close(torch.cat([first, second], dim=1), outputs)


def test_registered_cell_drives_the_encoder(registry):
    register_cell("test_tanh")(TanhCell)
    assert "test_tanh" in cells.available_cells()
    torch.manual_seed(2)
    encoder = RecurrentEncoder(vocab_size=10, embedding_dim=INPUT, hidden_size=HIDDEN, cell="test_tanh",
                               num_layers=1, bidirectional=False).eval()
    layer = encoder.layers[0][0]
    assert isinstance(layer, CellLayer) and isinstance(layer.cell, TanhCell)
    src = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        encoded = encoder(src, torch.tensor([4]))
        # the same recurrence written out with the registered cell's own weights
        embedded = encoder.embedding(src)[0]  # (4, input)
        h = torch.zeros(HIDDEN)
        expected = []
        for x in embedded:
            h = torch.tanh(layer.cell.input_proj(x) + layer.cell.hidden_proj(h))
            expected.append(h)
    torch.testing.assert_close(encoded.outputs[0], torch.stack(expected))
    torch.testing.assert_close(encoded.final_hidden[0, 0], expected[-1])


def test_registered_cell_passes_config_validation(registry):
    with pytest.raises(ConfigError, match="test_tanh_config"):
        config_from_dict({"model": {"cell": "test_tanh_config"}})
    register_cell("test_tanh_config")(TanhCell)
    assert config_from_dict({"model": {"cell": "test_tanh_config"}}).model.cell == "test_tanh_config"


def test_unknown_cell_names_the_available_ones():
    with pytest.raises(ValueError, match="peephole_lstm"):
        make_sequence_layer("no_such_cell", INPUT, HIDDEN)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"model": {"cell": "no_such_cell"}})
    assert "model.cell" in str(caught.value)
    assert all(name in str(caught.value) for name in cells.available_cells())


@pytest.mark.parametrize("name", sorted(cells.FUSED_CELLS))
def test_fused_names_cannot_be_registered(registry, name):
    with pytest.raises(ValueError, match=name):
        register_cell(name)(TanhCell)
    assert name not in registry


# --- torch's fused cells, one step at a time against the equations in torch's documentation ---------


def _linear(module, x, h):
    """W_i* x + b_i* and W_h* h + b_h*, both (batch, gates * hidden)."""
    return (x @ module.weight_ih_l0.T + module.bias_ih_l0, h @ module.weight_hh_l0.T + module.bias_hh_l0)


def rnn_step(module, x, h, c=None):
    gx, gh = _linear(module, x, h)
    return torch.tanh(gx + gh), None


def lstm_step(module, x, h, c):
    gx, gh = _linear(module, x, h)
    i, f, g, o = (gx + gh).chunk(4, dim=-1)  # torch's row order: input, forget, cell, output
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(module, x, h, c=None):
    gx, gh = _linear(module, x, h)
    x_r, x_z, x_n = gx.chunk(3, dim=-1)  # torch's row order: reset, update, new
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)  # the reset gate scales W_hn h + b_hn, bias included
    return (1 - z) * n + z * h, None


@pytest.mark.parametrize("name, reference", [("rnn", rnn_step), ("lstm", lstm_step), ("gru", gru_step)])
def test_fused_cells_match_the_equations(name, reference):
    torch.manual_seed(3)
    module = make_sequence_layer(name, INPUT, HIDDEN)
    assert isinstance(module, cells.FUSED_CELLS[name])
    inputs = torch.randn(BATCH, STEPS, INPUT)
    h, c = torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN)
    initial = (h.unsqueeze(0), c.unsqueeze(0)) if name == "lstm" else h.unsqueeze(0)
    with torch.no_grad():
        outputs, _ = module(inputs, initial)  # (batch, steps, hidden)
        for step in range(STEPS):
            h, c = reference(module, inputs[:, step], h, c)
            torch.testing.assert_close(outputs[:, step], h)
