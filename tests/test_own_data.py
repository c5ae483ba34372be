"""A new user's own data: a folder of CSV / TSV / JSON / JSON Lines / parquet / text files, or single files named
in ``data.data_files``, with string, integer or ClassLabel labels. Tiny data written here; seconds per model."""

import csv
import json
from dataclasses import replace

import datasets
import pytest
import yaml

from nlp_rnn.checkpoint import WEIGHTS_FILE, load_weights
from nlp_rnn.cli import main
from nlp_rnn.config import load_config, save_config
from nlp_rnn.data import DataError, load_splits
from nlp_rnn.tasks import ClassificationTask
from tests.test_cli import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow

WORDS = {"positive": "great lovely superb fine", "negative": "awful dull boring bad",
         "neutral": "okay plain average so"}


def reviews(count: int, labels=("negative", "neutral", "positive")) -> list[dict]:
    """``count`` rows cycling through ``labels``, the text made of that label's words."""
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = WORDS[label].split()
        rows.append({"review": " ".join(words[(i + k) % len(words)] for k in range(3)), "sentiment": label})
    return rows


def write_rows(path, rows: list[dict], fmt: str, features=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "json":  # one JSON array, as people write it by hand
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif fmt == "parquet":
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    else:
        raise AssertionError(fmt)


def write_config(path, data: dict, task: str = "classification", model: dict | None = None) -> str:
    """A tiny run: vocabulary 200, 8-unit model, one epoch, one thread."""
    values = {
        "task": task,
        "data": {"text_column": "review", "label_column": "sentiment", "max_length": 16, **data},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "model": model or {"embedding_dim": 8, "hidden_size": 8},
        "train": {"epochs": 1, "batch_size": 8, "num_threads": 1, "progress": False, "eval_batch_size": 32},
    }
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def train_predict_evaluate(config: str, run_dir, capsys, names: list[str], test_rows: int) -> None:
    """Train through the CLI, then predict and evaluate: the labels are the data's names everywhere."""
    assert main(["train", config, "--out", str(run_dir)]) == 0
    _, metadata = load_weights(run_dir / WEIGHTS_FILE)
    assert metadata["labels"] == names
    capsys.readouterr()
    assert main(["predict", str(run_dir), "great lovely film", "dull and boring"]) == 0
    predicted = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert len(predicted) == 2 and set(predicted) <= set(names)
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert list(report["per_class"]) == names
    assert report["num_examples"] == test_rows


STRING_NAMES = ["negative", "neutral", "positive"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_a_folder_with_string_labels_trains_predicts_and_evaluates(fmt, tmp_path, capsys):
    folder = tmp_path / "reviews"
    write_rows(folder / f"train.{fmt}", reviews(36), fmt)
    write_rows(folder / f"test.{fmt}", reviews(9), fmt)
    config = write_config(tmp_path / "config.yaml", {"dataset": "./reviews"})
    train_predict_evaluate(config, tmp_path / "run", capsys, STRING_NAMES, 9)


def test_integer_labels_are_named_in_numeric_order(tmp_path, capsys):
    folder = tmp_path / "stars"
    stars = {"negative": 1, "neutral": 2, "positive": 10}  # "10" < "2" as text: the order must be numeric
    for name, count in (("train", 36), ("test", 6)):
        rows = [dict(row, sentiment=stars[row["sentiment"]]) for row in reviews(count)]
        write_rows(folder / f"{name}.jsonl", rows, "jsonl")
    config = write_config(tmp_path / "config.yaml", {"dataset": str(folder)})
    train_predict_evaluate(config, tmp_path / "run", capsys, ["1", "2", "10"], 6)


def test_classlabel_columns_keep_their_names_and_order(tmp_path, capsys):
    features = datasets.Features({"review": datasets.Value("string"),
                                  "sentiment": datasets.ClassLabel(names=["positive", "negative", "neutral"])})
    folder = tmp_path / "labelled"
    for name, count in (("train", 36), ("test", 6)):
        rows = [dict(row, sentiment=features["sentiment"].str2int(row["sentiment"])) for row in reviews(count)]
        write_rows(folder / f"{name}.parquet", rows, "parquet", features)
    config = write_config(tmp_path / "config.yaml", {"dataset": str(folder)})
    train_predict_evaluate(config, tmp_path / "run", capsys, ["positive", "negative", "neutral"], 6)


def test_data_files_name_single_files_relative_to_the_config(tmp_path, monkeypatch, capsys):
    write_rows(tmp_path / "files" / "my reviews.csv", reviews(36), "csv")
    write_rows(tmp_path / "files" / "held out.csv", reviews(6), "csv")
    config = write_config(tmp_path / "config.yaml", {"data_files": {"train": "files/my reviews.csv",
                                                                    "test": ["files/held out.csv"]}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the paths are the config's, not the current directory's
    train_predict_evaluate(config, tmp_path / "run", capsys, STRING_NAMES, 6)
    saved = (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8")
    assert str(tmp_path / "files" / "held out.csv") in saved  # recorded absolute, so evaluate finds it anywhere
    assert main(["pack", str(tmp_path / "run"), "--card-only"]) == 0
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "`negative`, `neutral`, `positive`" in card and "my reviews.csv" in card and "imdb" not in card


def test_data_files_round_trip_through_the_run_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  data_files: {train: a/train.tsv, test: [b/one.tsv, b/two.tsv]}\n", encoding="utf-8")
    config = load_config(path, ["data.data_files.validation=c.tsv"])
    assert config.data.data_files == {"train": str(tmp_path / "a" / "train.tsv"),
                                      "test": [str(tmp_path / "b" / "one.tsv"), str(tmp_path / "b" / "two.tsv")],
                                      "validation": str(tmp_path.cwd() / "c.tsv")}
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config


def test_a_translation_from_tsv_pairs_and_from_data_files(tmp_path, capsys):
    pairs = [{"src": " ".join(d), "tgt": " ".join(reversed(d))} for d in ("123", "4567", "89", "2468", "135")] * 8
    write_rows(tmp_path / "pairs" / "train.tsv", pairs, "tsv")
    write_rows(tmp_path / "pairs" / "test.tsv", pairs[:5], "tsv")
    model = {"embedding_dim": 8, "hidden_size": 8, "decoder_hidden_size": 16, "attention_size": 8}
    data = {"source_column": "src", "target_column": "tgt"}
    folder = write_config(tmp_path / "folder.yaml", {**data, "dataset": "./pairs"}, "translation", model)
    files = write_config(tmp_path / "files.yaml", {**data, "data_files": {"train": "pairs/train.tsv",
                                                                          "test": "pairs/test.tsv"}},
                         "translation", model)
    for config, run_dir in ((folder, tmp_path / "run_folder"), (files, tmp_path / "run_files")):
        assert main(["train", config, "--out", str(run_dir), "--set", "search.beam_size=1"]) == 0
        capsys.readouterr()
        assert main(["predict", str(run_dir), "1 2 3"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 1
        assert main(["evaluate", str(run_dir), "--json"]) == 0
        report = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert report["num_sentences"] == 5
    assert "test: " + str(tmp_path / "pairs" / "test.tsv") in report["dataset"]  # data_files named in reports


def test_a_language_model_from_text_files(tmp_path):
    lines = "".join(row["review"] + "\n" for row in reviews(40))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text(lines, encoding="utf-8")
    (tmp_path / "text" / "test.txt").write_text(lines[:200], encoding="utf-8")
    config = write_config(tmp_path / "lm.yaml", {"dataset": "./text", "text_column": "text"}, "language_model",
                          {"embedding_dim": 8, "hidden_size": 8})
    assert main(["train", config, "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / WEIGHTS_FILE).is_file()


def test_labels_come_from_train_and_an_unseen_validation_label_is_named(tmp_path):
    from nlp_rnn.config import DataConfig

    folder = tmp_path / "three"
    write_rows(folder / "train.csv", reviews(12), "csv")
    write_rows(folder / "validation.csv", [*reviews(3), {"review": "so so", "sentiment": "mixed"}], "csv")
    write_rows(folder / "test.csv", reviews(3, ("positive",)), "csv")  # fewer classes than train: fine
    config = DataConfig(dataset=str(folder), text_column="review", label_column="sentiment",
                        validation_split="validation")
    with pytest.raises(DataError) as info:
        load_splits(config, ClassificationTask)
    message = str(info.value)
    assert "'mixed'" in message and "validation.csv" in message and "split 'validation'" in message
    splits = load_splits(replace(config, validation_split=None), ClassificationTask)
    assert splits.label_names == STRING_NAMES
    assert splits.test["sentiment"] == [2, 2, 2]  # encoded with train's names, not its own
    assert splits.test.features["sentiment"].names == STRING_NAMES


def test_data_files_problems_name_the_file(tmp_path):
    from nlp_rnn.config import ConfigError, DataConfig, config_from_dict

    with pytest.raises(DataError, match=r"nope\.csv: no such file \(data\.data_files\.train\)"):
        load_splits(DataConfig(data_files={"train": str(tmp_path / "nope.csv")}), ClassificationTask)
    (tmp_path / "train.xlsx").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.xlsx: cannot tell the format from '\.xlsx'"):
        load_splits(DataConfig(data_files={"train": str(tmp_path / "train.xlsx")}), ClassificationTask)
    with pytest.raises(ConfigError) as info:  # a bad value is reported with the others, not alone
        config_from_dict({"data": {"data_files": {"train": 3}, "max_length": 0}})
    assert "data.data_files: {'train': 3} must be a non-empty mapping" in str(info.value)
    assert "data.max_length" in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# Bad local data: one line naming the file and the problem, never a traceback


def broken_run(tmp_path, train_text: str, test_text: str, name: str = "test.csv"):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text(train_text, encoding="utf-8")
    (folder / name).write_text(test_text, encoding="utf-8")
    config = write_config(tmp_path / "config.yaml", {"dataset": "./data"})
    return run_cli("train", config, "--out", str(tmp_path / "run")), folder / name


GOOD = "review,sentiment\n" + "".join(f"{row['review']},{row['sentiment']}\n" for row in reviews(12))


def test_a_missing_column_lists_the_columns_present(tmp_path):
    result, test_file = broken_run(tmp_path, GOOD, "text,sentiment\nfine,positive\n")
    assert_one_line_error(result, str(test_file), "no column 'review'", "columns: text, sentiment")


def test_an_empty_file_is_named(tmp_path):
    result, test_file = broken_run(tmp_path, GOOD, "")
    assert_one_line_error(result, str(test_file), "empty")


def test_missing_label_values_are_an_error_naming_the_file(tmp_path):
    result, test_file = broken_run(tmp_path, GOOD, "review,sentiment\nfine,positive\nmeh,\nugh,negative\n")
    assert_one_line_error(result, str(test_file), "1 of 3 rows have no label", "'sentiment'")


def test_a_test_label_train_never_saw_is_named(tmp_path):
    result, test_file = broken_run(tmp_path, GOOD, "review,sentiment\nfine,positive\nmeh,mixed\n")
    assert_one_line_error(result, str(test_file), "'mixed'", "negative, neutral, positive")
