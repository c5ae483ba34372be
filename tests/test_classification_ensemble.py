"""Classifier ensembles (``--ensemble`` for classification, ``nlp_rnn.classifier.ClassifierEnsemble``): the mean
of the members' calibrated probabilities, through the API, evaluate, predict and pack; runs that cannot combine
are one clear error."""

import json

import pytest
import torch

import nlp_rnn
from nlp_rnn.checkpoint import RunFolder, read_json, write_json
from nlp_rnn.cli import main
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
    assert again["accuracy"] == report["accuracy"] and again["loss"] == pytest.approx(report["loss"], abs=1e-6)
    torch.testing.assert_close(nlp_rnn.load(packed).predict_proba(TEXTS),
                               nlp_rnn.load(tiny_run, ensemble=[second_run]).predict_proba(TEXTS), rtol=0, atol=1e-5)
    assert main(["predict", str(packed), TEXTS[0]]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("pos", "neg")


def test_classifiers_with_other_tokenizers_or_labels_are_one_line_errors(tiny_run, tmp_path):
    other = tmp_path / "other"
    train(tiny_config(tokenizer={"vocab_size": 500}, train={"epochs": 1}), other)
    assert_one_line_error(run_cli("evaluate", str(tiny_run), "--ensemble", str(other)),
                          "cannot form an ensemble", "run 2's tokenizer differs")
