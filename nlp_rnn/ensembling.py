"""Combining the predictions of several models: the mixture of their probability distributions.

An ensemble of classifiers or of translators (one decoding step at a time) predicts the mean of its members'
probabilities, p(y) = 1/K sum_k softmax(z_k / T_k)(y), and works with its log. It is computed in float32 with
logsumexp over log-softmaxes, so a label that every member finds unlikely keeps a finite log-probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def mixture_log_probs(logits: Sequence[Tensor], temperatures: Sequence[float] | None = None) -> Tensor:
    """log(mean_k softmax(logits_k / T_k)) over the last dimension; ``logits`` are the K members' logits, all of
    one shape, and ``temperatures`` (default all 1) their calibration temperatures."""
    if not logits:
        raise ValueError("an ensemble needs at least one member's logits")
    if temperatures is None:
        temperatures = [1.0] * len(logits)
    stacked = torch.stack([(member.float() / temperature).log_softmax(-1)
                           for member, temperature in zip(logits, temperatures, strict=True)])  # (K, ..., labels)
    return stacked.logsumexp(0) - math.log(len(logits))
