"""Loading datasets through Hugging Face ``datasets``, with the local mirror, and cleaning them.

``load_splits(config)`` returns train / validation / test splits with the configured text and label
columns. A hub id (``stanfordnlp/imdb``) is loaded from ``$NLP_RNN_DATA_DIR/<hub id>`` when that folder
exists (an offline mirror with the hub's splits and columns), else from the hub.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

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


def _clean(split: datasets.Dataset, config: DataConfig, name: str, labelled: bool) -> datasets.Dataset:
    """Keep the two columns, drop rows with missing/empty text (and, where labels matter, no label)."""
    for column in (config.text_column, config.label_column):
        if column not in split.column_names:
            raise DataError(f"split {name!r} has no column {column!r} (columns: {', '.join(split.column_names)})")
    split = split.select_columns([config.text_column, config.label_column])
    before = len(split)
    text, label = config.text_column, config.label_column
    split = split.filter(
        lambda row: isinstance(row[text], str) and row[text].strip() != ""
        and (not labelled or (row[label] is not None and row[label] != -1))
    )
    dropped = before - len(split)
    if dropped:
        log.warning("%s: dropped %d of %d rows with empty text or no label", name, dropped, before)
    if len(split) == 0:
        raise DataError(f"split {name!r} of {config.dataset!r} has no usable rows")
    return split


def _limit(split: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    return split if limit is None or limit >= len(split) else split.select(range(limit))


def load_splits(config: DataConfig) -> Splits:
    """Train, validation (carved from train with a fixed seed when the dataset has none) and test."""
    raw = load_raw(config.dataset, config.config_name)
    wanted = [config.train_split, config.test_split] + ([config.validation_split] if config.validation_split else [])
    for name in wanted:
        if name not in raw:
            raise DataError(f"dataset {config.dataset!r} has no split {name!r} (splits: {', '.join(raw)})")
    label_names = _label_names(raw[config.train_split], config.label_column)
    train = raw[config.train_split]
    if config.validation_split:
        validation = raw[config.validation_split]
    else:
        parts = train.train_test_split(test_size=config.validation_fraction, seed=config.split_seed)
        train, validation = parts["train"], parts["test"]
    if config.max_train_examples is not None:
        train = train.shuffle(seed=config.split_seed).select(range(min(config.max_train_examples, len(train))))
    train = _clean(train, config, config.train_split, labelled=True)
    validation = _clean(_limit(validation.shuffle(seed=config.split_seed) if config.max_eval_examples else validation,
                               config.max_eval_examples), config, "validation", labelled=True)
    test = _clean(_limit(raw[config.test_split].shuffle(seed=config.split_seed) if config.max_eval_examples
                         else raw[config.test_split], config.max_eval_examples), config, config.test_split,
                  labelled=True)
    return Splits(train, validation, test, label_names)


def load_eval_split(config: DataConfig, split: str) -> datasets.Dataset:
    """One named split for evaluation: ``train``, ``validation`` (as carved for training) or ``test``."""
    if split not in ("train", "validation", "test"):
        raw = load_raw(config.dataset, config.config_name)
        if split not in raw:
            raise DataError(f"dataset {config.dataset!r} has no split {split!r} (splits: {', '.join(raw)})")
        return _clean(raw[split], config, split, labelled=True)
    return load_splits(config)[split]
