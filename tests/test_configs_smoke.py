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
PRETRAINING = Path(__file__).resolve().parent.parent / "configs" / "pretraining"
# configs that start from a language model run: runs/<name> is made by configs/pretraining/<name>.yaml
FROM_LM = [p for p in CONFIGS if (PRETRAINING / f"{Path(load_config(p).train.init_from or '-').name}.yaml").is_file()]


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
def test_configs_from_a_language_model_match_its_encoder(path):
    """Language model runs are trained, not shipped (``make imdb-lm``, ``make sst2-lm``): a config that starts
    from one must build the same encoder as the config that makes it."""
    config = load_config(path)
    lm = load_config(PRETRAINING / f"{Path(config.train.init_from).name}.yaml")
    for key in ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional"):
        assert getattr(config.model, key) == getattr(lm.model, key), key


def test_language_model_chains_are_covered():
    names = {p.stem for p in FROM_LM}
    assert {"sst2_from_lm", "rotten_tomatoes_from_lm", "sst2_bilm", "sst2_from_sst2_lm", "rotten_tomatoes_bilm",
            "rotten_tomatoes_from_rt_lm"} <= names, names
