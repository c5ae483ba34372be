"""The causal LM: a chunk equals its tokens stepped one by one with the state carried, two chunks equal one,
padding at the end never changes a real position, tied weights are shared, a label sets the initial state."""

from types import SimpleNamespace

import pytest
import torch

from nlp_rnn.generator import CausalLM


def config(**changes):
    values = {"cell": "lstm", "embedding_dim": 8, "hidden_size": 12, "num_layers": 2, "dropout": 0.0,
              "embedding_dropout": 0.0, "tie_weights": False, "conditioning": "both", "label_dim": 4}
    return SimpleNamespace(**{**values, **changes})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole_lstm"])
def test_a_chunk_equals_stepping_with_the_state_carried(cell):
    torch.manual_seed(0)
    model = CausalLM(config(cell=cell), vocab_size=20, num_labels=2).eval()
    ids, labels = torch.randint(1, 20, (3, 7)), torch.tensor([0, 1, 1])
    with torch.no_grad():
        whole = model(ids, labels)
        state, stepped = None, []
        state = model.initial_state(3, labels)
        for t in range(7):
            logits, state = model.step(ids[:, t], state, labels)
            stepped.append(logits)
        first = model(ids[:, :4], labels)
        second = model(ids[:, 4:], labels, state=first.state)
    torch.testing.assert_close(torch.stack(stepped, dim=1), whole.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], dim=1), whole.logits, atol=1e-5, rtol=1e-4)


def test_padding_at_the_end_changes_no_real_position_and_no_loss():
    torch.manual_seed(0)
    model = CausalLM(config(), vocab_size=20).eval()
    short = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0]])
    with torch.no_grad():
        alone = model(short, targets=torch.tensor([[6, 7, 8]]))
        beside = model(padded, targets=torch.tensor([[6, 7, 8, 0, 0]]))
    torch.testing.assert_close(beside.logits[:, :3], alone.logits)
    torch.testing.assert_close(beside.loss, alone.loss)


def test_tied_weights_are_one_tensor_with_a_projection_when_sizes_differ():
    model = CausalLM(config(tie_weights=True), vocab_size=20)
    assert model.head.weight is model.embedding.weight and model.projection is not None
    same = CausalLM(config(tie_weights=True, embedding_dim=12), vocab_size=20)
    assert same.projection is None
    untied = CausalLM(config(), vocab_size=20)
    assert sum(p.numel() for p in untied.parameters()) > sum(p.numel() for p in model.parameters())


def test_the_label_sets_the_initial_state_and_is_read_at_every_step():
    torch.manual_seed(0)
    for conditioning in ("init", "input", "both"):
        model = CausalLM(config(conditioning=conditioning), vocab_size=20, num_labels=2).eval()
        ids = torch.tensor([[3, 4, 5], [3, 4, 5]])
        with torch.no_grad():
            logits = model(ids, torch.tensor([0, 1])).logits
        assert not torch.allclose(logits[0], logits[1])  # the same tokens, another label: another distribution
        state = model.initial_state(2, torch.tensor([0, 1]))
        assert torch.equal(state[0][0][0], state[0][0][1]) == (conditioning == "input")
