"""The causal recurrent language model that writes (one-to-many): embedding -> stacked left-to-right recurrent
layers of any registered cell -> dropout -> output layer, optionally tied to the embedding (Press & Wolf 2017;
with a projection when the sizes differ). pytorch/examples' ``word_language_model`` is the model; char-rnn the
character setting.

Optional conditioning on a class label (the "one" in one-to-many): the label's embedding sets every layer's
initial hidden state (``init``), is read beside every token (``input``), or both.

``forward`` runs a whole chunk from a given state (truncated BPTT carries it between chunks) and returns the
final state; :meth:`CausalLM.step` is the same for one token, which generation calls.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from nlp_rnn.cells import CellLayer, make_sequence_layer

State = list[tuple[Tensor, ...]]  # per layer: (h,) or (h, c), each (batch, hidden)


class LMOutput(NamedTuple):
    logits: Tensor  # (batch, time, vocab)
    loss: Tensor | None  # mean cross-entropy per target token (padding ignored), nats
    state: State  # after the last position of every row (rows are padded at the end: read it for full rows)


def _run_layer(layer: nn.Module, inputs: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer from ``state`` -> ((batch, time, hidden), final state): torch's fused modules or a cell layer."""
    if isinstance(layer, nn.LSTM):
        outputs, (h, c) = layer(inputs, (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous()))
        return outputs, (h[0], c[0])
    if isinstance(layer, (nn.GRU, nn.RNN)):
        outputs, h = layer(inputs, state[0].unsqueeze(0).contiguous())
        return outputs, (h[0],)
    return layer(inputs, state)


def _state_size(layer: nn.Module) -> int:
    if isinstance(layer, nn.LSTM):
        return 2
    if isinstance(layer, CellLayer):
        return layer.cell.state_size
    return 1


class CausalLM(nn.Module):
    """``config``: the ``model:`` section of a generation config (nlp_rnn.tasks.generation.GeneratorConfig)."""

    def __init__(self, config, vocab_size: int, num_labels: int = 0, pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.hidden_size = config.hidden_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_id)
        self.conditioning = config.conditioning if num_labels else "none"
        self.label_embedding = nn.Embedding(num_labels, config.label_dim) if num_labels else None
        reads_label = self.conditioning in ("input", "both")
        sizes = [config.embedding_dim + (config.label_dim if reads_label else 0)]
        sizes += [config.hidden_size] * config.num_layers
        self.layers = nn.ModuleList(make_sequence_layer(config.cell, sizes[i], sizes[i + 1])
                                    for i in range(config.num_layers))
        self.initial = (nn.Linear(config.label_dim, config.num_layers * config.hidden_size)
                        if self.conditioning in ("init", "both") else None)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.dropout = nn.Dropout(config.dropout)
        tie = config.tie_weights
        self.projection = (nn.Linear(config.hidden_size, config.embedding_dim)
                           if tie and config.hidden_size != config.embedding_dim else None)
        self.head = nn.Linear(config.embedding_dim if tie else config.hidden_size, vocab_size)
        if tie:
            self.head.weight = self.embedding.weight

    def initial_state(self, batch_size: int, labels: Tensor | None = None) -> State:
        """Zeros, or (``init`` conditioning) each layer's h from the label: tanh(W e(label))."""
        reference = self.embedding.weight
        state = [tuple(reference.new_zeros(batch_size, self.hidden_size) for _ in range(_state_size(layer)))
                 for layer in self.layers]
        if self.initial is not None and labels is not None:
            hidden = torch.tanh(self.initial(self.label_embedding(labels)))  # (batch, layers * hidden)
            for i, chunk in enumerate(hidden.split(self.hidden_size, dim=-1)):
                state[i] = (chunk, *state[i][1:])
        return state

    def forward(self, input_ids: Tensor, labels: Tensor | None = None, targets: Tensor | None = None,
                state: State | None = None) -> LMOutput:
        """input_ids (batch, time) from ``state`` (None: the initial state) -> logits (batch, time, vocab), the loss
        against ``targets`` (batch, time; ``pad_id`` ignored) and the final state."""
        if state is None:
            state = self.initial_state(input_ids.size(0), labels)
        inputs = self.embedding_dropout(self.embedding(input_ids))  # (batch, time, emb)
        if self.conditioning in ("input", "both") and labels is not None:
            label = self.label_embedding(labels).unsqueeze(1).expand(-1, input_ids.size(1), -1)
            inputs = torch.cat([inputs, label], dim=-1)  # (batch, time, emb + label_dim)
        final = []
        for i, layer in enumerate(self.layers):
            inputs, layer_state = _run_layer(layer, inputs if i == 0 else self.dropout(inputs), state[i])
            final.append(layer_state)
        outputs = self.dropout(inputs)  # (batch, time, hidden)
        if self.projection is not None:
            outputs = self.projection(outputs)  # (batch, time, emb)
        logits = self.head(outputs)
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                               ignore_index=self.pad_id)
        return LMOutput(logits, loss, final)

    def step(self, tokens: Tensor, state: State, labels: Tensor | None = None) -> tuple[Tensor, State]:
        """One token per row (batch,) -> next-token logits (batch, vocab) and the new state."""
        output = self.forward(tokens.unsqueeze(1), labels, state=state)
        return output.logits[:, -1], output.state


def detach_state(state: State) -> State:
    """Truncated BPTT: the values carry on to the next chunk, the gradient stops here."""
    return [tuple(t.detach() for t in layer) for layer in state]


def cat_states(states: list[State]) -> State:
    """The states of several batches as one batch, rows in order."""
    return [tuple(torch.cat([state[layer][k] for state in states]) for k in range(len(states[0][layer])))
            for layer in range(len(states[0]))]


def select_rows(state: State, rows: Tensor) -> State:
    return [tuple(t.index_select(0, rows) for t in layer) for layer in state]


# -- beam search: search.py's encode / decode_step over the language model --------------------------------------

class PromptState(NamedTuple):
    layers: State
    pending: Tensor  # (rows, vocab): what follows each prompt, returned by the first step
    started: bool  # the first step has been taken

    def select(self, index: Tensor) -> PromptState:
        return PromptState(select_rows(self.layers, index), self.pending.index_select(0, index), self.started)


class Prompts(NamedTuple):
    initial_state: PromptState
    labels: Tensor | None  # (rows,)

    def select(self, index: Tensor) -> Prompts:
        labels = None if self.labels is None else self.labels.index_select(0, index)
        return Prompts(self.initial_state.select(index), labels)


class LMStep(NamedTuple):
    logits: Tensor  # (rows, vocab)
    state: PromptState
    attention: None = None


class PromptedLM:
    """A causal LM through the interface ``nlp_rnn.search`` searches: ``encode`` reads every prompt (a row of
    ``src``: ``<s>`` and the prompt's ids), and ``decode_step``'s first call returns what follows each prompt (the
    ``<s>`` that search feeds first is not read again); later calls read the chosen tokens."""

    def __init__(self, model: CausalLM, labels: Tensor | None = None) -> None:
        self.model = model
        self.labels = labels

    def encode(self, src: Tensor, src_lengths: Tensor) -> Prompts:
        states, pending = [], []
        for row, length in enumerate(src_lengths.tolist()):  # one call per prompt: no padding is read
            labels = None if self.labels is None else self.labels[row : row + 1]
            output = self.model(src[row : row + 1, :length], labels)
            states.append(output.state)
            pending.append(output.logits[0, -1])
        return Prompts(PromptState(cat_states(states), torch.stack(pending), False), self.labels)

    def decode_step(self, tokens: Tensor, state: PromptState, source: Prompts) -> LMStep:
        if not state.started:
            return LMStep(state.pending, PromptState(state.layers, state.pending, True))
        logits, layers = self.model.step(tokens, state.layers, source.labels)
        return LMStep(logits, PromptState(layers, state.pending, True))
