"""The sentiment classifier: forward's contract, batch invariance for every pooling, it can learn."""

import pytest
import torch

from nlp_rnn.batching import Batch, Collator
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import ModelConfig
from nlp_rnn.pooling import POOLINGS

VOCAB, LABELS = 30, 3


def make_model(pooling: str = "max", seed: int = 0, **overrides) -> SentimentClassifier:
    torch.manual_seed(seed)
    config = ModelConfig(embedding_dim=8, hidden_size=6, num_layers=2, pooling=pooling, **overrides)
    return SentimentClassifier(config, VOCAB, LABELS)


def make_batch(lengths, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    examples = [{"input_ids": torch.randint(1, VOCAB, (n,), generator=generator).tolist(), "label": i % LABELS}
                for i, n in enumerate(lengths)]
    return Collator(pad_id=0)(examples)


def test_forward_without_targets_returns_logits_and_none():
    model = make_model()
    batch = make_batch([4, 2, 5])
    logits, loss = model(batch)
    assert logits.shape == (3, LABELS)
    assert loss is None


def test_forward_with_targets_returns_the_mean_cross_entropy():
    model = make_model().eval()
    batch = make_batch([4, 2, 5])
    logits, loss = model(batch, batch.labels)
    assert loss.dim() == 0 and loss.requires_grad
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, batch.labels))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_an_example_alone_gets_the_logits_it_gets_in_a_padded_batch(pooling):
    model = make_model(pooling, dropout=0.3, output_dropout=0.3).eval()  # eval: dropout off
    batch = make_batch([3, 7, 1, 5])
    with torch.no_grad():
        batched, _ = model(batch)
        for row, length in enumerate(batch.lengths.tolist()):
            alone = Collator()([{"input_ids": batch.input_ids[row, :length].tolist()}])
            logits, _ = model(alone)
            torch.testing.assert_close(batched[row], logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["max_mean", "attention"])
def test_overfits_eight_tiny_examples(pooling):
    model = make_model(pooling, seed=1)
    batch = make_batch([3, 4, 5, 6, 3, 4, 5, 6], seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        _, loss = model(batch, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        logits, _ = model.eval()(batch)
    assert torch.equal(logits.argmax(-1), batch.labels)


def test_layer_groups_hold_every_parameter_once_bottom_to_top():
    """ULMFiT's groups: embedding, each recurrent layer (both directions), then pooling and head together."""
    model = make_model("attention")
    groups = model.layer_groups()
    name_of = {id(p): name for name, p in model.named_parameters()}
    names = [{name_of[id(p)] for p in group} for group in groups]
    assert names[0] == {"encoder.embedding.weight"}
    for index in (0, 1):
        assert names[1 + index] == {n for n in name_of.values() if n.startswith(f"encoder.layers.{index}.")}
    assert names[3] == {n for n in name_of.values() if n.startswith(("pooling.", "head."))}
    assert sum(map(len, groups)) == len(name_of) == len(set().union(*names))

