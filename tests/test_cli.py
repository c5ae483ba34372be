"""The command line end to end on a tiny real run: every failure is one line on stderr, never a traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from nlp_rnn.cli import main

pytestmark = pytest.mark.slow


def run_cli(*args, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "nlp_rnn", *args], input=stdin, capture_output=True,
                          env=dict(os.environ), check=False)


def assert_one_line_error(result, *fragments):
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def test_predict_texts_and_json(tiny_run, capsys):
    assert main(["predict", str(tiny_run), "A wonderful film.", "Dreadful."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("neg", "pos") for line in lines)
    assert main(["predict", str(tiny_run), "fine", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"label", "score", "scores"}
    assert abs(sum(result["scores"].values()) - 1) < 1e-5


def test_predict_stdin_with_bad_input(tiny_run):
    lines = [b"great movie", b"", b"   ", "\u05e1\u05e8\u05d8 \u05de\u05e6\u05d5\u05d9\u05df \U0001F600".encode(),
             b"\xff\xfe invalid utf-8 \x80", b"control \x00\x07\x1b[31m chars", b"<script>alert(1)</script>"]
    result = run_cli("predict", str(tiny_run), stdin=b"\n".join(lines) + b"\n")
    out = result.stdout.decode().splitlines()
    assert "Traceback" not in result.stderr.decode()
    assert len(out) == len(lines)  # one line per input, in order
    assert out[1] == out[2] == "error: empty text"
    assert all(line.split("\t")[0] in ("neg", "pos") for i, line in enumerate(out) if i not in (1, 2))
    assert result.returncode == 1  # some inputs could not be labelled


def test_predict_one_megabyte_review(tiny_run, capsys):
    assert main(["predict", str(tiny_run), "good " * 200_000]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("neg", "pos")


def test_options_may_come_anywhere_among_the_texts(tiny_run, capsys):
    assert main(["predict", str(tiny_run), "--json", "A triumph.", "Dull.", "--device", "cpu"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 2 and all(r["label"] in ("neg", "pos") for r in results)
    assert main(["predict", str(tiny_run), "--", "-5 stars, a mess."]) == 0  # a text that looks like an option
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_evaluate_json(tiny_run, tmp_path):
    """A fixed sample with --max-examples; the count scored is in the report."""
    result = run_cli("evaluate", str(tiny_run), "--split", "validation", "--json", "--out", str(tmp_path),
                     "--max-examples", "64")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["num_examples"] == 64 and report["max_examples"] == 64
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "examples_per_second"} <= set(report)
    assert sum(map(sum, report["confusion_matrix"])) == 64
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0


def test_evaluate_scores_the_whole_split_whatever_training_limited(tiny_run, capsys):
    """The tiny run validated on data.max_eval_examples=64 reviews; evaluate scores all 2,500 of the split."""
    assert main(["evaluate", str(tiny_run), "--split", "validation", "--out", str(tiny_run / "whole")]) == 0
    assert "[validation] 2,500 examples: accuracy" in capsys.readouterr().out
    assert json.loads((tiny_run / "whole" / "metrics.json").read_text())["num_examples"] == 2500


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """The tiny classifier trained and validated on the CPU, without autocast, on data.max_eval_examples=64."""
    from nlp_rnn.training import train
    from tests.tiny import tiny_config

    run_dir = tmp_path_factory.mktemp("runs") / "cpu"
    train(tiny_config(train={"device": "cpu", "amp": False, "epochs": 3, "lr": 1e-2}), run_dir)
    return run_dir


@pytest.mark.parametrize("batch_size", [5, 256])
def test_evaluate_reproduces_the_validation_of_training(cpu_run, tmp_path, capsys, batch_size):
    """``evaluate --split validation --max-examples 64`` scores the very sample that training validated on with
    data.max_eval_examples=64 (encoded and filtered alike), so it gives the best epoch's figures in metrics.json
    and log.jsonl, in batches of any size."""
    metrics = json.loads((cpu_run / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (cpu_run / "log.jsonl").read_text().splitlines()]
    best = [r for r in epochs if r["kind"] == "epoch"][metrics["best_epoch"] - 1]
    assert main(["evaluate", str(cpu_run), "--split", "validation", "--max-examples", "64", "--batch-size",
                 str(batch_size), "--device", "cpu", "--json", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_examples"] == 64
    validation = metrics["validation"]
    assert report["accuracy"] == validation["accuracy"] == best["val_accuracy"]
    assert report["macro_f1"] == validation["macro_f1"] == best["val_macro_f1"]
    assert report["loss"] == pytest.approx(validation["loss"], rel=1e-6, abs=0)
    assert validation["loss"] == best["val_loss"]
    assert report["confusion_matrix"] == validation["confusion_matrix"]
    assert report["per_class"] == validation["per_class"]


def test_evaluate_computes_as_the_run_validated(cpu_run, tmp_path, capsys, monkeypatch):
    """A run trained with train.amp=false validated without autocast; evaluate must too (on CUDA, bf16 autocast
    would change the figures; on the CPU autocast is off either way, so the request is what is checked)."""
    import contextlib

    from nlp_rnn import evaluation

    requested = []

    def recording_autocast(device, enabled=True):
        requested.append(enabled)
        return contextlib.nullcontext()

    monkeypatch.setattr(evaluation, "autocast", recording_autocast)
    assert main(["evaluate", str(cpu_run), "--split", "validation", "--max-examples", "8", "--device", "cpu",
                 "--json", "--out", str(tmp_path)]) == 0
    assert requested and not any(requested)


def test_an_absent_device_is_one_line(tiny_run):
    import torch

    result = run_cli("predict", str(tiny_run), "Fine.", "--device", "cuda")
    if torch.cuda.is_available():
        assert result.returncode == 0, result.stderr.decode()
    else:
        assert_one_line_error(result, "--device 'cuda'", "CUDA", "--device cpu")
    assert_one_line_error(run_cli("evaluate", str(tiny_run), "--device", "tpu"), "--device 'tpu'", "not a device")


def test_a_refused_train_command_is_not_recorded(tiny_run, tmp_path):
    """command.txt (the model card's "Trained with") only holds commands that trained."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "command.txt").read_text() if (run / "command.txt").exists() else ""
    config = tmp_path / "tiny.yaml"
    config.write_text("data:\n  max_train_examples: 8\n")
    assert_one_line_error(run_cli("train", str(config), "--out", str(run)), "already holds a run")
    assert ((run / "command.txt").read_text() if (run / "command.txt").exists() else "") == before


def test_missing_run_folder(tmp_path):
    assert_one_line_error(run_cli("predict", str(tmp_path / "nope"), "hi"), "nope", "not found")


def test_corrupt_weights_are_named(tiny_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    assert_one_line_error(run_cli("predict", str(broken), "hi"), "model.safetensors")


def test_tokenizer_from_another_run_is_named(tiny_run, tmp_path):
    from tokenizers import Tokenizer

    from nlp_rnn.config import TokenizerConfig
    from nlp_rnn.tokenization import train_tokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    tokenizer: Tokenizer = train_tokenizer(["a b c d e f g"] * 3, TokenizerConfig(min_frequency=1))
    tokenizer.save(str(other / "tokenizer.json"))
    assert_one_line_error(run_cli("predict", str(other), "hi"), "tokenizer.json")


def test_bad_config_reports_every_problem_at_once(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  cell: lstmm\n  hidden_size: -3\n  pooling: sum\ntrain:\n  epoch: 3\n")
    result = run_cli("train", str(config), "--set", "train.lr=fast", "--out", str(tmp_path / "run"))
    stderr = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in stderr
    for fragment in ("model.cell", "lstmm", "model.hidden_size", "model.pooling", "sum", "max_mean",
                     "train.epoch", "unknown key", "train.lr", "'fast'"):
        assert fragment in stderr
    assert not (tmp_path / "run").exists()


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("train", str(tmp_path / "missing.yaml")), "missing.yaml", "not found")


def test_resume_may_only_change_how_the_run_executes(tiny_run):
    result = run_cli("train", "--resume", "--out", str(tiny_run), "--set", "model.hidden_size=3")
    assert_one_line_error(result, "model.hidden_size", "train.num_threads")


def test_demo_with_a_bad_model_folder_is_one_line(tiny_run, tmp_path):
    assert_one_line_error(run_cli("demo", "--translation", str(tmp_path / "missing")), "run folder not found")
    assert_one_line_error(run_cli("demo", "--translation", str(tiny_run)), "not a translation run folder")


def test_demo_on_a_port_in_use_is_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run_cli("demo", "--port", str(port)), f"127.0.0.1:{port}")


def test_demo_installed_without_models_is_one_line(monkeypatch, capsys):
    """Installed from a wheel there is no demo/models to default to: the missing option is named."""
    from nlp_rnn import demo

    monkeypatch.setattr(demo, "MODELS", None)
    assert main(["demo", "--sentiment", "runs/mine", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("error: the demo needs --translation RUN_DIR, --entities RUN_DIR and --generate RUN_DIR: ")


def test_the_makefiles_training_steps_resume_when_run_again(tiny_run, tmp_path):
    """make's $(call train,OUT,CONFIG): the first time it trains; run again (after an interruption, or after it
    finished) it continues the run with --resume instead of stopping at "already holds a run"."""
    makefile = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Makefile")
    out = tmp_path / "run"

    def make():
        step = f"again: ; $(call train,{out},{tiny_run / 'config.yaml'} --set train.epochs=1)"
        return subprocess.run(["make", "-s", "-f", makefile, "--eval", step, "again",
                               f"BIN={os.path.dirname(sys.executable)}"], capture_output=True, check=False)

    first = make()
    assert first.returncode == 0, first.stderr.decode()
    assert "training already finished" not in first.stderr.decode() and (out / "model.safetensors").is_file()
    second = make()
    assert second.returncode == 0, second.stderr.decode()
    assert "training already finished" in second.stderr.decode()
