"""Knowledge distillation on unlabelled text (Hinton, Vinyals & Dean 2015; as self-training with soft pseudo-labels
it is the semi-supervised use of IMDB's unlabelled reviews in Xie et al. 2020's "noisy student").

A trained classifier, or a packed ensemble, is the **teacher**: it reads each unlabelled text once, before training,
and its calibrated class probabilities ``p_t`` become that text's soft label. The **student** trains on its labelled
batches as usual and, beside each, on a batch of unlabelled texts with the soft cross-entropy

    L_distil = T^2 * sum_c -q_c log softmax(z / T)_c,    q = softmax(log p_t / T)

``z`` the student's logits, ``T`` the distillation temperature (``T = 1``: the teacher's calibrated probabilities as
they are; ``T^2`` keeps the gradient's scale as ``T`` changes, Hinton et al. section 2). The student keeps its
dropout on those batches, so it learns the teacher's answers under noise (the noisy student's lesson).

The teacher's probabilities for a split are cached (:func:`cached_probabilities`, keyed by the teacher's files and
the split's fingerprint), so a resumed run, or a second student of the same teacher, does not score the texts again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nlp_rnn.encoded import fingerprint
from nlp_rnn.io import atomic_write

log = logging.getLogger(__name__)

CACHE_FOLDER = "teacher"  # under the data cache (nlp_rnn.encoded.cache_root)


def soft_cross_entropy(logits: Tensor, teacher_probs: Tensor, temperature: float = 1.0) -> Tensor:
    """The mean over the batch of ``T^2 * sum_c -q_c log softmax(logits / T)_c``, ``q`` the teacher's
    probabilities (batch, classes) sharpened or softened to temperature ``T``. Equal to the KL divergence from ``q``
    to the student's distribution plus ``q``'s entropy, which does not depend on the student."""
    targets = teacher_probs.float().clamp_min(1e-12)
    if temperature != 1.0:
        targets = torch.softmax(targets.log() / temperature, dim=-1)
    log_probs = F.log_softmax(logits.float() / temperature, dim=-1)  # (batch, classes)
    return -(targets * log_probs).sum(-1).mean() * temperature ** 2


def teacher_fingerprint(folders: Sequence[Path]) -> str:
    """What identifies a teacher: the bytes of every member's weights and calibration (a retrained or recalibrated
    teacher is another teacher)."""
    digest = hashlib.sha256()
    for folder in folders:
        for name in ("model.safetensors", "calibration.json", "config.yaml"):
            path = Path(folder) / name
            if path.exists():
                digest.update(name.encode())
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
    return digest.hexdigest()[:32]


def cached_probabilities(cache: Path | None, key_parts: Sequence, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()`` (rows, classes) float32, or what an earlier call with the same ``key_parts`` stored in
    ``cache/teacher/`` (written atomically: a run killed while scoring leaves nothing that a later run trusts).
    ``cache`` None: computed, not stored (a split held in memory has no fingerprint worth keeping)."""
    path = None if cache is None else cache / CACHE_FOLDER / f"{fingerprint(*key_parts)}.npy"
    if path is not None and path.exists():
        log.info("teacher probabilities from the cache: %s", path)
        return np.load(path)
    probabilities = np.ascontiguousarray(compute(), dtype=np.float32)
    if path is not None:
        def write(temp: str) -> None:
            with open(temp, "wb") as handle:
                np.save(handle, probabilities)

        atomic_write(path, write)
    return probabilities
