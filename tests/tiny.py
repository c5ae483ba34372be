"""A tiny real IMDB configuration: 256 training reviews, a 16-unit attention-pooled BiLSTM, seconds to train.

Tests that need data load it through the package's own loader: from $NLP_RNN_DATA_DIR (the Makefile and
.ci/run point it at ../shared/data/hf) or from the hub. Nothing skips when data is missing: it fails.
"""

from __future__ import annotations

from nlp_rnn.config import Config, config_from_dict

TINY = {
    "data": {"dataset": "stanfordnlp/imdb", "max_length": 64, "max_train_examples": 256, "max_eval_examples": 64},
    "tokenizer": {"vocab_size": 2000},
    "model": {"embedding_dim": 16, "hidden_size": 16, "pooling": "attention"},
    "train": {"epochs": 2, "batch_size": 32, "progress": False, "log_every": 2, "checkpoint_every": 3,
              "num_threads": 1},
}


def tiny_config(**sections: dict) -> Config:
    values = {key: dict(value) for key, value in TINY.items()}
    for section, updates in sections.items():
        values.setdefault(section, {}).update(updates)
    return config_from_dict(values)
