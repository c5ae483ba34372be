import json
import logging
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.config import TrainConfig, choices
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.packaging import pack_run
from nlp_rnn.predictor import load_model
from nlp_rnn.training import SCHEDULES, TrainingInterrupted, _make_scheduler, _parameter_groups, train
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


@pytest.mark.parametrize(("keep", "margin", "releases"), [(True, -1, "every step"), (True, 1 << 50, "never"),
                                                         (False, -1, "never")])
def test_malloc_gives_back_its_free_pages_when_the_process_grows_past_the_margin(tmp_path, monkeypatch, keep,
                                                                                   margin, releases):
    from nlp_rnn import runtime

    calls = []

    def record_release() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(runtime, "RELEASE_MARGIN", margin)
    monkeypatch.setattr(runtime, "release_freed_memory", record_release)
    train(tiny_config(train={"epochs": 1, "keep_freed_memory": keep}), tmp_path / "run")
    if releases == "never":
        assert calls == []
    else:
        steps = log_records(tmp_path / "run", "epoch")[-1]["step"]
        assert steps > 0
        assert len(calls) == steps


def log_records(run_dir, kind: str) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / ckpt.LOG_FILE).read_text().splitlines()]
    return [r for r in records if r["kind"] == kind]


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_plateau_schedule_halves_the_rate_after_an_epoch_without_improvement(tmp_path, metric):
    """ReduceLROnPlateau with patience 0: the rate is cut by plateau_factor after each epoch whose validation
    ``metric`` is not better than the best so far (higher accuracy, lower loss), and only then; it never moves
    within an epoch (no warmup, no per-step decay)."""
    config = tiny_config(model={"cell": "gru", "pooling": "max"},
                         train={"schedule": "plateau", "epochs": 6, "lr": 2e-2, "plateau_factor": 0.5,
                                "plateau_patience": 0, "patience": None, "metric": metric})
    train(config, tmp_path / "plateau")
    epochs, steps = log_records(tmp_path / "plateau", "epoch"), log_records(tmp_path / "plateau", "step")
    assert epochs[0]["lr"] == 2e-2
    for record in steps:
        assert record["lr"] == epochs[record["epoch"] - 1]["lr"]
    better = (lambda value, best: value < best) if metric == "loss" else (lambda value, best: value > best)
    best, dropped = None, []
    for before, after in zip(epochs, epochs[1:], strict=False):
        value = before[f"val_{metric}"]
        improved = best is None or better(value, best)
        best = value if improved else best
        assert after["lr"] == pytest.approx(before["lr"] * (1.0 if improved else 0.5), rel=1e-12)
        dropped.append(not improved)
    assert any(dropped) and not all(dropped)  # this seeded run both drops the rate and keeps it


def reference_factor(schedule: str, step: int, total_steps: int, warmup_ratio: float) -> float:
    """The documented schedule, written out: linear warmup to the peak, then linear / cosine decay or constant."""
    warmup = int(warmup_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return {"linear": 1.0 - progress, "cosine": (1.0 + math.cos(math.pi * progress)) / 2, "constant": 1.0}[schedule]


def rates_by_step(schedule: str, total_steps: int, warmup_ratio: float) -> list[float]:
    """rates[s]: the learning rate optimizer step s uses, peak rate 1."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = _make_scheduler(optimizer, TrainConfig(schedule=schedule, warmup_ratio=warmup_ratio, lr=1.0),
                                total_steps, "accuracy")
    rates = []
    for _ in range(total_steps + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_linear_cosine_or_constant_rates_at_given_steps():
    """100 steps, 20 of warmup: the rate climbs (s + 1) / 20 to the peak, then decays over the other 80."""
    linear, cosine, constant = (rates_by_step(name, 100, 0.2) for name in ("linear", "cosine", "constant"))
    for rates in (linear, cosine, constant):
        assert rates[0] == pytest.approx(0.05) and rates[9] == pytest.approx(0.5) and rates[19] == 1.0
        assert rates[20] == 1.0  # the peak, where decay starts
    assert [linear[s] for s in (40, 60, 80, 100)] == pytest.approx([0.75, 0.5, 0.25, 0.0])
    assert [cosine[s] for s in (40, 60, 80, 100)] == pytest.approx(
        [(1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])
    assert constant[20:] == [1.0] * 81
    for name, rates in (("linear", linear), ("cosine", cosine), ("constant", constant)):
        assert rates == pytest.approx([reference_factor(name, s, 100, 0.2) for s in range(101)], abs=1e-12)
    assert rates_by_step("linear", 10, 0.0)[0] == 1.0  # no warmup: the peak from the first step


def test_a_run_logs_the_scheduled_rate_at_every_step(tiny_run):
    """The trainer steps the schedule once per optimizer step: log.jsonl's rate at step k is the schedule's."""
    config = tiny_config()
    steps = log_records(tiny_run, "step")
    total = steps[-1]["step"]
    assert total == 16 and [r["step"] for r in steps] == list(range(2, 17, 2))  # 8 batches x 2 epochs, every 2nd
    for record in steps:
        expected = config.train.lr * reference_factor("linear", record["step"], total, config.train.warmup_ratio)
        assert record["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_schedules_are_exactly_the_configs_choices():
    """One list of names: a schedule the table lacks is refused, never run as "constant"."""
    from dataclasses import replace

    assert set(SCHEDULES) == set(choices(TrainConfig, "schedule"))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown schedule 'step'.*cosine"):
        _make_scheduler(optimizer, replace(TrainConfig(), schedule="step"), 10, "accuracy")  # unchecked config
    assert isinstance(_make_scheduler(optimizer, TrainConfig(schedule="plateau"), 10, "loss"),
                      torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_weight_decay_applies_to_matrices_only_and_skips_frozen_parameters():
    """Embeddings, biases and peepholes are not decayed; a frozen parameter is in no group. One AdamW step with
    zero gradients leaves only the decay: decayed tensors shrink by (1 - lr * weight_decay), the rest stay put."""
    from nlp_rnn.classifier import SentimentClassifier
    from nlp_rnn.config import ModelConfig

    torch.manual_seed(0)
    model = SentimentClassifier(ModelConfig(embedding_dim=6, hidden_size=5, cell="peephole_lstm",
                                            pooling="attention"), 40, 2)
    model.head.bias.requires_grad_(False)
    decay, no_decay = _parameter_groups(model, 0.1)
    name_of = {id(p): name for name, p in model.named_parameters()}
    decayed = {name_of[id(p)] for p in decay["params"]}
    kept = {name_of[id(p)] for p in no_decay["params"]}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert {"head.weight", "pooling.projection.weight", "pooling.query.weight"} <= decayed
    assert any(name.endswith("weight_ih") for name in decayed) and any(name.endswith("weight_hh") for name in decayed)
    assert "encoder.embedding.weight" in kept and any(name.endswith("peephole") for name in kept)
    assert {"head.bias", "pooling.projection.bias"} & kept == {"pooling.projection.bias"}
    assert not decayed & kept and decayed | kept == set(name_of.values()) - {"head.bias"}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(_parameter_groups(model, 0.1), lr=0.5)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter) if parameter.requires_grad else None
    optimizer.step()
    for name, parameter in model.named_parameters():
        scale = 1 - 0.5 * 0.1 if name in decayed else 1.0
        torch.testing.assert_close(parameter.detach(), before[name] * scale, rtol=0, atol=1e-7, msg=name)


def test_a_tied_output_matrix_is_one_parameter_and_not_decayed():
    from nlp_rnn.config import TranslatorConfig
    from nlp_rnn.translator import Translator

    model = Translator(TranslatorConfig(embedding_dim=6, hidden_size=5, decoder_hidden_size=10, attention_size=4,
                                        attention="luong_general", tie_embeddings=True), 30, 40)
    decay, no_decay = _parameter_groups(model, 0.1)
    assert any(p is model.decoder.embedding.weight for p in no_decay["params"])
    assert not any(p is model.decoder.output.weight for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_the_best_epoch_is_chosen_by_the_configured_metric(tmp_path):
    """The same seeded run, three metrics: the best epoch is the first with the lowest loss or the highest
    macro-F1 / accuracy; metrics.json holds that epoch's figures and model.safetensors its weights."""
    import nlp_rnn
    from nlp_rnn.data import load_splits
    from nlp_rnn.evaluation import evaluate_classifier
    from nlp_rnn.tasks import ClassificationTask, encode_classification

    chosen = {}
    for metric in ("loss", "macro_f1", "accuracy"):
        run_dir = tmp_path / metric
        metrics = train(tiny_config(train={"epochs": 4, "lr": 2e-2, "patience": None, "metric": metric}), run_dir)
        values = [r[f"val_{metric}"] for r in log_records(run_dir, "epoch")]
        best = min(values) if metric == "loss" else max(values)
        assert metrics["metric"] == metric and metrics["best_epoch"] == values.index(best) + 1
        record = log_records(run_dir, "epoch")[metrics["best_epoch"] - 1]
        for name in ("loss", "accuracy", "macro_f1"):
            assert metrics["validation"][name] == record[f"val_{name}"]
        predictor = nlp_rnn.load(run_dir)
        split = load_splits(predictor.config.data, ClassificationTask).validation
        validation = encode_classification(split, predictor.tokenizer, predictor.config)
        report = evaluate_classifier(predictor.model, validation, predictor.labels, 64, predictor.device)
        assert report["loss"] == pytest.approx(record["val_loss"], rel=1e-6)  # the saved weights are that epoch's
        chosen[metric] = metrics["best_epoch"]
    assert len(set(chosen.values())) == 3, chosen  # this seeded run tells the three metrics apart


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


# -- ULMFiT fine-tuning (Howard & Ruder 2018) ---------------------------------------------------------------------


def stlr_reference(t: int, total_steps: int, cut_frac: float, ratio: float) -> float:
    """Howard & Ruder 2018, eq. 3, as printed."""
    cut = math.floor(total_steps * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return (1 + p * (ratio - 1)) / ratio


def test_slanted_triangular_rates_follow_the_papers_formula():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.01)
    config = TrainConfig(schedule="slanted_triangular", lr=0.01, stlr_cut_frac=0.1, stlr_ratio=32.0)
    scheduler = _make_scheduler(optimizer, config, 1000, "accuracy")
    rates = []
    for _ in range(1000):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for t in (0, 1, 37, 99, 100, 101, 450, 999):
        assert rates[t] == pytest.approx(0.01 * stlr_reference(t, 1000, 0.1, 32.0), rel=1e-12), t
    assert rates[0] == pytest.approx(0.01 / 32) and max(rates) == rates[100] == pytest.approx(0.01)
    # 19 steps: cut = 1 and the fall (9 steps) ends early: the rate then stays at lr / ratio, never below
    short = [0.01 * SCHEDULES["slanted_triangular"](torch.optim.SGD([parameter], lr=1.0), config, 19, "loss")
             .lr_lambdas[0](t) for t in range(19)]
    assert short[:11] == pytest.approx([0.01 * stlr_reference(t, 19, 0.1, 32.0) for t in range(11)])
    assert short[10:] == pytest.approx([0.01 / 32] * 9)


def test_discriminative_rates_divide_by_the_decay_once_per_group_below_the_top():
    """lr at the head, lr / 2.6 at the top recurrent layer, lr / 2.6^2 below it, lr / 2.6^3 at the embedding;
    weight decay still on matrices only; the top group first, so the logged rate is the head's."""
    from nlp_rnn.classifier import SentimentClassifier
    from nlp_rnn.config import ModelConfig

    model = SentimentClassifier(ModelConfig(embedding_dim=6, hidden_size=5, num_layers=2, pooling="attention"), 40, 2)
    groups = _parameter_groups(model, 0.1, model.layer_groups(), lr=0.01, layer_lr_decay=2.6)
    name_of = {id(p): name for name, p in model.named_parameters()}
    depth = {"encoder.embedding": 3, "encoder.layers.0": 2, "encoder.layers.1": 1, "pooling": 0, "head": 0}
    seen = set()
    for group in groups:
        for parameter in group["params"]:
            name = name_of[id(parameter)]
            [prefix] = [p for p in depth if name.startswith(p + ".")]
            assert group["lr"] == pytest.approx(0.01 / 2.6 ** depth[prefix]), name
            assert group["weight_decay"] == (0.1 if parameter.dim() >= 2 and "embedding" not in name else 0.0)
            seen.add(name)
    assert seen == set(name_of.values()) and groups[0]["lr"] == 0.01
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    _make_scheduler(optimizer, TrainConfig(schedule="slanted_triangular"), 100, "loss")
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(  # the schedule scales every group alike
        [0.01 / 2.6 ** (i // 2) / 32 for i in range(len(groups))])


ULMFIT = {"epochs": 3, "lr": 1e-2, "layer_lr_decay": 2.6, "gradual_unfreezing": True,
          "schedule": "slanted_triangular", "patience": None}


def test_gradual_unfreezing_trains_one_more_group_each_epoch(tmp_path):
    """The tiny BiLSTM's groups: embedding, the BiLSTM, pooling + head. Epoch 1 changes only pooling + head,
    epoch 2 the BiLSTM too, epoch 3 the embedding too (its weights compared before and after each epoch)."""
    from nlp_rnn.training import Trainer

    snapshots = []

    def snapshot(*_):
        snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    trainer = Trainer(tiny_config(train=ULMFIT), tmp_path / "ulmfit", on_epoch=snapshot)
    snapshot()
    trainer.run()
    groups = {"embedding": ("encoder.embedding.",), "recurrent": ("encoder.layers.",), "top": ("pooling.", "head.")}
    changed = [{group for group, prefixes in groups.items()
                if any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefixes))}
               for before, after in zip(snapshots, snapshots[1:], strict=False)]
    assert changed == [{"top"}, {"top", "recurrent"}, {"top", "recurrent", "embedding"}]
    steps = log_records(tmp_path / "ulmfit", "step")
    assert steps[-1]["step"] == 24  # 8 batches x 3 epochs; the rate logged is the top group's, slanted
    for record in steps:  # (the schedule holds lr / ratio once the printed formula would go below it)
        expected = 1e-2 * max(1 / 32, stlr_reference(record["step"], 24, 0.1, 32.0))
        assert record["lr"] == pytest.approx(expected, rel=1e-9)


def test_an_interrupted_ulmfit_run_resumes_to_the_same_weights(tmp_path):
    """Stopped in epoch 2 (8 batches per epoch), while the embedding is still frozen."""
    from tests.tiny import assert_resumed_run_matches

    assert_resumed_run_matches(tiny_config(train={**ULMFIT, "epochs": 2}), tmp_path, stop_at=11)


def test_loading_a_run_still_in_training_says_so(tmp_path, tiny_run, caplog):
    """Scoring, packing or serving a run whose training is not over gets its best epoch so far, with a warning
    naming it; before the first epoch ends there is nothing to load, said in one line; a finished run loads quietly."""
    run_dir = tmp_path / "unfinished"

    def stop(step):
        if step == stop.at:
            raise KeyboardInterrupt

    stop.at = 5  # mid first epoch (8 batches per epoch): no weights yet
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(), run_dir, on_step=stop)
    for load in (load_model, lambda run: pack_run(run, tmp_path / "packed"),
                 lambda run: train(tiny_config(train={"init_from": str(run), "epochs": 1}), tmp_path / "early")):
        with pytest.raises(NlpRnnError, match="has not finished an epoch .*--resume"):
            load(run_dir)
    stop.at = 12  # in the second epoch: epoch 1's weights are there
    with pytest.raises(TrainingInterrupted):
        train(None, run_dir, resume=True, on_step=stop)
    notice = f"{run_dir} has not finished training (1 of {tiny_config().train.epochs} epochs done)"
    for load in (load_model, lambda run: pack_run(run, tmp_path / "packed", force=True),
                 lambda run: train(tiny_config(train={"init_from": str(run), "epochs": 1}), tmp_path / "started")):
        with caplog.at_level(logging.WARNING):
            load(run_dir)
        assert notice in caplog.text and "the weights of epoch 1" in caplog.text
        caplog.clear()
    train(None, run_dir, resume=True)
    with caplog.at_level(logging.WARNING):
        load_model(run_dir)
        load_model(tiny_run)
        pack_run(run_dir, tmp_path / "packed", force=True)
    assert "has not finished" not in caplog.text
