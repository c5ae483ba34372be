"""Shared test setup: one CPU thread, so tiny models run fast and reproducibly beside other work."""

import os
from pathlib import Path

import pytest
import torch

from tests.tiny import tiny_config

torch.set_num_threads(1)

# Like the Makefile: read datasets from the shared mirror beside the checkout when the caller set nothing.
_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "hf"
if "NLP_RNN_DATA_DIR" not in os.environ and _MIRROR.is_dir():
    os.environ["NLP_RNN_DATA_DIR"] = str(_MIRROR)


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Encoded splits and tokenizers cached for this session only (nlp_rnn.encoded), not in ~/.cache; commands the
    tests start as subprocesses inherit it."""
    from nlp_rnn.encoded import CACHE_VARIABLE

    if os.environ.get(CACHE_VARIABLE):
        yield os.environ[CACHE_VARIABLE]
        return
    os.environ[CACHE_VARIABLE] = str(tmp_path_factory.mktemp("nlp_rnn_cache"))
    yield os.environ[CACHE_VARIABLE]
    del os.environ[CACHE_VARIABLE]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run folder of the tiny attention-pooled BiLSTM (tests/tiny.py)."""
    from nlp_rnn.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def reversal_data(tmp_path_factory) -> Path:
    from tests.tiny import write_reversal_dataset

    return write_reversal_dataset(tmp_path_factory.mktemp("data") / "reversal")


@pytest.fixture(scope="session")
def reversal_run(tmp_path_factory, reversal_data) -> Path:
    """A finished run folder of the tiny encoder-decoder trained on digit reversal (tests/tiny.py)."""
    from nlp_rnn.training import train
    from tests.tiny import reversal_config

    run_dir = tmp_path_factory.mktemp("runs") / "reversal"
    train(reversal_config(reversal_data), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def demo_module():
    """The web demo's module, ``nlp_rnn.demo`` (demo/app.py is only the script that serves it)."""
    from nlp_rnn import demo

    return demo


@pytest.fixture(scope="session")
def demo_url(demo_module):
    """The demo on the shipped models, served on a free loopback port for the whole session."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = demo_module.build_app()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=demo_module.CSS)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="session")
def tiny_writer(tmp_path_factory) -> Path:
    """A finished run folder of a tiny character LSTM that writes three sentences (tests/tiny.py)."""
    from nlp_rnn.cli import main
    from tests.tiny import write_generation_config, write_generation_texts

    folder = tmp_path_factory.mktemp("generation")
    write_generation_texts(folder / "data")
    assert main(["train", write_generation_config(folder), "--out", str(folder / "run")]) == 0
    return folder / "run"
