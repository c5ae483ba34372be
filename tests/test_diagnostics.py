"""Gradient-flow diagnostics: the step-by-step unrolled encoder against the fused one, the gradient at the last
step against autograd on the model's own pooled features, and the measurement on a tiny real config (the simple
RNN's gradient at step 0 far below the LSTM's)."""

import json

import pytest
import torch
from torch.nn import functional as F

from nlp_rnn.batching import Batch
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.cli import main
from nlp_rnn.diagnostics import diagnostic_config, gradient_by_step, parse_cells, unrolled_states
from nlp_rnn.errors import NlpRnnError
from tests.tiny import TINY, tiny_config


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "peephole_lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_unrolled_states_equal_the_encoder_and_the_last_gradient_is_autograds(cell, layers):
    config = diagnostic_config(tiny_config(model={"cell": cell, "num_layers": layers}), cell)
    torch.manual_seed(0)
    model = SentimentClassifier(config.model, vocab_size=50, num_labels=2).eval()
    input_ids = torch.randint(1, 50, (3, 12))
    labels = torch.tensor([0, 1, 1])
    states = unrolled_states(model.encoder, input_ids)
    lengths = torch.full((3,), 12)
    fused = model.encoder(input_ids, lengths).outputs  # (3, 12, hidden): the whole sequence at once
    assert torch.allclose(torch.stack(states, dim=1), fused, atol=1e-5)
    # the gradient at the last step: that of the loss with respect to the pooled features (pooling "last")
    batch = Batch(input_ids, lengths, torch.ones(3, 12, dtype=torch.bool), labels)
    pooled, _ = model.pool(batch)
    pooled.retain_grad()
    F.cross_entropy(model.head(pooled), labels, reduction="sum").backward()
    expected = float(pooled.grad.norm(dim=-1).mean())
    model.zero_grad()
    norms = gradient_by_step(model, [(input_ids, labels)])
    assert len(norms) == 12 and norms[-1] == pytest.approx(expected, rel=1e-5)
    assert all(n > 0 for n in norms)


def test_the_fused_lstm_and_a_peephole_lstm_without_peepholes_give_the_same_gradients_at_every_step():
    """Two unrolling paths (torch's fused layer one step at a time; our cell in Python) on the same LSTM: the
    per-step gradients must agree everywhere, not only at the last step."""
    torch.manual_seed(0)
    fused = SentimentClassifier(diagnostic_config(tiny_config(), "lstm").model, vocab_size=50, num_labels=2).eval()
    ours = SentimentClassifier(diagnostic_config(tiny_config(), "peephole_lstm").model, vocab_size=50,
                               num_labels=2).eval()
    lstm, cell = fused.encoder.layers[0][0], ours.encoder.layers[0][0].cell
    with torch.no_grad():  # torch's gate order (i, f, g, o) is the peephole cell's (i, f, c, o)
        ours.encoder.embedding.weight.copy_(fused.encoder.embedding.weight)
        cell.weight_ih.copy_(lstm.weight_ih_l0)
        cell.weight_hh.copy_(lstm.weight_hh_l0)
        cell.bias.copy_(lstm.bias_ih_l0 + lstm.bias_hh_l0)
        cell.peephole.zero_()
        ours.head.load_state_dict(fused.head.state_dict())
    batch = [(torch.randint(1, 50, (4, 30)), torch.tensor([0, 1, 0, 1]))]
    assert gradient_by_step(ours, batch) == pytest.approx(gradient_by_step(fused, batch), rel=1e-4)


def test_cells_and_sources_are_checked(tmp_path):
    assert parse_cells("rnn, lstm,rnn") == ["rnn", "lstm"]
    with pytest.raises(NlpRnnError, match="--cells"):
        parse_cells("rnn,transformer")
    config = tmp_path / "translate.yaml"
    config.write_text("task: translation\n")
    assert main(["diagnose", "gradients", str(config), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.slow
def test_the_simple_rnn_gradient_vanishes_where_the_lstm_keeps_it(tmp_path, capsys):
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "model": {"embedding_dim": 16, "hidden_size": 16}}))
    out = tmp_path / "diagnose"
    assert main(["diagnose", "gradients", str(config), "--cells", "rnn,lstm", "--length", "48", "--batches", "2",
                 "--batch-size", "8", "--steps", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "gradients.json").read_text())
    rnn, lstm = results["cells"]["rnn"], results["cells"]["lstm"]
    for entry in (rnn, lstm):
        assert len(entry["init"]) == len(entry["trained"]) == 48
        assert len(entry["grad_norms_clipped"]) == len(entry["grad_norms_unclipped"]) == 6  # every step logged
    # step 0 (47 steps before the loss): the simple RNN's gradient is orders of magnitude below the LSTM's
    assert rnn["init"][-1] < lstm["init"][-1] / 100
    assert rnn["trained"][-1] < lstm["trained"][-1] / 100
    assert rnn["init"][-1] < rnn["init"][0] / 1e6  # and it decays by orders of magnitude over the steps
    assert (out / "gradient_flow.png").stat().st_size > 10_000 and (out / "gradient_norms.png").exists()
    assert "rnn" in printed and "written to" in printed
    # the trained run started from the measured initial weights and kept the shared tokenizer
    init = out / "runs" / "lstm-init"
    assert (init / "tokenizer.json").read_text() == (out / "runs" / "lstm-clipped" / "tokenizer.json").read_text()
