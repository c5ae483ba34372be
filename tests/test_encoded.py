"""The encoded-split cache (nlp_rnn.encoded): every task's rows equal the in-memory encoding they replace, and the
length columns the ids' lengths; a second run reads the cache and trains no tokenizer, a changed tokenizer or
max_length encodes again, an encode that fails or is killed leaves nothing a later run trusts; num_proc gives the
same rows; the language models' stream is the texts end to end, memory-mapped."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from nlp_rnn.config import config_from_dict
from nlp_rnn.data import load_splits
from nlp_rnn.encoded import MANIFEST, encode_split
from nlp_rnn.tasks import ClassificationTask, TranslationTask, encode_pairs, get_task
from nlp_rnn.tasks import classification as classification_module
from nlp_rnn.tokenization import BOS_ID, EOS_ID, encode_texts
from tests.tiny import reversal_config, write_generation_texts, write_reversal_dataset

WORDS = "good bad film plot actor scene music long short dull great".split()


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    """1,500 training reviews (two encoding batches) and 100 test ones; every 50th is only "<br />" (it normalises
    to nothing: left out when encoding)."""
    folder = tmp_path_factory.mktemp("reviews")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    for name, count in (("train", 1500), ("test", 100)):
        rows = {"text": [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 30)) if i % 50 else "<br />"
                         for i in range(count)], "label": [i % 2 for i in range(count)]}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{name}.parquet"))
    return folder


def reviews_config(folder: Path, cache: Path, **data):
    return config_from_dict({"data": {"dataset": str(folder), "validation_split": "test", "max_length": 20,
                                      "cache_dir": str(cache), **data},
                             "tokenizer": {"vocab_size": 200, "min_frequency": 1}, "train": {"progress": False}})


def entries(cache: Path, kind: str = "encoded") -> list[Path]:
    """The trusted cache folders (those with a manifest)."""
    return sorted(path.parent for path in (cache / kind).glob(f"*/{MANIFEST}"))


def rows(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture
def encode_calls(monkeypatch) -> list[int]:
    """Rows the classification task's batch function was given (it keeps its name: the cache key is unchanged)."""
    calls: list[int] = []
    original = classification_module._encode_batch

    @functools.wraps(original)
    def counted(batch, **options):
        calls.append(len(batch["text"]))
        return original(batch, **options)

    monkeypatch.setattr(classification_module, "_encode_batch", counted)
    return calls


def test_rows_labels_and_lengths_equal_the_in_memory_encoding(reviews, tmp_path):
    config = reviews_config(reviews, tmp_path)
    task, data = ClassificationTask.for_training(config)
    split = load_splits(config.data, ClassificationTask).train
    ids = encode_texts(task.tokenizer, split["text"], 20, config.data.truncation, config.data.head_fraction)
    keep = [i for i, row in enumerate(ids) if row]
    assert 0 < len(keep) < len(ids)  # the "<br />" reviews are left out, as before
    assert rows(data.train) == [{"input_ids": ids[i], "label": split["label"][i]} for i in keep]
    assert all(type(value) is int for value in [*data.train[0]["input_ids"], data.train[0]["label"]])
    assert data.train.lengths() == [len(ids[i]) for i in keep]  # the length column
    assert torch.equal(torch.as_tensor(data.train.labels), torch.tensor([split["label"][i] for i in keep]))
    assert len(entries(tmp_path)) == 2  # train and validation


def test_a_second_run_reads_the_cache_and_trains_no_tokenizer(reviews, tmp_path, encode_calls, monkeypatch):
    config = reviews_config(reviews, tmp_path)
    task, data = ClassificationTask.for_training(config)
    assert sum(encode_calls) > 0
    files = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in tmp_path.rglob("*") if path.is_file()}
    encode_calls.clear()
    monkeypatch.setattr("nlp_rnn.tokenization.train_tokenizer", lambda *_: pytest.fail("a tokenizer was trained"))
    again, data_again = ClassificationTask.for_training(config)
    assert encode_calls == []  # nothing encoded
    assert files == {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in tmp_path.rglob("*")
                     if path.is_file()}  # nothing rewritten
    assert again.tokenizer.to_str() == task.tokenizer.to_str()
    assert rows(data_again.train) == rows(data.train) and data_again.train.lengths() == data.train.lengths()


def test_a_changed_tokenizer_or_max_length_encodes_again(reviews, tmp_path, encode_calls):
    _, base = ClassificationTask.for_training(reviews_config(reviews, tmp_path))
    assert len(entries(tmp_path)) == 2
    config = reviews_config(reviews, tmp_path)
    smaller = config_from_dict({**config.to_dict(), "tokenizer": {"vocab_size": 12, "min_frequency": 1}})
    encode_calls.clear()
    task, data = ClassificationTask.for_training(smaller)
    assert sum(encode_calls) > 0 and len(entries(tmp_path)) == 4
    assert task.tokenizer.get_vocab_size() == 12 and max(max(row["input_ids"]) for row in rows(data.train)) < 12
    encode_calls.clear()
    _, shorter = ClassificationTask.for_training(reviews_config(reviews, tmp_path, max_length=5))
    assert sum(encode_calls) > 0 and len(entries(tmp_path)) == 6
    assert max(shorter.train.lengths()) == 5 < max(base.train.lengths())


def test_an_encode_that_fails_or_is_killed_leaves_no_trusted_cache(reviews, tmp_path, encode_calls):
    config = reviews_config(reviews, tmp_path)
    split = load_splits(config.data, ClassificationTask).train
    task = ClassificationTask(config, ClassificationTask.train_tokenizers(config, split), {"labels": ["neg", "pos"]})

    def fails_on_the_second_batch(batch, calls=[]):  # noqa: B006 - counts this test's calls
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return {"input_ids": [[1]] * len(batch["text"]), "length": [1] * len(batch["text"])}

    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "length": datasets.Value("int32")})
    with pytest.raises(RuntimeError, match="disk full"):
        encode_split(split, fails_on_the_second_batch, features, config.data, task.tokenizers)
    assert list((tmp_path / "encoded").iterdir()) == []  # the partial folder is gone
    # killed (SIGKILL) on its second batch: what it wrote stays under a temporary name, never trusted
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from nlp_rnn.tasks import classification
from tests.test_encoded import reviews_config
original, calls = classification._encode_batch, []
def killed(batch, **options):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(batch, **options)
classification._encode_batch = killed
classification.ClassificationTask.for_training(reviews_config({str(reviews)!r}, {str(tmp_path)!r}))
"""
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    assert entries(tmp_path) == [] and any(p.name.endswith(".tmp") for p in (tmp_path / "encoded").iterdir())
    encode_calls.clear()
    task, data = ClassificationTask.for_training(config)  # encodes again, whole
    assert encode_calls[:2] == [1000, 500] and len(entries(tmp_path)) == 2  # train, whole; then validation
    ids = encode_texts(task.tokenizer, split["text"], 20, config.data.truncation, config.data.head_fraction)
    assert [row["input_ids"] for row in rows(data.train)] == [row for row in ids if row]


def test_num_proc_gives_the_same_rows(reviews, tmp_path, capfd):
    _, one = ClassificationTask.for_training(reviews_config(reviews, tmp_path / "one"))
    _, two = ClassificationTask.for_training(reviews_config(reviews, tmp_path / "two", num_proc=2))
    assert rows(two.train) == rows(one.train) and two.train.lengths() == one.train.lengths()
    (folder,) = [path for path in entries(tmp_path / "two") if json.loads((path / MANIFEST).read_text())["rows"] > 100]
    assert len(json.loads((folder / MANIFEST).read_text())["files"]) == 2  # one Arrow file per process
    assert "current process just got forked" not in capfd.readouterr().err  # the tokenizers warning (a forked worker)


def test_translation_pairs_and_references_equal_the_in_memory_encoding(tmp_path):
    folder = write_reversal_dataset(tmp_path / "data", train_size=200)
    config = config_from_dict({**reversal_config(folder).to_dict(), "data": {
        **reversal_config(folder).to_dict()["data"], "cache_dir": str(tmp_path / "cache"), "max_length": 6}})
    task, data = TranslationTask.for_training(config)
    splits = load_splits(config.data, TranslationTask)
    for split, encoded, drop_long in ((splits.train, data.train, True), (splits.validation, data.validation.pairs,
                                                                          False)):
        pairs, kept = encode_pairs(task.src_tokenizer, task.tgt_tokenizer, split["src"], split["tgt"], 6, drop_long)
        assert rows(encoded) == rows(pairs) and len(encoded) < len(split) if drop_long else len(encoded) == len(split)
        assert encoded.lengths() == pairs.lengths() and encoded.sort_keys() == pairs.sort_keys()
    assert list(data.validation.references) == [splits.validation["tgt"][i] for i in kept]


def test_the_generation_stream_is_the_texts_end_to_end_memory_mapped(tmp_path):
    write_generation_texts(tmp_path / "data", labelled=True)
    generation = get_task("generation")
    for stream in (True, False):
        config = config_from_dict({
            "task": "generation", "data": {"dataset": str(tmp_path / "data"), "validation_split": "validation",
                                           "bptt": 16, "max_length": 30, "stream": stream, "cache_dir": str(tmp_path),
                                           "label_column": None if stream else "label"},
            "tokenizer": {"type": "char", "min_frequency": 1}, "train": {"batch_size": 4, "progress": False}})
        task, data = generation.for_training(config)
        split = load_splits(config.data, generation).train
        texts = [[BOS_ID, *task.tokenizer.encode(text).ids, EOS_ID] for text in split["text"]]
        if stream:
            assert isinstance(data.train.data.base, np.memmap)  # a view of the mapped file, not a copy
            expected = type(data.train)([token for ids in texts for token in ids], 4, 16)  # the list it was built of
            assert len(data.train) == len(expected) > 0
            assert all(torch.equal(data.train[i]["ids"], expected[i]["ids"]) for i in range(len(expected)))
        else:
            assert rows(data.train) == [{"ids": ids[:31], "first": True, "label": label}
                                        for ids, label in zip(texts, split["label"], strict=True)]
            assert data.train.lengths() == [len(ids[:31]) - 1 for ids in texts]


def test_tagging_rows_equal_the_in_memory_encoding(tmp_path):
    from tests.test_tagging import write_split, write_tagging_config

    (tmp_path / "data").mkdir()
    for name, count, seed in (("train", 60, 1), ("validation", 20, 2), ("test", 20, 3)):
        write_split(tmp_path / "data" / f"{name}.jsonl", count, seed)
    tagging = get_task("tagging")
    for tokenizer in ({}, {"type": "bpe", "vocab_size": 120}):
        config = config_from_dict({**json.loads(json.dumps(_read_yaml(write_tagging_config(tmp_path, {}, tokenizer)))),
                                   "data": {"dataset": str(tmp_path / "data"), "validation_split": "validation",
                                            "max_length": 8, "cache_dir": str(tmp_path / "cache")}})
        task, data = tagging.for_training(config)
        split = load_splits(config.data, tagging).train
        kept = [(tokens, tags) for tokens, tags in zip(split["tokens"], split["ner_tags"], strict=True)
                if len(tokens) <= 8]
        assert 0 < len(kept) < len(split)
        words = task.encode_words([tokens for tokens, _ in kept])
        names = task.tag_names
        assert rows(data.train) == [
            {"input_ids": words.ids[i], "char_ids": words.chars[i], "tags": [names.index(t) for t in kept[i][1]],
             **({"word_starts": words.starts[i]} if words.starts is not None else {})} for i in range(len(kept))]
        assert data.train.lengths() == [len(ids) for ids in words.ids]


def _read_yaml(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())
