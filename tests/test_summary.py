import re

import pytest
import torch
from torch import nn

from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import ModelConfig, TranslatorConfig
from nlp_rnn.language_model import BidirectionalLM
from nlp_rnn.translator import Translator


def _seed_classifier() -> SentimentClassifier:
    """The seeds' Embedding(1000, 64) -> LSTM(128) -> Linear(10)."""
    torch.manual_seed(0)
    return SentimentClassifier(
        ModelConfig(embedding_dim=64, hidden_size=128, bidirectional=False, pooling="last"), 1000, 10)


TINY = {"embedding_dim": 6, "hidden_size": 5}
TRANSLATOR = {"embedding_dim": 6, "hidden_size": 5, "decoder_hidden_size": 10, "attention_size": 4, "dropout": 0.0,
              "embedding_dropout": 0.0}
MODELS = {
    "classifier": lambda: SentimentClassifier(ModelConfig(**TINY, pooling="attention"), 40, 3),
    "stacked_gru_classifier": lambda: SentimentClassifier(ModelConfig(**TINY, cell="gru", num_layers=2,
                                                                      pooling="max_mean"), 40, 2),
    "language_model": lambda: BidirectionalLM(ModelConfig(**TINY), 40),
    "unidirectional_language_model": lambda: BidirectionalLM(ModelConfig(**TINY, bidirectional=False,
                                                                         num_layers=2), 40),
    "bahdanau_translator": lambda: Translator(TranslatorConfig(**TRANSLATOR, attention="bahdanau",
                                                               decoder_layers=2), 30, 40),
    "tied_luong_translator": lambda: Translator(TranslatorConfig(**TRANSLATOR, attention="luong_dot",
                                                                 input_feeding=True, tie_embeddings=True), 30, 40),
}


def _submodule(model: nn.Module, row_name: str) -> nn.Module:
    """The module a summary row describes: ``encoder.rnn_1 (...)`` -> ``model.encoder.layers[1]``; a classifier's or
    language model's own encoder rows (``embedding``, ``rnn_0``) have no ``encoder.`` prefix."""
    path = re.sub(r"\brnn_(\d+)$", r"layers.\1", row_name.split(" ")[0])
    if path.split(".")[0] in ("embedding", "layers"):
        path = f"encoder.{path}"
    return model.get_submodule(path)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_summarises_itself_and_its_rows_add_up(name):
    """Each row counts its submodule's parameters (a tied matrix only once), and the rows add up to the model."""
    torch.manual_seed(0)
    model = MODELS[name]()
    table = model.summary(print_fn=None)
    total = sum(p.numel() for p in model.parameters())
    assert f"Model: {type(model).__name__}" in table
    assert f"Total params: {total:,}" in table and f"Trainable params: {total:,}" in table
    rows = model.summary_rows()
    seen: set[int] = set()
    for row_name, _, count in rows:
        module = _submodule(model, row_name)
        own = [p for p in module.parameters() if id(p) not in seen]  # a tied output layer: only its bias is new
        assert count == sum(p.numel() for p in own), row_name
        seen.update(id(p) for p in own)
        assert f"{count:,}" in table.split(row_name, 1)[1].splitlines()[0]  # the count is printed on its row
    assert sum(count for _, _, count in rows) == total  # no layer left out
    assert seen == {id(p) for p in model.parameters()}


def test_frozen_parameters_are_counted_as_non_trainable():
    model = MODELS["classifier"]()
    model.encoder.embedding.weight.requires_grad_(False)
    table = model.summary(print_fn=None)
    frozen = model.encoder.embedding.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    assert f"Trainable params: {total - frozen:,}" in table and f"Non-trainable params: {frozen:,}" in table


def test_seed_model_counts_match_torch_and_keras():
    """Each row is what torch builds for that layer alone; the LSTM is Keras's 98,816 (its documented count for
    LSTM(128) on 64-dim input) plus torch's second bias vector per gate (bias_hh)."""
    model = _seed_classifier()
    rows = {name.split(" ")[0]: count for name, _, count in model.summary_rows()}
    reference_lstm = nn.LSTM(64, 128)
    assert rows["embedding"] == nn.Embedding(1000, 64).weight.numel()
    assert rows["rnn_0"] == sum(p.numel() for p in reference_lstm.parameters())
    assert rows["rnn_0"] - reference_lstm.bias_hh_l0.numel() == 98_816
    assert rows["head"] == sum(p.numel() for p in nn.Linear(128, 10).parameters())
    assert rows["pooling"] == rows["dropout"] == 0


def test_summary_lists_every_layer_of_a_stacked_bilstm():
    model = SentimentClassifier(ModelConfig(num_layers=2, pooling="attention"), 500, 2)
    table = model.summary(print_fn=None)
    assert "rnn_0 (bidirectional lstm 128)" in table and "rnn_1 (bidirectional lstm 128)" in table
    assert "rnn_2" not in table
    assert f"Total params: {sum(p.numel() for p in model.parameters()):,}" in table


def test_summary_prints_unless_told_not_to(capsys):
    model = MODELS["language_model"]()
    table = model.summary()
    assert capsys.readouterr().out == table + "\n"
