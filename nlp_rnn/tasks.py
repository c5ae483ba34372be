"""What differs between the model families, behind one interface the Trainer uses.

A task loads and encodes its data, trains (or reuses) its tokenizers, builds its model, runs one training
forward pass, scores the validation split and writes its extra files. ``make_task(config)`` picks one by
``config.task``: :class:`ClassificationTask` (sentiment), :class:`TranslationTask` (encoder-decoder) or
:class:`LanguageModelTask` (pretraining the classifier's encoder on raw text).
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import BucketBatchSampler, Collator, EncodedDataset, PairCollator, PairDataset
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import Config, TrainConfig
from nlp_rnn.data import columns, load_splits
from nlp_rnn.evaluation import autocast, evaluate_classifier, score_translations
from nlp_rnn.language_model import BidirectionalLM
from nlp_rnn.search import decode_dataset
from nlp_rnn.tokenization import BOS_ID, EOS_ID, PAD_ID, decode_ids, encode_texts, train_tokenizer
from nlp_rnn.translator import Translator

log = logging.getLogger(__name__)


class ClassificationTask:
    """Text -> label: the sentiment classifier."""

    logged = ("loss", "accuracy", "macro_f1")  # validation scores written to log.jsonl each epoch
    kept = ("loss", "accuracy", "macro_f1", "per_class", "confusion_matrix")  # and to metrics.json

    def __init__(self, config: Config, tokenizers: list[Tokenizer] | None = None) -> None:
        self.config = config
        data = config.data
        splits = load_splits(data, "classification")
        self.label_names = splits.label_names
        self.tokenizer = tokenizers[0] if tokenizers else train_tokenizer(splits.train[data.text_column],
                                                                          config.tokenizer)
        self.tokenizers = [self.tokenizer]
        self.train = encode_classification(splits.train, self.tokenizer, config)
        self.validation = encode_classification(splits.validation, self.tokenizer, config)
        self.collate = Collator(PAD_ID)

    def sampler(self, train: TrainConfig) -> BucketBatchSampler:
        return BucketBatchSampler(self.train.lengths(), train.batch_size, train.max_tokens, shuffle=True,
                                  bucket_size=train.bucket_size, seed=train.seed)

    def build_model(self) -> nn.Module:
        return SentimentClassifier(self.config.model, self.tokenizer.get_vocab_size(), len(self.label_names),
                                   PAD_ID, self.config.train.label_smoothing)

    def metadata(self) -> dict[str, Any]:
        return {"task": "classification", "labels": self.label_names, "vocab_size": self.tokenizer.get_vocab_size()}

    def forward(self, model: nn.Module, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        """Training loss, correct predictions and how many were made."""
        logits, loss = model(batch, targets=batch.labels)
        return loss, int((logits.argmax(-1) == batch.labels).sum()), len(batch.labels)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        train = self.config.train
        return evaluate_classifier(model, self.validation, self.label_names, train.eval_batch_size, device,
                                   train.amp)

    def after_training(self, model: nn.Module, run_dir: Path, device: torch.device) -> None:
        pass


def encode_classification(split, tokenizer: Tokenizer, config: Config) -> EncodedDataset:
    data = config.data
    ids = encode_texts(tokenizer, split[data.text_column], data.max_length, data.truncation, data.head_fraction)
    keep = [i for i, row in enumerate(ids) if row]  # texts that normalise to nothing (e.g. only "<br />")
    return EncodedDataset([ids[i] for i in keep], [split[data.label_column][i] for i in keep])


def encode_pairs(src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, sources: list[str], targets: list[str],
                 max_length: int, drop_long: bool) -> tuple[PairDataset, list[int]]:
    """Encode parallel texts; targets become ``<s> ... </s>``. With ``drop_long``, pairs with a side longer
    than ``max_length`` tokens are left out (training), else cut (evaluation). Returns the kept row indices."""
    limit = 10**9 if drop_long else max_length
    src = encode_texts(src_tokenizer, sources, limit, "head")
    tgt = encode_texts(tgt_tokenizer, targets, limit, "head")
    keep = [i for i, (s, t) in enumerate(zip(src, tgt, strict=True))
            if s and t and (not drop_long or (len(s) <= max_length and len(t) <= max_length))]
    if drop_long and len(keep) < len(src):
        log.info("left out %d of %d training pairs longer than %d tokens (or empty)", len(src) - len(keep),
                 len(src), max_length)
    return PairDataset([src[i] + [EOS_ID] for i in keep], [[BOS_ID, *tgt[i], EOS_ID] for i in keep]), keep


def _linear_teacher_forcing(train: TrainConfig, step: int, total_steps: int) -> float:
    progress = min(1.0, step / max(1, total_steps))
    return train.teacher_forcing + (train.teacher_forcing_final - train.teacher_forcing) * progress


def _inverse_sigmoid_teacher_forcing(train: TrainConfig, step: int, total_steps: int) -> float:
    k = train.teacher_forcing_k
    return train.teacher_forcing * k / (k + math.exp(min(step / k, 700.0)))


# Keyed by exactly config.choices(TrainConfig, "teacher_forcing_schedule") (tests/test_translator.py checks).
TEACHER_FORCING_SCHEDULES = {
    "constant": lambda train, step, total_steps: train.teacher_forcing,
    "linear": _linear_teacher_forcing,
    "inverse_sigmoid": _inverse_sigmoid_teacher_forcing,
}


def teacher_forcing_ratio(train: TrainConfig, step: int, total_steps: int) -> float:
    """The chance of feeding the gold token at training step ``step`` (Bengio et al. 2015's schedules)."""
    schedule = TEACHER_FORCING_SCHEDULES.get(train.teacher_forcing_schedule)
    if schedule is None:
        raise ValueError(f"unknown teacher_forcing_schedule {train.teacher_forcing_schedule!r}; "
                         f"available: {', '.join(TEACHER_FORCING_SCHEDULES)}")
    return schedule(train, step, total_steps)


class TranslationTask:
    """Source text -> target text: the GRU encoder-decoder with attention."""

    logged = ("loss", "ppl", "bleu")
    kept = ("loss", "ppl", "bleu", "chrf", "signature")

    def __init__(self, config: Config, tokenizers: list[Tokenizer] | None = None) -> None:
        self.config = config
        data = config.data
        source_column, target_column = columns(data, "translation")
        splits = load_splits(data, "translation")
        if tokenizers:
            self.tokenizers = tokenizers
        elif config.tokenizer.joint:
            self.tokenizers = [train_tokenizer(itertools.chain(splits.train[source_column],
                                                               splits.train[target_column]), config.tokenizer)]
        else:
            self.tokenizers = [train_tokenizer(splits.train[column], config.tokenizer)
                               for column in (source_column, target_column)]
        self.src_tokenizer, self.tgt_tokenizer = self.tokenizers[0], self.tokenizers[-1]
        self.train, _ = encode_pairs(self.src_tokenizer, self.tgt_tokenizer, splits.train[source_column],
                                     splits.train[target_column], data.max_length, drop_long=True)
        self.validation, kept = encode_pairs(self.src_tokenizer, self.tgt_tokenizer,
                                             splits.validation[source_column], splits.validation[target_column],
                                             data.max_length, drop_long=False)
        self.validation_references = [splits.validation[target_column][i] for i in kept]
        self.collate = PairCollator(PAD_ID)

    def sampler(self, train: TrainConfig) -> BucketBatchSampler:
        return BucketBatchSampler(self.train.lengths(), train.batch_size, train.max_tokens, shuffle=True,
                                  bucket_size=train.bucket_size, seed=train.seed, sort_keys=self.train.sort_keys())

    def build_model(self) -> nn.Module:
        return Translator(self.config.model, self.src_tokenizer.get_vocab_size(),
                          self.tgt_tokenizer.get_vocab_size(), PAD_ID, self.config.train.label_smoothing)

    def metadata(self) -> dict[str, Any]:
        return {"task": "translation", "src_vocab_size": self.src_tokenizer.get_vocab_size(),
                "tgt_vocab_size": self.tgt_tokenizer.get_vocab_size()}

    def forward(self, model: nn.Module, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        """Training loss, correctly predicted target tokens and the number of target tokens."""
        ratio = teacher_forcing_ratio(self.config.train, step, total_steps)
        logits, loss = model(batch, targets=batch.tgt_out, teacher_forcing_ratio=ratio)
        correct = int(((logits.argmax(-1) == batch.tgt_out) & batch.tgt_mask).sum())
        return loss, correct, int(batch.tgt_mask.sum())

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Teacher-forced cross-entropy (no label smoothing) and perplexity, and greedy-decoded sacreBLEU,
        on the validation split."""
        train = self.config.train
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        sampler = BucketBatchSampler(self.validation.lengths(), train.eval_batch_size, shuffle=False,
                                     sort_keys=self.validation.sort_keys())
        with torch.no_grad():
            for indices in sampler:
                batch = self.collate([self.validation[i] for i in indices]).to(device)
                with autocast(device, train.amp):
                    logits, _ = model(batch)
                total += float(F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(),
                                               ignore_index=PAD_ID, reduction="sum"))
                tokens += int(batch.tgt_mask.sum())
            search = self.config.search
            found = decode_dataset(model, self.validation.src, train.eval_batch_size, device, beam_size=1,
                                   max_length_ratio=search.max_length_ratio,
                                   max_output_length=search.max_output_length)
        model.train(was_training)
        loss = total / max(1, tokens)
        hypotheses = [decode_ids(self.tgt_tokenizer, h[0].tokens) for h in found]
        report = score_translations(hypotheses, self.validation_references)
        report.update(loss=loss, ppl=math.exp(min(loss, 50.0)))
        return report

    def after_training(self, model: nn.Module, run_dir: Path, device: torch.device) -> None:
        """Attention heatmaps of a few validation sentences, from the best weights."""
        from nlp_rnn.plots import plot_attention
        from nlp_rnn.search import greedy_search

        tensors, _ = ckpt.load_weights(run_dir / ckpt.WEIGHTS_FILE)
        model.load_state_dict(tensors)
        model.eval()
        for index in range(min(3, len(self.validation))):
            batch = self.collate([{"src": self.validation.src[index]}]).to(device)
            (hypothesis,) = greedy_search(model, batch.src, batch.src_lengths, return_attention=True)
            src_tokens = [self.src_tokenizer.id_to_token(i) for i in self.validation.src[index]]
            tgt_tokens = [self.tgt_tokenizer.id_to_token(i) for i in hypothesis.output_ids]
            plot_attention(src_tokens, tgt_tokens, hypothesis.attention.float(),
                           run_dir / "attention" / f"validation_{index}.png")


class LanguageModelTask:
    """Raw text -> every token predicted from its left and from its right context (encoder pretraining)."""

    logged = ("loss", "ppl", "accuracy")
    kept = ("loss", "ppl", "accuracy", "predictions")

    def __init__(self, config: Config, tokenizers: list[Tokenizer] | None = None) -> None:
        self.config = config
        data = config.data
        splits = load_splits(data, "language_model")
        self.tokenizer = tokenizers[0] if tokenizers else train_tokenizer(splits.train[data.text_column],
                                                                          config.tokenizer)
        self.tokenizers = [self.tokenizer]
        self.train, self.validation = (self._encode(split[data.text_column]) for split in (splits.train,
                                                                                           splits.validation))
        self.collate = Collator(PAD_ID)

    def _encode(self, texts: list[str]) -> EncodedDataset:
        data = self.config.data
        ids = encode_texts(self.tokenizer, texts, data.max_length, data.truncation, data.head_fraction)
        return EncodedDataset([row for row in ids if len(row) >= 2])  # one token predicts nothing

    def sampler(self, train: TrainConfig) -> BucketBatchSampler:
        return BucketBatchSampler(self.train.lengths(), train.batch_size, train.max_tokens, shuffle=True,
                                  bucket_size=train.bucket_size, seed=train.seed)

    def build_model(self) -> nn.Module:
        return BidirectionalLM(self.config.model, self.tokenizer.get_vocab_size(), PAD_ID)

    def metadata(self) -> dict[str, Any]:
        return {"task": "language_model", "vocab_size": self.tokenizer.get_vocab_size()}

    def forward(self, model: nn.Module, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        """Training loss on ``train.lm_loss_fraction`` of the predictions, and next-token accuracy (the adaptive
        softmax's argmax) on a quarter of those: correct predictions and predictions scored."""
        states, targets = model.states_and_targets(batch)
        fraction = self.config.train.lm_loss_fraction
        if fraction < 1.0:
            keep = torch.randperm(len(targets), device=targets.device)[: max(1, round(fraction * len(targets)))]
            states, targets = states[keep], targets[keep]
        loss = model.softmax(states, targets).loss
        with torch.no_grad():
            correct = int((model.softmax.predict(states[::4].detach()) == targets[::4]).sum())
        return loss, correct, len(targets[::4])

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Mean negative log-likelihood per predicted token, perplexity and next-token accuracy."""
        train = self.config.train
        was_training = model.training
        model.eval()
        total, correct, count = 0.0, 0, 0
        sampler = BucketBatchSampler(self.validation.lengths(), train.eval_batch_size, shuffle=False)
        with torch.no_grad():
            for indices in sampler:
                batch = self.collate([self.validation[i] for i in indices]).to(device)
                with autocast(device, train.amp):
                    states, targets = model.states_and_targets(batch)
                    loss = model.softmax(states, targets).loss
                    correct += int((model.softmax.predict(states) == targets).sum())
                total += float(loss) * len(targets)
                count += len(targets)
        model.train(was_training)
        loss = total / max(1, count)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "accuracy": correct / max(1, count),
                "predictions": count}

    def after_training(self, model: nn.Module, run_dir: Path, device: torch.device) -> None:
        pass


TASKS = {"classification": ClassificationTask, "translation": TranslationTask, "language_model": LanguageModelTask}


def make_task(config: Config, tokenizers: list[Tokenizer] | None = None):
    return TASKS[config.task](config, tokenizers)
