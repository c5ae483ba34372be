"""Choosing a language model's next token from its logits: greedy, or sampling with a temperature, top-k,
nucleus (top-p; Holtzman et al. 2020) and a repetition penalty (Keskar et al. 2019, CTRL), applied in that order,
as Hugging Face's logits processors do. Each row draws from its own ``torch.Generator``, so a row's sample does
not depend on the other rows of its batch."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nlp_rnn.errors import NlpRnnError


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float) -> None:
    """One clear error for a setting no sampler can use."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise NlpRnnError(f"temperature must be > 0 (got {temperature}); for the most likely tokens use greedy "
                          "decoding")
    if top_k is not None and top_k < 1:
        raise NlpRnnError(f"top_k must be >= 1 (got {top_k})")
    if top_p is not None and not 0 < top_p <= 1:
        raise NlpRnnError(f"top_p must be in (0, 1] (got {top_p})")
    if not repetition_penalty >= 1.0:
        raise NlpRnnError(f"repetition_penalty must be >= 1 (got {repetition_penalty}; 1 = none)")


def penalize_repetition(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty: the logit of every token in ``seen`` (batch, vocab) bool is divided by ``penalty`` when
    positive and multiplied by it when negative, so a seen token always loses probability."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` highest logits of each row (ties at the k-th value kept too), the rest -inf."""
    if k >= logits.size(-1):
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (batch, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep, per row, the smallest set of most probable tokens whose probability reaches ``p`` (the top token
    always), the rest -inf."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= p  # the mass before a token already reached p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits: Tensor, generators: list[torch.Generator] | None, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """(batch, vocab) logits -> (batch,) token ids: the argmax without ``generators`` (greedy), else one draw
    per row from its generator after temperature, top-k and top-p."""
    if generators is None:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probabilities = logits.softmax(-1).cpu()  # torch.Generator objects here are CPU ones
    drawn = [torch.multinomial(row, 1, generator=generator) for row, generator in zip(probabilities, generators,
                                                                                      strict=True)]
    return torch.cat(drawn).to(logits.device)


def row_generators(seed: int | None, rows: int) -> list[torch.Generator]:
    """Row i draws from a generator seeded ``seed + i`` (a random seed when None): the same prompt and seed give
    the same sample in any batch."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    return [torch.Generator().manual_seed(seed + i) for i in range(rows)]
