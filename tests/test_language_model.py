"""The bidirectional language model that pretrains the classifier's encoder (ELMo's biLM, ULMFiT's recipe)."""

import json
import math

import pytest
import torch

import nlp_rnn
from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import Collator
from nlp_rnn.config import ConfigError, ModelConfig
from nlp_rnn.data import load_splits
from nlp_rnn.language_model import BidirectionalLM, adaptive_cutoffs
from nlp_rnn.tasks import LanguageModelTask
from tests.tiny import tiny_config


def lm_config(**sections):
    updates = {"data": {"train_split": "train+unsupervised", "max_train_examples": 512},
               "model": {"pooling": "max"}, **sections}
    config = tiny_config(**updates)
    values = config.to_dict()
    values["task"] = "language_model"
    from nlp_rnn.config import config_from_dict

    return config_from_dict(values)


def test_no_direction_sees_the_token_it_predicts():
    """Changing token j leaves the forward states before j and the backward states after j unchanged, so
    the state that predicts token j never read it."""
    torch.manual_seed(0)
    model = BidirectionalLM(ModelConfig(embedding_dim=8, hidden_size=8), vocab_size=50).eval()
    ids = [5, 9, 13, 17, 21, 25, 29]
    n = len(ids)
    for j in range(n):
        changed = list(ids)
        changed[j] = 40
        states, targets = model.states_and_targets(Collator(0)([{"input_ids": ids}]))
        moved, moved_targets = model.states_and_targets(Collator(0)([{"input_ids": changed}]))
        forward, backward = states[: n - 1], states[n - 1 :]  # forward state t predicts t + 1, backward t - 1
        assert targets[:n - 1].tolist() == ids[1:] and targets[n - 1:].tolist() == ids[:-1]
        assert torch.equal(forward[:j], moved[:j])  # the forward state that predicts token j is at j - 1
        assert torch.equal(backward[j:], moved[n - 1 + j:])  # the backward one is at j + 1 (row j)
        if j < n - 1:  # and the states that did read token j moved
            assert not torch.equal(forward[j], moved[j])
        if j > 0:
            assert not torch.equal(backward[j - 1], moved[n - 2 + j])
        assert moved_targets.tolist().count(40) == (j > 0) + (j < n - 1)


def test_padding_predicts_nothing_and_changes_nothing():
    torch.manual_seed(0)
    model = BidirectionalLM(ModelConfig(embedding_dim=8, hidden_size=8), vocab_size=50).eval()
    rows = [{"input_ids": [5, 6, 7, 8]}, {"input_ids": [9, 10]}]
    log_probs, _ = model(Collator(0)(rows))
    assert len(log_probs) == 2 * 3 + 2 * 1
    alone, _ = model(Collator(0)(rows[1:]))
    together = torch.cat([log_probs[3:4], log_probs[7:8]])  # row 2's forward and backward predictions
    assert torch.allclose(alone, together, atol=1e-6)


def test_layer_groups_are_the_embedding_the_layer_and_the_softmax():
    model = BidirectionalLM(ModelConfig(embedding_dim=8, hidden_size=8), vocab_size=50)
    name_of = {id(p): name for name, p in model.named_parameters()}
    names = [{name_of[id(p)].split(".")[0 if i == 2 else 1] for p in group}
             for i, group in enumerate(model.layer_groups())]
    assert names == [{"embedding"}, {"layers"}, {"softmax"}]
    assert sum(map(len, model.layer_groups())) == len(name_of)


def test_adaptive_cutoffs():
    assert adaptive_cutoffs(25000) == [2000, 10000]
    assert adaptive_cutoffs(5000) == [2000]
    assert adaptive_cutoffs(100) == [50]


def test_bidirectional_lm_with_two_layers_is_refused():
    with pytest.raises(ConfigError, match="model.num_layers: a bidirectional language model has 1 layer"):
        lm_config(model={"num_layers": 2})


@pytest.mark.slow
def test_train_split_joins_splits_with_plus():
    config = lm_config()
    both = load_splits(config.data, LanguageModelTask)
    assert both.train.column_names == ["text"] and len(both.train) == 512
    with pytest.raises(nlp_rnn.NlpRnnError, match="no split 'nope'"):
        load_splits(tiny_config(data={"train_split": "train+nope"}).data, LanguageModelTask)


@pytest.mark.slow
def test_pretrain_then_fine_tune_a_classifier(tmp_path, monkeypatch):
    from nlp_rnn.training import train

    lm_dir = tmp_path / "lm"
    metrics = train(lm_config(train={"epochs": 2, "lr": 5e-3, "lm_loss_fraction": 0.5}), lm_dir)
    records = [json.loads(line) for line in (lm_dir / ckpt.LOG_FILE).read_text().splitlines()]
    perplexities = [r["val_ppl"] for r in records if r["kind"] == "epoch"]
    assert perplexities[1] < perplexities[0] and perplexities[1] < 2000 / 2  # learning; below a uniform guess
    assert metrics["task"] == "language_model" and metrics["validation"]["ppl"] == perplexities[1]
    assert 0 < records[-1]["val_accuracy"] < 1
    with pytest.raises(nlp_rnn.NlpRnnError, match="language-model run has no predictor"):
        nlp_rnn.load(lm_dir)
    # like every task's run: evaluate scores it (perplexity on the test split), pack ships it with a card
    from nlp_rnn.cli import main

    assert main(["evaluate", str(lm_dir), "--split", "validation", "--max-examples", "16"]) == 0
    evaluated = json.loads((lm_dir / "evaluation" / "validation" / ckpt.METRICS_FILE).read_text())
    assert evaluated["ppl"] == pytest.approx(math.exp(evaluated["loss"])) and evaluated["predictions"] > 0
    # next-token predictions are made in chunks of rows (a batch of long texts would need tens of GB at once)
    from nlp_rnn.tasks import language_model as lm_task

    monkeypatch.setattr(lm_task, "PREDICT_CHUNK", 5)
    assert main(["evaluate", str(lm_dir), "--split", "validation", "--max-examples", "16"]) == 0
    chunked = json.loads((lm_dir / "evaluation" / "validation" / ckpt.METRICS_FILE).read_text())
    assert (chunked["accuracy"], chunked["predictions"]) == (evaluated["accuracy"], evaluated["predictions"])
    assert main(["pack", str(lm_dir), str(tmp_path / "lm_packed")]) == 0
    card = (tmp_path / "lm_packed" / "README.md").read_text()
    assert "language model" in card and f"{metrics['validation']['ppl']:.2f}" in card and "init_from" in card

    classifier_dir = tmp_path / "classifier"
    train(tiny_config(model={"pooling": "max"}, train={"init_from": str(lm_dir), "epochs": 1}), classifier_dir)
    assert (classifier_dir / ckpt.TOKENIZER_FILE).read_text() == (lm_dir / ckpt.TOKENIZER_FILE).read_text()
    pretrained, _ = ckpt.load_weights(lm_dir / ckpt.WEIGHTS_FILE)
    classifier = nlp_rnn.load(classifier_dir)
    assert classifier.predict(["a fine film"])[0]["label"] in ("neg", "pos")
    # The classifier started from the LM's encoder: its embedding moved little from it after one epoch.
    tuned = classifier.model.encoder.embedding.weight
    start = pretrained["encoder.embedding.weight"]
    assert (tuned - start).norm() < 0.5 * start.norm()
