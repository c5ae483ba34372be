"""Masked poolings from per-token encoder outputs to one vector per sequence."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nlp_rnn.encoder import EncoderOutput

POOLINGS = ("last", "mean", "max", "max_mean", "attention")


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
        outputs, final_hidden, mask = encoded  # (batch, len, size), (layers * dirs, batch, hidden), (batch, len)
        if self.kind == "last":
            top = final_hidden[-self.num_directions :]  # (dirs, batch, hidden)
            return torch.cat(list(top), dim=-1), None  # (batch, size)
        mask3 = mask.unsqueeze(-1)  # (batch, len, 1)
        if self.kind == "attention":
            scores = self.query(torch.tanh(self.projection(outputs))).squeeze(-1)  # (batch, len)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (batch, len)
            return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1), weights  # (batch, size)
        mean = (outputs * mask3).sum(1) / mask3.sum(1).clamp(min=1)  # (batch, size)
        if self.kind == "mean":
            return mean, None
        maximum = outputs.masked_fill(~mask3, float("-inf")).max(dim=1).values  # (batch, size)
        if self.kind == "max":
            return maximum, None
        return torch.cat([maximum, mean], dim=-1), None  # (batch, 2 * size)
