"""AWD-LSTM's regularisers (nlp_rnn.dropout): weight drop, word-type dropout and locked dropout, each on its own
and inside the classifier's encoder and the language model; all off in evaluation, none with weights."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from nlp_rnn.batching import Collator
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import ConfigError, ModelConfig
from nlp_rnn.dropout import LockedDropout, WordTypeDropout, recurrent_weight_names
from nlp_rnn.encoder import RecurrentEncoder
from nlp_rnn.language_model import BidirectionalLM
from tests.tiny import tiny_config

AWD = {"weight_drop": 0.5, "word_type_dropout": 0.3, "locked_dropout": True, "embedding_dropout": 0.2,
       "dropout": 0.3, "output_dropout": 0.4}
ROWS = [{"input_ids": [5, 9, 13, 9, 21, 25, 29, 5]}, {"input_ids": [7, 8, 9, 10, 11]}, {"input_ids": [12, 13]}]


def model_pair(kind: type, **config) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same weights twice: with AWD-LSTM's regularisers and without any."""
    base = {"embedding_dim": 8, "hidden_size": 6, **config}
    extra = {"num_labels": 2} if kind is SentimentClassifier else {}
    regularised = kind(ModelConfig(**base, **AWD), vocab_size=40, **extra)
    plain = kind(ModelConfig(**base), vocab_size=40, **extra)
    plain.load_state_dict(regularised.state_dict())
    return regularised, plain


@pytest.mark.parametrize(("kind", "config"), [
    (SentimentClassifier, {"num_layers": 2, "pooling": "max_mean"}),
    (SentimentClassifier, {"cell": "peephole_lstm", "pooling": "attention"}),
    (SentimentClassifier, {"cell": "gru", "packed": "always", "pooling": "last"}),
    (BidirectionalLM, {}),
])
def test_in_evaluation_the_regularisers_are_off(kind, config):
    """Evaluation is deterministic and equals the same weights with every regulariser at 0; in training two
    passes differ (fresh masks each time); the state dict has the same names either way."""
    torch.manual_seed(0)
    regularised, plain = model_pair(kind, **config)
    assert list(regularised.state_dict()) == list(plain.state_dict())
    batch = Collator(0)(ROWS)
    regularised.eval()
    plain.eval()
    with torch.no_grad():
        first, second, reference = regularised(batch)[0], regularised(batch)[0], plain(batch)[0]
    assert torch.equal(first, second) and torch.equal(first, reference)
    regularised.train()
    with torch.no_grad():
        assert not torch.equal(regularised(batch)[0], regularised(batch)[0])


def test_locked_dropout_keeps_one_mask_over_time():
    torch.manual_seed(0)
    dropout = LockedDropout(0.5).train()
    out = dropout(torch.ones(4, 7, 32))
    assert torch.equal(out, out[:, :1].expand_as(out))  # every time step: its row's mask
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert not torch.equal(out[0], out[1])  # each row its own mask
    assert torch.equal(dropout.eval()(out), out)


def test_the_encoder_drops_its_input_with_one_mask_per_sequence():
    """A row of one repeated word embeds alike at every step; locked dropout keeps the first layer's input
    alike over time, element-wise dropout would not."""
    torch.manual_seed(0)
    seen = []
    for locked in (True, False):
        encoder = RecurrentEncoder(20, 16, 4, embedding_dropout=0.5, locked_dropout=locked).train()
        encoder.layers[0][0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        encoder(torch.full((2, 6), 7), torch.tensor([6, 6]))
    locked_input, plain_input = seen
    assert torch.equal(locked_input, locked_input[:, :1].expand_as(locked_input))
    assert (locked_input == 0).any()
    assert not torch.equal(plain_input, plain_input[:, :1].expand_as(plain_input))


def test_word_type_dropout_drops_every_occurrence_of_a_word():
    torch.manual_seed(0)
    dropout = WordTypeDropout(0.4, vocab_size=1000).train()
    ids = torch.randint(0, 1000, (8, 50))
    out = dropout(torch.ones(8, 50, 3), ids)  # (batch, len, emb)
    dropped = out[..., 0] == 0
    assert torch.equal(out, out[..., :1].expand_as(out))  # a whole vector at a time
    for word in ids.unique():
        occurrences = dropped[ids == word]
        assert occurrences.all() or not occurrences.any()  # the type is dropped everywhere or nowhere
    assert out[~dropped].unique().tolist() == pytest.approx([1 / 0.6])
    share = sum(bool(dropped[ids == word][0]) for word in ids.unique()) / len(ids.unique())  # of the word types
    assert 0.3 < share < 0.5, share
    assert torch.equal(dropout.eval()(out, ids), out)


@pytest.mark.parametrize(("cell", "packed"), [("lstm", "never"), ("lstm", "always"), ("gru", "never"),
                                               ("peephole_lstm", "never")])
def test_weight_drop_zeroes_the_configured_share_of_recurrent_weights_in_training_only(cell, packed):
    """What the kernel multiplies by: in training about p of each hidden-to-hidden matrix is zero (a fresh mask
    every pass, the rest scaled by 1 / (1 - p)); in evaluation the parameter itself. The parameter is never
    written, and its gradient flows through the kept entries only."""
    torch.manual_seed(0)
    encoder = RecurrentEncoder(30, 8, 24, cell=cell, weight_drop=0.4, packed=packed)
    layer = encoder.layers[0][0]
    (name,) = recurrent_weight_names(layer)
    module = layer.cell if cell == "peephole_lstm" else layer
    attribute = name.rsplit(".", 1)[-1]
    raw = getattr(module, attribute)
    before = raw.detach().clone()
    used = []
    hook = module.register_forward_pre_hook(lambda m, args: used.append(getattr(m, attribute)))
    ids, lengths = torch.randint(1, 30, (3, 9)), torch.tensor([9, 5, 2])

    encoder.train()
    outputs = encoder(ids, lengths).outputs
    first = used[-1]
    encoder(ids, lengths)
    assert not torch.equal(used[-1] == 0, first == 0)  # resampled every forward pass
    zeros = float((first == 0).float().mean())
    assert 0.3 < zeros < 0.5, zeros
    kept = first != 0
    torch.testing.assert_close(first[kept], before[kept] / 0.6)
    outputs.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    assert torch.all(raw.grad[~kept] == 0)  # a dropped weight took no part, so it gets no gradient
    assert torch.equal(raw.detach(), before) and getattr(module, attribute) is raw

    encoder.eval()
    encoder(ids, lengths)
    assert used[-1] is raw
    hook.remove()


def test_weight_drop_needs_a_recurrent_matrix():
    from nlp_rnn import cells
    from nlp_rnn.cells import RecurrentCell, register_cell

    @register_cell("test_dropout_no_recurrence")
    class NoRecurrence(RecurrentCell):
        def forward(self, projected_t, state):
            return projected_t, (projected_t,)

    try:
        with pytest.raises(ConfigError, match="model.weight_drop: cell 'test_dropout_no_recurrence' has no "
                                              "hidden-to-hidden matrix"):
            tiny_config(model={"cell": "test_dropout_no_recurrence", "weight_drop": 0.5})
        with pytest.raises(ValueError, match="model.weight_drop: cell 'test_dropout_no_recurrence'"):
            RecurrentEncoder(10, 4, 4, cell="test_dropout_no_recurrence", weight_drop=0.5)
        RecurrentEncoder(10, 4, 4, cell="test_dropout_no_recurrence")  # without weight drop it is a fine cell
    finally:
        cells._REGISTRY.pop("test_dropout_no_recurrence")


def test_save_then_load_gives_the_same_evaluation(tmp_path):
    torch.manual_seed(0)
    model, _ = model_pair(BidirectionalLM)
    batch = Collator(0)(ROWS)
    model.train()
    model(batch)[1].backward()  # a training pass first: nothing of it may stay in the weights
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    loaded = BidirectionalLM(ModelConfig(embedding_dim=8, hidden_size=6, **AWD), vocab_size=40)
    loaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    with torch.no_grad():
        assert torch.equal(model.eval()(batch)[0], loaded.eval()(batch)[0])


@pytest.mark.slow
def test_a_regularised_language_model_resumes_to_the_same_weights(tmp_path):
    """An interrupted AWD-LSTM language model run resumes to the uninterrupted run's weights: the masks come from
    the RNG state the checkpoint restores."""
    from tests.test_language_model import lm_config
    from tests.tiny import assert_resumed_run_matches

    config = lm_config(data={"max_train_examples": 96, "max_eval_examples": 16},
                       model={**AWD, "embedding_dim": 8, "hidden_size": 8},
                       train={"epochs": 1, "batch_size": 16, "checkpoint_every": 2, "lm_loss_fraction": 0.5})
    assert_resumed_run_matches(config, tmp_path, stop_at=4)
