"""Loading datasets through Hugging Face ``datasets``, with the local mirror, and cleaning them.

``load_splits(config, task)`` returns train / validation / test splits with the columns the task reads (an
``nlp_rnn.tasks.Task`` class says which, and which rows it can use). A hub id (``stanfordnlp/imdb``) is
loaded from ``$NLP_RNN_DATA_DIR/<hub id>`` when that folder
exists (an offline mirror with the hub's splits and columns), else from the hub.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import datasets

from nlp_rnn.config import DataConfig
from nlp_rnn.errors import NlpRnnError

log = logging.getLogger(__name__)

DATA_DIR_VARIABLE = "NLP_RNN_DATA_DIR"


class DataError(NlpRnnError):
    pass


@dataclass
class Splits:
    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    label_names: list[str]

    def __getitem__(self, name: str) -> datasets.Dataset:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def resolve_dataset(hub_id: str) -> str:
    """The local mirror folder for ``hub_id`` when ``$NLP_RNN_DATA_DIR`` has it, else ``hub_id``."""
    if Path(hub_id).is_dir():
        return hub_id
    root = os.environ.get(DATA_DIR_VARIABLE)
    if root and (Path(root) / hub_id).is_dir():
        return str(Path(root) / hub_id)
    return hub_id


def load_raw(hub_id: str, config_name: str | None = None) -> datasets.DatasetDict:
    """``datasets.load_dataset`` on the mirror or the hub, with one clear error when neither works."""
    source = resolve_dataset(hub_id)
    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_dataset(source, config_name)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "cannot load"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = os.environ.get(DATA_DIR_VARIABLE)
        hint = (f"${DATA_DIR_VARIABLE}={where} has no folder {hub_id}" if where
                else f"${DATA_DIR_VARIABLE} is not set")
        raise DataError(
            f"cannot load dataset {hub_id!r}: {reason} ({hint}). Set {DATA_DIR_VARIABLE} to a folder that "
            "mirrors hub ids (e.g. ../shared/data/hf), or connect to the Hugging Face Hub."
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _label_names(split: datasets.Dataset, column: str) -> list[str]:
    feature = split.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return [str(v) for v in sorted(set(split[column]))]


# Penn Treebank tokenization (SST's "it 's", "does n't", "-lrb-") back to the raw text people type.
_PTB_RULES = [
    (re.compile(r" n't\b"), "n't"),
    (re.compile(r" '(s|re|ve|d|ll|m)\b"), r"'\1"),
    (re.compile(r"-lrb-", re.IGNORECASE), "("),
    (re.compile(r"-rrb-", re.IGNORECASE), ")"),
    (re.compile(r"``\s*|\s*''"), '"'),
    (re.compile(r" ([.,!?;:%)])"), r"\1"),
    (re.compile(r"\( "), "("),
]


def detokenize_ptb(text: str) -> str:
    """``"it 's not that it does n't -lrb- try -rrb- ."`` -> ``"it's not that it doesn't (try)."``"""
    for pattern, replacement in _PTB_RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


class TaskData(Protocol):
    """What loading needs to know of a task (an ``nlp_rnn.tasks.Task`` class): its columns and usable rows."""

    @classmethod
    def columns(cls, data: DataConfig) -> tuple[str, ...]: ...

    @classmethod
    def keep_row(cls, row: dict[str, Any], columns: tuple[str, ...]) -> bool: ...

    @classmethod
    def label_column(cls, data: DataConfig) -> str | None: ...


def _clean(split: datasets.Dataset, config: DataConfig, name: str, task: TaskData) -> datasets.Dataset:
    """Keep the task's columns; drop the rows it cannot use (missing or empty text, no label), logged."""
    wanted = task.columns(config)
    for column in wanted:
        if column not in split.column_names:
            raise DataError(f"split {name!r} has no column {column!r} (columns: {', '.join(split.column_names)})")
    split = split.select_columns(list(wanted))
    before = len(split)
    split = split.filter(lambda row: task.keep_row(row, wanted))
    dropped = before - len(split)
    if dropped:
        log.warning("%s: dropped %d of %d rows with empty text or no label", name, dropped, before)
    if len(split) == 0:
        raise DataError(f"split {name!r} of {config.dataset!r} has no usable rows")
    if config.detokenize_ptb:
        label = task.label_column(config)
        text_columns = [column for column in wanted if column != label]
        split = split.map(lambda row: {c: detokenize_ptb(row[c]) for c in text_columns})
    return split


def _limit(split: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    return split if limit is None or limit >= len(split) else split.shuffle(seed=seed).select(range(limit))


def _carve(split: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    parts = split.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def load_splits(config: DataConfig, task: TaskData) -> Splits:
    """Train, validation and test; validation (and test) carved from train with a fixed seed when missing."""
    raw = load_raw(config.dataset, config.config_name)
    train_parts = config.train_split.split("+")
    wanted = [*train_parts, config.test_split, config.validation_split]
    for name in filter(None, wanted):
        if name not in raw:
            raise DataError(f"dataset {config.dataset!r} has no split {name!r} (splits: {', '.join(raw)})")
    train = datasets.concatenate_datasets([raw[name] for name in train_parts]) if len(train_parts) > 1 \
        else raw[config.train_split]
    label_column = task.label_column(config)
    label_names = _label_names(train, label_column) if label_column else []
    if config.test_split:
        test = raw[config.test_split]
    else:
        train, test = _carve(train, config.test_fraction, config.split_seed)
    if config.validation_split:
        validation = raw[config.validation_split]
    else:
        train, validation = _carve(train, config.validation_fraction, config.split_seed)
    if config.max_train_examples is not None:
        train = train.shuffle(seed=config.split_seed).select(range(min(config.max_train_examples, len(train))))
    seed = config.split_seed
    return Splits(
        train=_clean(train, config, config.train_split, task),
        validation=_clean(_limit(validation, config.max_eval_examples, seed), config, "validation", task),
        test=_clean(_limit(test, config.max_eval_examples, seed), config, config.test_split or "test", task),
        label_names=label_names,
    )


def load_eval_split(config: DataConfig, split: str, task: TaskData,
                    max_examples: int | None = None) -> datasets.Dataset:
    """One named split for evaluation: ``train``, ``validation``, ``test`` (as carved for training) or any other.

    The whole split, whatever ``max_train_examples`` / ``max_eval_examples`` limited during training; with
    ``max_examples``, a fixed random sample of that many (the same rows every time)."""
    if max_examples is not None and max_examples < 1:
        raise DataError(f"--max-examples {max_examples}: must be at least 1")
    config = replace(config, max_train_examples=max_examples, max_eval_examples=max_examples)
    if split not in ("train", "validation", "test"):
        raw = load_raw(config.dataset, config.config_name)
        if split not in raw:
            raise DataError(f"dataset {config.dataset!r} has no split {split!r} (splits: {', '.join(raw)})")
        return _clean(_limit(raw[split], max_examples, config.split_seed), config, split, task)
    return load_splits(config, task)[split]
