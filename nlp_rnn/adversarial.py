"""Adversarial and virtual adversarial training on normalised word embeddings (Miyato, Dai & Goodfellow 2017,
"Adversarial Training Methods for Semi-Supervised Text Classification").

Token ids are discrete, so the perturbations live in the embedding space: a text is its embedded sequence
``s`` (batch, len, emb), and a perturbation ``r`` of the same shape is added to it before the recurrent encoder.

- :class:`NormalisedEmbedding` (their eq. 1): with raw embeddings the model could make any perturbation of fixed
  norm insignificant by growing the embedding vectors; normalised by the frequency-weighted mean and variance of
  the whole table, it cannot.
- **AT**: ``r_adv = epsilon * g / ||g||_2``, ``g`` the gradient of the loss with respect to ``s``, held constant
  (no gradient flows through ``r_adv``); the extra loss is the cross-entropy at ``s + r_adv``.
- **VAT**: needs no label. ``d`` random, scaled to norm ``xi``; one power iteration ``g = grad_d
  KL(p(.|s) || p(.|s + d))``; ``r_vadv = epsilon * g / ||g||_2``; the extra loss is ``KL(p(.|s) || p(.|s + r_vadv))``
  with ``p(.|s)`` held constant. Computed on the labelled batch and, when the data has an unlabelled split, on an
  unlabelled batch drawn beside it (:class:`UnlabelledStream`); unlabelled rows enter nothing else.

Every norm is taken per example over its whole sequence (all real positions and embedding dimensions, as the
paper's ``||r|| <= epsilon`` over the concatenated embeddings), and every direction is zero at padding, so
padding neither receives a perturbation nor changes one (tested).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from nlp_rnn.batching import Batch, BucketBatchSampler, Collator, EncodedDataset
from nlp_rnn.config import AdversarialConfig, VirtualAdversarialConfig
from nlp_rnn.distributed import Context, shard

VARIANCE_FLOOR = 1e-6  # added to each dimension's variance, so a dimension every vector shares cannot divide by 0


class NormalisedEmbedding(nn.Embedding):
    """An embedding whose vectors are normalised by the table's token-frequency-weighted statistics (Miyato et al.
    2017, eq. 1), per dimension: ``v̄_k = (v_k - E(v)) / sqrt(Var(v))`` with ``E(v) = sum_j f_j v_j`` and
    ``Var(v) = sum_j f_j (v_j - E(v))^2``, ``f_j`` the frequency of token ``j``.

    ``token_counts`` (vocab,) int64 counts each token in the training split (:func:`count_tokens`); it is a
    buffer, saved with the weights, integer so that float16 packing keeps it exact. The statistics are computed
    from the current table at every call, so gradients reach every row through them, as in the paper.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 token_counts: Tensor | None = None, _weight: Tensor | None = None) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx, _weight=_weight)
        counts = (torch.ones(num_embeddings, dtype=torch.long) if token_counts is None  # replaced by saved weights
                  else torch.as_tensor(token_counts, dtype=torch.long).clone())
        if counts.shape != (num_embeddings,) or bool((counts < 0).any()) or int(counts.sum()) == 0:
            raise ValueError(f"token_counts must be {num_embeddings} non-negative counts, not all zero")
        self.register_buffer("token_counts", counts)
        self._statistics_cache: tuple | None = None  # (the table's version, its statistics): _constant_statistics

    @classmethod
    def wrapping(cls, embedding: nn.Embedding, token_counts: Tensor | None = None) -> NormalisedEmbedding:
        """``embedding``'s table, normalised (the same weights: nothing new is drawn from the RNG)."""
        return cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, token_counts,
                   _weight=embedding.weight.detach())

    def statistics(self) -> tuple[Tensor, Tensor]:
        """The frequency-weighted mean (emb,) and standard deviation (emb,) of the table. Elementwise products and
        sums, not a matrix product, so bf16 autocast leaves them in float32."""
        frequencies = (self.token_counts.double() / self.token_counts.sum()).to(self.weight.dtype).unsqueeze(1)
        mean = (frequencies * self.weight).sum(0)  # (emb,)
        variance = (frequencies * (self.weight - mean).square()).sum(0)  # (emb,)
        return mean, (variance + VARIANCE_FLOOR).sqrt()

    def forward(self, input_ids: Tensor) -> Tensor:
        needs_graph = torch.is_grad_enabled() and self.weight.requires_grad
        mean, std = self.statistics() if needs_graph else self._constant_statistics()
        return (super().forward(input_ids) - mean) / std  # (batch, len, emb)

    def _constant_statistics(self) -> tuple[Tensor, Tensor]:
        """:meth:`statistics` where no gradient needs them (prediction, evaluation, a frozen table), computed once
        per version of the table: a pass over all of it costs more than the rest of a short review's forward."""
        key = (self.weight.data_ptr(), self.weight._version, self.weight.dtype, self.token_counts.data_ptr(),
               self.token_counts._version)
        if self._statistics_cache is None or self._statistics_cache[0] != key:
            with torch.no_grad():
                self._statistics_cache = (key, self.statistics())
        return self._statistics_cache[1]


def count_tokens(rows: Sequence[Sequence[int]], vocab_size: int) -> Tensor:
    """(vocab_size,) int64: how often each id occurs in ``rows``, an encoded split's id column (its Arrow chunks,
    when it has them, are counted whole, without a Python pass over the rows)."""
    chunks = getattr(rows, "chunks", None)
    if chunks is not None:
        flat = [chunk.flatten().to_numpy().astype(np.int64) for chunk in chunks]
    else:
        flat = [np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)]
    counts = np.zeros(vocab_size, np.int64)
    for ids in flat:
        counts += np.bincount(ids, minlength=vocab_size)[:vocab_size]
    return torch.from_numpy(counts)


def scale_to_norm(direction: Tensor, mask: Tensor, norm: float) -> Tensor:
    """``direction`` (batch, len, emb), zeroed where ``mask`` (batch, len) is False, scaled so each example's L2 norm
    over its whole sequence is ``norm``; an example whose direction is zero stays zero. At least float32.

    Divided by its largest magnitude first, so a tiny gradient does not underflow when squared: each nonzero row
    then has a norm >= 1 before the last division."""
    dtype = torch.promote_types(direction.dtype, torch.float32)
    direction = direction.to(dtype) * mask.unsqueeze(-1)
    largest = direction.abs().amax(dim=(1, 2), keepdim=True)  # (batch, 1, 1)
    direction = torch.where(largest > 0, direction / largest.clamp(min=torch.finfo(dtype).tiny), 0.0)
    length = direction.square().sum(dim=(1, 2), keepdim=True).sqrt()  # (batch, 1, 1), 0 or >= 1
    return norm * direction / length.clamp(min=1.0)


def kl_divergence(clean_logits: Tensor, perturbed_logits: Tensor) -> Tensor:
    """KL(p || q) per example (batch,), p = softmax(clean_logits), q = softmax(perturbed_logits); float32 or wider."""
    dtype = torch.promote_types(clean_logits.dtype, torch.float32)
    log_p = clean_logits.to(dtype).log_softmax(-1)  # (batch, labels)
    log_q = perturbed_logits.to(dtype).log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


class PerturbableModel(Protocol):
    """What the perturbations need of a classifier (:class:`nlp_rnn.classifier.SentimentClassifier`), besides
    being an ``nn.Module`` (``train``/``eval``)."""

    def embed(self, input_ids: Tensor) -> Tensor: ...  # (batch, len) -> (batch, len, emb)

    def logits_from_embedded(self, embedded: Tensor, lengths: Tensor) -> Tensor: ...  # -> (batch, labels)

    def loss_from_logits(self, logits: Tensor, targets: Tensor) -> Tensor: ...  # the mean training loss


def adversarial_perturbation(embedded: Tensor, batch: Batch, clean_loss: Tensor, epsilon: float) -> Tensor:
    """``r_adv = epsilon * g / ||g||`` per example (batch, len, emb), ``g = d clean_loss / d embedded``, detached (a
    constant). ``embedded`` is the tensor ``clean_loss`` was computed from; its graph is kept for the caller's
    backward pass. The loss is a mean over the batch, but each row's ``g`` is normalised alone, so a row's
    perturbation does not depend on the rows beside it."""
    (gradient,) = torch.autograd.grad(clean_loss, embedded, retain_graph=True)
    return scale_to_norm(gradient, batch.mask, epsilon)


def adversarial_loss(model: PerturbableModel, embedded: Tensor, batch: Batch, clean_loss: Tensor,
                     epsilon: float) -> Tensor:
    """The loss at ``embedded + r_adv`` (:func:`adversarial_perturbation`); gradients reach the parameters, the
    embeddings included, through ``embedded``."""
    perturbation = adversarial_perturbation(embedded, batch, clean_loss, epsilon)  # (batch, len, emb)
    return model.loss_from_logits(model.logits_from_embedded(embedded + perturbation, batch.lengths), batch.labels)


@contextlib.contextmanager
def _exact(model: nn.Module, device_type: str) -> Iterator[None]:
    """Dropout off and float32 for the power iteration. It compares p(.|s) and p(.|s + d) for a step d of norm
    ``xi``: with dropout each pass draws its own masks, and that noise, not d, would make most of the difference;
    under bf16 autocast the small step would round away (p == q: a zero gradient). Only the dropout modules are
    put in eval mode: cuDNN's recurrent layers refuse a backward pass made in eval mode."""
    dropouts = [module for module in model.modules()
                if isinstance(module, nn.modules.dropout._DropoutNd) and module.training]
    for module in dropouts:
        module.eval()
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        for module in dropouts:
            module.train()


def virtual_adversarial_perturbation(model: PerturbableModel, embedded: Tensor, batch: Batch, epsilon: float,
                                     xi: float) -> Tensor:
    """``r_vadv`` (batch, len, emb), detached: one power iteration from a random direction ``d`` of norm ``xi``
    (drawn from torch's global RNG), ``g = d KL(p(.|s) || p(.|s + d)) / d d``, scaled to ``epsilon`` per example;
    both passes without dropout, in float32 (:func:`_exact`). At ``epsilon`` 0 the iteration is skipped:
    ``r_vadv`` is 0 whatever it finds."""
    perturbation = torch.zeros_like(embedded, dtype=torch.promote_types(embedded.dtype, torch.float32))
    if epsilon == 0:
        return perturbation
    start = scale_to_norm(torch.randn_like(perturbation), batch.mask, xi).requires_grad_()
    clean = embedded.detach().to(perturbation.dtype)
    with _exact(model, embedded.device.type):
        with torch.no_grad():
            clean_logits = model.logits_from_embedded(clean, batch.lengths)  # (batch, labels)
        divergence = kl_divergence(clean_logits, model.logits_from_embedded(clean + start, batch.lengths))
        (gradient,) = torch.autograd.grad(divergence.sum(), start)  # each row's own gradient: rows do not mix
    return scale_to_norm(gradient, batch.mask, epsilon)


def virtual_adversarial_kl(model: PerturbableModel, embedded: Tensor, batch: Batch, clean_logits: Tensor,
                           epsilon: float, xi: float) -> Tensor:
    """Per example (batch,): KL(p(.|s) || p(.|s + r_vadv)), ``p(.|s)`` from ``clean_logits`` (the training pass's,
    held constant; the perturbed pass draws its own dropout masks); the gradient
    reaches the parameters through the perturbed side only. Reads no label."""
    perturbation = virtual_adversarial_perturbation(model, embedded, batch, epsilon, xi)
    return kl_divergence(clean_logits.detach(), model.logits_from_embedded(embedded + perturbation, batch.lengths))


class PerturbedLosses(NamedTuple):
    total: Tensor  # what training minimises: classification + weight * adversarial + weight * virtual_adversarial
    classification: Tensor  # the clean loss
    adversarial: Tensor | None  # None when train.adversarial is off
    virtual_adversarial: Tensor | None  # mean KL over the labelled and unlabelled rows; None when off
    logits: Tensor  # (batch, labels) clean, for accuracy


def perturbed_losses(model: PerturbableModel, batch: Batch, adversarial: AdversarialConfig,
                     virtual: VirtualAdversarialConfig, unlabelled: Batch | None = None) -> PerturbedLosses:
    """One training step's losses. With both sections off, exactly the plain loss (the same operations as
    ``model(batch, targets)``). ``unlabelled``: rows read only by the VAT term."""
    embedded = model.embed(batch.input_ids)  # (batch, len, emb)
    if not embedded.requires_grad:  # frozen embeddings (train.freeze_embeddings): AT still needs d loss / d s
        embedded.requires_grad_()
    logits = model.logits_from_embedded(embedded, batch.lengths)  # (batch, labels)
    loss = model.loss_from_logits(logits, batch.labels)
    total, adversarial_term, virtual_term = loss, None, None
    if adversarial.on:
        adversarial_term = adversarial_loss(model, embedded, batch, loss, adversarial.epsilon)
        total = total + adversarial.weight * adversarial_term
    if virtual.on:
        rows = [virtual_adversarial_kl(model, embedded, batch, logits, virtual.epsilon, virtual.xi)]
        if unlabelled is not None:
            unlabelled_embedded = model.embed(unlabelled.input_ids)  # (unlabelled, len, emb)
            with torch.no_grad():
                unlabelled_logits = model.logits_from_embedded(unlabelled_embedded, unlabelled.lengths)
            rows.append(virtual_adversarial_kl(model, unlabelled_embedded, unlabelled, unlabelled_logits,
                                               virtual.epsilon, virtual.xi))
        virtual_term = torch.cat(rows).mean()
        total = total + virtual.weight * virtual_term
    return PerturbedLosses(total, loss, adversarial_term, virtual_term, logits)


class UnlabelledStream:
    """Unlabelled batches indexed by training step, endlessly: the batch of step ``s`` is a pure function of
    (seed, s) (length-bucketed, shuffled epochs of the unlabelled data, one after another), so a resumed run draws
    the same batches as an uninterrupted one. Under torchrun each rank takes its share of a global batch of
    ``world_size * batch_size`` rows, as the labelled batches are shared (nlp_rnn.distributed)."""

    def __init__(self, dataset: EncodedDataset, batch_size: int, seed: int, bucket_size: int, pad_id: int,
                 context: Context | None = None) -> None:
        self.dataset = dataset
        self.context = context or Context()
        self.sampler = BucketBatchSampler(dataset.lengths(), batch_size * self.context.world_size, shuffle=True,
                                          bucket_size=bucket_size, seed=seed)
        self.collate = Collator(pad_id)
        self._epoch: int | None = None
        self._batches: list[list[int]] = []
        self.batches_per_epoch = len(self.sampler.batches())

    def indices(self, step: int) -> list[int]:
        """This rank's rows of step ``step``'s batch."""
        epoch, position = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._batches = epoch, self.sampler.batches()
        return shard(self._batches[position], self.context)

    def batch(self, step: int, device: torch.device) -> Batch:
        return self.collate([self.dataset[i] for i in self.indices(step)]).to(device)


def normalise_embedding_(encoder: nn.Module, token_counts: Tensor | None) -> None:
    """Make ``encoder.embedding`` a :class:`NormalisedEmbedding` of the same table (in place)."""
    encoder.embedding = NormalisedEmbedding.wrapping(encoder.embedding, token_counts)

