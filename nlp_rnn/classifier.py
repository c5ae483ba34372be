"""The sentiment (text) classifier: recurrent encoder + masked pooling + dropout + linear head; and an ensemble of
such classifiers read as one model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nlp_rnn.adversarial import normalise_embedding_
from nlp_rnn.batching import Batch
from nlp_rnn.config import ModelConfig
from nlp_rnn.encoder import RecurrentEncoder
from nlp_rnn.ensembling import mixture_log_probs
from nlp_rnn.initialisation import initialise_
from nlp_rnn.pooling import Pooling
from nlp_rnn.summary import Row, SummaryMixin, count_parameters, encoder_rows


class RowBatchNorm(nn.BatchNorm1d):
    """Batch normalisation over (batch, features) that accepts a training batch of one row: with no batch statistics
    to take, that row is normalised by the running ones (which it leaves as they are)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class PoolingHead(nn.Sequential):
    """ULMFiT's classifier head over the pooled features (Howard & Ruder 2018, section 3.3; fastai's
    ``PoolingLinearClassifier`` with one hidden layer): batch norm -> dropout p -> linear (hidden) -> ReLU ->
    batch norm -> dropout p/4 -> linear (labels). The batch norm rescales pooled features that barely vary across
    texts (a pretrained encoder's max-pooled states sit near 1), so a head trained alone on them (gradual
    unfreezing's first epoch) can learn; fastai's second dropout is 0.1 beside a first of 0.4, hence p/4."""

    def __init__(self, in_features: int, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__(RowBatchNorm(in_features), nn.Dropout(dropout), nn.Linear(in_features, hidden_size),
                         nn.ReLU(), RowBatchNorm(hidden_size), nn.Dropout(dropout / 4),
                         nn.Linear(hidden_size, num_labels))

    def forward(self, pooled: Tensor) -> Tensor:
        """(batch, features) -> (batch, labels); in float32 (batch norm's statistics under bf16 autocast)."""
        with torch.autocast(pooled.device.type, enabled=False):
            return super().forward(pooled.float())


def head_description(head: nn.Module) -> str:
    """"Linear 384->2", or "BatchNorm, Linear 384->50, ReLU, BatchNorm, Linear 50->2" for :class:`PoolingHead`."""
    parts = []
    for layer in (head if isinstance(head, PoolingHead) else [head]):
        if isinstance(layer, nn.Linear):
            parts.append(f"Linear {layer.in_features}->{layer.out_features}")
        elif isinstance(layer, nn.BatchNorm1d):
            parts.append("BatchNorm")
        elif isinstance(layer, nn.ReLU):
            parts.append("ReLU")
    return ", ".join(parts)


class SentimentClassifier(SummaryMixin, nn.Module):
    """``normalised_embeddings``: the encoder reads frequency-normalised embeddings (Miyato et al. 2017, eq. 1;
    :class:`nlp_rnn.adversarial.NormalisedEmbedding`), as adversarial training wants; ``token_counts`` (vocab,) are
    the training split's (None when the saved weights will bring them)."""

    def __init__(self, config: ModelConfig, vocab_size: int, num_labels: int, pad_id: int = 0,
                 label_smoothing: float = 0.0, normalised_embeddings: bool = False,
                 token_counts: Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.label_smoothing = label_smoothing
        self.encoder = RecurrentEncoder.from_config(config, vocab_size, pad_id)
        if normalised_embeddings:
            normalise_embedding_(self.encoder, token_counts)
        self.pooling = Pooling(config.pooling, self.encoder.output_size, self.encoder.num_directions)
        if config.head_hidden_size:  # dropout inside, after its first batch norm
            self.dropout: nn.Module = nn.Identity()
            self.head: nn.Module = PoolingHead(self.pooling.output_size, config.head_hidden_size, num_labels,
                                               config.output_dropout)
        else:
            self.dropout = nn.Dropout(config.output_dropout)
            self.head = nn.Linear(self.pooling.output_size, num_labels)
        initialise_(self, config.init)

    def summary_rows(self) -> list[Row]:
        """Encoder, pooling, dropout and head rows for :meth:`summary`."""
        size = self.pooling.output_size
        return [*encoder_rows(self.encoder),
                (f"pooling ({self.pooling.kind})", f"(batch, {size})", count_parameters(self.pooling)[0]),
                ("dropout", f"(batch, {size})", 0),
                (f"head ({head_description(self.head)})", f"(batch, {self.num_labels})",
                 count_parameters(self.head)[0])]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The encoder's groups (embedding, each layer), then pooling and head together: ULMFiT's groups, bottom
        to top (Howard & Ruder 2018 unfreeze and scale rates by these)."""
        return [*self.encoder.layer_groups(), [*self.pooling.parameters(), *self.head.parameters()]]

    def pool(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """Sequence features (batch, features) and, for attention pooling, weights (batch, len)."""
        encoded = self.encoder(batch.input_ids, batch.lengths)
        return self.pooling(encoded)

    def logits_and_weights(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """Logits (batch, num_labels) and, for attention pooling, its weights (batch, len): what explains a
        prediction. Call in eval mode."""
        pooled, weights = self.pool(batch)
        return self.head(pooled), weights

    def forward(self, batch: Batch, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> logits (batch, num_labels) and, given targets (batch,), the mean cross-entropy."""
        logits = self.logits_from_embedded(self.embed(batch.input_ids), batch.lengths)  # (batch, num_labels)
        if targets is None:
            return logits, None
        return logits, self.loss_from_logits(logits, targets)

    # The three steps of forward, apart: adversarial training perturbs the embedded sequence between the first two
    # (nlp_rnn.adversarial); gradient x input differentiates with respect to it.

    def embed(self, input_ids: Tensor) -> Tensor:
        """(batch, len) ids -> (batch, len, emb) embeddings (normalised when the model was built so)."""
        return self.encoder.embedding(input_ids)

    def logits_from_embedded(self, embedded: Tensor, lengths: Tensor) -> Tensor:
        """(batch, len, emb) embeddings and (batch,) lengths -> (batch, num_labels) logits."""
        pooled, _ = self.pooling(self.encoder.encode_embedded(embedded, lengths))
        return self.head(self.dropout(pooled))

    def loss_from_logits(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The mean cross-entropy (label smoothing as configured), in float32 at least."""
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def gradient_x_input(self, batch: Batch, labels: Tensor) -> Tensor:
        """Per-token attribution to each row's ``labels`` (batch,) logit: gradient x input, summed over the
        embedding (Shrikumar et al. 2016). (batch, len), zero at padding; positive pushes toward the label.

        Gradients are taken with ``torch.autograd.grad`` only for the embeddings, so no parameter's ``.grad``
        is written and concurrent calls on one model are safe. Call in eval mode.
        """
        with torch.enable_grad():
            embedded = self.embed(batch.input_ids).detach().requires_grad_()
            logits = self.logits_from_embedded(embedded, batch.lengths)  # (batch, num_labels)
            chosen = logits.gather(1, labels.view(-1, 1)).sum()
            (gradient,) = torch.autograd.grad(chosen, embedded)
        return (gradient * embedded).sum(-1).detach() * batch.mask  # (batch, len)


class ClassifierEnsemble(nn.Module):
    """Trained classifiers of one label set, as one model (``--ensemble``).

    Its "logits" are the log of the mean of the members' calibrated probabilities, softmax(logits_k / T_k) with
    each member's own temperature (a mixture, as the translation and tagging ensembles combine their members), so
    a softmax of them is that mean and the ensemble needs no temperature of its own. Forward and backward models
    (ULMFiT's ensemble), several seeds, or differently regularised runs all combine this way; ``views`` lets
    members that tokenize differently (a model trained from scratch beside one fine-tuned from a language model)
    each read the batch's view encoded their way (:attr:`nlp_rnn.batching.Batch.views`)."""

    def __init__(self, members: list[SentimentClassifier], temperatures: list[float],
                 views: list[int] | None = None) -> None:
        super().__init__()
        views = list(views) if views is not None else [0] * len(members)
        if not len(members) == len(temperatures) == len(views):
            raise ValueError("one temperature and one view per member")
        self.members = nn.ModuleList(members)
        self.temperatures = list(temperatures)
        self.views = views  # member k reads the batch's ids (0) or batch.views[k - 1] (another tokenizer's)
        self.num_labels = members[0].num_labels

    def _read(self, batch: Batch, member: int) -> Batch:
        view = self.views[member]
        if view and len(batch.views) < view:
            raise ValueError(f"member {member} reads view {view}; the batch has {len(batch.views)} views")
        return batch.views[view - 1] if view else batch

    def forward(self, batch: Batch, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> log of the members' mean probabilities (batch, num_labels) and, given targets, their mean NLL."""
        log_probs = mixture_log_probs([member(self._read(batch, k))[0] for k, member in enumerate(self.members)],
                                      self.temperatures)
        if targets is None:
            return log_probs, None
        return log_probs, F.nll_loss(log_probs, targets)

    def logits_and_weights(self, batch: Batch) -> tuple[Tensor, None]:
        """The ensemble's log-probabilities; no attention weights (members may pool differently), so a prediction
        is explained by gradient x input."""
        return self(batch)[0], None

    def gradient_x_input(self, batch: Batch, labels: Tensor, projections: list[Tensor] | None = None) -> Tensor:
        """The members' mean gradient x input toward ``labels`` (each on its own embeddings) over the batch's
        tokens, (batch, len). A member reading view v > 0 scores that view's tokens; ``projections[v - 1]``
        (batch, len_v, len) carries its scores onto the batch's tokens."""
        scores = []
        for k, member in enumerate(self.members):
            own = member.gradient_x_input(self._read(batch, k), labels)  # (batch, len of its view)
            if self.views[k]:
                if projections is None or len(projections) < self.views[k]:
                    raise ValueError("members that read another view need its projection onto the batch's tokens")
                own = torch.bmm(own.unsqueeze(1), projections[self.views[k] - 1]).squeeze(1)
            scores.append(own)
        return torch.stack(scores).mean(0)
