"""Attention over encoder outputs, one interface for every variant.

``forward(query, keys, values, mask) -> (context, weights)``. The modules are stateless: ``project_keys``
turns the encoder outputs into keys once per sentence and the caller passes them back in every step (no
key cache hidden on the module). Padded source positions get exactly zero weight (-inf before the softmax).

A query is ``(batch, query_size)`` for one decoder step, or ``(batch, steps, query_size)`` for all steps at
once (the teacher-forced fast path); context and weights follow that shape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    """Base class: subclasses define ``project_keys`` and ``score``."""

    def project_keys(self, values: Tensor) -> Tensor:
        """(batch, src_len, value_size) -> keys (batch, src_len, *): work done once per source."""
        return values

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """(batch, steps, query_size), keys -> unnormalised scores (batch, steps, src_len)."""
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (batch, [steps,] query_size), keys/values (batch, src_len, *), mask (batch, src_len) bool
        -> context (batch, [steps,] value_size), weights (batch, [steps,] src_len)."""
        one_step = query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)  # (batch, 1, query_size)
        scores = self.score(query, keys)  # (batch, steps, src_len)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(dim=-1)  # (batch, steps, src_len), exactly 0 at padding
        context = torch.bmm(weights, values)  # (batch, steps, value_size)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


class BahdanauAttention(Attention):
    """Additive attention: score(s, h) = v^T tanh(W_q s + W_k h) (Bahdanau et al. 2015, eq. 6 / A.1.2)."""

    def __init__(self, query_size: int, value_size: int, attention_size: int) -> None:
        super().__init__()
        self.key_layer = nn.Linear(value_size, attention_size, bias=False)
        self.query_layer = nn.Linear(query_size, attention_size, bias=False)
        self.energy_layer = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, values: Tensor) -> Tensor:
        return self.key_layer(values)  # (batch, src_len, attention_size)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        projected = self.query_layer(query)  # (batch, steps, attention_size)
        energy = torch.tanh(projected.unsqueeze(2) + keys.unsqueeze(1))  # (batch, steps, src_len, attention_size)
        return self.energy_layer(energy).squeeze(-1)  # (batch, steps, src_len)


class LuongAttention(Attention):
    """Multiplicative attention (Luong et al. 2015, eq. 8): ``dot`` s^T h, or ``general`` s^T W_a h."""

    def __init__(self, query_size: int, value_size: int, kind: str = "general") -> None:
        super().__init__()
        if kind not in ("dot", "general"):
            raise ValueError(f"unknown Luong score {kind!r}; available: dot, general")
        if kind == "dot" and query_size != value_size:
            raise ValueError(f"dot attention needs query size {query_size} = value size {value_size}")
        self.key_layer = nn.Linear(value_size, query_size, bias=False) if kind == "general" else None

    def project_keys(self, values: Tensor) -> Tensor:
        return values if self.key_layer is None else self.key_layer(values)  # (batch, src_len, query_size)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # (batch, steps, src_len)


# name -> (query_size, value_size, attention_size) -> module; keyed by exactly
# config.choices(TranslatorConfig, "attention") (tests/test_attention.py checks).
ATTENTIONS = {
    "bahdanau": lambda query_size, value_size, attention_size: BahdanauAttention(query_size, value_size,
                                                                                  attention_size),
    "luong_dot": lambda query_size, value_size, attention_size: LuongAttention(query_size, value_size, "dot"),
    "luong_general": lambda query_size, value_size, attention_size: LuongAttention(query_size, value_size,
                                                                                   "general"),
}


def make_attention(kind: str, query_size: int, value_size: int, attention_size: int) -> Attention:
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; available: {', '.join(ATTENTIONS)}")
    return ATTENTIONS[kind](query_size, value_size, attention_size)
