from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import ModelConfig


def test_seed_model_parameter_counts():
    """The seeds' Embedding(1000, 64) -> LSTM(128) -> Linear(10): Keras says 98,816 for the LSTM."""
    model = SentimentClassifier(
        ModelConfig(embedding_dim=64, hidden_size=128, bidirectional=False, pooling="last"), 1000, 10)
    table = model.summary(print_fn=None)
    keras_lstm = 4 * (64 * 128 + 128 * 128 + 128)
    assert keras_lstm == 98_816
    torch_lstm = keras_lstm + 4 * 128  # torch keeps bias_ih and bias_hh
    assert f"{64_000:,}" in table
    assert f"{torch_lstm:,}" in table
    assert f"{128 * 10 + 10:,}" in table
    assert f"Total params: {64_000 + torch_lstm + 1290:,}" in table
    assert sum(p.numel() for p in model.parameters()) == 64_000 + 99_328 + 1290


def test_summary_lists_every_layer_of_a_stacked_bilstm():
    model = SentimentClassifier(ModelConfig(num_layers=2, pooling="attention"), 500, 2)
    table = model.summary(print_fn=None)
    assert "rnn_0 (bidirectional lstm 128)" in table and "rnn_1" in table
    assert f"Total params: {sum(p.numel() for p in model.parameters()):,}" in table
