"""AWD-LSTM's regularisers for the recurrent encoder (Merity et al. 2018, "Regularizing and Optimizing LSTM
Language Models", section 4), chosen in the ``model`` section:

- **weight drop** (``model.weight_drop``): DropConnect (Wan et al. 2013) on every layer's hidden-to-hidden
  matrices. One mask per forward pass is shared by all time steps, so the recurrence stays one fused cuDNN /
  oneDNN call: the dropped matrix is handed to the kernel in place of the parameter for that call only
  (:func:`run_weight_dropped`), and the gradient flows back through the mask to the parameter.
- **word-type dropout** (``model.word_type_dropout``): whole rows of the embedding matrix are dropped, so every
  occurrence of a dropped word in the batch reads a zero vector (Gal & Ghahramani 2016, section 4.2; AWD-LSTM's
  ``dropoute``). Unlike element-wise ``model.embedding_dropout``, the model cannot lean on one word's vector.
- **locked (variational) dropout** (``model.locked_dropout: true``): one mask per sequence, the same at every
  time step (Gal & Ghahramani 2016), for the encoder's input, between its layers and on a language model's
  outputs, at the rates ``embedding_dropout``, ``dropout`` and ``output_dropout`` already name.

All three are off in evaluation and own no parameters: a model's weights are the same tensors, under the same
names, with or without them, so a language model trained with them initialises a classifier trained without
(``train.init_from``), and a saved run loads into either.
"""

from __future__ import annotations

import warnings

from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence shared over its time steps: (batch, time, features) -> the same."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, inputs: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return inputs
        keep = inputs.new_empty(inputs.size(0), 1, inputs.size(2)).bernoulli_(1 - self.p)  # (batch, 1, features)
        return inputs * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WordTypeDropout(nn.Module):
    """Drop whole word types: each of the ``vocab_size`` rows of the embedding matrix is kept with probability
    1 - p (and scaled by 1 / (1 - p)), one draw per forward pass, shared by every occurrence of the word.

    Applied to the looked-up vectors (``embedded * keep[ids]``), which equals looking up in the masked matrix as
    AWD-LSTM does, without building a masked copy of the whole matrix every step."""

    def __init__(self, p: float, vocab_size: int) -> None:
        super().__init__()
        self.p = p
        self.vocab_size = vocab_size

    def forward(self, embedded: Tensor, ids: Tensor) -> Tensor:
        """embedded (batch, len, emb), ids (batch, len) -> (batch, len, emb)"""
        if not self.training or self.p == 0:
            return embedded
        keep = embedded.new_empty(self.vocab_size).bernoulli_(1 - self.p) / (1 - self.p)  # (vocab,)
        return embedded * keep[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"p={self.p}, vocab_size={self.vocab_size}"


def recurrent_weight_names(layer: nn.Module) -> list[str]:
    """The hidden-to-hidden matrices of one sequence layer (:mod:`nlp_rnn.cells`): torch's ``weight_hh_l0`` for
    the fused rnn/lstm/gru, a cell's ``cell.weight_hh`` (the peephole LSTM's; a cell of your own that names its
    recurrent matrix so takes weight drop too)."""
    return [name for name, _ in layer.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight_hh")]


def run_weight_dropped(layer: nn.Module, p: float, *args) -> tuple:
    """``layer(*args)`` with each hidden-to-hidden matrix replaced, for this call only, by DropConnect's copy:
    entries zeroed with probability ``p``, the rest scaled by 1 / (1 - p). ``functional_call`` swaps the tensors
    in and back out; torch's fused RNN modules re-read their weights at every forward (``_update_flat_weights``),
    so the kernel sees the dropped matrix and the parameter itself is never written."""
    dropped = {name: F.dropout(parameter, p) for name, parameter in layer.named_parameters()
               if name in recurrent_weight_names(layer)}
    with warnings.catch_warnings():
        # cuDNN: a swapped-in matrix is not in the module's flattened buffer, so the weights are compacted for this
        # call (AWD-LSTM pays the same copy); the warning would repeat at every step.
        warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk of memory.*")
        return functional_call(layer, dropped, args)


def check_weight_drop(layer: nn.Module, cell: str) -> None:
    """Refuse weight drop for a cell with no hidden-to-hidden matrix it could drop (a ValueError naming it)."""
    if not recurrent_weight_names(layer):
        raise ValueError(f"model.weight_drop: cell {cell!r} has no hidden-to-hidden matrix named weight_hh* to drop")
