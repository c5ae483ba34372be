"""model.init: ``keras`` starts from Keras's initial weights (each property checked), ``torch`` from torch's own."""

import pytest
import torch

from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import ConfigError, ModelConfig, load_config
from nlp_rnn.initialisation import KERAS_EMBEDDING_RANGE, initialise_
from nlp_rnn.language_model import BidirectionalLM

HIDDEN, EMBEDDING = 16, 12


def classifier(init: str, cell: str = "lstm", seed: int = 0) -> SentimentClassifier:
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, embedding_dim=EMBEDDING, hidden_size=HIDDEN, pooling="attention", init=init)
    return SentimentClassifier(config, vocab_size=50, num_labels=3)


def test_keras_lstm_weights():
    model = classifier("keras")
    for direction in model.encoder.layers[0]:
        bias_ih, bias_hh = direction.bias_ih_l0, direction.bias_hh_l0
        forget = slice(HIDDEN, 2 * HIDDEN)  # torch's gate order: input, forget, cell, output
        assert torch.all(bias_ih[forget] == 1) and torch.all(bias_ih[:HIDDEN] == 0)
        assert torch.all(bias_ih[2 * HIDDEN:] == 0) and torch.all(bias_hh == 0)
        recurrent = direction.weight_hh_l0  # (4 * hidden, hidden): orthonormal columns
        assert torch.allclose(recurrent.T @ recurrent, torch.eye(HIDDEN), atol=1e-5)
        limit = (6 / (EMBEDDING + 4 * HIDDEN)) ** 0.5  # Glorot-uniform over Keras's (input, 4 * hidden) kernel
        kernel = direction.weight_ih_l0
        assert kernel.abs().max() <= limit and kernel.abs().max() > 0.9 * limit


def test_keras_embeddings_and_dense_layers():
    model = classifier("keras")
    embedding = model.encoder.embedding.weight
    assert embedding.abs().max() <= KERAS_EMBEDDING_RANGE
    assert torch.all(embedding[model.encoder.embedding.padding_idx] == 0)  # the pad row stays zero
    assert torch.all(model.head.bias == 0)
    limit = (6 / (model.head.in_features + model.head.out_features)) ** 0.5
    assert model.head.weight.abs().max() <= limit


def test_keras_gru_has_no_forget_bias():
    model = classifier("keras", cell="gru")
    direction = model.encoder.layers[0][0]
    assert torch.all(direction.bias_ih_l0 == 0) and torch.all(direction.bias_hh_l0 == 0)


def test_torch_init_is_torch_default():
    torch_model = classifier("torch", seed=3)
    torch.manual_seed(3)
    plain = SentimentClassifier(ModelConfig(embedding_dim=EMBEDDING, hidden_size=HIDDEN, pooling="attention"), 50, 3)
    for (name, ours), theirs in zip(torch_model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name
    assert classifier("keras", seed=3).encoder.embedding.weight.abs().max() < plain.encoder.embedding.weight.abs().max()


def test_language_model_takes_the_scheme():
    torch.manual_seed(0)
    model = BidirectionalLM(ModelConfig(embedding_dim=EMBEDDING, hidden_size=HIDDEN, init="keras"), vocab_size=40)
    assert model.encoder.embedding.weight.abs().max() <= KERAS_EMBEDDING_RANGE


def test_unknown_scheme_is_one_clear_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  init: glorot\n")
    with pytest.raises(ConfigError, match="model.init.*keras"):
        load_config(path)
    with pytest.raises(ValueError, match="unknown init scheme"):
        initialise_(torch.nn.Linear(2, 2), "glorot")
