"""Watching training: per-layer gradient norms in log.jsonl (their squares add up to the global norm the trainer
clips), and TensorBoard event files read back: the scalars equal log.jsonl's figures, histograms every N steps,
and a translation run's text and attention image."""

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nlp_rnn.monitoring import layer_norms, layer_of
from nlp_rnn.training import train
from tests.tiny import reversal_config, tiny_config

pytestmark = pytest.mark.slow


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0,
                                                                                "tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_layer_norms_group_parameters_by_their_module():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model(torch.ones(2, 3)).sum().backward()
    norms = layer_norms(model)
    assert set(norms["grad"]) == set(norms["weight"]) == {"0", "1"}
    first = model[0]
    assert norms["weight"]["0"] == pytest.approx(math.sqrt(float(first.weight.detach().pow(2).sum()
                                                               + first.bias.detach().pow(2).sum())))
    assert layer_of("encoder.layers.0.0.weight_ih_l0") == "encoder.layers.0.0"


def test_gradient_norms_in_the_log_and_tensorboard_scalars_and_histograms(tmp_path):
    run = tmp_path / "run"
    config = tiny_config(train={"epochs": 2, "log_every": 2, "log_gradients": True, "tensorboard": True,
                                "tensorboard_every": 4, "clip_norm": 0.1})
    train(config, run)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert steps and all("grad_norms" in r and "weight_norms" in r for r in steps)
    for record in steps:  # per layer, before clipping: together they make the global norm the trainer clipped
        layers = record["grad_norms"]
        assert {"encoder.embedding", "encoder.layers.0.0", "encoder.layers.0.1", "head"} <= set(layers)
        assert math.sqrt(sum(v * v for v in layers.values())) == pytest.approx(record["grad_norm"], rel=1e-4)
    assert any(r["grad_norm"] > 0.1 for r in steps)  # so the norms logged are the unclipped ones
    board = events(run)
    tags = board.Tags()
    for name in ("loss", "accuracy", "grad_norm", "lr", "tokens_per_second"):
        logged = board.Scalars(f"train/{name}")
        assert [e.step for e in logged] == [r["step"] for r in steps]
        assert [e.value for e in logged] == pytest.approx([r[name] for r in steps], rel=1e-5)
    for name in ("loss", "accuracy", "macro_f1"):
        logged = board.Scalars(f"validation/{name}")
        assert [e.step for e in logged] == [r["step"] for r in epochs]
        assert [e.value for e in logged] == pytest.approx([r[f"val_{name}"] for r in epochs], rel=1e-5)
    histograms = tags["histograms"]
    assert "weights/head.weight" in histograms and "gradients/head.weight" in histograms
    total_steps = epochs[-1]["step"]
    assert [e.step for e in board.Histograms("gradients/head.weight")] == list(range(4, total_steps + 1, 4))


def test_a_translation_run_shows_translations_and_attention(tmp_path, reversal_data):
    run = tmp_path / "run"
    train(reversal_config(reversal_data, train={"epochs": 1, "tensorboard": True}), run)
    board = events(run)
    texts = board.Tensors("validation/translations/text_summary")
    table = texts[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| source | reference | translation |") and table.count("\n") == 4
    assert "validation/attention" in board.Tags()["images"]
    assert board.Scalars("validation/bleu")
