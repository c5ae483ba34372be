"""Source text -> target text: the GRU encoder-decoder with attention (``task: translation``)."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import datasets
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import BucketBatchSampler, PairCollator, PairDataset
from nlp_rnn.config import Config, DataConfig, TrainConfig, TranslatorConfig
from nlp_rnn.encoded import IDS, LENGTH, encode_split, read_column
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import autocast, score_translations
from nlp_rnn.io import atomic_write_text
from nlp_rnn.search import decode_dataset
from nlp_rnn.tasks import register_task
from nlp_rnn.tasks.base import Task, check_cell
from nlp_rnn.tokenization import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    decode_ids,
    encode_sources,
    encode_texts,
    train_tokenizer,
    with_dropout,
)
from nlp_rnn.translator import Translator, TranslatorEnsemble

log = logging.getLogger(__name__)


class Candidate(TypedDict):
    translation: str
    score: float  # beam: length-normalised log-probability; greedy: log-probability


class Translation(TypedDict, total=False):
    translation: str  # the best hypothesis, detokenized
    score: float
    nbest: list[Candidate]  # best first; length n_best
    source_tokens: list[str]  # with return_attention: the source subwords (and </s>)
    target_tokens: list[str]  # ... the output subwords (and </s> when it ended)
    attention: list[list[float]]  # ... (len(target_tokens), len(source_tokens)) weights
    truncated: bool  # the source was cut to the model's max length


class TranslationPredictor:
    """A trained encoder-decoder with its tokenizer(s); thread-safe for concurrent ``translate`` calls."""

    def __init__(self, config: Config, tokenizers: list[Tokenizer], model: Translator, run_dir: Path,
                 task: Task | None = None) -> None:
        self.config = config
        self.src_tokenizer, self.tgt_tokenizer = tokenizers[0], tokenizers[-1]
        self.model = model.eval()
        self.run_dir = run_dir
        self.device = next(model.parameters()).device
        self.task = task or TranslationTask(config, tokenizers, {})

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Source ids (ending in </s>) and whether each text was cut to ``data.max_length`` tokens."""
        if isinstance(texts, str):
            raise TypeError("translate takes a list of texts; wrap a single text in a list")
        limit = self.config.data.max_length
        sources, truncated = encode_sources(self.src_tokenizer, [str(t) for t in texts], limit)
        if any(truncated):
            log.warning("%d input(s) longer than %d tokens were cut to fit the model", sum(truncated), limit)
        return sources, truncated

    def translate(self, texts: list[str], beam_size: int | None = None, n_best: int = 1,
                  return_attention: bool = False, length_penalty: float | None = None,
                  batch_size: int = 64) -> list[Translation]:
        """Translate a list of texts. ``beam_size`` 1 is greedy search; the default comes from the config."""
        search = self.config.search
        beam_size = search.beam_size if beam_size is None else int(beam_size)
        if beam_size < 1 or n_best < 1 or n_best > beam_size:
            raise NlpRnnError(f"need 1 <= n_best ({n_best}) <= beam_size ({beam_size})")
        if not texts:
            return []
        sources, truncated = self.encode(texts)
        with torch.inference_mode():  # no module state is written: safe from several threads
            found = decode_dataset(self.model, sources, batch_size, self.device, beam_size,
                                   search.length_penalty if length_penalty is None else length_penalty,
                                   search.max_length_ratio, search.max_output_length, n_best, return_attention)
        results = []
        for ids, cut, hypotheses in zip(sources, truncated, found, strict=True):
            nbest = [Candidate(translation=decode_ids(self.tgt_tokenizer, h.tokens), score=h.score)
                     for h in hypotheses]
            result = Translation(translation=nbest[0]["translation"], score=nbest[0]["score"], nbest=nbest,
                                 truncated=cut)
            if return_attention:
                best = hypotheses[0]
                result.update(source_tokens=[self.src_tokenizer.id_to_token(i) for i in ids],
                              target_tokens=[self.tgt_tokenizer.id_to_token(i) for i in best.output_ids],
                              attention=best.attention.float().tolist())
            results.append(result)
        return results


def encode_pairs(src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, sources: list[str], targets: list[str],
                 max_length: int, drop_long: bool) -> tuple[PairDataset, list[int]]:
    """Encode parallel texts; targets become ``<s> ... </s>``. With ``drop_long``, pairs with a side longer
    than ``max_length`` tokens are left out (training), else cut (evaluation). Returns the kept row indices."""
    src, tgt, keep = _pair_ids(src_tokenizer, tgt_tokenizer, sources, targets, max_length, drop_long)
    _log_left_out(len(sources), len(keep), max_length, drop_long)
    return PairDataset(src, tgt), keep


def _pair_ids(src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, sources: list[str], targets: list[str],
              max_length: int, drop_long: bool) -> tuple[list[list[int]], list[list[int]], list[int]]:
    limit = 10**9 if drop_long else max_length
    src = encode_texts(src_tokenizer, sources, limit, "head")
    tgt = encode_texts(tgt_tokenizer, targets, limit, "head")
    keep = [i for i, (s, t) in enumerate(zip(src, tgt, strict=True))
            if s and t and (not drop_long or (len(s) <= max_length and len(t) <= max_length))]
    return [src[i] + [EOS_ID] for i in keep], [[BOS_ID, *tgt[i], EOS_ID] for i in keep], keep


def _log_left_out(count: int, kept: int, max_length: int, drop_long: bool) -> None:
    if kept < count:
        log.info("left out %d of %d pairs %s", count - kept, count,
                 f"longer than {max_length} tokens (or empty)" if drop_long else "with an empty side")


def _encode_batch(batch: dict[str, list], src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, data: DataConfig,
                  drop_long: bool) -> dict[str, list]:
    """A batch of rows -> ``src``, ``tgt`` and their lengths (and, for evaluation, the target text as the
    reference)."""
    targets = batch[data.target_column]
    src, tgt, keep = _pair_ids(src_tokenizer, tgt_tokenizer, batch[data.source_column], targets, data.max_length,
                               drop_long)
    columns = {"src": src, "tgt": tgt, "src_length": [len(s) for s in src], "tgt_length": [len(t) for t in tgt]}
    if not drop_long:
        columns["reference"] = [targets[i] for i in keep]
    return columns


def _encode_split(task: TranslationTask, split: datasets.Dataset, drop_long: bool,
                  tokenizers: list[Tokenizer] | None = None, draw: dict[str, int] | None = None):
    """``split`` encoded as :func:`encode_pairs` does, once per split, tokenizers and options
    (:mod:`nlp_rnn.encoded`): the Arrow-backed split and its pairs. ``tokenizers``: others than the task's (with
    BPE-dropout), ``draw`` naming which of their random segmentations this is."""
    data = task.config.data
    tokenizers = tokenizers or task.tokenizers
    columns = {"src": IDS, "tgt": IDS, "src_length": LENGTH, "tgt_length": LENGTH}
    if not drop_long:
        columns["reference"] = datasets.Value("string")
    encode = partial(_encode_batch, src_tokenizer=tokenizers[0], tgt_tokenizer=tokenizers[-1], data=data,
                     drop_long=drop_long)
    encoded = encode_split(split, encode, datasets.Features(columns), data, tokenizers,
                           {"drop_long": drop_long, **({"draw": draw} if draw else {})})
    _log_left_out(len(split), len(encoded), data.max_length, drop_long)
    pairs = PairDataset(encoded.column("src"), encoded.column("tgt"), encoded.ints("src_length"),
                        encoded.ints("tgt_length"))
    return encoded, pairs


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


@dataclass
class EvaluationPairs:
    """Encoded pairs (sources cut to the model's length, as at prediction time) and their reference texts."""

    pairs: PairDataset
    references: Sequence[str]

    def __len__(self) -> int:
        return len(self.references)


@register_task("translation")
class TranslationTask(Task):
    """Source text -> target text, scored with sacreBLEU on detokenized output."""

    model_config = TranslatorConfig
    metrics = ("bleu", "loss")
    unit = "sentences"  # what evaluate counts
    logged = ("loss", "ppl", "bleu")
    kept = ("loss", "ppl", "bleu", "chrf", "signature")
    onnx_runner = "translator"
    subword_dropout = True  # tokenizer.dropout: BPE-dropout on the training pairs
    card_hint = "Scores: `nlp-rnn evaluate <this folder> --split SPLIT --beam N` on this folder's own weights."

    @classmethod
    def check_config(cls, config: Config, errors: list[str]) -> None:
        check_cell(config, "encoder_cell", errors)
        model = config.model
        sizes = (model.decoder_hidden_size, model.hidden_size)
        if model.attention == "luong_dot" and all(isinstance(n, int) for n in sizes) and sizes[0] != 2 * sizes[1]:
            errors.append(f"model.attention: luong_dot needs model.decoder_hidden_size ({model.decoder_hidden_size}) "
                          f"= 2 * model.hidden_size ({2 * model.hidden_size}); use luong_general or bahdanau")
        if model.input_feeding and model.attention == "bahdanau":
            errors.append("model.input_feeding: applies to luong_dot and luong_general (bahdanau already feeds "
                          "the context to the GRU)")

    @classmethod
    def columns(cls, data: DataConfig) -> tuple[str, ...]:
        return data.source_column, data.target_column

    @classmethod
    def tokenizer_files(cls, config: Config) -> list[str]:
        if config.tokenizer.joint:
            return [ckpt.TOKENIZER_FILE]
        return [ckpt.SOURCE_TOKENIZER_FILE, ckpt.TARGET_TOKENIZER_FILE]

    @classmethod
    def train_tokenizers(cls, config: Config, train: datasets.Dataset) -> list[Tokenizer]:
        source, target = cls.columns(config.data)
        if config.tokenizer.joint:
            return [train_tokenizer(itertools.chain(read_column(train, source), read_column(train, target)),
                                    config.tokenizer)]
        return [train_tokenizer(read_column(train, column), config.tokenizer) for column in (source, target)]

    @classmethod
    def metadata_from(cls, config: Config, tokenizers: list[Tokenizer], label_names: list[str]) -> dict[str, Any]:
        return {"task": cls.name, "src_vocab_size": tokenizers[0].get_vocab_size(),
                "tgt_vocab_size": tokenizers[-1].get_vocab_size()}

    def vocabulary_keys(self) -> list[tuple[str, int]]:
        return [("src_vocab_size", 0), ("tgt_vocab_size", -1)]

    @property
    def src_tokenizer(self) -> Tokenizer:
        return self.tokenizers[0]

    @property
    def tgt_tokenizer(self) -> Tokenizer:
        return self.tokenizers[-1]

    @property
    def collate(self) -> PairCollator:
        return PairCollator(PAD_ID)

    def encode_training(self, split: datasets.Dataset) -> PairDataset:
        """Training pairs longer than ``data.max_length`` on either side are left out. With ``tokenizer.dropout``,
        both sides are segmented with BPE-dropout: epoch 0's draw (:meth:`training_epochs`)."""
        return self._training_pairs(split, 0)

    def training_epochs(self, split: datasets.Dataset):
        """With ``tokenizer.dropout``: epoch -> the training pairs segmented anew with BPE-dropout."""
        return partial(self._training_pairs, split) if self.config.tokenizer.dropout else None

    def _training_pairs(self, split: datasets.Dataset, epoch: int) -> PairDataset:
        """Epoch ``epoch``'s training pairs. BPE-dropout samples a segmentation each time a sentence is seen
        (Provilkov et al. 2020), so every epoch encodes the split again with dropout. The ``tokenizers`` library's
        dropout draws from a generator no seed reaches, so each draw is kept in the data cache
        (:mod:`nlp_rnn.encoded`) keyed by (train.seed, epoch): a resumed run reads exactly the segmentation its
        interrupted epoch trained on, and the batch order stays a function of (seed, epoch). Encoding a split is
        seconds (Rust, batched); the cache holds one copy per epoch. Pairs that dropout makes longer than
        ``data.max_length`` are left out of that epoch."""
        dropout = self.config.tokenizer.dropout
        if not dropout:
            _, pairs = _encode_split(self, split, drop_long=True)
            return pairs
        tokenizers = [with_dropout(tokenizer, dropout) for tokenizer in self.tokenizers]
        _, pairs = _encode_split(self, split, drop_long=True, tokenizers=tokenizers,
                                 draw={"seed": self.config.train.seed, "epoch": epoch})
        return pairs

    def encode(self, split: datasets.Dataset) -> EvaluationPairs:
        """Sources cut to ``data.max_length`` tokens; pairs with an empty side are left out (logged)."""
        encoded, pairs = _encode_split(self, split, drop_long=False)
        return EvaluationPairs(pairs, encoded.column("reference"))

    def sampler(self, dataset: PairDataset, train: TrainConfig) -> BucketBatchSampler:
        return BucketBatchSampler(dataset.lengths(), train.batch_size, train.max_tokens, shuffle=True,
                                  bucket_size=train.bucket_size, seed=train.seed, sort_keys=dataset.sort_keys())

    def build_model(self) -> nn.Module:
        return Translator(self.config.model, self.src_tokenizer.get_vocab_size(),
                          self.tgt_tokenizer.get_vocab_size(), PAD_ID, self.config.train.label_smoothing)

    def forward(self, model: nn.Module, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        """Training loss, correctly predicted target tokens and the number of target tokens."""
        ratio = teacher_forcing_ratio(self.config.train, step, total_steps)
        logits, loss = model(batch, targets=batch.tgt_out, teacher_forcing_ratio=ratio)
        correct = int(((logits.argmax(-1) == batch.tgt_out) & batch.tgt_mask).sum())
        return loss, correct, int(batch.tgt_mask.sum())

    def evaluate(self, model: nn.Module, data: EvaluationPairs, device: torch.device, batch_size: int,
                 beam_size: int | None = None) -> dict[str, Any]:
        """Teacher-forced cross-entropy (no label smoothing) and perplexity, then sacreBLEU / chrF / TER of the
        decoded output (``beam_size`` 1: greedy, as validation during training; default: the config's)."""
        import time

        train, search = self.config.train, self.config.search
        beam_size = search.beam_size if beam_size is None else beam_size
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        pairs = data.pairs
        sampler = BucketBatchSampler(pairs.lengths(), batch_size, shuffle=False, sort_keys=pairs.sort_keys())
        collate = self.collate
        with torch.no_grad():
            for indices in sampler:
                batch = collate([pairs[i] for i in indices]).to(device)
                with autocast(device, train.amp):
                    logits, _ = model(batch)
                total += float(F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(),
                                               ignore_index=PAD_ID, reduction="sum"))
                tokens += int(batch.tgt_mask.sum())
            started = time.perf_counter()
            found = decode_dataset(model, pairs.src, batch_size, device, beam_size, search.length_penalty,
                                   search.max_length_ratio, search.max_output_length)
            seconds = time.perf_counter() - started
        model.train(was_training)
        loss = total / max(1, tokens)
        hypotheses = [decode_ids(self.tgt_tokenizer, h[0].tokens) for h in found]
        report = score_translations(hypotheses, data.references)
        report.update(loss=loss, ppl=math.exp(min(loss, 50.0)), beam_size=beam_size, hypotheses=hypotheses,
                      sentences_per_second=len(hypotheses) / seconds if seconds > 0 else float("inf"))
        return report

    def after_training(self, model: nn.Module, run: ckpt.RunFolder, device: torch.device,
                       validation: EvaluationPairs | None = None) -> None:
        """Attention heatmaps of a few validation sentences, from the best weights."""
        from nlp_rnn.plots import plot_attention

        if validation is None:
            return
        tensors, _ = ckpt.load_weights(run.weights)
        model.load_state_dict(tensors)
        for index, (source, output, attention) in enumerate(self._attended(model, validation, device, 3)):
            plot_attention(*self._tokens(source, output), attention, run.attention / f"validation_{index}.png")

    def _attended(self, model: nn.Module, validation: EvaluationPairs, device: torch.device,
                  count: int) -> list[tuple[list[int], list[int], torch.Tensor]]:
        """The first ``count`` validation sources greedily translated: source ids, output ids and the attention
        weights (output length, source length)."""
        from nlp_rnn.search import greedy_search

        was_training = model.training
        model.eval()
        found = []
        with torch.no_grad():
            for index in range(min(count, len(validation))):
                source = validation.pairs.src[index]
                batch = self.collate([{"src": source}]).to(device)
                (hypothesis,) = greedy_search(model, batch.src, batch.src_lengths, return_attention=True)
                found.append((list(source), list(hypothesis.output_ids), hypothesis.attention.float().cpu()))
        model.train(was_training)
        return found

    def _tokens(self, source: list[int], output: list[int]) -> tuple[list[str], list[str]]:
        return ([self.src_tokenizer.id_to_token(i) for i in source],
                [self.tgt_tokenizer.id_to_token(i) for i in output])

    def tensorboard_examples(self, model: nn.Module, validation: EvaluationPairs,
                             device: torch.device) -> list[tuple[str, Any]]:
        """Three validation translations (source, reference, greedy output) and the first one's attention."""
        from nlp_rnn.plots import attention_figure

        attended = self._attended(model, validation, device, 3)
        if not attended:
            return []
        rows = ["| source | reference | translation |", "|---|---|---|"]
        for index, (source, output, _) in enumerate(attended):
            cells = [decode_ids(self.src_tokenizer, source), validation.references[index],
                     decode_ids(self.tgt_tokenizer, output)]
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        source, output, attention = attended[0]
        return [("validation/translations", "\n".join(rows)),
                ("validation/attention", attention_figure(*self._tokens(source, output), attention))]

    # -- a trained model -----------------------------------------------------------------------------------

    def predictor(self, model: nn.Module, run_dir: Path, explain_model: nn.Module | None = None):
        return TranslationPredictor(self.config, self.tokenizers, model, run_dir, task=self)

    @classmethod
    def ensemble(cls, members: list[tuple[TranslationTask, nn.Module]]) -> tuple[TranslationTask, nn.Module]:
        """Translators that read and write the same subwords (:class:`TranslatorEnsemble`: the mean of their
        next-token probabilities at every search step). Each member keeps its own encoder and decoder states, but
        they share one source batch and one output vocabulary: their source and target tokenizers must be the same
        (runs on the same data with the same ``tokenizer:`` settings are). The first run's config is the
        ensemble's (its ``data.max_length`` and ``search:``)."""
        first = members[0][0]
        problems = []
        for number, (task, _) in enumerate(members[1:], start=2):
            for side, mine, theirs in (("source", first.src_tokenizer, task.src_tokenizer),
                                       ("target", first.tgt_tokenizer, task.tgt_tokenizer)):
                if theirs.to_str() != mine.to_str():
                    problems.append(f"run {number}'s {side} tokenizer differs from the first run's")
        if problems:
            raise NlpRnnError("these runs cannot form an ensemble (its members read one source batch and write one "
                              "target vocabulary: train them on the same data with the same tokenizer: settings): "
                              + "; ".join(problems))
        task = cls(first.config, first.tokenizers, {**first.meta, "ensemble": len(members)})
        return task, TranslatorEnsemble([model for _, model in members])

    def predict(self, predictor, texts: list[str], beam_size: int | None = None, n_best: int = 1) -> list[dict]:
        return predictor.translate(texts, beam_size=beam_size, n_best=n_best)

    def prediction_line(self, result: dict) -> str:
        return "\t".join(candidate["translation"] for candidate in result["nbest"])

    def write_evaluation(self, report: dict[str, Any], data: EvaluationPairs, out: Path) -> list[str]:
        beam = report["beam_size"]
        hypotheses = report.pop("hypotheses")
        metrics_path, hypotheses_path = ckpt.RunFolder.beam_results(out, beam)
        ckpt.write_json(metrics_path, report)
        atomic_write_text(hypotheses_path, "".join(h + "\n" for h in hypotheses))
        lines = [f"{'greedy' if beam == 1 else f'beam {beam}'}, {report['sentences_per_second']:.1f} sentences/s",
                 f"  BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}  TER {report['ter']:.2f}   "
                 "(sacreBLEU, detokenized, cased)", f"  {report['bleu_details']}"]
        lines += [f"  signature {name}: {report['signature'][name]}" for name in ("bleu", "chrf", "ter")]
        lines.append(f"  lowercased BLEU {report['bleu_lowercase']:.2f} (only for comparison with tutorials that "
                     "report it)")
        lines.append(f"  teacher-forced loss {report['loss']:.4f}, perplexity {report['ppl']:.2f}")
        return lines

    def card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
        data, tokenizer, model, train = config["data"], config["tokenizer"], config["model"], config["train"]
        sizes = [tokenizer.get_vocab_size() for tokenizer in self.tokenizers]  # the run's (a packed ensemble's)
        vocabulary = (f"{sizes[0]:,} subwords in one joint vocabulary" if len(sizes) == 1 else
                      f"separate vocabularies of {sizes[0]:,} source and {sizes[-1]:,} target subwords")
        feeding = ", input feeding" if model["input_feeding"] else ""
        tied = ", tied output embeddings" if model["tie_embeddings"] else ""
        batch = f"{train['max_tokens']:,} padded tokens" if train["max_tokens"] else f"{train['batch_size']} pairs"
        source = self.config.data.source
        lines = [
            f"# {source}: {data['source_column']} -> {data['target_column']} GRU encoder-decoder with attention",
            "",
            f"- **Data**: `{source}` (`{data['source_column']}` -> `{data['target_column']}`); training "
            f"pairs longer than {data['max_length']} subwords left out, longer inputs cut at prediction time.",
            f"- **Tokenizer**: {tokenizer['type']}, {vocabulary}, "
            f"{'lowercased' if tokenizer['lowercase'] else 'cased'}, trained on the training split only.",
            f"- **Model**: embeddings {model['embedding_dim']}; {model['num_layers']} x bidirectional "
            f"{model['encoder_cell']} {model['hidden_size']} encoder; {model['decoder_layers']} x GRU "
            f"{model['decoder_hidden_size']} decoder with {model['attention']} attention{feeding}{tied}; "
            f"{metrics.get('num_parameters', 0):,} parameters.",
            f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batches of {batch}, label "
            f"smoothing {train['label_smoothing']}, teacher forcing {train['teacher_forcing']} "
            f"({train['teacher_forcing_schedule']}), up to {train['epochs']} epochs; best epoch "
            f"{metrics.get('best_epoch')} by validation {metrics.get('metric') or self.config.metric} (greedy).",
            "",
            "| split | sentences | search | BLEU | chrF | TER | lowercased BLEU |",
            "|---|---|---|---|---|---|---|",
        ]
        signature = None
        for folder in sorted(run.evaluation().glob("*")):
            for path in sorted(folder.glob("metrics*.json")):
                report = ckpt.read_json(path)
                search = "greedy" if report["beam_size"] == 1 else f"beam {report['beam_size']}"
                lines.append(f"| {folder.name} | {report['num_sentences']:,} | {search} | {report['bleu']:.2f} | "
                             f"{report['chrf']:.2f} | {report['ter']:.2f} | {report['bleu_lowercase']:.2f} |")
                signature = report["signature"]["bleu"]
        if signature:
            lines += ["", f"BLEU is sacreBLEU on detokenized, cased output (signature `{signature}`); lowercased "
                      "BLEU only for comparison with tutorials."]
        return lines

    def export_onnx(self, model: nn.Module, out: Path, opset: int) -> list[Path]:
        from nlp_rnn.onnx_graphs import export_translator

        return export_translator(model, out, opset)
