import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.training import TrainingInterrupted, train
from tests.tiny import tiny_config

pytestmark = pytest.mark.slow


def test_run_folder_holds_everything(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.yaml", "tokenizer.json", "model.safetensors", "metrics.json", "log.jsonl",
            "learning_curve.png", "training_state.pt"} <= names
    records = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert all("grad_norm" in r and "tokens_per_second" in r for r in records if r["kind"] == "step")
    state = torch.load(tiny_run / "training_state.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "progress", "rng"} <= set(state)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2) and 0.0 <= metrics["validation"]["accuracy"] <= 1.0


def test_same_seed_same_weights(tmp_path, tiny_run):
    train(tiny_config(), tmp_path / "again")
    first, second = load_file(tiny_run / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, tiny_run):
    run_dir = tmp_path / "interrupted"

    def stop_at_five(step):
        if step == 5:  # mid first epoch (8 batches per epoch)
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(tiny_config(), run_dir, on_step=stop_at_five)
    assert torch.load(run_dir / "training_state.pt", weights_only=True)["progress"]["step"] == 5
    train(None, run_dir, resume=True)
    expected = load_file(tiny_run / "model.safetensors")
    resumed = load_file(run_dir / "model.safetensors")
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)

    def records(folder):
        return [(r["kind"], r["step"]) for r in map(json.loads, (folder / "log.jsonl").read_text().splitlines())]

    assert records(run_dir) == records(tiny_run)  # nothing logged twice across the interruption


def test_crash_resumes_from_last_checkpoint(tmp_path, tiny_run):
    """A hard kill (no chance to save) at step 5 resumes from the step-3 checkpoint to the same weights."""
    run_dir = tmp_path / "crashed"
    script = textwrap.dedent(f"""
        import os
        from nlp_rnn.training import train
        from tests.tiny import tiny_config
        def crash(step):
            if step == 5:
                os._exit(9)
        train(tiny_config(), {str(run_dir)!r}, on_step=crash)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), env=dict(os.environ), check=False)
    assert result.returncode == 9
    assert torch.load(run_dir / "training_state.pt", weights_only=True)["progress"]["step"] == 3
    train(None, run_dir, resume=True)
    expected, resumed = load_file(tiny_run / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)


def test_refuses_to_overwrite_a_run(tiny_run):
    with pytest.raises(NlpRnnError, match="--resume"):
        train(tiny_config(), tiny_run)


def test_early_stopping_stops_after_patience(tmp_path):
    config = tiny_config(train={"epochs": 6, "patience": 1, "lr": 0.0, "warmup_ratio": 0.0, "schedule": "constant"})
    train(config, tmp_path / "stopped")  # lr 0: validation never improves after epoch 1
    epochs = [json.loads(line) for line in (tmp_path / "stopped" / ckpt.LOG_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2]


def test_plateau_schedule_and_gru_train(tmp_path):
    config = tiny_config(model={"cell": "gru", "pooling": "max"}, train={"schedule": "plateau", "epochs": 1})
    metrics = train(config, tmp_path / "plateau")
    assert metrics["validation"]["accuracy"] > 0


def test_init_from_copies_encoder_and_tokenizer(tmp_path, tiny_run):
    from nlp_rnn.training import Trainer

    config = tiny_config(train={"init_from": str(tiny_run)}, tokenizer={"vocab_size": 50})
    trainer = Trainer(config, tmp_path / "transfer")
    source = load_file(tiny_run / "model.safetensors")
    own = trainer.model.state_dict()
    assert all(torch.equal(own[k], source[k]) for k in source)
    assert (tmp_path / "transfer" / "tokenizer.json").read_text() == (tiny_run / "tokenizer.json").read_text()


def test_init_from_a_missing_run_is_named(tmp_path):
    with pytest.raises(NlpRnnError, match="init_from"):
        train(tiny_config(train={"init_from": str(tmp_path / "nowhere")}), tmp_path / "run")


def test_frozen_embeddings_stay_fixed_while_the_rest_learns(tmp_path, tiny_run):
    config = tiny_config(train={"init_from": str(tiny_run), "freeze_embeddings": True, "epochs": 1})
    train(config, tmp_path / "frozen")
    before, after = load_file(tiny_run / "model.safetensors"), load_file(tmp_path / "frozen" / "model.safetensors")
    assert torch.equal(before["encoder.embedding.weight"], after["encoder.embedding.weight"])
    assert not torch.equal(before["head.weight"], after["head.weight"])
