"""Temperature scaling: it finds the temperature that made a model overconfident, lowers NLL without changing a
predicted label; ECE against a hand count; a trained classifier is calibrated on validation and serves calibrated
probabilities; nlp-rnn calibrate refits."""

import json
import shutil

import pytest
import torch

import nlp_rnn
from nlp_rnn.calibration import expected_calibration_error, fit_temperature, nll, reliability
from nlp_rnn.cli import main
from tests.test_cli import assert_one_line_error, run_cli


def test_fit_finds_the_temperature_of_an_overconfident_model():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=generator) * 1.5
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=generator).squeeze(1)
    overconfident = true_logits * 4.0  # what a calibrated model says, four times too sure
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(4.0, rel=0.1)
    assert nll(overconfident, labels, temperature) < nll(overconfident, labels) - 0.3
    assert torch.equal((overconfident / temperature).argmax(-1), overconfident.argmax(-1))  # no label changes
    before = expected_calibration_error(overconfident.softmax(-1), labels)
    after = expected_calibration_error((overconfident / temperature).softmax(-1), labels)
    assert after < before / 3


def test_ece_against_a_hand_count():
    probabilities = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 1, 0])
    # bins of width 0.1: (0.9, 1.0] holds 0.95 (right) and... 0.9 is in (0.8, 0.9]; 0.7 in (0.6, 0.7]; 0.55 in
    # (0.5, 0.6]. |1 - 0.95| + |0 - 0.9| + |1 - 0.7| + |0 - 0.55| = 0.05 + 0.9 + 0.3 + 0.55 = 1.8, over 4 examples
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(0.45)
    rows = reliability(probabilities, labels, bins=10)
    assert [r["count"] for r in rows] == [0, 0, 0, 0, 0, 1, 1, 0, 1, 1]


@pytest.mark.slow
def test_a_trained_classifier_serves_calibrated_probabilities(tiny_run, tmp_path, capsys):
    fitted = json.loads((tiny_run / "calibration.json").read_text())
    assert fitted["fitted_on"] == "validation" and fitted["nll_after"] <= fitted["nll_before"] + 1e-6
    predictor = nlp_rnn.load(tiny_run)
    assert predictor.temperature == pytest.approx(fitted["temperature"])
    texts = ["A wonderful, moving film.", "Dull and far too long."]
    logits = predictor.predict_logits(texts)
    assert torch.allclose(predictor.predict_proba(texts), (logits / fitted["temperature"]).softmax(-1))
    assert [p["label"] for p in predictor.predict(texts)] == [predictor.labels[i] for i in logits.argmax(-1)]
    assert main(["evaluate", str(tiny_run), "--split", "test", "--json", "--out", str(tmp_path / "eval")]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["calibration"]["temperature"] == pytest.approx(fitted["temperature"])
    assert (tmp_path / "eval" / "reliability.png").stat().st_size > 0
    copy = tmp_path / "copy"  # the session's tiny run stays as it is for the other tests
    shutil.copytree(tiny_run, copy)
    result = run_cli("calibrate", str(copy))
    assert result.returncode == 0 and "temperature" in result.stdout.decode()
    refitted = json.loads((copy / "calibration.json").read_text())  # on the whole validation split
    assert refitted["examples"] >= fitted["examples"] and refitted["temperature"] == pytest.approx(
        fitted["temperature"], rel=0.05)


@pytest.mark.slow
def test_calibrate_needs_a_classifier(tiny_writer):
    assert_one_line_error(run_cli("calibrate", str(tiny_writer)), "calibrate fits a classifier's temperature")
