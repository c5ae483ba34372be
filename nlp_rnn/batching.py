"""Dynamic padding and length bucketing.

:class:`Collator` pads a list of encoded examples batch-first and returns ids, lengths (CPU int64, as
``pack_padded_sequence`` wants) and a mask. :class:`BucketBatchSampler` groups examples of similar length
so a batch carries little padding; its order is a pure function of (seed, epoch), so training resumes
mid-epoch by skipping the batches already seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


@dataclass
class Batch:
    input_ids: Tensor  # (batch, max_len) int64, padded with pad_id
    lengths: Tensor  # (batch,) int64, always on the CPU
    mask: Tensor  # (batch, max_len) bool, True at real tokens
    labels: Tensor | None = None  # (batch,) int64

    def to(self, device: torch.device | str) -> Batch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return Batch(self.input_ids.to(device, non_blocking=True), self.lengths,
                     self.mask.to(device, non_blocking=True), labels)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


class EncodedDataset(Dataset):
    """Token id lists with optional integer labels, held in memory."""

    def __init__(self, input_ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None) -> None:
        if labels is not None and len(labels) != len(input_ids):
            raise ValueError("input_ids and labels differ in length")
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": self.input_ids[index]}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


class Collator:
    """Pad a list of ``{"input_ids": [...], "label": int}`` into a :class:`Batch`."""

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> Batch:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples], dtype=torch.long)
        max_len = int(lengths.max()) if len(examples) else 0
        input_ids = torch.full((len(examples), max_len), self.pad_id, dtype=torch.long)
        for row, example in enumerate(examples):
            input_ids[row, : len(example["input_ids"])] = torch.as_tensor(example["input_ids"], dtype=torch.long)
        mask = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)  # (batch, max_len)
        labels = None
        if examples and "label" in examples[0]:
            labels = torch.tensor([e["label"] for e in examples], dtype=torch.long)
        return Batch(input_ids, lengths, mask, labels)


class BucketBatchSampler(Sampler[list[int]]):
    """Yield lists of indices whose lengths are close.

    With ``shuffle``: examples are shuffled, cut into buckets of ``bucket_size`` batches, sorted by length
    inside each bucket, cut into batches, and the batches shuffled. Without: sorted by length (evaluation).
    A batch holds ``batch_size`` examples, or, with ``max_tokens``, as many as fit ``max_tokens`` padded tokens.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, max_tokens: int | None = None,
                 shuffle: bool = True, bucket_size: int = 100, seed: int = 0) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.bucket_size = bucket_size
        self.seed = seed
        self.epoch = 0
        self.start = 0  # batches of this epoch to skip (resuming)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def _cut(self, indices: list[int]) -> list[list[int]]:
        batches, batch, longest = [], [], 0
        for index in indices:
            length = self.lengths[index]
            grown = max(longest, length)
            full = (len(batch) >= self.batch_size if self.max_tokens is None
                    else batch and grown * (len(batch) + 1) > self.max_tokens)
            if full:
                batches.append(batch)
                batch, grown = [], length
            batch.append(index)
            longest = grown
        if batch:
            batches.append(batch)
        return batches

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch, in order."""
        indices = list(range(len(self.lengths)))
        if not self.shuffle:
            return self._cut(sorted(indices, key=lambda i: self.lengths[i]))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(indices)
        per_bucket = self.bucket_size * (self.batch_size if self.max_tokens is None
                                         else max(1, self.max_tokens // max(1, _median(self.lengths))))
        batches = []
        for start in range(0, len(indices), per_bucket):
            bucket = sorted(indices[start : start + per_bucket], key=lambda i: self.lengths[i])
            batches.extend(self._cut(bucket))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start :]

    def __len__(self) -> int:
        return len(self.batches()) - self.start


def _median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2] if values else 1
