"""Classifier ensembles (``--ensemble`` for classification, ``nlp_rnn.classifier.ClassifierEnsemble``): the mean
of the members' calibrated probabilities, through the API, evaluate, predict and pack, each member reading the
text with its own tokenizer and truncation; runs that cannot combine are one clear error."""

import json

import pytest
import torch

import nlp_rnn
import nlp_rnn.tasks.classification
from nlp_rnn.checkpoint import RunFolder, read_json, write_json
from nlp_rnn.cli import main
from nlp_rnn.data import load_eval_split
from nlp_rnn.predictor import load_model
from nlp_rnn.training import train
from tests.test_cli import assert_one_line_error, run_cli
from tests.tiny import tiny_config

TEXTS = ["A wonderful, moving film with a great cast.", "Dull and far too long; I nearly left.", "It was a film."]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """The tiny classifier again with another seed and a calibration temperature of 2: the same tokenizer."""
    run_dir = tmp_path_factory.mktemp("ensemble") / "second"
    train(tiny_config(train={"seed": 1}), run_dir)
    fitted = read_json(RunFolder(run_dir).calibration)  # what training fitted, with another temperature
    write_json(RunFolder(run_dir).calibration, {**fitted, "temperature": 2.0})
    return run_dir


def test_the_ensemble_reads_the_mean_of_its_members_calibrated_probabilities(tiny_run, second_run):
    first, second = nlp_rnn.load(tiny_run), nlp_rnn.load(second_run)
    assert second.temperature == 2.0
    expected = (first.predict_proba(TEXTS) + second.predict_proba(TEXTS)) / 2
    ensemble = nlp_rnn.load(tiny_run, ensemble=[second_run])
    torch.testing.assert_close(ensemble.predict_proba(TEXTS), expected, rtol=0, atol=1e-5)
    assert [p["label"] for p in ensemble.predict(TEXTS)] == [
        first.labels[int(i)] for i in expected.argmax(-1)]
    explained = ensemble.explain(TEXTS[0])
    assert explained["method"] == "gradient x input" and len(explained["scores"]) == len(explained["tokens"])
    assert explained["prediction"]["score"] == pytest.approx(float(expected[0].max()), abs=1e-5)


def test_an_ensemble_evaluates_and_packs_as_its_runs_together(tiny_run, second_run, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run), "--ensemble", str(second_run), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    task, model = load_model(tiny_run, ensemble=[second_run])
    assert report["ensemble"] == [str(second_run)] and len(model.members) == 2
    packed = tmp_path / "packed"
    assert main(["pack", str(tiny_run), str(packed), "--ensemble", str(second_run)]) == 0
    assert "An ensemble of 2 runs" in (packed / "README.md").read_text()
    assert main(["evaluate", str(packed), "--split", "test", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main(["pack", str(packed), "--card-only"]) == 0
    capsys.readouterr()  # its "wrote ..." line
    card = (packed / "README.md").read_text()  # one line per member, how it reads; the ensemble's own scores
    assert "an ensemble of 2 classifiers" in card and "best epoch None" not in card
    for number, run in enumerate((tiny_run, second_run)):
        config = RunFolder(run).read_config()
        assert f"`{number}-{run.name}`: {config.data.max_length} tokens ({config.data.truncation})" in card
    assert f"| test | {again['num_examples']:,} | {again['accuracy']:.4f} |" in card
    assert again["accuracy"] == report["accuracy"] and again["loss"] == pytest.approx(report["loss"], abs=1e-6)
    torch.testing.assert_close(nlp_rnn.load(packed).predict_proba(TEXTS),
                               nlp_rnn.load(tiny_run, ensemble=[second_run]).predict_proba(TEXTS), rtol=0, atol=1e-5)
    assert main(["predict", str(packed), TEXTS[0]]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("pos", "neg")


@pytest.fixture(scope="module")
def other_reader(tmp_path_factory):
    """A tiny classifier that reads otherwise: its own tokenizer (500 types) and 12 tokens, head and tail."""
    run_dir = tmp_path_factory.mktemp("ensemble") / "other"
    train(tiny_config(tokenizer={"vocab_size": 500}, data={"max_length": 12, "truncation": "head_tail"},
                      train={"epochs": 1}), run_dir)
    return run_dir


def test_members_that_tokenize_and_truncate_otherwise_each_read_their_own_way(tiny_run, second_run, other_reader):
    first, second, other = (nlp_rnn.load(run) for run in (tiny_run, second_run, other_reader))
    assert first.tokenizer.to_str() != other.tokenizer.to_str()
    texts = [*TEXTS, " ".join(TEXTS)]
    assert len(other.encode(texts)[-1]) == 12 < len(first.encode(texts)[-1])
    expected = (first.predict_proba(texts) + second.predict_proba(texts) + other.predict_proba(texts)) / 3
    ensemble = nlp_rnn.load(other_reader, ensemble=[tiny_run, second_run])  # the first run's reading leads
    assert len(ensemble.task.readings) == 2 and ensemble.model.views == [0, 1, 1]
    torch.testing.assert_close(ensemble.predict_proba(texts), expected, rtol=0, atol=1e-5)
    explained = ensemble.explain(texts[-1])
    assert explained["tokens"] == other.explain(texts[-1])["tokens"] and explained["truncated"]
    assert len(explained["scores"]) == len(explained["tokens"]) == 12
    assert explained["prediction"]["score"] == pytest.approx(float(expected[-1].max()), abs=1e-5)


def test_an_ensemble_of_other_readers_evaluates_as_its_members_predictions(tiny_run, other_reader, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run), "--ensemble", str(other_reader), "--split", "test", "--json",
                 "--max-examples", "300", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    first, other = nlp_rnn.load(tiny_run), nlp_rnn.load(other_reader)
    data = load_eval_split(first.config.data, "test", type(first.task), 300)
    labels = torch.tensor(data["label"])
    probabilities = (first.predict_proba(list(data["text"])) + other.predict_proba(list(data["text"]))) / 2
    assert report["accuracy"] == pytest.approx((probabilities.argmax(-1) == labels).double().mean().item(), abs=1e-9)
    nll = -probabilities.gather(1, labels.view(-1, 1)).log().mean().item()
    assert report["loss"] == pytest.approx(nll, abs=1e-5)


def test_span_projection_shares_scores_by_the_characters_tokens_share():
    same = [(0, 3), (4, 9)]
    torch.testing.assert_close(nlp_rnn.tasks.classification.span_projection(same, same), torch.eye(2))
    # "unhappy" as one token onto "un" + "happy"; "!" (cut away there) shares nothing
    projection = nlp_rnn.tasks.classification.span_projection([(0, 7), (7, 8)], [(0, 2), (2, 7)])
    torch.testing.assert_close(projection, torch.tensor([[2 / 7, 5 / 7], [0.0, 0.0]]))


def test_classifiers_with_other_labels_are_one_line_errors(tiny_run, tmp_path):
    other = tmp_path / "sst2"
    train(tiny_config(data={"dataset": "stanfordnlp/sst2", "text_column": "sentence", "test_split": "validation"},
                      train={"epochs": 1}), other)
    assert_one_line_error(run_cli("evaluate", str(tiny_run), "--ensemble", str(other)),
                          "cannot form an ensemble", "run 2's labels")
