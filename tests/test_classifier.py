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



def test_pooling_head_is_ulmfits_batch_norm_head_and_learns():
    model = make_model("max_mean", seed=1, head_hidden_size=5, output_dropout=0.2)
    kinds = [type(layer).__name__ for layer in model.head]
    assert kinds == ["RowBatchNorm", "Dropout", "Linear", "ReLU", "RowBatchNorm", "Dropout", "Linear"]
    assert model.head[1].p == 0.2 and model.head[5].p == 0.05
    assert "BatchNorm, Linear 24->5, ReLU, BatchNorm, Linear 5->3" in model.summary()
    batch = make_batch([3, 4, 5, 6, 3, 4, 5, 6], seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    first = None
    for _ in range(30):
        _, loss = model(batch, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.25 * first
    assert model.head[0].num_batches_tracked.item() == 30  # batch statistics while training ...
    with torch.no_grad():
        logits, _ = model.eval()(batch)  # ... the running ones in evaluation
    assert torch.equal(logits.argmax(-1), batch.labels)


def test_pooling_head_trains_on_a_batch_of_one_row_and_is_batch_invariant_in_evaluation():
    model = make_model("max", head_hidden_size=4)
    one = make_batch([5])
    running = model.head[0].running_mean.clone()
    _, loss = model(one, one.labels)  # plain BatchNorm1d raises "Expected more than 1 value per channel"
    loss.backward()
    assert torch.isfinite(loss) and model.head[2].weight.grad is not None
    torch.testing.assert_close(model.head[0].running_mean, running)  # one row leaves the statistics alone
    model(make_batch([3, 7]), None)
    assert not torch.equal(model.head[0].running_mean, running)
    model.eval()
    batch = make_batch([3, 7, 1, 5])
    with torch.no_grad():
        batched, _ = model(batch)
        alone, _ = model(Collator()([{"input_ids": batch.input_ids[1, :7].tolist()}]))
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=0)


def test_pooling_head_runs_in_float32_under_bf16_autocast():
    """bf16 pooled features (what a bf16 encoder hands it) in, float32 logits out, gradients through. The head
    alone: the encoder's bf16 LSTM exists only where the CPU computes bf16 natively (oneDNN has none on AVX2)."""
    head = make_model("max_mean", head_hidden_size=4).head
    pooled = torch.randn(5, head[0].num_features, generator=torch.Generator().manual_seed(0))
    pooled = pooled.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(pooled)
        plain = torch.nn.Linear(4, 2)(torch.randn(3, 4))
    assert plain.dtype == torch.bfloat16  # autocast is on: a layer outside the head computes in bf16
    assert logits.dtype == torch.float32
    logits.sum().backward()
    assert head[0].weight.grad is not None and pooled.grad is not None
