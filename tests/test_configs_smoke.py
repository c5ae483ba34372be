"""Every shipped config trains a few steps, shrunk, on its real dataset (lightning-hydra-template style)."""

from pathlib import Path

import pytest

from nlp_rnn.config import load_config
from nlp_rnn.training import train

pytestmark = pytest.mark.slow

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("**/*.yaml"))
SHRINK = ["data.max_train_examples=96", "data.max_eval_examples=32", "data.max_length=48",
          "tokenizer.vocab_size=500", "model.embedding_dim=8", "model.hidden_size=8", "train.epochs=1",
          "train.batch_size=32", "train.progress=false", "train.num_threads=1", "train.init_from=null"]


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"imdb_bilstm.yaml", "sst2_bilstm.yaml", "rotten_tomatoes_bilstm.yaml",
                                         "seed_keras_lstm.yaml", "seed_simple_rnn.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_shrunk(path, tmp_path):
    config = load_config(path, SHRINK)
    metrics = train(config, tmp_path / path.stem)
    assert metrics["best_epoch"] == 1
    assert (tmp_path / path.stem / "model.safetensors").is_file()


TRANSFER = [p for p in CONFIGS if (load_config(p).train.init_from or "runs/").split("/")[0] != "runs"]
FROM_LM = [p for p in CONFIGS if load_config(p).train.init_from == "runs/imdb_bilm"]
LM_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretraining" / "imdb_bilm.yaml"


@pytest.mark.parametrize("path", TRANSFER, ids=[p.stem for p in TRANSFER])
def test_transfer_config_starts_from_the_shipped_model(path, tmp_path, monkeypatch):
    """Its model matches the run it starts from: every encoder tensor is copied."""
    import torch
    from safetensors.torch import load_file

    from nlp_rnn.training import Trainer

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # init_from is relative to the checkout
    config = load_config(path, SHRINK[:3] + ["train.progress=false"])
    trainer = Trainer(config, tmp_path / path.stem)
    source = load_file(Path(config.train.init_from) / "model.safetensors")
    own = trainer.model.state_dict()
    encoder = [k for k in source if k.startswith("encoder.")]
    assert encoder and all(torch.equal(own[k], source[k].float()) for k in encoder)


@pytest.mark.parametrize("path", FROM_LM, ids=[p.stem for p in FROM_LM])
def test_configs_from_the_language_model_match_its_encoder(path):
    """runs/imdb_bilm is trained, not shipped (``make imdb-lm``): its config must build the same encoder."""
    config, lm = load_config(path), load_config(LM_CONFIG)
    for key in ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional"):
        assert getattr(config.model, key) == getattr(lm.model, key), key
    assert FROM_LM
