"""The GRU encoder-decoder with attention: the shared recurrent encoder, a bridge, an attention decoder.

Decoding is a step function: ``encode(src, src_lengths) -> EncodedSource`` and
``decode_step(prev_tokens, state, source) -> DecoderStep(logits, state, attention)``. Training (with
teacher forcing) and search (``nlp_rnn.search``) use only these two calls, so :class:`TranslatorEnsemble`, which
answers them for several trained translators at once, searches with the same code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nlp_rnn.batching import PairBatch
from nlp_rnn.config import TranslatorConfig
from nlp_rnn.decoder import AttentionDecoder, DecoderState, DecoderStep, EncodedSource
from nlp_rnn.encoder import RecurrentEncoder
from nlp_rnn.ensembling import mixture_log_probs
from nlp_rnn.summary import Row, SummaryMixin, count_parameters, encoder_rows


class Translator(SummaryMixin, nn.Module):
    def __init__(self, config: TranslatorConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.pad_id = pad_id
        self.label_smoothing = label_smoothing
        self.fast_path = True  # decode a fully teacher-forced target with decoder.forward_all
        self.encoder = RecurrentEncoder(
            src_vocab_size,
            config.embedding_dim,
            config.hidden_size,
            cell=config.encoder_cell,
            num_layers=config.num_layers,
            bidirectional=True,
            dropout=config.dropout,
            embedding_dropout=config.embedding_dropout,
            pad_id=pad_id,
            packed=config.packed,
        )
        encoder_size = self.encoder.output_size  # 2 * hidden_size
        self.bridge = nn.Linear(encoder_size, config.decoder_layers * config.decoder_hidden_size)
        self.decoder = AttentionDecoder(
            tgt_vocab_size,
            config.embedding_dim,
            config.decoder_hidden_size,
            encoder_size,
            attention=config.attention,
            attention_size=config.attention_size,
            num_layers=config.decoder_layers,
            dropout=config.dropout,
            embedding_dropout=config.embedding_dropout,
            input_feeding=config.input_feeding,
            tie_embeddings=config.tie_embeddings,
            pad_id=pad_id,
        )

    def summary_rows(self) -> list[Row]:
        """Encoder, bridge and decoder rows for :meth:`summary`; a tied output layer counts only its bias."""
        decoder = self.decoder
        embedding, rnn = decoder.embedding, decoder.rnn
        tied = decoder.output.weight is embedding.weight
        return [
            *encoder_rows(self.encoder, "encoder."),
            (f"bridge (Linear {self.bridge.in_features}->{self.bridge.out_features}, tanh)",
             f"({rnn.num_layers}, batch, {rnn.hidden_size})", count_parameters(self.bridge)[0]),
            (f"decoder.embedding (Embedding {embedding.num_embeddings}x{embedding.embedding_dim})",
             f"(batch, tgt, {embedding.embedding_dim})", count_parameters(embedding)[0]),
            (f"decoder.rnn ({rnn.num_layers} x GRU {rnn.input_size}->{rnn.hidden_size})",
             f"(batch, tgt, {rnn.hidden_size})", count_parameters(rnn)[0]),
            (f"decoder.attention ({self.config.attention})", f"(batch, tgt, {self.encoder.output_size})",
             count_parameters(decoder.attention)[0]),
            (f"decoder.combine (Linear {decoder.combine.in_features}->{decoder.combine.out_features}, tanh)",
             f"(batch, tgt, {decoder.output_size})", count_parameters(decoder.combine)[0]),
            (f"decoder.output (Linear {decoder.output.in_features}->{decoder.output.out_features}"
             f"{', tied to decoder.embedding' if tied else ''})", f"(batch, tgt, {decoder.output.out_features})",
             decoder.output.bias.numel() if tied else count_parameters(decoder.output)[0]),
        ]

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncodedSource:
        """src (batch, src_len), src_lengths (batch,) -> EncodedSource with the decoder's initial state."""
        encoded = self.encoder(src, src_lengths)
        top = encoded.final_hidden[-2:]  # (2, batch, hidden): the top layer's forward and backward states
        bridged = torch.tanh(self.bridge(torch.cat(list(top), dim=-1)))  # (batch, layers * decoder_hidden)
        hidden = bridged.view(src.size(0), self.config.decoder_layers, -1).transpose(0, 1).contiguous()
        attentional = hidden.new_zeros(src.size(0), self.decoder.output_size)  # (batch, output_size)
        keys = self.decoder.attention.project_keys(encoded.outputs)  # (batch, src_len, *)
        return EncodedSource(encoded.outputs, keys, encoded.mask, DecoderState(hidden, attentional))

    def decode_step(self, prev_tokens: Tensor, state: DecoderState, source: EncodedSource) -> DecoderStep:
        """prev_tokens (batch,) -> logits (batch, vocab), the next state, attention (batch, src_len)."""
        return self.decoder.step(prev_tokens, state, source)

    def teacher_forced_logits(self, tgt_in: Tensor, source: EncodedSource, teacher_forcing_ratio: float = 1.0
                              ) -> Tensor:
        """Logits (batch, tgt_len, vocab) for every target position.

        Each step, each example is fed its gold previous token with probability ``teacher_forcing_ratio``
        and its own previous prediction otherwise (scheduled sampling, Bengio et al. 2015).
        """
        if teacher_forcing_ratio >= 1.0 and self.fast_path:
            return self.decoder.forward_all(tgt_in, source)[0]
        state, tokens, logits = source.initial_state, tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            step = self.decode_step(tokens, state, source)
            logits.append(step.logits)
            state = step.state
            if t + 1 < tgt_in.size(1):
                gold = tgt_in[:, t + 1]
                if teacher_forcing_ratio >= 1.0:
                    tokens = gold
                else:
                    use_gold = torch.rand(gold.shape, device=gold.device) < teacher_forcing_ratio  # (batch,)
                    tokens = torch.where(use_gold, gold, step.logits.argmax(-1))
        return torch.stack(logits, dim=1)  # (batch, tgt_len, vocab)

    def forward(self, batch: PairBatch, targets: Tensor | None = None, teacher_forcing_ratio: float = 1.0
                ) -> tuple[Tensor, Tensor | None]:
        """-> logits (batch, tgt_len, vocab) over ``batch.tgt_in`` and, given targets (batch, tgt_len)
        (``batch.tgt_out``), the cross-entropy per non-pad target token (with label smoothing)."""
        source = self.encode(batch.src, batch.src_lengths)
        logits = self.teacher_forced_logits(batch.tgt_in, source, teacher_forcing_ratio)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=self.pad_id,
                               label_smoothing=self.label_smoothing)
        return logits, loss


class EnsembleState(NamedTuple):
    """Every member's own decoder state."""

    members: tuple[DecoderState, ...]

    def select(self, index: Tensor) -> EnsembleState:
        return EnsembleState(tuple(state.select(index) for state in self.members))


class EnsembleSource(NamedTuple):
    """Every member's own encoding of the same source batch."""

    members: tuple[EncodedSource, ...]

    @property
    def initial_state(self) -> EnsembleState:
        return EnsembleState(tuple(source.initial_state for source in self.members))

    def select(self, index: Tensor) -> EnsembleSource:
        return EnsembleSource(tuple(source.select(index) for source in self.members))


class TranslatorEnsemble(nn.Module):
    """Trained translators with one source and one target vocabulary read as one model (``--ensemble``).

    Each member encodes the source and steps its decoder with its own state; a step's distribution is the mean of
    the members' next-token probabilities, returned as its log (in place of logits: already normalised, so
    search's ``log_softmax`` leaves it as it is). The mean of probabilities (a mixture, as fairseq's
    ``EnsembleModel`` combines its members and as the tagging ensemble does) rather than the mean of
    log-probabilities (OpenNMT-py's, a renormalised geometric mean): the step scores stay log-probabilities of
    one distribution, so beam scores and n-best scores read as a single model's do, and a token one member is
    sure of is not vetoed by another member's near-zero probability. The attention returned is the members' mean.
    """

    def __init__(self, members: list[Translator]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleSource:
        return EnsembleSource(tuple(member.encode(src, src_lengths) for member in self.members))

    def decode_step(self, prev_tokens: Tensor, state: EnsembleState, source: EnsembleSource) -> DecoderStep:
        """prev_tokens (batch,) -> log of the members' mean next-token probabilities (batch, vocab), their states,
        their mean attention (batch, src_len)."""
        steps = [member.decode_step(prev_tokens, own_state, own_source)
                 for member, own_state, own_source in zip(self.members, state.members, source.members, strict=True)]
        log_probs = mixture_log_probs([step.logits for step in steps])  # (batch, vocab)
        attention = torch.stack([step.attention.float() for step in steps]).mean(0)  # (batch, src_len)
        return DecoderStep(log_probs, EnsembleState(tuple(step.state for step in steps)), attention)

    def forward(self, batch: PairBatch, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced -> log of the members' mean probabilities (batch, tgt_len, vocab) over ``batch.tgt_in``
        and, given targets (batch, tgt_len), the negative log-likelihood per non-pad target token."""
        log_probs = mixture_log_probs([member(batch)[0] for member in self.members])
        if targets is None:
            return log_probs, None
        pad_id = self.members[0].pad_id
        return log_probs, F.nll_loss(log_probs.flatten(0, 1), targets.flatten(), ignore_index=pad_id)
