"""Dynamic padding and length bucketing.

:class:`Collator` pads a list of encoded examples batch-first and returns ids, lengths (CPU int64, as
``pack_padded_sequence`` wants) and a mask; :class:`PairCollator` does the same for source/target pairs and
owns the target shift (``tgt_in = tgt[:, :-1]``, ``tgt_out = tgt[:, 1:]``). :class:`BucketBatchSampler`
groups examples of similar length so a batch carries little padding; its order is a pure function of
(seed, epoch), so training resumes mid-epoch by skipping the batches already seen.
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
    labels: Tensor | None = None  # (batch,) int64 class ids, or (batch, classes) float32 soft labels
    # the same rows read by other tokenizers or truncations (a classifier ensemble whose members read differently)
    views: tuple[Batch, ...] = ()

    def to(self, device: torch.device | str) -> Batch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return Batch(self.input_ids.to(device, non_blocking=True), self.lengths,
                     self.mask.to(device, non_blocking=True), labels, tuple(view.to(device) for view in self.views))

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad id lists -> ids (batch, max_len) int64, lengths (batch,) int64, mask (batch, max_len) bool."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    max_len = int(lengths.max()) if len(sequences) else 0
    ids = torch.full((len(sequences), max_len), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    mask = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)  # (batch, max_len)
    return ids, lengths, mask


@dataclass
class PairBatch:
    """A padded batch of translation pairs. Targets are ``<s> ... </s>``; the model reads ``tgt_in`` and
    predicts ``tgt_out`` (the same sequence shifted by one)."""

    src: Tensor  # (batch, src_len) int64
    src_lengths: Tensor  # (batch,) int64, always on the CPU
    src_mask: Tensor  # (batch, src_len) bool
    tgt_in: Tensor | None = None  # (batch, tgt_len - 1): <s> y_1 ... y_n
    tgt_out: Tensor | None = None  # (batch, tgt_len - 1): y_1 ... y_n </s>
    tgt_mask: Tensor | None = None  # (batch, tgt_len - 1) bool, True where tgt_out is a real token

    def to(self, device: torch.device | str) -> PairBatch:
        def move(tensor):
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return PairBatch(move(self.src), self.src_lengths, move(self.src_mask), move(self.tgt_in),
                         move(self.tgt_out), move(self.tgt_mask))

    @property
    def num_tokens(self) -> int:
        """Target tokens predicted (source tokens when there is no target)."""
        return int(self.tgt_mask.sum()) if self.tgt_mask is not None else int(self.src_lengths.sum())


class EncodedDataset(Dataset):
    """Token id lists with optional labels (class ids, or soft labels: one probability per class): Python lists,
    or the columns of a cached Arrow split (:mod:`nlp_rnn.encoded`) with its ``lengths`` column, so ``lengths()``
    makes no pass over the ids.
    ``views``: per row, the same text's ids as other readers read it (:attr:`Batch.views`); lengths and
    bucketing follow ``input_ids``."""

    def __init__(self, input_ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None,
                 lengths: Sequence[int] | None = None, views: Sequence[Sequence[Sequence[int]]] | None = None) -> None:
        if labels is not None and len(labels) != len(input_ids):
            raise ValueError("input_ids and labels differ in length")
        if views is not None and len(views) != len(input_ids):
            raise ValueError("input_ids and views differ in length")
        self.input_ids = input_ids
        self.labels = labels
        self.row_lengths = lengths
        self.views = views

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": self.input_ids[index]}
        if self.labels is not None:
            item["label"] = self.labels[index]
        if self.views is not None:
            item["views"] = self.views[index]
        return item

    def lengths(self) -> list[int]:
        if self.row_lengths is not None:
            return _as_list(self.row_lengths)
        return [len(ids) for ids in self.input_ids]


def _as_list(values: Sequence[int]) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


class Collator:
    """Pad a list of ``{"input_ids": [...], "label": int or [float, ...]}`` (and ``"views": [[...], ...]``, other
    readings of the same text, each padded as a batch of its own) into a :class:`Batch`."""

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> Batch:
        input_ids, lengths, mask = pad([e["input_ids"] for e in examples], self.pad_id)
        labels = None
        if examples and "label" in examples[0]:  # a class id, or a distribution over the classes (a soft label)
            soft = isinstance(examples[0]["label"], (list, tuple))
            labels = torch.tensor([e["label"] for e in examples], dtype=torch.float32 if soft else torch.long)
        views = ()
        if examples and "views" in examples[0]:
            views = tuple(Batch(*pad([e["views"][view] for e in examples], self.pad_id))
                          for view in range(len(examples[0]["views"])))
        return Batch(input_ids, lengths, mask, labels, views)


class PairDataset(Dataset):
    """Source id lists and (optionally) target id lists that already hold ``<s>`` and ``</s>``; with the length
    columns of a cached Arrow split (:mod:`nlp_rnn.encoded`), ``lengths()`` and ``sort_keys()`` read those."""

    def __init__(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None,
                 src_lengths: Sequence[int] | None = None, tgt_lengths: Sequence[int] | None = None) -> None:
        if tgt is not None and len(tgt) != len(src):
            raise ValueError("src and tgt differ in length")
        self.src = src
        self.tgt = tgt
        self.src_lengths = _as_list(src_lengths) if src_lengths is not None else [len(s) for s in src]
        self.tgt_lengths = (None if tgt is None else _as_list(tgt_lengths) if tgt_lengths is not None
                            else [len(t) for t in tgt])

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, index: int) -> dict:
        item = {"src": self.src[index]}
        if self.tgt is not None:
            item["tgt"] = self.tgt[index]
        return item

    def lengths(self) -> list[int]:
        """The longer side of each pair: what a token budget has to fit."""
        if self.tgt_lengths is None:
            return list(self.src_lengths)
        return [max(s, t) for s, t in zip(self.src_lengths, self.tgt_lengths, strict=True)]

    def sort_keys(self) -> list[tuple[int, int]]:
        """Bucket on source length, then target length."""
        if self.tgt_lengths is None:
            return [(s, 0) for s in self.src_lengths]
        return list(zip(self.src_lengths, self.tgt_lengths, strict=True))


class PairCollator:
    """Pad ``{"src": [...], "tgt": [<s>, ..., </s>]}`` examples into a :class:`PairBatch`."""

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> PairBatch:
        src, src_lengths, src_mask = pad([e["src"] for e in examples], self.pad_id)
        if not examples or "tgt" not in examples[0]:
            return PairBatch(src, src_lengths, src_mask)
        tgt, _, tgt_mask = pad([e["tgt"] for e in examples], self.pad_id)  # (batch, tgt_len)
        return PairBatch(src, src_lengths, src_mask, tgt[:, :-1], tgt[:, 1:], tgt_mask[:, 1:])


class BucketBatchSampler(Sampler[list[int]]):
    """Yield lists of indices whose lengths are close.

    With ``shuffle``: examples are shuffled, cut into buckets of ``bucket_size`` batches, sorted by length
    inside each bucket, cut into batches, and the batches shuffled. Without: sorted by length (evaluation).
    A batch holds ``batch_size`` examples, or, with ``max_tokens``, as many as fit ``max_tokens`` padded tokens.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, max_tokens: int | None = None,
                 shuffle: bool = True, bucket_size: int = 100, seed: int = 0,
                 sort_keys: Sequence | None = None) -> None:
        self.lengths = list(lengths)  # what a token budget counts (padded size = longest * rows)
        self.sort_keys = list(sort_keys) if sort_keys is not None else self.lengths  # what buckets sort by
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
            return self._cut(sorted(indices, key=lambda i: self.sort_keys[i]))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(indices)
        per_bucket = self.bucket_size * (self.batch_size if self.max_tokens is None
                                         else max(1, self.max_tokens // max(1, _median(self.lengths))))
        batches = []
        for start in range(0, len(indices), per_bucket):
            bucket = sorted(indices[start : start + per_bucket], key=lambda i: self.sort_keys[i])
            batches.extend(self._cut(bucket))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start :]

    def __len__(self) -> int:
        return len(self.batches()) - self.start


def _median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2] if values else 1
