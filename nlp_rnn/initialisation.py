"""Weight initialisation schemes, chosen by ``model.init``.

``torch`` keeps each module's own default: ``nn.Embedding`` N(0, 1), and for ``nn.LSTM``/``nn.GRU``/``nn.RNN``
and ``nn.Linear`` every weight and bias U(-1/sqrt(fan), 1/sqrt(fan)).

``keras`` is what Keras's ``Embedding``, ``LSTM``/``GRU``/``SimpleRNN`` and ``Dense`` layers start from (the
defaults of Keras 3): embeddings U(-0.05, 0.05); input kernels Glorot-uniform (Glorot & Bengio 2010);
recurrent kernels orthogonal (Saxe et al. 2014); biases zero, except an LSTM's forget gate, which starts at 1
(``unit_forget_bias``; Jozefowicz et al. 2015), so the cell remembers until it learns to forget. Dense
layers are Glorot-uniform with a zero bias. Custom cells (``nlp_rnn.cells.register_cell``) keep their own
initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

SCHEMES = ("torch", "keras")
KERAS_EMBEDDING_RANGE = 0.05


@torch.no_grad()
def keras_init_(model: nn.Module) -> nn.Module:
    """Re-initialise ``model``'s embeddings, fused recurrent layers and linear layers in place as Keras does."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.uniform_(module.weight, -KERAS_EMBEDDING_RANGE, KERAS_EMBEDDING_RANGE)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            for name, parameter in module.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(parameter)  # (gates * hidden, input): Keras's (input, gates * hidden)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(parameter)  # (gates * hidden, hidden): orthonormal columns
                elif name.startswith("bias"):
                    parameter.zero_()
                    if isinstance(module, nn.LSTM) and name.startswith("bias_ih"):
                        hidden = module.hidden_size
                        parameter[hidden:2 * hidden] = 1.0  # torch's gate order: input, forget, cell, output
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                module.bias.zero_()
    return model


def initialise_(model: nn.Module, scheme: str) -> nn.Module:
    """Apply ``scheme`` (one of :data:`SCHEMES`) to a freshly built ``model`` in place."""
    if scheme == "keras":
        return keras_init_(model)
    if scheme != "torch":
        raise ValueError(f"unknown init scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    return model
