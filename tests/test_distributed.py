"""torchrun data parallelism on the CPU (gloo): 2 processes follow 1 process with the doubled batch, only rank 0
writes, and an interrupted 2-process run resumes to the same weights as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from safetensors.torch import load_file

from nlp_rnn.distributed import Context, shard
from tests.tiny import TINY

pytestmark = pytest.mark.slow


def write_config(path, dropout=0.0, **train):
    """The tiny IMDB classifier, logging every step; ``dropout`` on the embeddings and the pooled features."""
    values = {key: dict(value) for key, value in TINY.items()}
    values["data"]["max_train_examples"] = 128
    values["model"].update(embedding_dropout=dropout, output_dropout=dropout)
    values["train"].update(progress=False, log_every=1, **train)
    path.write_text(yaml.safe_dump(values))
    return path


def torchrun(*args, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--standalone", "-m", "nlp_rnn", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(process, timeout=180):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and both ranks
        raise
    return process.returncode, output


def steps(run_dir):
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r["kind"] == "step"]


def test_shard_takes_every_nth_example():
    assert shard(list(range(7)), Context(1, 2, 1)) == [1, 3, 5]
    assert shard(list(range(7)), Context(0, 1, 0)) == list(range(7))


def test_two_processes_match_one_with_the_doubled_batch(tmp_path):
    from nlp_rnn.cli import main

    # float32 (amp off): the two sums of bf16 products round differently, and exactness is what is tested here
    config = write_config(tmp_path / "tiny.yaml", epochs=1, batch_size=8, amp=False)
    code, output = finish(torchrun("train", str(config), "--out", str(tmp_path / "ddp")))
    assert code == 0, output
    assert main(["train", str(config), "--out", str(tmp_path / "one"), "--set", "train.batch_size=16"]) == 0
    ddp, one = steps(tmp_path / "ddp"), steps(tmp_path / "one")
    assert len(ddp) == len(one) == 8  # 128 examples in global batches of 16
    for mine, theirs in zip(ddp, one, strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-4)
        assert mine["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-3)
        assert mine["accuracy"] == theirs["accuracy"]  # summed over ranks
    assert (tmp_path / "ddp" / "command.txt").read_text().startswith("torchrun --nproc_per_node=2")
    assert output.count("best epoch") == 1  # only rank 0 reports


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    """With dropout on, so every rank's own random state must be saved and restored."""
    config = write_config(tmp_path / "tiny.yaml", dropout=0.5, epochs=30, batch_size=8, patience=None)
    code, output = finish(torchrun("train", str(config), "--out", str(tmp_path / "whole")))
    assert code == 0, output

    run_dir = tmp_path / "cut"
    process = torchrun("train", str(config), "--out", str(run_dir))
    log_file, deadline = run_dir / "log.jsonl", time.monotonic() + 240
    while not (log_file.exists() and len(log_file.read_text().splitlines()) >= 40):
        assert process.poll() is None and time.monotonic() < deadline, "training ended before it could be cut"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks; they stop after the same step
    _, output = finish(process)
    assert output.count("continue from step") == 1, output  # said once, by rank 0
    assert "torchrun --nproc_per_node 2 -m nlp_rnn train --resume" in output
    code, output = finish(torchrun("train", "--resume", "--out", str(run_dir)))
    assert code == 0, output
    whole, cut = load_file(tmp_path / "whole" / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert all((whole[k] == cut[k]).all() for k in whole)
    assert [r["loss"] for r in steps(run_dir)] == [r["loss"] for r in steps(tmp_path / "whole")]


def test_language_model_trains_on_two_processes(tmp_path):
    """Its steps score a random share of predictions, so some softmax clusters go unused: DDP must allow it."""
    values = {"task": "language_model",
              "data": {"dataset": "stanfordnlp/imdb", "max_length": 48, "max_train_examples": 64,
                       "max_eval_examples": 16, "test_split": None, "test_fraction": 0.1},
              "tokenizer": {"vocab_size": 3000},
              "model": {"embedding_dim": 8, "hidden_size": 8},
              "train": {"epochs": 1, "batch_size": 8, "progress": False, "lm_loss_fraction": 0.1}}
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(values))
    code, output = finish(torchrun("train", str(config), "--out", str(tmp_path / "lm")))
    assert code == 0, output
    assert (tmp_path / "lm" / "model.safetensors").is_file()
