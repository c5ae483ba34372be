"""Text generation (``task: generation``), the one-to-many shape: a causal recurrent language model
(:class:`nlp_rnn.generator.CausalLM`) that continues a prompt, optionally on request of a class label.

Training reads the text one of two ways (``data.stream``):

- a **stream** (the word-language-model recipe): every text of a split joined into one token stream (``<s>`` before
  each text, ``</s>`` after), cut into ``train.batch_size`` parallel rows, read ``data.bptt`` tokens at a time in
  order; the hidden state is carried from one chunk to the next and detached between them (truncated BPTT);
- **documents**: each text is one padded row, ``<s> text </s>``, bucketed by length, with its label when the model
  is conditioned (``data.label_column``).

Scores: loss per predicted token (nats), perplexity, and for a character vocabulary bits per character.
``nlp_rnn.load(run).generate(prompts, label=...)`` writes; ``.stream(prompt, ...)`` yields the text as it comes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import datasets
import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.utils.data import Dataset

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import BucketBatchSampler, pad
from nlp_rnn.config import Config, DataConfig, TrainConfig, _bounded, _choice
from nlp_rnn.encoded import IDS, LENGTH, EncodedSplit, encode_split
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import autocast
from nlp_rnn.generator import CausalLM, State, cat_states, detach_state
from nlp_rnn.sampling import check_sampling, next_tokens, penalize_repetition, row_generators
from nlp_rnn.tasks import register_task
from nlp_rnn.tasks.base import Task, check_cell, has_text
from nlp_rnn.tokenization import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 5000  # a larger request is capped (with a notice): generation always stops


@dataclass(frozen=True)
class GenerationDataConfig(DataConfig):
    """``data:`` of a generation config: the text column, how it is read, and an optional label to condition on."""

    label_column: str | None = None  # a class label to condition on (documents only); None: no conditioning
    stream: bool = True  # one stream cut into bptt-token chunks, state carried (False: one padded row per text)
    bptt: int = _bounded(128, 2)  # stream: tokens per chunk (truncated backpropagation through time)
    eval_streams: int = _bounded(8, 1)  # stream: parallel rows the evaluation reads (each carries its state)


@dataclass(frozen=True)
class GeneratorConfig:
    """Embedding -> stacked left-to-right recurrent layers -> dropout -> output layer (tied or not)."""

    cell: str = "lstm"  # any registered cell
    embedding_dim: int = _bounded(256, 1)
    hidden_size: int = _bounded(512, 1)
    num_layers: int = _bounded(2, 1)
    dropout: float = _bounded(0.2, 0.0, 0.99)  # between layers and before the output layer
    embedding_dropout: float = _bounded(0.0, 0.0, 0.99)
    tie_weights: bool = False  # the output layer shares the embedding (Press & Wolf 2017)
    conditioning: str = _choice("both", "init", "input", "both")  # how a label enters (with data.label_column)
    label_dim: int = _bounded(32, 1)


class Generated(TypedDict):
    prompt: str
    label: str | None
    text: str  # the continuation (without the prompt)
    tokens: int  # tokens generated
    stopped: str  # "end" (</s>), "stop" (the stop string), "length" (max_new_tokens)
    seed: int | None
    notices: list[str]  # what was changed about the request (a prompt cut, unknown characters, a capped length)


# -- data --------------------------------------------------------------------------------------------------------

class StreamChunks(Dataset):
    """A token stream laid out as ``rows`` parallel rows; item ``k`` is row ``k % rows``'s chunk ``k // rows``
    (``bptt`` inputs and the ``bptt`` targets one step on), so consecutive batches continue each row. The stream
    may be a memory-mapped array (:meth:`nlp_rnn.encoded.EncodedSplit.stream`): a chunk is read when asked for."""

    def __init__(self, stream: Sequence[int] | np.ndarray, rows: int, bptt: int) -> None:
        rows = max(1, min(rows, (len(stream) - 1) // bptt or 1))
        per_row = (len(stream) - 1) // rows  # targets per row
        self.bptt = min(bptt, per_row)
        self.rows = rows
        self.chunks = per_row // self.bptt if self.bptt else 0
        # a plain ndarray over the mapped pages (slicing an np.memmap costs more), or the list's ids
        self.data = np.asarray(stream[: rows * per_row + 1], dtype=None if isinstance(stream, np.ndarray) else np.int64)
        self.per_row = per_row

    def __len__(self) -> int:
        return self.rows * self.chunks

    def __getitem__(self, index: int) -> dict:
        row, chunk = index % self.rows, index // self.rows
        start = row * self.per_row + chunk * self.bptt
        ids = torch.from_numpy(self.data[start : start + self.bptt + 1].astype(np.int64))
        return {"ids": ids, "first": chunk == 0}

    def lengths(self) -> list[int]:
        return [self.bptt] * len(self)

    def num_tokens(self) -> int:
        return self.rows * self.chunks * self.bptt


class StreamSampler:
    """The chunks in order, one batch per chunk position, every epoch alike (the state flows along each row)."""

    def __init__(self, data: StreamChunks) -> None:
        self.data = data
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.start = start

    def batches(self) -> list[list[int]]:
        rows = self.data.rows
        return [list(range(c * rows, (c + 1) * rows)) for c in range(self.data.chunks)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start :]

    def __len__(self) -> int:
        return self.data.chunks - self.start


class Documents(Dataset):
    """One ``<s> text </s>`` row per text, with its label id when conditioned (Python lists, or the columns of a
    cached Arrow split with each row's ``lengths``)."""

    def __init__(self, ids: Sequence[Sequence[int]], labels: Sequence[int] | None,
                 lengths: Sequence[int] | None = None) -> None:
        self.ids = ids
        self.labels = labels
        self.row_lengths = lengths

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        item = {"ids": self.ids[index], "first": True}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item

    def lengths(self) -> list[int]:
        """Predictions per row (one fewer than its tokens)."""
        if self.row_lengths is not None:
            return (np.asarray(self.row_lengths) - 1).tolist()
        return [len(ids) - 1 for ids in self.ids]

    def num_tokens(self) -> int:
        return sum(self.lengths())


@dataclass
class LMBatch:
    input_ids: torch.Tensor  # (batch, time)
    targets: torch.Tensor  # (batch, time), PAD_ID where nothing is predicted
    labels: torch.Tensor | None  # (batch,)
    continues: bool  # a stream chunk after the first: start from the previous chunk's state

    def to(self, device: torch.device | str) -> LMBatch:
        labels = None if self.labels is None else self.labels.to(device)
        return LMBatch(self.input_ids.to(device), self.targets.to(device), labels, self.continues)

    @property
    def num_tokens(self) -> int:
        return int((self.targets != PAD_ID).sum())


def collate_lm(examples: list[dict]) -> LMBatch:
    """Rows of ids -> inputs and targets one step on, padded at the end."""
    ids, _, _ = pad([list(map(int, e["ids"])) for e in examples], PAD_ID)  # (batch, time + 1)
    labels = torch.tensor([e["label"] for e in examples]) if examples and "label" in examples[0] else None
    return LMBatch(ids[:, :-1], ids[:, 1:], labels, not examples[0]["first"])


def _encode_texts(batch: dict[str, list], tokenizer: Tokenizer, column: str, label_column: str | None,
                  limit: int | None) -> dict[str, list]:
    """Each text as ``<s> ids </s>``, cut to ``limit + 1`` tokens (the predictions a row makes) unless None."""
    ids = [[BOS_ID, *encoding.ids, EOS_ID] for encoding in tokenizer.encode_batch(batch[column])]
    if limit is not None:
        ids = [row[: limit + 1] for row in ids]
    columns = {"ids": ids, "length": [len(row) for row in ids]}
    if label_column:
        columns["label"] = batch[label_column]
    return columns


# -- the task ------------------------------------------------------------------------------------------------

@register_task("generation")
class GenerationTask(Task):
    """A causal recurrent LM that writes; conditioned on a class label when ``data.label_column`` names one."""

    model_config = GeneratorConfig
    data_config = GenerationDataConfig
    metrics = ("loss",)
    unit = "sequences"  # what evaluate counts: stream chunks or texts
    logged = ("loss", "ppl", "accuracy")
    kept = ("loss", "ppl", "bpc", "accuracy", "num_tokens")
    card_hint = "Write with it: `nlp-rnn generate <this folder> --prompt \"...\"`; score: `nlp-rnn evaluate`."

    @classmethod
    def check_config(cls, config: Config, errors: list[str]) -> None:
        check_cell(config, "cell", errors)
        if config.data.stream and config.data.label_column:
            errors.append("data.label_column: conditioning needs one row per text (data.stream: false); a stream "
                          "mixes texts of every label")

    @classmethod
    def columns(cls, data: GenerationDataConfig) -> tuple[str, ...]:
        return (data.text_column, data.label_column) if data.label_column else (data.text_column,)

    @classmethod
    def keep_row(cls, row: dict[str, Any], columns: tuple[str, ...]) -> bool:
        return has_text(row[columns[0]]) and all(row[c] is not None for c in columns[1:])

    @classmethod
    def label_column(cls, data: GenerationDataConfig) -> str | None:
        return data.label_column

    @property
    def tokenizer(self) -> Tokenizer:
        return self.tokenizers[0]

    @property
    def label_names(self) -> list[str]:
        return list(self.meta.get("labels") or [])

    @property
    def characters(self) -> bool:
        return self.config.tokenizer.type == "char"

    # -- encoding ---------------------------------------------------------------------------------------

    def encode_training(self, split: datasets.Dataset) -> Dataset:
        if self.config.data.stream:
            return self._chunks(split, self.config.train.batch_size)
        return self._documents(split)

    def encode(self, split: datasets.Dataset) -> Dataset:
        if self.config.data.stream:
            return self._chunks(split, self.config.data.eval_streams)
        return self._documents(split)

    def _encoded(self, split: datasets.Dataset, limit: int | None) -> EncodedSplit:
        """Each text as ``<s> ids </s>`` (``limit``: at most ``limit + 1`` of them), encoded once per split and
        tokenizer (:mod:`nlp_rnn.encoded`)."""
        data = self.config.data
        columns = {"ids": IDS, "length": LENGTH}
        if data.label_column and limit is not None:
            columns["label"] = split.features[data.label_column]
        encode = partial(_encode_texts, tokenizer=self.tokenizer, column=data.text_column,
                         label_column=data.label_column if "label" in columns else None, limit=limit)
        return encode_split(split, encode, datasets.Features(columns), data, [self.tokenizer], {"limit": limit})

    def _chunks(self, split: datasets.Dataset, rows: int) -> StreamChunks:
        """The split's texts as one stream, laid out in ``rows`` parallel rows of ``data.bptt``-token chunks; the
        stream is read from the memory-mapped cache, never built as a list."""
        data = self.config.data
        stream = self._encoded(split, None).stream("ids")
        chunks = StreamChunks(stream, rows, data.bptt)
        if not len(chunks):
            raise NlpRnnError(f"{data.source}: a split has {len(stream)} tokens, too few for data.bptt {data.bptt}")
        return chunks

    def _documents(self, split: datasets.Dataset) -> Documents:
        encoded = self._encoded(split, self.config.data.max_length)  # a longer text is cut (and has no </s>)
        labels = encoded.column("label") if self.config.data.label_column else None
        return Documents(encoded.column("ids"), labels, encoded.ints("length"))

    @property
    def collate(self):
        return collate_lm

    def sampler(self, dataset: Dataset, train: TrainConfig):
        if isinstance(dataset, StreamChunks):
            return StreamSampler(dataset)
        return super().sampler(dataset, train)

    def build_model(self) -> nn.Module:
        return CausalLM(self.config.model, self.tokenizer.get_vocab_size(), len(self.label_names), PAD_ID)

    _carried: State | None = None  # training: the state at the end of the last stream chunk

    def forward(self, model: nn.Module, batch: LMBatch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        state = None
        if batch.continues and self._carried is not None and self._carried[0][0].size(0) == batch.input_ids.size(0):
            state = [tuple(t.to(batch.input_ids.device) for t in layer) for layer in self._carried]  # a resumed run
        output = model(batch.input_ids, batch.labels, batch.targets, state)
        self._carried = detach_state(output.state) if self.config.data.stream else None
        with torch.no_grad():
            real = batch.targets != PAD_ID
            correct = int(((output.logits.argmax(-1) == batch.targets) & real).sum())
        return output.loss, correct, int(real.sum())

    def training_state(self) -> Any:
        return {"carried": self._carried}

    def restore_training_state(self, state: Any) -> None:
        self._carried = (state or {}).get("carried")

    # -- scores -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Dataset, device: torch.device, batch_size: int,
                 beam_size: int | None = None) -> dict[str, Any]:
        """Loss per predicted token (nats), perplexity, bits per character (character vocabularies) and
        next-token accuracy. A stream is read in order with the state carried, as in training."""
        was_training = model.training
        model.eval()
        started = time.perf_counter()
        batches = (StreamSampler(data).batches() if isinstance(data, StreamChunks)
                   else BucketBatchSampler(data.lengths(), batch_size, shuffle=False).batches())
        total, correct, count, state = 0.0, 0, 0, None
        for indices in batches:
            batch = collate_lm([data[i] for i in indices]).to(device)
            with autocast(device, self.config.train.amp):
                output = model(batch.input_ids, batch.labels, batch.targets, state if batch.continues else None)
            state = output.state
            real = batch.targets != PAD_ID
            predicted = int(real.sum())
            total += float(output.loss) * predicted
            correct += int(((output.logits.argmax(-1) == batch.targets) & real).sum())
            count += predicted
        model.train(was_training)
        loss = total / max(1, count)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bpc": loss / math.log(2) if self.characters else None,
                "accuracy": correct / max(1, count), "num_tokens": count,
                "tokens_per_second": count / max(time.perf_counter() - started, 1e-9)}

    def write_evaluation(self, report: dict[str, Any], data: Any, out: Path) -> list[str]:
        ckpt.write_json(out / ckpt.METRICS_FILE, report)
        bpc = f", {report['bpc']:.4f} bits per character" if report.get("bpc") is not None else ""
        return [f"loss {report['loss']:.4f} nats per token, perplexity {report['ppl']:.2f}{bpc}, next-token accuracy "
                f"{report['accuracy']:.4f} ({report['num_tokens']:,} tokens)"]

    # -- a trained model -------------------------------------------------------------------------------

    def predictor(self, model: nn.Module, run_dir: Path, explain_model: nn.Module | None = None):
        return GeneratorPredictor(self, model, run_dir)

    def predict(self, predictor, texts: list[str], beam_size: int | None = None, n_best: int = 1) -> list[dict]:
        return predictor.generate(texts, seed=0)

    def prediction_line(self, result: dict) -> str:
        return result["prompt"] + result["text"]

    @classmethod
    def add_commands(cls, commands, parents: list[argparse.ArgumentParser]) -> None:
        command = commands.add_parser("generate", parents=parents, help="write text with a generation run")
        command.add_argument("run_dir")
        command.add_argument("--prompt", default="", help="text to continue (default: start a new text)")
        command.add_argument("--label", default=None, help="the class to write (a conditioned model), e.g. pos")
        command.add_argument("--num-samples", type=int, default=1)
        command.add_argument("--max-new-tokens", type=int, default=200)
        command.add_argument("--temperature", type=float, default=1.0)
        command.add_argument("--top-k", type=int, default=None)
        command.add_argument("--top-p", type=float, default=None)
        command.add_argument("--repetition-penalty", type=float, default=1.0)
        command.add_argument("--greedy", action="store_true", help="always the most likely token (no sampling)")
        command.add_argument("--beam", type=int, default=None, help="beam search of this width (no sampling); "
                             "--num-samples best continuations")
        command.add_argument("--guidance", type=float, default=0.0, help="with --label: classifier-free guidance "
                             "weight (0 = none); the label's own words weigh more")
        command.add_argument("--seed", type=int, default=None, help="sample i uses seed + i: the same text again")
        command.add_argument("--stop", default=None, help="stop when the text holds this string")
        command.add_argument("--json", action="store_true", help="one JSON object per sample")
        command.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
        command.set_defaults(run=_generate_command)

    def card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
        data, model, train = config["data"], config["model"], config["train"]
        reading = (f"one stream in chunks of {data['bptt']} tokens, state carried (truncated BPTT)" if data["stream"]
                   else f"one row per text, up to {data['max_length']} tokens")
        labels = (f"; conditioned on `{data['label_column']}` ({', '.join(self.label_names)}) via "
                  f"{model['conditioning']}" if self.label_names else "")
        lines = [f"# {self.config.data.source}: {model['cell'].upper()} language model that writes", "",
                 f"- **Data**: `{self.config.data.source}` (text `{data['text_column']}`), read as {reading}{labels}.",
                 f"- **Tokenizer**: {config['tokenizer']['type']}-level, {self.tokenizer.get_vocab_size():,} types.",
                 f"- **Model**: embedding {model['embedding_dim']} -> {model['num_layers']} x {model['cell']} "
                 f"{model['hidden_size']} -> linear{' (tied to the embedding)' if model['tie_weights'] else ''}; "
                 f"{metrics.get('num_parameters', 0):,} parameters.",
                 f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batch {train['batch_size']}, "
                 f"up to {train['epochs']} epochs, best epoch {metrics.get('best_epoch')} by validation loss "
                 f"({metrics.get('train_seconds', 0) / 60:.0f} minutes of training).", "",
                 "| split | tokens | loss (nats/token) | perplexity | bits/char |", "|---|---|---|---|---|"]
        rows = [("validation (best epoch)", metrics.get("validation"))]
        rows += [(folder.name, ckpt.read_json(folder / ckpt.METRICS_FILE))
                 for folder in sorted(run.evaluation().glob("*"))]
        for name, report in rows:
            if report and "loss" in report:
                bpc = f"{report['bpc']:.4f}" if report.get("bpc") is not None else ""
                lines.append(f"| {name} | {report.get('num_tokens', 0):,} | {report['loss']:.4f} | "
                             f"{report['ppl']:.2f} | {bpc} |")
        return lines


# -- writing ----------------------------------------------------------------------------------------------------

class GeneratorPredictor:
    """A trained generation model with its tokenizer: ``generate(prompts, ...)`` (batched) and ``stream(prompt,
    ...)`` (the text as it comes). The state is carried from token to token, never recomputed over the prefix."""

    def __init__(self, task: GenerationTask, model: nn.Module, run_dir: Path) -> None:
        self.task = task
        self.config = task.config
        self.model = model.eval()
        self.run_dir = Path(run_dir)
        self.device = next(model.parameters()).device
        self.labels = task.label_names

    # -- requests --------------------------------------------------------------------------------------

    def _label_id(self, label: str | int | None) -> int | None:
        if label is None or label == "":
            if self.labels:
                raise NlpRnnError(f"{self.run_dir}: this model writes on request of a label; give one of: "
                                  f"{', '.join(self.labels)}")
            return None
        if not self.labels:
            raise NlpRnnError(f"{self.run_dir}: this model is not conditioned on a label (got {label!r})")
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit()):
            if 0 <= int(label) < len(self.labels):
                return int(label)
        elif label in self.labels:
            return self.labels.index(label)
        raise NlpRnnError(f"unknown label {label!r}; this model writes: {', '.join(self.labels)}")

    def _prompt_ids(self, prompt: str, notices: list[str]) -> list[int]:
        ids = self.task.tokenizer.encode(prompt).ids if prompt else []
        if UNK_ID in ids:
            what = "characters" if self.task.characters else "tokens"
            unknown = sorted({c for c in prompt if self.task.tokenizer.token_to_id(c) is None}) if \
                self.task.characters else []
            notices.append(f"the prompt has {what} the model does not know"
                           + (f" ({''.join(unknown)[:20]!r})" if unknown else "") + ": read as unknown")
        limit = self.config.data.max_length
        if len(ids) > limit:
            notices.append(f"the prompt has {len(ids)} tokens; only its last {limit} were read")
            ids = ids[-limit:]
        return [BOS_ID, *ids]

    # -- decoding ----------------------------------------------------------------------------------------

    def _prefill(self, prompts: list[str], labels: torch.Tensor | None,
                 notices: list[list[str]]) -> tuple[State, torch.Tensor, list[list[int]]]:
        """Read each row's prompt (each distinct prompt and label once): the batch's state, its next-token logits
        (rows, vocab) and each row's prompt ids."""
        cache: dict[tuple[str, int | None], tuple[State, torch.Tensor, list[int], list[str]]] = {}
        states, last_logits, prompt_ids = [], [], []
        for row, prompt in enumerate(prompts):
            key = (prompt, None if labels is None else int(labels[row]))
            if key not in cache:
                found: list[str] = []
                ids = self._prompt_ids(prompt, found)
                output = self.model(torch.tensor([ids], device=self.device),
                                    None if labels is None else labels[row : row + 1])
                cache[key] = (output.state, output.logits[0, -1], ids, found)
            state, logits, ids, found = cache[key]
            notices[row].extend(found)
            states.append(state)
            last_logits.append(logits)
            prompt_ids.append(ids)
        return cat_states(states), torch.stack(last_logits), prompt_ids

    @torch.inference_mode()
    def _steps(self, prompts: list[str], label: str | int | None, max_new_tokens: int, temperature: float,
               top_k: int | None, top_p: float | None, repetition_penalty: float, greedy: bool,
               seed: int | None, notices: list[list[str]], guidance: float = 0.0) -> Iterator[torch.Tensor]:
        """Yield each step's new token per row (batch,); a row's tokens after its ``</s>`` are ``</s>``.

        ``guidance`` > 0 (a conditioned model, a label asked for): classifier-free guidance (Sanchez et al.
        2023), the next token drawn from log p(x | label) + guidance * (log p(x | label) - mean over the other
        labels of log p(x | other)), so what sets the label apart from the others weighs more."""
        if not greedy:
            check_sampling(temperature, top_k, top_p, repetition_penalty)
        if not (math.isfinite(guidance) and guidance >= 0):
            raise NlpRnnError(f"guidance must be >= 0 (got {guidance}; 0 = none)")
        label_id = self._label_id(label)
        rows, vocab = len(prompts), self.task.tokenizer.get_vocab_size()
        labels = None if label_id is None else torch.full((rows,), label_id, device=self.device)
        state, logits, prompt_ids = self._prefill(prompts, labels, notices)
        seen = torch.zeros(rows, vocab, dtype=torch.bool)
        for row, ids in enumerate(prompt_ids):
            seen[row, ids] = True
        others = [i for i in range(len(self.labels)) if i != label_id] if label_id is not None and guidance else []
        if others:  # the same prompts under every other label, stepped alongside
            contrast_labels = torch.tensor(others * rows, device=self.device)
            contrast_state, contrast_logits, _ = self._prefill([p for p in prompts for _ in others],
                                                               contrast_labels, [[] for _ in range(rows * len(others))])
        generators = None if greedy else row_generators(seed, rows)
        done = torch.zeros(rows, dtype=torch.bool, device=self.device)
        for _ in range(max_new_tokens):
            logits = logits.float()
            if others:
                wanted = logits.log_softmax(-1)
                contrast = contrast_logits.float().log_softmax(-1).view(rows, len(others), vocab).mean(1)
                logits = wanted + guidance * (wanted - contrast)
            logits = penalize_repetition(logits, seen.to(logits.device), repetition_penalty)
            logits[:, [PAD_ID, BOS_ID, UNK_ID]] = float("-inf")  # never written
            tokens = next_tokens(logits, generators, temperature, top_k, top_p)
            tokens = torch.where(done, torch.full_like(tokens, EOS_ID), tokens)
            done |= tokens == EOS_ID
            seen[torch.arange(rows), tokens.cpu()] = True
            yield tokens
            if bool(done.all()):
                return
            logits, state = self.model.step(tokens, state, labels)
            if others:
                contrast_logits, contrast_state = self.model.step(tokens.repeat_interleave(len(others)),
                                                                  contrast_state, contrast_labels)

    def _request(self, max_new_tokens: int, rows: int) -> tuple[int, list[list[str]]]:
        notices: list[list[str]] = [[] for _ in range(rows)]
        if max_new_tokens < 1:
            raise NlpRnnError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
        if max_new_tokens > MAX_NEW_TOKENS:
            for row in notices:
                row.append(f"max_new_tokens {max_new_tokens} capped to {MAX_NEW_TOKENS}")
            max_new_tokens = MAX_NEW_TOKENS
        return max_new_tokens, notices

    def generate(self, prompts: list[str] | None = None, label: str | int | None = None, num_samples: int = 1,
                 max_new_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, repetition_penalty: float = 1.0, greedy: bool = False,
                 seed: int | None = None, stop: str | None = None, guidance: float = 0.0,
                 beam_size: int | None = None) -> list[Generated]:
        """``num_samples`` continuations of each prompt (``[""]``: new texts), all in one batch. Row ``i`` (prompt
        ``i // num_samples``) samples with ``seed + i``, so a row gives the same text in any batch. ``beam_size``:
        beam search instead (``nlp_rnn.search``, GNMT length penalty), the ``num_samples`` best continuations."""
        if isinstance(prompts, str):
            raise TypeError("generate takes a list of prompts; wrap a single prompt in a list")
        prompts = [str(p) for p in (prompts if prompts else [""])]
        if beam_size is not None:
            return self._beam(prompts, label, max(1, num_samples), max_new_tokens, beam_size, stop)
        rows = [p for p in prompts for _ in range(max(1, num_samples))]
        max_new_tokens, notices = self._request(max_new_tokens, len(rows))
        written: list[list[int]] = [[] for _ in rows]
        stopped = ["length"] * len(rows)
        for tokens in self._steps(rows, label, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                                  greedy, seed, notices, guidance):
            for row, token in enumerate(tokens.tolist()):
                if stopped[row] == "length" and token != EOS_ID:
                    written[row].append(token)
                elif stopped[row] == "length":
                    stopped[row] = "end"
        label_name = None if label is None or label == "" else self.labels[self._label_id(label)]
        heads = {prompt: self._prompt_ids(prompt, []) for prompt in set(rows)}
        results = []
        for row, prompt in enumerate(rows):
            text = self._decode(heads[prompt], written[row])
            reason = stopped[row]
            if stop and stop in text:
                text, reason = text[: text.index(stop)], "stop"
            results.append(Generated(prompt=prompt, label=label_name, text=text, tokens=len(written[row]),
                                     stopped=reason, seed=None if seed is None else seed + row, notices=notices[row]))
        for row in results:
            for notice in row["notices"]:
                log.warning("%s", notice)
        return results

    predict = generate

    @torch.inference_mode()
    def _beam(self, prompts: list[str], label: str | int | None, n_best: int, max_new_tokens: int, beam_size: int,
              stop: str | None) -> list[Generated]:
        from nlp_rnn.batching import pad
        from nlp_rnn.generator import PromptedLM
        from nlp_rnn.search import beam_search

        if beam_size < 1 or n_best > beam_size:
            raise NlpRnnError(f"beam_size must be >= 1 and >= num_samples (got {beam_size} and {n_best})")
        max_new_tokens, notices = self._request(max_new_tokens, len(prompts))
        label_id = self._label_id(label)
        heads = [self._prompt_ids(prompt, found) for prompt, found in zip(prompts, notices, strict=True)]
        src, lengths, _ = pad(heads, PAD_ID)
        labels = None if label_id is None else torch.full((len(prompts),), label_id, device=self.device)
        found = beam_search(PromptedLM(self.model, labels), src.to(self.device), lengths, beam_size=beam_size,
                            max_length_ratio=float(max_new_tokens), max_output_length=max_new_tokens, n_best=n_best)
        label_name = None if label_id is None else self.labels[label_id]
        results = []
        for prompt, head, hypotheses, row_notices in zip(prompts, heads, found, notices, strict=True):
            for hypothesis in hypotheses:
                text, reason = self._decode(head, hypothesis.tokens), "end" if hypothesis.ended else "length"
                if stop and stop in text:
                    text, reason = text[: text.index(stop)], "stop"
                results.append(Generated(prompt=prompt, label=label_name, text=text, tokens=len(hypothesis.tokens),
                                         stopped=reason, seed=None, notices=row_notices))
        return results

    def stream(self, prompt: str = "", label: str | int | None = None, max_new_tokens: int = 200,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               repetition_penalty: float = 1.0, greedy: bool = False, seed: int | None = None,
               stop: str | None = None, notices: list[str] | None = None, guidance: float = 0.0) -> Iterator[str]:
        """The continuation of one prompt, piece by piece as it is written (the same text as ``generate`` with the
        same arguments). ``notices``: a list that receives what was changed about the request."""
        max_new_tokens, found = self._request(max_new_tokens, 1)
        head = self._prompt_ids(str(prompt), [])
        written: list[int] = []
        shown = ""
        for tokens in self._steps([str(prompt)], label, max_new_tokens, temperature, top_k, top_p,
                                  repetition_penalty, greedy, seed, found, guidance):
            if notices is not None and found[0]:
                notices.extend(found[0])
                found[0] = []
            token = int(tokens[0])
            if token == EOS_ID:
                break
            written.append(token)
            text = self._decode(head, written)
            if stop and stop in text:
                break
            if len(text) > len(shown) and text.startswith(shown):  # a piece may change once the next one comes
                yield text[len(shown) :]
                shown = text
        text = self._decode(head, written)
        if stop and stop in text:
            text = text[: text.index(stop)]
        if text.startswith(shown) and len(text) > len(shown):
            yield text[len(shown) :]

    def _decode(self, head: list[int], written: list[int]) -> str:
        """The text of ``written`` as it continues ``head`` (the prompt's ids): a subword decoder drops a word
        mark's space at the start of a text, so the continuation is read off the decoded whole."""
        decode = self.task.tokenizer.decode
        prompt, whole = decode(head, skip_special_tokens=True), decode(head + written, skip_special_tokens=True)
        return whole[len(prompt) :] if whole.startswith(prompt) else decode(written, skip_special_tokens=True)


def _generate_command(args: argparse.Namespace) -> int:
    """``nlp-rnn generate``: samples stream to the terminal as they are written (``--json``: one object each)."""
    from nlp_rnn.predictor import load
    from nlp_rnn.runtime import select_device
    from nlp_rnn.tasks import require

    predictor = load(args.run_dir, device=select_device(args.device))
    require(predictor, "generation", "generate")
    options = {"label": args.label, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
               "top_k": args.top_k, "top_p": args.top_p, "repetition_penalty": args.repetition_penalty,
               "greedy": args.greedy, "stop": args.stop, "guidance": args.guidance}
    if args.num_samples < 1:
        raise NlpRnnError(f"--num-samples must be >= 1 (got {args.num_samples})")
    if args.json or args.beam is not None:  # beam search has nothing to stream before it ends
        found = predictor.generate([args.prompt], num_samples=args.num_samples, seed=args.seed,
                                   beam_size=args.beam, **options)
        print(("\n" if args.json else "\n\n").join(json.dumps(r) if args.json else r["prompt"] + r["text"]
                                                    for r in found))
        return 0
    for sample in range(args.num_samples):
        seed = None if args.seed is None else args.seed + sample
        notices: list[str] = []
        sys.stdout.write(args.prompt)
        for piece in predictor.stream(args.prompt, seed=seed, notices=notices, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n" if sample == args.num_samples - 1 else "\n\n")
        for notice in notices:
            print(f"note: {notice}", file=sys.stderr)
    return 0
