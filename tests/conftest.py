"""Shared test setup: one CPU thread, so tiny models run fast and reproducibly beside other work."""

from pathlib import Path

import pytest
import torch

from tests.tiny import tiny_config

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run folder of the tiny attention-pooled BiLSTM (tests/tiny.py)."""
    from nlp_rnn.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), run_dir)
    return run_dir
