"""A bidirectional language model over the classifier's recurrent encoder, for pretraining it on raw text.

As in ELMo's biLM (Peters et al. 2018), the forward direction predicts each next token from the tokens before
it and the backward direction each previous token from the tokens after it, through one shared softmax. The
encoder is the very module the classifier builds (same names, same shapes), so ``train.init_from`` copies
it into a classifier: ULMFiT's recipe (Howard & Ruder 2018), pretraining on in-domain text before the
supervised task. Only one bidirectional layer is allowed (the config says why).

The output layer is an adaptive softmax (Grave et al. 2017; ``nn.AdaptiveLogSoftmaxWithLoss``): frequent
words get full-size scores, rare ones smaller clusters, so a 25k vocabulary costs a fraction of a full softmax
on the CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nlp_rnn.batching import Batch
from nlp_rnn.config import ModelConfig
from nlp_rnn.dropout import LockedDropout
from nlp_rnn.encoder import RecurrentEncoder
from nlp_rnn.initialisation import initialise_
from nlp_rnn.summary import Row, SummaryMixin, count_parameters, encoder_rows


def adaptive_cutoffs(vocab_size: int) -> list[int]:
    """Cluster boundaries: the 2,000 most frequent ids, the next 8,000, the rest (tiny vocabularies: halves).
    Trained tokenizers number words by frequency, specials first, as adaptive softmax wants."""
    cutoffs = [c for c in (2000, 10000) if c < vocab_size - 1]
    return cutoffs or [max(1, vocab_size // 2)]


class BidirectionalLM(SummaryMixin, nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, pad_id: int = 0) -> None:
        super().__init__()
        if config.bidirectional and config.num_layers > 1:
            raise ValueError("a bidirectional language model has one layer")
        self.config = config
        self.encoder = RecurrentEncoder.from_config(config, vocab_size, pad_id)
        # on the states (batch, seq, dirs * hidden): AWD-LSTM's locked output dropout when model.locked_dropout
        self.dropout = (LockedDropout if config.locked_dropout else nn.Dropout)(config.output_dropout)
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(config.hidden_size, vocab_size, adaptive_cutoffs(vocab_size),
                                                     div_value=4.0)
        initialise_(self, config.init)

    def summary_rows(self) -> list[Row]:
        """Encoder, dropout and adaptive-softmax rows for :meth:`summary`; one row scores both directions."""
        softmax = self.softmax
        return [*encoder_rows(self.encoder),
                ("dropout", f"(batch, seq, {self.encoder.output_size})", 0),
                (f"softmax (AdaptiveLogSoftmax {softmax.in_features}->{softmax.n_classes}, "
                 f"cutoffs {softmax.cutoffs[:-1]})", "(predictions,)", count_parameters(softmax)[0])]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The encoder's groups (embedding, each layer), then the softmax: ULMFiT's groups, bottom to top."""
        return [*self.encoder.layer_groups(), list(self.softmax.parameters())]

    def states_and_targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Every prediction the batch holds: hidden states (n, hidden) and the token each predicts (n,).

        The forward direction's state at position t predicts token t + 1; the backward direction's state at
        t + 1 (which has read tokens t + 1 .. end) predicts token t. Padding predicts nothing.
        """
        outputs = self.dropout(self.encoder(batch.input_ids, batch.lengths).outputs)  # (batch, len, dirs * hidden)
        hidden = self.encoder.hidden_size
        real = batch.mask[:, 1:]  # (batch, len - 1): both t and t + 1 are tokens
        states = [outputs[:, :-1, :hidden][real]]
        targets = [batch.input_ids[:, 1:][real]]
        if self.encoder.num_directions == 2:
            states.append(outputs[:, 1:, hidden:][real])
            targets.append(batch.input_ids[:, :-1][real])
        return torch.cat(states), torch.cat(targets)

    def forward(self, batch: Batch, targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """-> log-probability of every predicted token (n,) and their mean negative log-likelihood.

        A language model's targets are its own input shifted, so ``targets`` is not used."""
        states, wanted = self.states_and_targets(batch)
        result = self.softmax(states, wanted)
        return result.output, result.loss

