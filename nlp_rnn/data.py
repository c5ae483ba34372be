"""Loading datasets through Hugging Face ``datasets``, with the local mirror, and cleaning them.

``load_splits(config, task)`` returns train / validation / test splits with the columns the task reads (an
``nlp_rnn.tasks.Task`` class says which, and which rows it can use). A hub id (``stanfordnlp/imdb``) is
loaded from ``$NLP_RNN_DATA_DIR/<hub id>`` when that folder
exists (an offline mirror with the hub's splits and columns), else from the hub. A user's own files (a folder,
or ``data.data_files``) are read split by split, so every problem names its file. Classification labels leave
here as a ``ClassLabel`` column: string and integer labels are named from the training split.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import re
from collections.abc import Iterator
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


# The formats a user's own files may come in, by extension; datasets picks the reader (and TSV's separator).
TEXT_FORMATS = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


@dataclass
class _Raw:
    """Loaded splits, and the local files each split was read from (none for a hub dataset)."""

    splits: datasets.DatasetDict
    files: dict[str, list[str]]
    name: str  # for messages: "dataset 'stanfordnlp/imdb'" or "data.data_files"

    def where(self, split: str) -> str:
        """``/data/test.csv (split 'test')``, or ``split 'train' of dataset 'stanfordnlp/imdb'`` for hub data."""
        files = [path for part in split.split("+") for path in self.files.get(part, [])]
        return f"{_shown(files)} (split {split!r})" if files else f"split {split!r} of {self.name}"


def _shown(paths: list) -> str:
    return ", ".join(map(str, paths[:3])) + (f" and {len(paths) - 3} more files" if len(paths) > 3 else "")


def _extension(path: str) -> str:
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _builder_for(data_files: dict[str, str | list[str]]) -> tuple[str, dict]:
    """The ``datasets`` builder and its options for ``data.data_files``, from the files' extensions, as
    ``datasets.load_dataset(folder)`` infers them (``.tsv``: csv with a tab separator)."""
    from datasets.packaged_modules import _EXTENSION_TO_MODULE

    paths = [path for value in data_files.values() for path in ([value] if isinstance(value, str) else value)]
    by_extension = {}
    for path in paths:
        extension = _extension(path)
        if extension not in TEXT_FORMATS or extension not in _EXTENSION_TO_MODULE:
            raise DataError(f"{path}: cannot tell the format from {extension or 'no extension'!r} "
                            f"(data.data_files reads {', '.join(TEXT_FORMATS)})")
        module, options = _EXTENSION_TO_MODULE[extension]
        by_extension[module, tuple(sorted(options.items()))] = path
    if len(by_extension) > 1:
        raise DataError(f"{' and '.join(by_extension.values())} are in different formats: use one format "
                        "for every file of a dataset")
    ((module, options),) = by_extension
    return module, dict(options)


def _local_files(dataset: str, data_files: dict[str, str | list[str]] | None) -> list[Path]:
    """The user's own files about to be read (checked first: datasets' errors for them rarely name one)."""
    if data_files:
        found = []
        for split, value in data_files.items():
            for pattern in [value] if isinstance(value, str) else value:
                if "://" in pattern:
                    continue
                matches = sorted(glob.glob(pattern, recursive=True))
                if not matches:
                    raise DataError(f"{pattern}: no such file (data.data_files.{split})")
                found += [Path(match) for match in matches if Path(match).is_file()]
        return found
    folder = Path(dataset)
    if not folder.is_dir():
        return []  # a hub id, or its mirror
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and _extension(path.name) in TEXT_FORMATS
            and not any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)]


def _reason(err: BaseException) -> str:
    """The most specific message in an exception's chain (datasets wraps the reader's error)."""
    reason = type(err).__name__
    while err is not None:
        text = str(err).strip()
        if text:
            reason = text.splitlines()[0]
        err = err.__cause__ or err.__context__
    return reason


def _load(dataset: str, config_name: str | None = None,
          data_files: dict[str, str | list[str]] | None = None) -> _Raw:
    """``datasets`` reads the user's files, the mirror or the hub; every failure is one line naming what failed.

    A user's files (``data.data_files``, or a folder's files, split by datasets' file-name rules) are read one
    split at a time, so a file that cannot be read, or whose columns differ from another split's, is named."""
    datasets.disable_progress_bars()
    for path in _local_files(dataset, data_files):
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
    if data_files or Path(dataset).is_dir():
        if data_files:
            by_split = {split: [paths] if isinstance(paths, str) else list(paths)
                        for split, paths in data_files.items()}
        else:
            try:
                found = datasets.load_dataset_builder(dataset, config_name).config.data_files or {}
            except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "cannot read"
                raise DataError(f"cannot read the folder {dataset}: {_reason(err)}") from None
            by_split = {str(split): [str(path) for path in paths] for split, paths in found.items()}
        raw = _Raw(datasets.DatasetDict(), {}, "data.data_files" if data_files else f"dataset {dataset!r}")
        for split, paths in by_split.items():
            raw.splits[split], raw.files[split] = _read_files(split, paths)
        return raw
    try:
        loaded = datasets.load_dataset(resolve_dataset(dataset), config_name)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "cannot load"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = os.environ.get(DATA_DIR_VARIABLE)
        hint = (f"${DATA_DIR_VARIABLE}={where} has no folder {dataset}" if where
                else f"${DATA_DIR_VARIABLE} is not set")
        raise DataError(
            f"cannot load dataset {dataset!r}: {reason} ({hint}). Set {DATA_DIR_VARIABLE} to a folder that "
            "mirrors hub ids (e.g. ../shared/data/hf), or connect to the Hugging Face Hub."
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return _Raw(loaded, {}, f"dataset {dataset!r}")


def _read_files(split: str, paths: list[str]) -> tuple[datasets.Dataset, list[str]]:
    """One split of a user's files through the ``datasets`` reader their extension names; and the files read."""
    module, options = _builder_for({split: paths})
    shown = _shown(paths)
    try:
        builder = datasets.load_dataset_builder(module, data_files={split: paths}, **options)
        builder.download_and_prepare()
        info = (builder.info.splits or {}).get(split)
        if info is None or not info.num_examples:
            raise DataError(f"{shown} (split {split!r}): no rows (only a header?)")
        files = [str(path) for path in builder.config.data_files[split]]
        return builder.as_dataset(split=split), files
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "cannot read"
        raise DataError(f"cannot read {shown} (split {split!r}): {_reason(err)}") from None


def load_raw(hub_id: str, config_name: str | None = None,
             data_files: dict[str, str | list[str]] | None = None) -> datasets.DatasetDict:
    """``datasets.load_dataset`` on the user's files, the mirror or the hub, with one clear error when that fails."""
    return _load(hub_id, config_name, data_files).splits


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                and not value.strip())


def _check_labels(split: datasets.Dataset, column: str, where: str) -> None:
    """A label column of plain values (strings, numbers) must have one in every row: a gap in a user's file is a
    mistake to fix, not a row to drop. (A ``ClassLabel`` column's -1 means "unlabelled", as in IMDB's
    unsupervised split; those rows are dropped.)"""
    if isinstance(split.features[column], datasets.ClassLabel):
        return
    if not any(_missing(value) for value in split.unique(column)):
        return
    values = split[column]
    rows = [i for i, value in enumerate(values) if _missing(value)]
    raise DataError(f"{where}: {len(rows)} of {len(values)} rows have no label in column {column!r} "
                    f"(the first is data row {rows[0] + 1})")


def _label_names(split: datasets.Dataset, column: str) -> list[str]:
    """A ``ClassLabel``'s names, else the distinct values sorted (numbers numerically), as strings."""
    feature = split.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return [str(value) for value in sorted(split.unique(column))]


def _encode_labels(split: datasets.Dataset, column: str, names: list[str], where: str) -> datasets.Dataset:
    """The label column as a ``ClassLabel`` with the training split's ``names``, whatever type it was read as."""
    feature = split.features[column]
    if isinstance(feature, datasets.ClassLabel):
        if list(feature.names) != list(names):
            raise DataError(f"{where}: labels {', '.join(feature.names)} in column {column!r} are not the training "
                            f"labels {', '.join(names)}")
        return split
    index = {name: i for i, name in enumerate(names)}
    unseen = sorted({str(value) for value in split.unique(column)} - set(index))
    if unseen:
        more = f" (and {len(unseen) - 1} more: {', '.join(unseen[1:4])})" if len(unseen) > 1 else ""
        raise DataError(f"{where}: label {unseen[0]!r} in column {column!r} is not among the training split's "
                        f"labels ({', '.join(names)}){more}")
    features = split.features.copy()
    features[column] = datasets.ClassLabel(names=list(names))
    return split.map(lambda batch: {column: [index[str(value)] for value in batch[column]]}, batched=True,
                     features=features)


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
    """What loading needs to know of a task (an ``nlp_rnn.tasks.Task`` class): its columns, which rows it can
    use, and the column that names its classes (None: it has no label set)."""

    @classmethod
    def columns(cls, data: DataConfig) -> tuple[str, ...]: ...

    @classmethod
    def keep_row(cls, row: dict[str, Any], columns: tuple[str, ...]) -> bool: ...

    @classmethod
    def label_column(cls, data: DataConfig) -> str | None: ...


def _check_columns(split: datasets.Dataset, config: DataConfig, task: TaskData, where: str) -> None:
    for column in task.columns(config):
        if column not in split.column_names:
            raise DataError(f"{where}: no column {column!r} (columns: {', '.join(split.column_names)})")


def _clean(split: datasets.Dataset, config: DataConfig, where: str, task: TaskData) -> datasets.Dataset:
    """Keep the task's columns; drop the rows it cannot use (missing or empty text, no label), logged."""
    _check_columns(split, config, task, where)
    wanted = task.columns(config)
    split = split.select_columns(list(wanted))
    before = len(split)
    split = split.filter(lambda row: task.keep_row(row, wanted))
    dropped = before - len(split)
    if dropped:
        log.warning("%s: dropped %d of %d rows with empty text or no label", where, dropped, before)
    if len(split) == 0:
        raise DataError(f"{where}: no usable rows (every text is empty or unlabelled)")
    if config.detokenize_ptb:
        label = task.label_column(config)
        text_columns = [column for column in wanted if column != label]
        split = split.map(lambda row: {c: detokenize_ptb(row[c]) for c in text_columns})
    return split


def _limit(split: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    return split if limit is None or limit >= len(split) else split.shuffle(seed=seed).select(range(limit))


def _carve(split: datasets.Dataset, fraction: float, config: DataConfig, task: TaskData,
           where: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``fraction`` of ``split`` held out with ``config.split_seed``: of its rows, or of its whole sentences
    (``config.carve_whole_sentences``)."""
    if config.carve_whole_sentences:
        return _carve_whole_sentences(split, fraction, config, task, where)
    parts = split.train_test_split(test_size=fraction, seed=config.split_seed)
    return parts["train"], parts["test"]


def _inner_phrases(text: str) -> Iterator[str]:
    """Every run of consecutive words of ``text`` shorter than the whole text."""
    words = text.split()
    for start in range(len(words)):
        for end in range(start + 1, len(words) + (start > 0)):  # from the first word: all but the last
            yield " ".join(words[start:end])


def _carve_whole_sentences(split: datasets.Dataset, fraction: float, config: DataConfig, task: TaskData,
                           where: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out ``fraction`` of the whole sentences of a treebank of phrases (a row that no other row contains is a
    whole sentence) and leave out of the rest every phrase that occurs only inside a held-out sentence. Texts are
    compared word by word (runs of whitespace are one space)."""
    label = task.label_column(config)
    text_columns = [column for column in task.columns(config) if column != label]
    if len(text_columns) != 1:
        raise DataError(f"data.carve_whole_sentences: needs a task with one text column, not "
                        f"{', '.join(text_columns)}")
    texts = [" ".join(text.split()) if isinstance(text, str) else "" for text in split[text_columns[0]]]
    known = set(texts) - {""}
    inside = {phrase for text in known for phrase in _inner_phrases(text) if phrase in known}
    sentences = sorted(known - inside)
    random.Random(config.split_seed).shuffle(sentences)
    count = max(1, round(fraction * len(sentences)))
    if count >= len(sentences):
        raise DataError(f"{where}: too few whole sentences ({len(sentences)}) to hold out {fraction:g} of them "
                        "and train on the rest")
    held = set(sentences[:count])
    kept = {phrase for text in sentences[count:] for phrase in _inner_phrases(text) if phrase in known}
    kept.update(sentences[count:])
    kept.add("")  # rows without text stay, for _clean to count and drop
    train = [row for row, text in enumerate(texts) if text in kept]
    heldout = [row for row, text in enumerate(texts) if text in held]
    log.info("%s: held out %d of %d whole sentences (%d rows); %d phrases that occur only inside them left "
             "out of train", where, count, len(sentences), len(heldout), len(texts) - len(train) - len(heldout))
    return split.select(train), split.select(heldout)


def _prepare(split: datasets.Dataset, config: DataConfig, task: TaskData, where: str,
             label_names: list[str] | None) -> tuple[datasets.Dataset, list[str]]:
    """Check the task's columns; for a task with a label column, labels present and known, encoded with
    ``label_names`` (``None``: this split's own, when it is the training split)."""
    _check_columns(split, config, task, where)
    column = task.label_column(config)
    if column is None:
        return split, []
    _check_labels(split, column, where)
    names = label_names if label_names is not None else _label_names(split, column)
    return _encode_labels(split, column, names, where), names


def _named(raw: _Raw, name: str, config: DataConfig, key: str | None = None) -> datasets.Dataset:
    """Split ``name`` of ``raw``; a missing one is an error that lists the splits there and names ``key``, the setting
    that asked for it (default: the hint for data.test_split / validation_split)."""
    if name not in raw.splits:
        hint = ""
        if key:
            hint = f"; {key}"
        elif name == config.test_split:
            hint = "; data.test_split: null carves a test split from train"
        elif name == config.validation_split:
            hint = "; data.validation_split: null carves one from train"
        raise DataError(f"{raw.name} has no split {name!r} (splits: {', '.join(raw.splits)}{hint})")
    return raw.splits[name]


def _train_split(raw: _Raw, config: DataConfig) -> datasets.Dataset:
    parts = [_named(raw, name, config) for name in config.train_split.split("+")]
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def load_splits(config: DataConfig, task: TaskData, label_names: list[str] | None = None) -> Splits:
    """Train, validation and test; validation (and test) carved from train with a fixed seed when missing.

    Labels (for a task with a label column) become a ``ClassLabel`` named from the training split (a string or
    integer column's distinct values, sorted), or ``label_names`` (a trained model's); a label the names lack
    is an error."""
    raw = _load(config.dataset, config.config_name, config.data_files)
    train_where = raw.where(config.train_split)
    train, label_names = _prepare(_train_split(raw, config), config, task, train_where, label_names)
    test_where = validation_where = train_where  # carved from train unless named
    if config.test_split:
        test_where = raw.where(config.test_split)
        test, _ = _prepare(_named(raw, config.test_split, config), config, task, test_where, label_names)
    else:
        train, test = _carve(train, config.test_fraction, config, task, train_where)
    if config.validation_split:
        validation_where = raw.where(config.validation_split)
        validation, _ = _prepare(_named(raw, config.validation_split, config), config, task, validation_where,
                                 label_names)
    else:
        train, validation = _carve(train, config.validation_fraction, config, task, train_where)
    if config.max_train_examples is not None:
        train = train.shuffle(seed=config.split_seed).select(range(min(config.max_train_examples, len(train))))
    seed = config.split_seed
    return Splits(
        train=_clean(train, config, train_where, task),
        validation=_clean(_limit(validation, config.max_eval_examples, seed), config, validation_where, task),
        test=_clean(_limit(test, config.max_eval_examples, seed), config, test_where, task),
        label_names=label_names,
    )


def load_eval_split(config: DataConfig, split: str, task: TaskData,
                    max_examples: int | None = None, label_names: list[str] | None = None) -> datasets.Dataset:
    """One named split for evaluation: ``train``, ``validation``, ``test`` (as carved for training) or any other;
    several joined by ``+`` (``validation+test``).

    The whole split, whatever ``max_train_examples`` / ``max_eval_examples`` limited during training; with
    ``max_examples``, a fixed random sample of that many (the same rows every time). Classification labels are
    encoded with ``label_names`` (the model's) when given, else with the training split's."""
    if max_examples is not None and max_examples < 1:
        raise DataError(f"--max-examples {max_examples}: must be at least 1")
    if "+" in split:  # several joined, in order, as data.train_split writes it ("validation+test")
        return datasets.concatenate_datasets([load_eval_split(config, part, task, max_examples, label_names)
                                              for part in split.split("+")])
    config = replace(config, max_train_examples=max_examples, max_eval_examples=max_examples)
    if split not in ("train", "validation", "test"):
        raw = _load(config.dataset, config.config_name, config.data_files)
        chosen = _named(raw, split, config)
        if task.label_column(config) and label_names is None:  # the training split's, as training named them
            _, label_names = _prepare(_train_split(raw, config), config, task, raw.where(config.train_split), None)
        chosen, _ = _prepare(chosen, config, task, raw.where(split), label_names)
        return _clean(_limit(chosen, max_examples, config.split_seed), config, raw.where(split), task)
    return load_splits(config, task, label_names)[split]


# Where a sentence ends: after . ! or ? (and a closing quote or bracket) before a space, and at IMDB's "<br />".
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+|(?:\s*<br\s*/?>\s*)+")


def split_sentences(text: str, min_words: int = 2) -> list[str]:
    """``text``'s sentences, split at sentence-final punctuation followed by a space and at ``<br />`` tags (a rule,
    not a parser: "Mr. Smith" breaks in two); pieces of fewer than ``min_words`` words are left out."""
    pieces = (piece.strip() for piece in _SENTENCE_BREAK.split(text))
    return [piece for piece in pieces if len(piece.split()) >= min_words]


def _sentences_batch(batch: dict[str, list], column: str) -> dict[str, list]:
    return {column: [sentence for text in batch[column] for sentence in split_sentences(text)]}


def load_unlabelled(config: DataConfig, column: str) -> datasets.Dataset:
    """The text of ``config.unlabelled_split`` (several joined by ``+``) for semi-supervised training, in one column
    named ``column``: from ``config.unlabelled_dataset`` (its ``unlabelled_column``) when set, else from the
    labelled dataset (``column``); rows with no text dropped; with ``max_unlabelled_examples`` a fixed random sample
    of that many; with ``unlabelled_sentences`` each text split into its sentences (:func:`split_sentences`).
    Labels are never read (IMDB's ``unsupervised`` split has -1 in every row)."""
    own = not config.unlabelled_elsewhere
    if own:
        raw = _load(config.dataset, config.config_name, config.data_files)
    elif _extension(config.unlabelled_dataset) in TEXT_FORMATS and not Path(config.unlabelled_dataset).exists():
        raise DataError(f"{config.unlabelled_dataset}: no such file (data.unlabelled_dataset)")
    elif Path(config.unlabelled_dataset).is_file():  # one file of the user's: its rows are split "train"
        raw = _load(config.unlabelled_dataset, data_files={"train": config.unlabelled_dataset})
        raw.name = f"data.unlabelled_dataset {config.unlabelled_dataset!r}"
    else:
        raw = _load(config.unlabelled_dataset)
    target, column = column, config.unlabelled_column or column  # the column read, and the one returned
    key = "data.unlabelled_split" if own and not config.unlabelled_column else "data.unlabelled_column"
    parts = []
    for name in config.unlabelled_split.split("+"):
        split = _named(raw, name, config, key="data.unlabelled_split")
        if not own and not config.unlabelled_column and split.column_names == ["text"]:
            column = "text"  # a text file's one column
        if column not in split.column_names:
            raise DataError(f"{raw.where(name)}: no column {column!r} (columns: {', '.join(split.column_names)}; "
                            f"{key})")
        parts.append(split.select_columns([column]))
    split = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    split = _limit(split, config.max_unlabelled_examples, config.split_seed)
    # (the lambdas as they were: their code is part of the split's fingerprint, which keys cached teacher scores)
    split = split.filter(lambda row: isinstance(row[column], str) and row[column].strip() != "")
    if config.unlabelled_sentences:
        split = split.map(_sentences_batch, batched=True, fn_kwargs={"column": column})
    if len(split) == 0:
        raise DataError(f"{raw.where(config.unlabelled_split)}: no text in column {column!r} (data.unlabelled_split)")
    if config.detokenize_ptb and own:  # the labelled dataset's tokenisation; another corpus is read as it is
        split = split.map(lambda row: {column: detokenize_ptb(row[column])})
    if column != target:
        split = split.rename_column(column, target)
    return split
