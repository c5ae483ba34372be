"""nlp-rnn tune: the search space checked up front, a tiny study with pruning (the pruned trial is the one that
cannot learn), a study killed mid-trial and resumed (the trial continues its run folder), and two worker processes
sharing one storage without running a trial twice."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from nlp_rnn.cli import main
from nlp_rnn.config import load_config
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.tuning import Parameter, open_study, read_space

TINY_RT = {
    "data": {"dataset": "cornell-movie-review-data/rotten_tomatoes", "validation_split": "validation",
             "max_length": 32, "max_train_examples": 1000, "max_eval_examples": 200},
    "tokenizer": {"vocab_size": 3000, "min_frequency": 1},
    "model": {"embedding_dim": 32, "hidden_size": 32},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "progress": False, "num_threads": 1, "patience": None,
              "amp": False},  # float32 on every CPU kind: bf16 (where native) changes these tiny curves
}


def write_yaml(path, values):
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def test_the_space_is_checked_against_the_schema_all_problems_at_once(tmp_path):
    config = write_yaml(tmp_path / "tiny.yaml", TINY_RT)
    space = write_yaml(tmp_path / "space.yaml", {
        "train.lr": {"float": [1.0e-4, 1.0e-2], "log": True},
        "model.hiden_size": {"int": [16, 64]},  # a typo
        "model.embedding_dropout": {"float": [0.0, 1.5]},  # above the schema's bound
        "model.cell": {"choice": ["lstm", "transformer"]},  # not a cell
        "train.batch_size": {"int": [64, 16]},  # low above high
        "train.weight_decay": {"float": [0.0, 0.1], "log": True},  # log from zero
        "lr": {"choice": [1, 2]},  # not dotted
    })
    with pytest.raises(NlpRnnError) as caught:
        read_space(space, config)
    message = str(caught.value)
    for expected in ("model.hiden_size: unknown key", "model.embedding_dropout: 1.5 must be <= 0.99",
                     "model.cell: 'transformer'", "train.batch_size: low 64 must be below high 16",
                     "train.weight_decay: a log range needs low > 0", "'lr': a dotted config key"):
        assert expected in message
    assert not any(line.strip().startswith("train.lr") for line in message.splitlines())  # the good key: fine
    good = write_yaml(tmp_path / "good.yaml", {"train.lr": {"float": [1.0e-4, 1.0e-2], "log": True},
                                               "model.hidden_size": {"int": [16, 64], "step": 16},
                                               "model.cell": {"choice": ["lstm", "gru"]}})
    parsed = read_space(good, config)
    assert [p.key for p in parsed] == ["train.lr", "model.hidden_size", "model.cell"]
    assert parsed[1].grid() == [16, 32, 48, 64] and parsed[2].grid() == ["lstm", "gru"]
    with pytest.raises(NlpRnnError, match="without a step"):
        Parameter("train.lr", "float", 0.1, 0.2).grid()


def test_the_shipped_search_spaces_fit_their_configs():
    root = Path(__file__).resolve().parents[1]
    spaces = {path.name: path for path in (root / "configs" / "tuning").glob("*.yaml")}
    assert set(spaces) == {"rotten_tomatoes_space.yaml"}  # a new space: add it here with its config
    config = root / "configs" / "sentiment" / "rotten_tomatoes_bilstm.yaml"
    space = read_space(spaces["rotten_tomatoes_space.yaml"], config)
    assert len(space) == 9


def trials_of(out, study):
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


@pytest.mark.slow
def test_a_tiny_study_prunes_the_trial_that_cannot_learn(tmp_path, capsys):
    config = write_yaml(tmp_path / "tiny.yaml", {**TINY_RT, "train": {**TINY_RT["train"], "epochs": 3}})
    space = write_yaml(tmp_path / "space.yaml", {"train.lr": {"choice": [0.01, 0.0]},
                                                 "model.hidden_size": {"int": [16, 32], "step": 16}})
    out = tmp_path / "tune"
    study = open_study(out, "tiny", "maximize", optuna.samplers.RandomSampler(seed=0),
                       optuna.pruners.NopPruner(), None)
    for params in ({"train.lr": 0.01, "model.hidden_size": 16}, {"train.lr": 0.0, "model.hidden_size": 32},
                   {"train.lr": 0.01, "model.hidden_size": 32}):
        study.enqueue_trial(params)  # lr 0 never changes the weights: its first epoch is the initial model's
    assert main(["tune", str(config), "--space", str(space), "--trials", "3", "--out", str(out), "--study", "tiny",
                 "--startup-trials", "1", "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    trials = trials_of(out, "tiny")
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"], printed
    pruned = trials[1]
    assert pruned.params["train.lr"] == 0.0 and len(pruned.intermediate_values) < 3  # stopped before the end
    assert "2 complete, 1 pruned" in printed
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    best_config = load_config(out / "best_config.yaml")  # a full config, ready for nlp-rnn train
    assert best_config.model.hidden_size == best.params["model.hidden_size"]
    assert best_config.train.lr == best.params["train.lr"]
    for trial in trials:  # every trial an ordinary run folder; its validation score is the objective
        run = out / "trials" / f"trial-{trial.number:04d}"
        assert trial.user_attrs["run_dir"] == str(run)
        assert not (run / "training_state.pt").exists()  # finished: the resumable state is gone
        assert not (run / "evaluation").exists()  # the test split is never scored
    assert json.loads((out / "trials" / f"trial-{best.number:04d}" / "metrics.json").read_text())[
        "validation"]["accuracy"] == pytest.approx(best.value)
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["state"] for r in rows] == states and rows[1]["epochs"] == str(len(pruned.intermediate_values))
    for plot in ("optimization_history.png", "param_importances.png", "slice.png", "contour.png"):
        assert (out / plot).stat().st_size > 1000
    # run again: the study already holds 3 finished trials, so nothing trains and the summary is rewritten
    assert main(["tune", str(config), "--space", str(space), "--trials", "3", "--out", str(out),
                 "--study", "tiny"]) == 0
    assert len(trials_of(out, "tiny")) == 3


def tune_command(config, space, out, trials, *extra):
    return [sys.executable, "-m", "nlp_rnn", "tune", str(config), "--space", str(space), "--trials", str(trials),
            "--out", str(out), "--study", "tiny", *extra]


@pytest.mark.slow
def test_a_killed_study_resumes_and_the_trial_continues_its_run_folder(tmp_path):
    config = write_yaml(tmp_path / "tiny.yaml", {**TINY_RT, "train": {**TINY_RT["train"], "epochs": 4}})
    space = write_yaml(tmp_path / "space.yaml", {"train.lr": {"float": [1.0e-3, 1.0e-2], "log": True}})
    out = tmp_path / "tune"
    command = tune_command(config, space, out, 3, "--pruner", "none", "--heartbeat", "1")
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "trials" / "trial-0001" / "training_state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.exists(), "trial 1 never checkpointed"
    os.kill(worker.pid, signal.SIGKILL)  # no chance to clean up: the trial stays RUNNING in the storage
    worker.wait()
    first = out / "trials" / "trial-0000" / "model.safetensors"
    finished_at = first.stat().st_mtime_ns
    time.sleep(3.5)  # past the grace period of 3 heartbeats: the next worker sees the trial as stale
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    trials = trials_of(out, "tiny")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    resumed = trials[2]  # queued again with the same parameters, it continued trial 1's run folder
    assert resumed.params == trials[1].params
    assert resumed.user_attrs["run_dir"] == str(out / "trials" / "trial-0001")
    assert list(resumed.intermediate_values) == [1, 2, 3, 4]  # the epochs before the kill, reported again
    commands = (out / "trials" / "trial-0001" / "command.txt").read_text().splitlines()
    assert len(commands) == 2  # trained once, resumed once
    assert first.stat().st_mtime_ns == finished_at  # the finished trial was not trained again
    assert not (out / "trials" / "trial-0002").exists()  # trial 2 used trial 1's folder


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicates(tmp_path):
    config = write_yaml(tmp_path / "tiny.yaml", TINY_RT)
    space = write_yaml(tmp_path / "space.yaml", {"train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
                                                 "model.embedding_dropout": {"float": [0.0, 0.5]}})
    out = tmp_path / "tune"
    command = tune_command(config, space, out, 4, "--pruner", "none")
    open_study(out, "tiny", "maximize", None, None, None)  # created once, before the workers race to load it
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
    trials = trials_of(out, "tiny")
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5  # each worker checks the count after its trial: one may overshoot by one
    assert len({t.number for t in trials}) == len(trials)
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both worked
    assert len({t.user_attrs["run_dir"] for t in finished}) == len(finished)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)
    for trial in finished:  # each run folder trained by one process, once
        run = out / "trials" / f"trial-{trial.number:04d}"
        assert len((run / "command.txt").read_text().splitlines()) == 1
