"""Encoded splits as memory-mapped Arrow files, cached on disk by fingerprint.

A task turns a cleaned split into model inputs once. :func:`encode_split` runs the task's batch function (rows ->
id columns, a ``length`` per row, labels...; it may leave rows out) through ``datasets.Dataset.map(batched=True,
num_proc=data.num_proc)`` into Arrow files in ``<cache>/encoded/<key>/``. The key is a fingerprint of the split's
own ``datasets`` fingerprint (its files and every step that cleaned, limited or carved it), the tokenizers' JSON,
the ``data:`` options and the task's own encoding options: a later run with the same data, tokenizers and options
memory-maps those files and encodes nothing, and a change to any of them is another key. The folder is written
under a temporary name and renamed into place once complete, so a run killed mid-encode leaves nothing that a
later run trusts. :func:`cached_tokenizers` keeps the tokenizers trained on a split the same way.

:class:`EncodedSplit` reads the files back: ``column(name)`` is a read-only sequence whose row ``i`` is plain
Python (a list of ints for an id column), read from the memory-mapped chunk that holds it; ``ints(name)`` a numpy
array (the ``length`` column the bucketing sampler reads, without a pass over the ids); ``stream(name)`` every
row's ids end to end as one flat int32 array, memory-mapped from a ``.npy`` file beside the Arrow files (the
language models' token stream).

The cache lives in ``data.cache_dir``, else ``$NLP_RNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/nlp_rnn`` (by default
``~/.cache/nlp_rnn``); deleting that folder clears it. A split held in memory (no Arrow file behind it:
``Dataset.from_dict``) is encoded in memory and not cached.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import tokenizers
from tokenizers import Tokenizer

from nlp_rnn.config import DataConfig
from nlp_rnn.io import atomic_write

log = logging.getLogger(__name__)

CACHE_VARIABLE = "NLP_RNN_CACHE_DIR"
FORMAT_VERSION = 1  # bump when what a cache folder holds, or how a key is made, changes
MANIFEST = "manifest.json"  # written last: a folder without one is not a cache entry
RUNTIME_OPTIONS = ("cache_dir", "num_proc")  # data: options that do not change what is encoded
# data: options that change only which unlabelled texts are read, which the split's own fingerprint already says
SOURCE_OPTIONS = ("unlabelled_dataset", "unlabelled_column", "unlabelled_sentences")

IDS = datasets.Sequence(datasets.Value("int32"))  # the feature of an id column: list<int32>
LENGTH = datasets.Value("int32")


def cache_root(data: DataConfig) -> Path:
    """``data.cache_dir``, else ``$NLP_RNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/nlp_rnn`` (``~/.cache/nlp_rnn``)."""
    if data.cache_dir:
        return Path(data.cache_dir).expanduser()
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nlp_rnn"


def fingerprint(*parts: Any) -> str:
    """A hex digest of JSON-able ``parts`` (dict keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _function_name(function: Callable) -> str:
    while isinstance(function, functools.partial):
        function = function.func
    return f"{function.__module__}.{function.__qualname__}"


def _data_options(data: DataConfig) -> dict[str, Any]:
    return {key: value for key, value in dataclasses.asdict(data).items()
            if key not in RUNTIME_OPTIONS + SOURCE_OPTIONS}


def read_column(split: datasets.Dataset, column: str, batch_size: int = 1000) -> Iterator:
    """The values of one column, read a batch of rows at a time (training a tokenizer on a corpus that does not fit
    in memory as a list)."""
    for batch in split.select_columns([column]).iter(batch_size=batch_size):
        yield from batch[column]


# -- writing ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _one_thread_per_worker(num_proc: int) -> Iterator[None]:
    """``TOKENIZERS_PARALLELISM=false`` while ``datasets`` starts ``num_proc`` workers: each tokenizes on one thread
    (the processes share the cores; a thread pool in each would oversubscribe them), and a worker forked from a
    process that has used the tokenizers library's thread pool (``datasets`` < 5 forks; 5 spawns) does not warn
    about it. A value the user set is left alone."""
    if num_proc <= 1 or "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to fill; renamed to ``folder`` when the block ends without an error,
    deleted when it raises. A ``folder`` that another run completed meanwhile is kept (it holds the same)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield temp
        for path in temp.iterdir():  # on disk before the rename makes them trusted
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        if folder.is_dir() and not (folder / MANIFEST).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # not a cache entry (no manifest): never trusted
        try:
            os.rename(temp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def encode_split(split: datasets.Dataset, encode: Callable[..., dict[str, list]], features: datasets.Features,
                 data: DataConfig, tokenizers_used: Sequence[Tokenizer], options: dict[str, Any] | None = None,
                 with_indices: bool = False) -> EncodedSplit:
    """``encode(batch) -> columns`` over ``split`` a batch at a time (``features`` types the columns; rows may be
    left out, order is kept), cached as the module docstring says. ``options``: what else changes the output
    besides the split, ``data`` and ``tokenizers_used`` (a model setting the encoding reads). ``with_indices``:
    ``encode(batch, indices)`` gets each row's index in ``split`` too (for messages naming a row)."""
    arguments = {"function": encode, "batched": True, "with_indices": with_indices, "features": features,
                 "remove_columns": split.column_names}
    if not split.cache_files:  # held in memory: nothing on disk names it
        return EncodedSplit(split.map(**arguments, keep_in_memory=True))
    key = fingerprint(FORMAT_VERSION, split._fingerprint, [t.to_str() for t in tokenizers_used], _data_options(data),
                      _function_name(encode), options or {}, tokenizers.__version__)
    folder = cache_root(data) / "encoded" / key
    if (folder / MANIFEST).is_file():
        log.info("encoded split read from %s", folder)
        return EncodedSplit.read(folder)
    started = time.perf_counter()
    with _building(folder) as temp:
        with _one_thread_per_worker(data.num_proc):
            encoded = split.map(**arguments, num_proc=data.num_proc if data.num_proc > 1 else None,
                                cache_file_name=str(temp / "data.arrow"), new_fingerprint=key,
                                load_from_cache_file=False)
        manifest = {"files": [Path(f["filename"]).name for f in encoded.cache_files], "rows": len(encoded),
                    "source_rows": len(split), "source_fingerprint": split._fingerprint,
                    "encoder": _function_name(encode), "options": options or {}, "format": FORMAT_VERSION}
        del encoded
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    log.info("encoded %d rows into %s in %.1f s", manifest["source_rows"], folder, time.perf_counter() - started)
    return EncodedSplit.read(folder)


def cached_tokenizers(split: datasets.Dataset, data: DataConfig, options: dict[str, Any],
                      train: Callable[[], list[Tokenizer]]) -> list[Tokenizer]:
    """``train()``'s tokenizers, trained on ``split``; or those an earlier run trained on the same split with the same
    ``options`` (the tokenizer config and what it reads), from ``<cache>/tokenizers/<key>/`` (as JSON, the form a
    run folder keeps them in)."""
    if not split.cache_files:
        return train()
    key = fingerprint(FORMAT_VERSION, split._fingerprint, options, tokenizers.__version__)
    folder = cache_root(data) / "tokenizers" / key
    if (folder / MANIFEST).is_file():
        count = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["count"]
        log.info("tokenizers read from %s", folder)
        return [Tokenizer.from_file(str(folder / f"tokenizer-{i}.json")) for i in range(count)]
    trained = train()
    with _building(folder) as temp:
        for i, tokenizer in enumerate(trained):
            tokenizer.save(str(temp / f"tokenizer-{i}.json"))
        (temp / MANIFEST).write_text(json.dumps({"count": len(trained), "options": options}), encoding="utf-8")
    return trained


# -- reading ----------------------------------------------------------------------------------------------------

class ArrowColumn(Sequence):
    """One column as a read-only sequence: ``column[i]`` is row ``i``'s value as plain Python (a list of ints for an
    id column, an int for a label), read from the Arrow chunk that holds it (memory-mapped for a cached split)."""

    def __init__(self, chunked: pa.ChunkedArray) -> None:
        self.chunks = [chunk for chunk in chunked.chunks if len(chunk)]
        self.starts = list(itertools.accumulate((len(chunk) for chunk in self.chunks), initial=0))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        chunk = bisect.bisect_right(self.starts, index) - 1
        return self.chunks[chunk][index - self.starts[chunk]].as_py()

    def __iter__(self) -> Iterator:
        for chunk in self.chunks:
            yield from chunk.to_pylist()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """A scalar column (labels) as one numpy array, for ``torch.as_tensor(column)``."""
        values = (np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in self.chunks]) if self.chunks
                  else np.zeros(0, np.int64))
        return values if dtype is None else values.astype(dtype)


class EncodedSplit:
    """An encoded split read from Arrow (files in ``folder`` for a cached one, memory-mapped; else in memory)."""

    def __init__(self, dataset: datasets.Dataset, folder: Path | None = None) -> None:
        self.dataset = dataset
        self.folder = folder
        self.table: pa.Table = dataset.data.table

    @classmethod
    def read(cls, folder: Path) -> EncodedSplit:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        parts = [datasets.Dataset.from_file(str(folder / name)) for name in manifest["files"]]
        return cls(datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0], folder)

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> ArrowColumn:
        return ArrowColumn(self.table.column(name))

    def ints(self, name: str) -> np.ndarray:
        """An integer column as a numpy array (4 bytes a row for ``length``: the only column read whole)."""
        return self.table.column(name).to_numpy()

    def stream(self, name: str) -> np.ndarray:
        """Every row's ids in ``name``, end to end, as one flat int32 array: memory-mapped from
        ``stream-<name>.npy`` in the cache folder (written once, a chunk at a time), in memory for an uncached
        split."""
        chunks = self.table.column(name).chunks
        if self.folder is None:
            return np.concatenate([chunk.flatten().to_numpy() for chunk in chunks] or [np.zeros(0, np.int32)])
        path = self.folder / f"stream-{name}.npy"
        if not path.is_file():
            atomic_write(path, lambda temp: _write_stream(temp, chunks))
        return np.load(path, mmap_mode="r")


def _write_stream(path: str, chunks: list[pa.Array]) -> None:
    """The flattened ``chunks`` as one int32 ``.npy`` file, written through a plain file (no mapping grows the
    process's resident memory)."""
    total = sum(len(chunk.flatten()) for chunk in chunks)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)),
                                                      "fortran_order": False, "shape": (total,)})
        for chunk in chunks:
            handle.write(chunk.flatten().to_numpy().astype(np.int32, copy=False).tobytes())
