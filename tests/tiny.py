"""A tiny real IMDB configuration: 256 training reviews, a 16-unit attention-pooled BiLSTM, seconds to train.

Tests that need data load it through the package's own loader: from $NLP_RNN_DATA_DIR (the Makefile and
.ci/run point it at ../shared/data/hf) or from the hub. Nothing skips when data is missing: it fails.
"""

from __future__ import annotations

import json
import random

import yaml

from nlp_rnn.config import Config, config_from_dict

TINY = {
    "data": {"dataset": "stanfordnlp/imdb", "max_length": 64, "max_train_examples": 256, "max_eval_examples": 64},
    "tokenizer": {"vocab_size": 2000},
    "model": {"embedding_dim": 16, "hidden_size": 16, "pooling": "attention"},
    "train": {"epochs": 2, "batch_size": 32, "progress": False, "log_every": 2, "checkpoint_every": 3,
              "num_threads": 1, "amp": False},  # float32 on every CPU kind, so the tiny run is the same everywhere
}


def tiny_config(**sections: dict) -> Config:
    values = {key: dict(value) for key, value in TINY.items()}
    for section, updates in sections.items():
        values.setdefault(section, {}).update(updates)
    return config_from_dict(values)


def write_reversal_dataset(folder, train_size: int = 3000, seed: int = 0):
    """The synthetic sanity task: digit strings and the same digits reversed, as parquet splits.

    Tiny synthetic data for tests only; real translation tests use the Multi30k mirror.
    """
    import random

    import datasets

    rng = random.Random(seed)

    def rows(count: int) -> dict:
        sources = [" ".join(rng.choice("0123456789") for _ in range(rng.randint(3, 8))) for _ in range(count)]
        return {"src": sources, "tgt": [" ".join(reversed(s.split())) for s in sources]}

    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train_size), ("validation", 100), ("test", 100)):
        datasets.Dataset.from_dict(rows(count)).to_parquet(str(folder / f"{name}.parquet"))
    return folder


def reversal_config(dataset_dir, **sections: dict) -> Config:
    """A tiny Luong-attention GRU encoder-decoder on the reversal task: seconds to near-perfect on one core."""
    values = {
        "task": "translation",
        "data": {"dataset": str(dataset_dir), "source_column": "src", "target_column": "tgt",
                 "validation_split": "validation", "max_length": 20},
        "tokenizer": {"type": "word", "vocab_size": 100, "min_frequency": 1, "lowercase": False, "strip_html": False},
        "model": {"embedding_dim": 32, "hidden_size": 32, "decoder_hidden_size": 64, "attention": "luong_general",
                  "dropout": 0.0, "embedding_dropout": 0.0},
        "train": {"epochs": 4, "batch_size": 32, "lr": 5e-3, "progress": False, "num_threads": 1,
                  "eval_batch_size": 100, "checkpoint_every": 50},
        "search": {"beam_size": 3},
    }
    for section, updates in sections.items():
        values.setdefault(section, {}).update(updates)
    return config_from_dict(values)


def assert_resumed_run_matches(config: Config, folder, stop_at: int) -> None:
    """Train ``config`` whole, and again interrupted at step ``stop_at`` then resumed: the weights are equal."""
    import pytest
    import torch
    from safetensors.torch import load_file

    from nlp_rnn.training import TrainingInterrupted, train

    def stop(step):
        if step == stop_at:
            raise KeyboardInterrupt

    train(config, folder / "whole")
    with pytest.raises(TrainingInterrupted):
        train(config, folder / "cut", on_step=stop)
    train(None, folder / "cut", resume=True)
    whole, cut = load_file(folder / "whole" / "model.safetensors"), load_file(folder / "cut" / "model.safetensors")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


# -- generation: texts of three sentences in random order (a char model learns them in seconds) --

SENTENCES = ["the cat sat on the mat.", "a dog ran to the park.", "the bird sang."]


def write_generation_texts(folder, labelled: bool = False) -> None:
    """Texts of three sentences in random order; labelled: label 1 texts say "good", label 0 texts "bad"."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", 200), ("validation", 30), ("test", 30)):
        rows = []
        for _ in range(count):
            if labelled:
                label = rng.randint(0, 1)
                rows.append({"text": " ".join(["good" if label else "bad"] * rng.randint(2, 5)) + ".", "label": label})
            else:
                rows.append({"text": " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(3, 8)))})
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_generation_config(folder, data: dict | None = None, model: dict | None = None, epochs: int = 8) -> str:
    values = {
        "task": "generation",
        "data": {"dataset": str(folder / "data"), "validation_split": "validation", "bptt": 32, **(data or {})},
        "tokenizer": {"type": "char", "lowercase": False, "normalization": "none", "strip_html": False,
                      "min_frequency": 1},
        "model": {"embedding_dim": 16, "hidden_size": 48, "num_layers": 1, "dropout": 0.0, **(model or {})},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 0.01, "num_threads": 1, "progress": False,
                  "schedule": "constant", "patience": None},
    }
    path = folder / "generation.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)
