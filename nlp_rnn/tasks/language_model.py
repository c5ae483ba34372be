"""Raw text -> every token predicted from its left and from its right context (``task: language_model``):
pretraining the classifier's encoder. A language-model run has no predictor; a classifier config names it in
``train.init_from``."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import torch
from tokenizers import Tokenizer
from torch import nn

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import BucketBatchSampler, Collator, EncodedDataset
from nlp_rnn.config import Config, DataConfig, ModelConfig
from nlp_rnn.encoded import IDS, LENGTH, encode_split
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import autocast
from nlp_rnn.language_model import BidirectionalLM
from nlp_rnn.tasks import register_task
from nlp_rnn.tasks.base import Task, check_cell, check_weight_drop
from nlp_rnn.tokenization import PAD_ID, encode_texts

PREDICT_CHUNK = 4096  # rows of states per next-token prediction at evaluation (at most 4096 x vocab scores)


def _encode_batch(batch: dict[str, list], tokenizer: Tokenizer, data: DataConfig) -> dict[str, list]:
    ids = encode_texts(tokenizer, batch[data.text_column], data.max_length, data.truncation, data.head_fraction)
    kept = [row for row in ids if len(row) >= 2]
    return {"input_ids": kept, "length": [len(row) for row in kept]}


@register_task("language_model")
class LanguageModelTask(Task):
    """A bidirectional LM over the classifier's encoder (ELMo's biLM, ULMFiT's pretraining)."""

    model_config = ModelConfig  # the classifier's: its encoder is what gets pretrained (pooling unused)
    metrics = ("loss",)
    unit = "texts"  # what evaluate counts
    logged = ("loss", "ppl", "accuracy")
    kept = ("loss", "ppl", "accuracy", "predictions")
    unused_parameters = True  # a step scores a random share of predictions: a rare-word cluster may go unused
    layered = True  # embedding, each recurrent layer, the output layers: ULMFiT's groups
    card_hint = "Fine-tune it: name this folder in a classifier config's `train.init_from`."

    @classmethod
    def check_config(cls, config: Config, errors: list[str]) -> None:
        check_cell(config, "cell", errors)
        check_weight_drop(config, errors)
        model = config.model
        if model.bidirectional and isinstance(model.num_layers, int) and model.num_layers > 1:
            errors.append(f"model.num_layers: a bidirectional language model has 1 layer ({model.num_layers} "
                          "given): a second layer would see both directions, so each would see the token it "
                          "predicts")

    @classmethod
    def columns(cls, data: DataConfig) -> tuple[str, ...]:
        return (data.text_column,)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.tokenizers[0]

    @property
    def collate(self) -> Collator:
        return Collator(PAD_ID)

    def encode(self, split: datasets.Dataset) -> EncodedDataset:
        """Texts of at least two tokens (one predicts nothing), truncated; encoded once (:mod:`nlp_rnn.encoded`)."""
        data = self.config.data
        encoded = encode_split(split, partial(_encode_batch, tokenizer=self.tokenizer, data=data),
                               datasets.Features({"input_ids": IDS, "length": LENGTH}), data, [self.tokenizer])
        return EncodedDataset(encoded.column("input_ids"), lengths=encoded.ints("length"))

    def build_model(self) -> nn.Module:
        return BidirectionalLM(self.config.model, self.tokenizer.get_vocab_size(), PAD_ID)

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

    def layer_groups(self, model: nn.Module) -> list[list[nn.Parameter]]:
        return model.layer_groups()

    def evaluate(self, model: nn.Module, data: EncodedDataset, device: torch.device, batch_size: int,
                 beam_size: int | None = None) -> dict[str, Any]:
        """Mean negative log-likelihood per predicted token, perplexity and next-token accuracy."""
        was_training = model.training
        model.eval()
        total, correct, count = 0.0, 0, 0
        sampler = BucketBatchSampler(data.lengths(), batch_size, shuffle=False)
        collate = self.collate
        with torch.no_grad():
            for indices in sampler:
                batch = collate([data[i] for i in indices]).to(device)
                with autocast(device, self.config.train.amp):
                    states, targets = model.states_and_targets(batch)
                    loss = model.softmax(states, targets).loss
                    # in chunks: predict scores the whole vocabulary for every row it cannot settle in the head,
                    # which for a batch of 256 long texts is tens of GB
                    correct += sum(int((model.softmax.predict(rows) == wanted).sum()) for rows, wanted in
                                   zip(states.split(PREDICT_CHUNK), targets.split(PREDICT_CHUNK), strict=True))
                total += float(loss) * len(targets)
                count += len(targets)
        model.train(was_training)
        loss = total / max(1, count)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "accuracy": correct / max(1, count),
                "predictions": count}

    def predictor(self, model: nn.Module, run_dir: Path, explain_model: nn.Module | None = None):
        raise NlpRnnError(f"{run_dir}: a language-model run has no predictor; it pretrains an encoder: name it "
                          "in a classifier config's train.init_from")

    def write_evaluation(self, report: dict[str, Any], data: Any, out: Path) -> list[str]:
        ckpt.write_json(out / ckpt.METRICS_FILE, report)
        return [f"{report['predictions']:,} predictions: loss {report['loss']:.4f}, perplexity {report['ppl']:.2f}, "
                f"next-token accuracy {report['accuracy']:.4f}"]

    def card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
        data, model, train = config["data"], config["model"], config["train"]
        direction = "bidirectional " if model["bidirectional"] else ""
        vocabulary = run.vocabulary_sizes(self.tokenizer_files(self.config))[0]
        validation = metrics.get("validation") or {}
        lines = [
            f"# {self.config.data.source}: {direction}{model['cell']} language model (encoder pretraining)",
            "",
            f"- **Data**: `{self.config.data.source}` (text `{data['text_column']}`, splits `{data['train_split']}`), "
            f"texts truncated to {data['max_length']} tokens ({data['truncation']}).",
            f"- **Tokenizer**: {config['tokenizer']['type']}-level, {vocabulary:,} types, trained on the training "
            "split only.",
            f"- **Model**: embedding {model['embedding_dim']} -> {model['num_layers']} x {direction}{model['cell']} "
            f"{model['hidden_size']} -> adaptive softmax; {metrics.get('num_parameters', 0):,} parameters.",
            f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batch {train['batch_size']}, "
            f"loss on {train['lm_loss_fraction']:.0%} of the predictions per step, up to {train['epochs']} epochs, "
            f"best epoch {metrics.get('best_epoch')} by validation {metrics.get('metric') or self.config.metric}.",
        ]
        if validation:
            lines += ["", "| split | predictions | loss | perplexity | next-token accuracy |", "|---|---|---|---|---|",
                      f"| validation | {validation['predictions']:,} | {validation['loss']:.4f} | "
                      f"{validation['ppl']:.2f} | {validation['accuracy']:.4f} |"]
        return lines
