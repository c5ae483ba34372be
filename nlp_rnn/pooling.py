"""Masked poolings from per-token encoder outputs to one vector per sequence."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nlp_rnn.encoder import EncoderOutput


class Pooling(nn.Module):
    """``forward(encoded) -> (pooled, weights)``; ``weights`` (batch, src_len) only for attention.

    - last: the final hidden state of the top layer (forward direction's last real step, backward
      direction's first step), as in most tutorials.
    - mean / max: over real positions only.
    - max_mean: both, concatenated.
    - attention: a learned query scores each position (Yang et al. 2016, without the word-level
      context vector's extra layer); padding gets exactly zero weight.
    """

    def __init__(self, kind: str, size: int, num_directions: int) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"unknown pooling {kind!r}; available: {', '.join(POOLINGS)}")
        self.kind = kind
        self.num_directions = num_directions
        self.output_size = 2 * size if kind == "max_mean" else size
        if kind == "attention":
            self.projection = nn.Linear(size, size)
            self.query = nn.Linear(size, 1, bias=False)

    def forward(self, encoded: EncoderOutput) -> tuple[Tensor, Tensor | None]:
        return POOLINGS[self.kind](self, *encoded)


# Each takes the module and the encoder output: outputs (batch, len, size), final_hidden (layers * dirs, batch,
# hidden), mask (batch, len) -> pooled (batch, output_size) and attention weights (batch, len) or None.


def _last(pooling: Pooling, outputs: Tensor, final_hidden: Tensor, mask: Tensor) -> tuple[Tensor, None]:
    top = final_hidden[-pooling.num_directions :]  # (dirs, batch, hidden)
    return torch.cat(list(top), dim=-1), None  # (batch, size)


def _mean(pooling: Pooling, outputs: Tensor, final_hidden: Tensor, mask: Tensor) -> tuple[Tensor, None]:
    mask3 = mask.unsqueeze(-1)  # (batch, len, 1)
    return (outputs * mask3).sum(1) / mask3.sum(1).clamp(min=1), None  # (batch, size)


def _max(pooling: Pooling, outputs: Tensor, final_hidden: Tensor, mask: Tensor) -> tuple[Tensor, None]:
    return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values, None  # (batch, size)


def _max_mean(pooling: Pooling, outputs: Tensor, final_hidden: Tensor, mask: Tensor) -> tuple[Tensor, None]:
    maximum, mean = _max(pooling, outputs, final_hidden, mask)[0], _mean(pooling, outputs, final_hidden, mask)[0]
    return torch.cat([maximum, mean], dim=-1), None  # (batch, 2 * size)


def _attention(pooling: Pooling, outputs: Tensor, final_hidden: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    scores = pooling.query(torch.tanh(pooling.projection(outputs))).squeeze(-1)  # (batch, len)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (batch, len)
    return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1), weights  # (batch, size)


# Keyed by exactly config.choices(ModelConfig, "pooling") (tests/test_pooling.py checks).
POOLINGS = {"last": _last, "mean": _mean, "max": _max, "max_mean": _max_mean, "attention": _attention}
