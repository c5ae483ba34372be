"""Seeds as a first-class option: one run per seed, the summary's mean and standard deviation against the runs'
own metrics, evaluate over the seeds, a second training into their folder refused, and --resume finishing a seed
that never ran."""

import json
import shutil
import statistics

import pytest

from nlp_rnn.cli import main
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.seeds import parse_seeds, summarize, train_seeds
from nlp_rnn.training import train
from tests.tiny import tiny_config

pytestmark = pytest.mark.slow


def test_parse_and_summarize():
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    for bad in ("", "0,0", "a,b"):
        with pytest.raises(NlpRnnError, match="--seeds"):
            parse_seeds(bad)
    summary = summarize([{"accuracy": 0.8, "name": "x"}, {"accuracy": 0.9, "name": "y"}, {"accuracy": 0.85}])
    assert list(summary) == ["accuracy"]
    assert summary["accuracy"]["mean"] == pytest.approx(0.85)
    assert summary["accuracy"]["std"] == pytest.approx(statistics.stdev([0.8, 0.9, 0.85]))


def test_seeds_train_summarize_evaluate_and_resume(tmp_path, capsys):
    out = tmp_path / "seeds"
    summary = train_seeds(tiny_config(train={"epochs": 1}), out, [0, 1])
    runs = [json.loads((out / f"seed-{seed}" / "metrics.json").read_text()) for seed in (0, 1)]
    accuracies = [r["validation"]["accuracy"] for r in runs]
    assert summary["validation"]["accuracy"]["values"] == accuracies
    assert summary["validation"]["accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    configs = [json.loads(json.dumps((out / f"seed-{seed}" / "config.yaml").read_text())) for seed in (0, 1)]
    assert "seed: 0" in configs[0] and "seed: 1" in configs[1]
    assert main(["evaluate", str(out), "--split", "test", "--max-examples", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    tests = [json.loads((out / f"seed-{seed}" / "evaluation" / "test" / "metrics.json").read_text())["accuracy"]
             for seed in (0, 1)]
    assert report["seeds"] == [0, 1] and report["accuracy"]["values"] == tests
    shared = (out / "config.yaml").read_text()
    for again in (lambda: train_seeds(tiny_config(train={"epochs": 1, "lr": 5e-4}), out, [0, 1]),
                  lambda: train(tiny_config(train={"epochs": 1}), out)):  # seeds again, or one run in their folder
        with pytest.raises(NlpRnnError, match="already holds a run: pass --resume"):
            again()
    assert (out / "config.yaml").read_text() == shared and not (out / "model.safetensors").exists()
    shutil.rmtree(out / "seed-1")  # a seed that never ran: --resume trains it, and keeps seed 0
    assert main(["train", "--resume", "--out", str(out)]) == 0
    assert "2 seeds [0, 1]: validation accuracy" in capsys.readouterr().out
    assert json.loads((out / "seed-1" / "metrics.json").read_text())["validation"]["accuracy"] == accuracies[1]
