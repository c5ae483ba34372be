"""The GRU decoder with attention: one step at a time, or every step at once under full teacher forcing.

Two arrangements of the same parts, picked by the attention variant:

- ``bahdanau`` (Bahdanau et al. 2015): attend with the previous state s_{t-1}, feed the context to the GRU:
  c_t = attn(s_{t-1}, H); s_t = GRU([e(y_{t-1}); c_t], s_{t-1}); o_t = tanh(W [s_t; c_t; e(y_{t-1})]).
- ``luong_*`` (Luong et al. 2015): step the GRU first, attend with the new state:
  s_t = GRU([e(y_{t-1}); o_{t-1} if input feeding], s_{t-1}); c_t = attn(s_t, H); o_t = tanh(W_c [s_t; c_t]).

Both predict p(y_t) = softmax(W_o dropout(o_t)). Under full teacher forcing (``forward_all``) only the
recurrence loops: the embeddings and the output layer run once over the whole target. Without input feeding
the Luong GRU never waits for attention, so the GRU and the attention also run as one call each. Both give
the same numbers as the step loop.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from nlp_rnn.attention import make_attention


class DecoderState(NamedTuple):
    hidden: Tensor  # (layers, batch, hidden)
    attentional: Tensor  # (batch, output_size): o_{t-1}, fed back under input feeding

    def select(self, index: Tensor) -> DecoderState:
        """Keep / reorder / repeat batch rows (beam search)."""
        return DecoderState(self.hidden.index_select(1, index), self.attentional.index_select(0, index))


class EncodedSource(NamedTuple):
    values: Tensor  # (batch, src_len, encoder_size): encoder outputs, zero at padding
    keys: Tensor  # (batch, src_len, *): the attention's projection of values, computed once
    mask: Tensor  # (batch, src_len) bool, True at real tokens
    initial_state: DecoderState

    def select(self, index: Tensor) -> EncodedSource:
        return EncodedSource(self.values.index_select(0, index), self.keys.index_select(0, index),
                             self.mask.index_select(0, index), self.initial_state.select(index))


class DecoderStep(NamedTuple):
    logits: Tensor  # (batch, vocab)
    state: DecoderState
    attention: Tensor  # (batch, src_len)


class AttentionDecoder(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, encoder_size: int,
                 attention: str = "bahdanau", attention_size: int = 256, num_layers: int = 1,
                 dropout: float = 0.0, embedding_dropout: float = 0.0, input_feeding: bool = False,
                 tie_embeddings: bool = False, pad_id: int = 0) -> None:
        super().__init__()
        self.attend_first = attention == "bahdanau"
        self.input_feeding = input_feeding
        self.output_size = embedding_dim if tie_embeddings else hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        rnn_input = embedding_dim + (encoder_size if self.attend_first else 0)
        rnn_input += self.output_size if input_feeding else 0
        self.rnn = nn.GRU(rnn_input, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.attention = make_attention(attention, hidden_size, encoder_size, attention_size)
        combined = hidden_size + encoder_size + (embedding_dim if self.attend_first else 0)
        self.combine = nn.Linear(combined, self.output_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.output_size, vocab_size)
        if tie_embeddings:
            self.output.weight = self.embedding.weight  # (vocab, embedding_dim), one matrix

    @property
    def parallel(self) -> bool:
        """Whether a teacher-forced target can be decoded without a per-step loop."""
        return not self.attend_first and not self.input_feeding

    def _advance(self, embedded: Tensor, state: DecoderState, source: EncodedSource
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The recurrent part of one step: embedded (batch, emb) -> the GRU's top output s_t (batch, hidden),
        its hidden state (layers, batch, hidden), the context c_t (batch, encoder_size) and the attention
        weights (batch, src_len)."""
        rnn_inputs = [embedded]
        if self.attend_first:
            context, weights = self.attention(state.hidden[-1], source.keys, source.values, source.mask)
            rnn_inputs.append(context)  # (batch, encoder_size)
        if self.input_feeding:
            rnn_inputs.append(state.attentional)
        output, hidden = self.rnn(torch.cat(rnn_inputs, dim=-1).unsqueeze(1), state.hidden)
        output = output.squeeze(1)  # (batch, hidden)
        if not self.attend_first:
            context, weights = self.attention(output, source.keys, source.values, source.mask)
        return output, hidden, context, weights

    def _attentional(self, output: Tensor, context: Tensor, embedded: Tensor) -> Tensor:
        """o_t = tanh(W [s_t; c_t (; e(y_{t-1}) for bahdanau)]), for one step (batch, *) or all (batch, time, *)."""
        features = [output, context, embedded] if self.attend_first else [output, context]
        return torch.tanh(self.combine(torch.cat(features, dim=-1)))  # (..., output_size)

    def step(self, prev_tokens: Tensor, state: DecoderState, source: EncodedSource) -> DecoderStep:
        """prev_tokens (batch,) -> DecoderStep with logits (batch, vocab)."""
        embedded = self.embedding_dropout(self.embedding(prev_tokens))  # (batch, emb)
        output, hidden, context, weights = self._advance(embedded, state, source)
        attentional = self._attentional(output, context, embedded)  # (batch, output_size)
        logits = self.output(self.dropout(attentional))  # (batch, vocab)
        return DecoderStep(logits, DecoderState(hidden, attentional), weights)

    def forward_all(self, tgt_in: Tensor, source: EncodedSource) -> tuple[Tensor, Tensor]:
        """Every step of a fully teacher-forced target, with the same numbers as calling ``step`` in a loop.

        Only the recurrence runs step by step, and only where it must: the embeddings and the output layer
        (and, unless the attentional vector is fed back, the combination) run once over all steps as large
        matrix products. Without a feedback path (Luong without input feeding) the GRU and the attention
        also run as one call each.

        tgt_in (batch, tgt_len) -> logits (batch, tgt_len, vocab), attention (batch, tgt_len, src_len)
        """
        embedded = self.embedding_dropout(self.embedding(tgt_in))  # (batch, tgt_len, emb)
        if self.parallel:
            outputs, _ = self.rnn(embedded, source.initial_state.hidden)  # (batch, tgt_len, hidden)
            context, weights = self.attention(outputs, source.keys, source.values, source.mask)
            attentional = self._attentional(outputs, context, embedded)  # (batch, tgt_len, output_size)
        else:
            state = source.initial_state
            outputs, contexts, step_weights, fed = [], [], [], []  # one (batch, *) tensor per step
            for t in range(tgt_in.size(1)):
                output, hidden, context, weights = self._advance(embedded[:, t], state, source)
                if self.input_feeding:
                    fed.append(self._attentional(output, context, embedded[:, t]))
                state = DecoderState(hidden, fed[-1] if self.input_feeding else state.attentional)
                outputs.append(output)
                contexts.append(context)
                step_weights.append(weights)
            weights = torch.stack(step_weights, dim=1)  # (batch, tgt_len, src_len)
            if self.input_feeding:
                attentional = torch.stack(fed, dim=1)  # (batch, tgt_len, output_size)
            else:
                attentional = self._attentional(torch.stack(outputs, dim=1), torch.stack(contexts, dim=1), embedded)
        return self.output(self.dropout(attentional)), weights
