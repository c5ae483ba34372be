"""Recurrent cells: torch's fused RNN/LSTM/GRU, our peephole LSTM, and the way to plug in your own.

Every cell is run one direction at a time by :class:`nlp_rnn.encoder.RecurrentEncoder` through a
*sequence layer*: a module called as ``layer(inputs) -> outputs`` with ``inputs`` of shape
``(batch, time, input_size)`` and ``outputs`` of shape ``(batch, time, hidden_size)``, padding at the end
of each row. torch's ``nn.RNN/LSTM/GRU`` are such layers already. A custom cell only describes one time
step; :class:`CellLayer` runs it over time (the Keras idea: define your own cell, reuse the generic layer).

Define your own cell::

    from nlp_rnn.cells import RecurrentCell, register_cell

    @register_cell("my_cell")
    class MyCell(RecurrentCell):
        def __init__(self, input_size, hidden_size):
            super().__init__(input_size, hidden_size)
            self.input_proj = nn.Linear(input_size, hidden_size)
            self.hidden_proj = nn.Linear(hidden_size, hidden_size, bias=False)

        def project_input(self, inputs):          # whole sequence at once: hoisted out of the time loop
            return self.input_proj(inputs)

        def forward(self, projected_t, state):   # one step; state is a tuple of tensors
            (h,) = state
            h = torch.tanh(projected_t + self.hidden_proj(h))
            return h, (h,)

and set ``model.cell: my_cell`` in a config (import the module that registers it before training).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

FUSED_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentCell(nn.Module):
    """One time step of a recurrent network. Subclass, implement ``forward``, register with a name."""

    state_size = 1  # number of tensors in the state tuple, each (batch, hidden_size)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    def project_input(self, inputs: Tensor) -> Tensor:
        """Work that depends on the input only, done for all steps in one matrix product.

        (batch, time, input_size) -> (batch, time, anything ``forward`` expects per step)
        """
        return inputs

    def initial_state(self, batch_size: int, reference: Tensor) -> tuple[Tensor, ...]:
        zeros = reference.new_zeros(batch_size, self.hidden_size)
        return tuple(zeros for _ in range(self.state_size))

    def forward(self, projected_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(batch, projected) and state -> output (batch, hidden_size) and the new state."""
        raise NotImplementedError


_REGISTRY: dict[str, type[RecurrentCell]] = {}


def register_cell(name: str) -> Callable[[type[RecurrentCell]], type[RecurrentCell]]:
    """Class decorator: make a :class:`RecurrentCell` available as ``model.cell: name``."""

    def decorator(cls: type[RecurrentCell]) -> type[RecurrentCell]:
        if name in FUSED_CELLS:
            raise ValueError(f"cell name {name!r} is taken by torch's fused implementation")
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_cells() -> list[str]:
    return [*FUSED_CELLS, *_REGISTRY]


@register_cell("peephole_lstm")
class PeepholeLSTMCell(RecurrentCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000; equations as in Greff et al. 2017).

        i_t = sigma(W_i x_t + U_i h_{t-1} + p_i * c_{t-1} + b_i)
        f_t = sigma(W_f x_t + U_f h_{t-1} + p_f * c_{t-1} + b_f)
        c_t = f_t * c_{t-1} + i_t * tanh(W_c x_t + U_c h_{t-1} + b_c)
        o_t = sigma(W_o x_t + U_o h_{t-1} + p_o * c_t + b_o)
        h_t = o_t * tanh(c_t)

    The peepholes ``p_*`` are diagonal (element-wise): each gate sees its own cell's state.
    """

    state_size = 2  # (h, c)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # rows: i, f, c, o
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))  # p_i, p_f, p_o
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # torch's LSTM initialisation
        for weight in (self.weight_ih, self.weight_hh, self.bias, self.peephole):
            nn.init.uniform_(weight, -bound, bound)

    def project_input(self, inputs: Tensor) -> Tensor:
        return nn.functional.linear(inputs, self.weight_ih, self.bias)  # (batch, time, 4 * hidden)

    def forward(self, projected_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, c = state
        gates = projected_t + h @ self.weight_hh.t()  # (batch, 4 * hidden)
        i, f, g, o = gates.chunk(4, dim=-1)
        p_i, p_f, p_o = self.peephole
        i = torch.sigmoid(i + p_i * c)
        f = torch.sigmoid(f + p_f * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + p_o * c)  # the output gate peeks at the new cell state
        h = o * torch.tanh(c)
        return h, (h, c)


class CellLayer(nn.Module):
    """Run a :class:`RecurrentCell` over time: the generic layer for custom cells.

    Padding sits at the end of each row, so the outputs at real positions never depend on it; the
    encoder reads final states at each row's last real position.
    """

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, inputs: Tensor, state: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(batch, time, input_size) [and a state to start from] -> ((batch, time, hidden_size), the final state),
        like nn.LSTM's return."""
        projected = self.cell.project_input(inputs)  # (batch, time, *)
        if state is None:
            state = self.cell.initial_state(inputs.size(0), projected)
        outputs = []
        for step in range(inputs.size(1)):
            output, state = self.cell(projected[:, step], state)
            outputs.append(output)
        return torch.stack(outputs, dim=1), state  # (batch, time, hidden)


def make_sequence_layer(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    """One layer, one direction: torch's fused module for rnn/lstm/gru, else the registered cell."""
    if cell in FUSED_CELLS:
        return FUSED_CELLS[cell](input_size, hidden_size, batch_first=True)
    if cell not in _REGISTRY:
        raise ValueError(f"unknown cell {cell!r}; available: {', '.join(available_cells())}")
    return CellLayer(_REGISTRY[cell](input_size, hidden_size))
