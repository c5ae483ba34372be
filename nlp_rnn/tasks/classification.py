"""Text -> label: the recurrent sentiment classifier (``task: classification``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import datasets
import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from nlp_rnn import checkpoint as ckpt
from nlp_rnn import distributed
from nlp_rnn.adversarial import UnlabelledStream, count_tokens, perturbed_losses
from nlp_rnn.batching import Collator, EncodedDataset
from nlp_rnn.classifier import ClassifierEnsemble, SentimentClassifier
from nlp_rnn.config import Config, DataConfig, ModelConfig
from nlp_rnn.distillation import soft_cross_entropy
from nlp_rnn.encoded import IDS, LENGTH, encode_split
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import evaluate_classifier, predict_logits
from nlp_rnn.tasks import register_task
from nlp_rnn.tasks.base import Task, TrainingData, check_cell, check_weight_drop, has_text
from nlp_rnn.tokenization import PAD_ID, encode_texts, require_tokens, truncate

log = logging.getLogger(__name__)


class Prediction(TypedDict):
    label: str
    score: float  # probability of ``label``
    scores: dict[str, float]  # every class's probability


class Explanation(TypedDict):
    prediction: Prediction
    method: str  # "attention" (pooling weights, sum to 1) or "gradient x input" (signed, toward the label)
    tokens: list[str]  # the tokens the model read, after truncation
    scores: list[float]  # one per token
    spans: list[tuple[int, int]]  # each token's (start, end) character offsets in the original text
    truncated: bool  # tokens were cut to the model's max length


class SentimentPredictor:
    """A trained classifier with its tokenizer; thread-safe for concurrent ``predict`` calls."""

    def __init__(self, config: Config, tokenizer: Tokenizer, model: torch.nn.Module, labels: list[str],
                 run_dir: Path, explain_model: torch.nn.Module | None = None, task: Task | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.model = model.eval()
        # gradient x input needs gradients through the encoder, which int8 kernels do not give: a float copy
        self.explain_model = (explain_model or model).eval()
        self.labels = labels
        self.run_dir = run_dir
        self.device = next(model.parameters()).device
        self.task = task or ClassificationTask(config, [tokenizer], {"labels": list(labels)})
        # calibration (Guo et al. 2017): probabilities are softmax(logits / temperature); 1.0 when not fitted
        self.temperature = self.task.temperature

    def encode(self, texts: list[str]) -> list[list[int]]:
        """The texts' ids as the model reads them (an ensemble's members that read otherwise: :meth:`dataset`)."""
        return self.dataset(texts).input_ids

    def dataset(self, texts: list[str]) -> EncodedDataset:
        """The texts encoded by every reading of the model (:class:`Reading`); one clear error for a text
        that has no tokens."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        texts = [str(t) for t in texts]
        first, *others = [reading.encode(texts) for reading in self.task.readings]
        for ids in (first, *others):
            require_tokens(ids)
        return EncodedDataset(first, views=[list(rows) for rows in zip(*others, strict=True)] if others else None)

    def predict_logits(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(len(texts), num_labels) raw logits (before calibration)."""
        if not texts:
            return torch.empty(0, len(self.labels))
        dataset = self.dataset(texts)
        with torch.inference_mode():
            return predict_logits(self.model, dataset, batch_size, self.device)

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(len(texts), num_labels) calibrated class probabilities: softmax(logits / temperature)."""
        return (self.predict_logits(texts, batch_size) / self.temperature).softmax(-1)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        results = []
        for row in self.predict_proba(texts, batch_size).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append(Prediction(label=self.labels[best], score=row[best],
                                      scores=dict(zip(self.labels, row, strict=True))))
        return results

    def explain(self, text: str) -> Explanation:
        """Which tokens drove the prediction for one text: attention-pooling weights when the model pools
        with attention, else gradient x input toward the predicted label. Spans index into ``text``."""
        (ids, tokens, spans, truncated), *others = [reading.tokens(str(text)) for reading in self.task.readings]
        if not ids or not all(other[0] for other in others):
            raise NlpRnnError("the text has no tokens (empty or whitespace only)")
        example = {"input_ids": ids, **({"views": [other[0] for other in others]} if others else {})}
        batch = Collator(PAD_ID)([example]).to(self.device)
        model = self.explain_model
        with torch.inference_mode():
            logits, weights = model.logits_and_weights(batch)
            probabilities = (logits.float() / self.temperature).softmax(-1)[0]
        best = int(probabilities.argmax())
        if weights is not None:
            method, scores = "attention", weights[0]
        else:
            labels = torch.tensor([best], device=self.device)
            # members that tokenize otherwise: their token scores shared out over these tokens by character
            projections = [span_projection(other[2], spans).unsqueeze(0).to(self.device) for other in others]
            extra = (projections,) if projections else ()  # only an ensemble of several readings takes them
            method, scores = "gradient x input", model.gradient_x_input(batch, labels, *extra)[0]
        row = probabilities.tolist()
        return Explanation(
            prediction=Prediction(label=self.labels[best], score=row[best],
                                  scores=dict(zip(self.labels, row, strict=True))),
            method=method, tokens=tokens, scores=scores.float().tolist(), spans=spans, truncated=truncated)


class Reading(NamedTuple):
    """How a classifier turns text into ids: its tokenizer and its truncation. Members of an ensemble may read
    differently (one trained from scratch, one fine-tuned from a language model with its tokenizer)."""

    tokenizer: Tokenizer
    max_length: int
    truncation: str
    head_fraction: float

    @classmethod
    def of(cls, task: ClassificationTask) -> Reading:
        data = task.config.data
        return cls(task.tokenizer, data.max_length, data.truncation, data.head_fraction)

    def key(self) -> tuple:
        return self.tokenizer.to_str(), self.max_length, self.truncation, self.head_fraction

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return encode_texts(self.tokenizer, texts, self.max_length, self.truncation, self.head_fraction)

    def tokens(self, text: str) -> tuple[list[int], list[str], list[tuple[int, int]], bool]:
        """One text's kept ids, their tokens and character spans, and whether truncation cut it."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        kept = truncate(list(range(len(encoding.ids))), self.max_length, self.truncation, self.head_fraction)
        return ([encoding.ids[i] for i in kept], [encoding.tokens[i] for i in kept],
                [encoding.offsets[i] for i in kept], len(kept) < len(encoding.ids))


def span_projection(spans: Sequence[tuple[int, int]], onto: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(len(spans), len(onto)): each token's share of every ``onto`` token, by the characters they share, each
    row summing to 1 (0 for a token that shares none): carries per-token scores from one tokenization to another."""
    own = torch.tensor(list(spans), dtype=torch.float32).view(-1, 2)  # (len(spans), 2) start, end
    other = torch.tensor(list(onto), dtype=torch.float32).view(-1, 2)
    shared = torch.minimum(own[:, 1:], other[:, 1]) - torch.maximum(own[:, :1], other[:, 0])
    projection = shared.clamp_min(0)  # characters each pair of tokens shares
    total = projection.sum(1, keepdim=True)
    return torch.where(total > 0, projection / total.clamp_min(1), projection)


def encode_readings(split, readings: Sequence[Reading], config: Config) -> EncodedDataset:
    """Each text read by every reading: the first's ids as ``input_ids`` (lengths, bucketing), the others' as
    ``views``; a text left out when any reading finds no token in it. Cached like every encoded split."""
    data = config.data
    features = datasets.Features({"input_ids": IDS, "length": LENGTH, "views": datasets.Sequence(IDS),
                                  "label": split.features[data.label_column]})
    settings = [reading.key()[1:] for reading in readings]
    encoded = encode_split(split, partial(_encode_readings_batch, readings=readings, data=data), features, data,
                           [reading.tokenizer for reading in readings], options={"readings": settings})
    if len(encoded) < len(split):
        log.info("left out %d of %d texts with no tokens", len(split) - len(encoded), len(split))
    return EncodedDataset(encoded.column("input_ids"), encoded.column("label"), encoded.ints("length"),
                          encoded.column("views"))


def _encode_readings_batch(batch: dict[str, list], readings: Sequence[Reading], data: DataConfig) -> dict[str, list]:
    first, *others = [reading.encode(batch[data.text_column]) for reading in readings]
    keep = [i for i, row in enumerate(first) if row and all(other[i] for other in others)]
    return {"input_ids": [first[i] for i in keep], "length": [len(first[i]) for i in keep],
            "views": [[other[i] for other in others] for i in keep],
            "label": [batch[data.label_column][i] for i in keep]}


def encode_classification(split, tokenizer: Tokenizer, config: Config) -> EncodedDataset:
    """Token ids (truncated as configured) and labels; texts that normalise to nothing (only "<br />") are left
    out, in validation and evaluation alike. Encoded once per split and tokenizer (:mod:`nlp_rnn.encoded`)."""
    data = config.data
    features = datasets.Features({"input_ids": IDS, "length": LENGTH, "label": split.features[data.label_column]})
    encoded = encode_split(split, partial(_encode_batch, tokenizer=tokenizer, data=data), features, data, [tokenizer])
    if len(encoded) < len(split):
        log.info("left out %d of %d texts with no tokens", len(split) - len(encoded), len(split))
    return EncodedDataset(encoded.column("input_ids"), encoded.column("label"), encoded.ints("length"))


def _encode_batch(batch: dict[str, list], tokenizer: Tokenizer, data: DataConfig) -> dict[str, list]:
    ids = encode_texts(tokenizer, batch[data.text_column], data.max_length, data.truncation, data.head_fraction)
    keep = [i for i, row in enumerate(ids) if row]
    return {"input_ids": [ids[i] for i in keep], "length": [len(ids[i]) for i in keep],
            "label": [batch[data.label_column][i] for i in keep]}


def encode_unlabelled(split, tokenizer: Tokenizer, config: Config,
                      soft_labels: np.ndarray | None = None) -> EncodedDataset:
    """Token ids of unlabelled texts (``data.text_column``, truncated as configured; texts with no tokens left
    out), for virtual adversarial training and distillation. ``soft_labels`` (rows of ``split``, classes): a
    teacher's probabilities, kept as the labels of the rows that stay. Cached like every encoded split."""
    features = datasets.Features({"input_ids": IDS, "length": LENGTH, "row": datasets.Value("int64")})
    encoded = encode_split(split, partial(_encode_unlabelled_batch, tokenizer=tokenizer, data=config.data), features,
                           config.data, [tokenizer], with_indices=True)
    labels = None if soft_labels is None else soft_labels[encoded.ints("row")].tolist()  # (kept, classes)
    return EncodedDataset(encoded.column("input_ids"), labels, encoded.ints("length"))


def _encode_unlabelled_batch(batch: dict[str, list], indices: list[int], tokenizer: Tokenizer,
                             data: DataConfig) -> dict[str, list]:
    ids = encode_texts(tokenizer, batch[data.text_column], data.max_length, data.truncation, data.head_fraction)
    keep = [i for i, row in enumerate(ids) if row]
    return {"input_ids": [ids[i] for i in keep], "length": [len(ids[i]) for i in keep],
            "row": [indices[i] for i in keep]}


def teacher_probabilities(teacher: str, split: datasets.Dataset, config: Config,
                          label_names: Sequence[str]) -> np.ndarray:
    """(rows of ``split``, classes): the calibrated class probabilities of ``teacher`` (a classifier's run folder or
    a packed ensemble; each member reads as it was trained to) for each text of ``split[data.text_column]``; a text
    in which the teacher finds no token gets the uniform distribution. Cached (:mod:`nlp_rnn.distillation`)."""
    from nlp_rnn.distillation import cached_probabilities, teacher_fingerprint
    from nlp_rnn.encoded import cache_root
    from nlp_rnn.predictor import load_model
    from nlp_rnn.runtime import select_device

    where = "train.distillation.teacher"
    if not Path(teacher).is_dir():
        raise NlpRnnError(f"{where}: {teacher!r} is not a run folder")
    folders = ckpt.RunFolder(teacher).runs()

    def score() -> np.ndarray:
        device = select_device(config.train.device, "train.device")
        task, model = load_model(teacher, device)
        if not isinstance(task, ClassificationTask):
            raise NlpRnnError(f"{where}: {teacher} is a {task.name} run, not a classifier")
        if list(task.label_names) != list(label_names):
            raise NlpRnnError(f"{where}: the teacher's labels {task.label_names} differ from the data's "
                              f"{list(label_names)}")
        texts = split[config.data.text_column]
        first, *others = [reading.encode(texts) for reading in task.readings]
        scored = [i for i, ids in enumerate(first) if ids and all(other[i] for other in others)]
        dataset = EncodedDataset([first[i] for i in scored], None, None,
                                 [[other[i] for other in others] for i in scored] if others else None)
        log.info("distillation: the teacher %s reads %d unlabelled texts", teacher, len(scored))
        start = time.perf_counter()
        logits = predict_logits(model, dataset, config.train.eval_batch_size, device, amp=False,
                                progress="teacher" if config.train.progress else None)
        log.info("distillation: scored in %.0f s (cached for later runs)", time.perf_counter() - start)
        probabilities = np.full((len(texts), len(label_names)), 1.0 / len(label_names), dtype=np.float32)
        probabilities[scored] = torch.softmax(logits / task.temperature, dim=-1).numpy()
        return probabilities

    cache = cache_root(config.data) if split.cache_files else None
    key = ("teacher", teacher_fingerprint(folders), split._fingerprint, config.data.text_column, list(label_names))
    return cached_probabilities(cache, key, score)


@register_task("classification")
class ClassificationTask(Task):
    """Text -> one label of a fixed set (the dataset's ``ClassLabel`` names)."""

    model_config = ModelConfig
    metrics = ("accuracy", "macro_f1", "loss")
    unit = "examples"  # what evaluate counts
    logged = ("loss", "accuracy", "macro_f1")
    kept = ("loss", "accuracy", "macro_f1", "per_class", "confusion_matrix")
    onnx_runner = "classifier"
    layered = True  # embedding, each recurrent layer, the output layers: ULMFiT's groups
    card_hint = "Test metrics: `nlp-rnn evaluate <this folder> --split test` on this folder's own weights."
    # train.adversarial, .virtual_adversarial, .distillation, data.unlabelled_split (nlp_rnn.adversarial, .distillation)
    adversarial = True

    @classmethod
    def check_config(cls, config: Config, errors: list[str]) -> None:
        check_cell(config, "cell", errors)
        check_weight_drop(config, errors)

    @classmethod
    def columns(cls, data: DataConfig) -> tuple[str, ...]:
        return data.text_column, data.label_column

    @classmethod
    def keep_row(cls, row: dict[str, Any], columns: tuple[str, ...]) -> bool:
        text, label = columns
        return has_text(row[text]) and row[label] is not None and row[label] != -1

    @classmethod
    def label_column(cls, data: DataConfig) -> str | None:
        return data.label_column

    @property
    def tokenizer(self) -> Tokenizer:
        return self.tokenizers[0]

    @property
    def label_names(self) -> list[str]:
        labels = self.meta.get("labels")
        if not labels:
            raise NlpRnnError(f"no label names in the {ckpt.WEIGHTS_FILE} metadata")
        return list(labels)

    @property
    def collate(self) -> Collator:
        return Collator(PAD_ID)

    # how the model reads text: one reading, or an ensemble's several (``ensemble``)
    other_readings: tuple[Reading, ...] = ()

    @property
    def readings(self) -> list[Reading]:
        return [Reading.of(self), *self.other_readings]

    def encode(self, split: datasets.Dataset) -> EncodedDataset:
        if self.other_readings:
            return encode_readings(split, self.readings, self.config)
        return encode_classification(split, self.tokenizer, self.config)

    # -- adversarial and virtual adversarial training (issue 19, nlp_rnn.adversarial) ---------------------------

    token_counts: torch.Tensor | None = None  # (vocab,) the training split's, for the normalised embeddings
    unlabelled: UnlabelledStream | None = None  # data.unlabelled_split's batches, one per step (VAT)

    @classmethod
    def for_training(cls, config: Config, tokenizers: list[Tokenizer] | None = None) -> tuple[Task, TrainingData]:
        """As every task; with adversarial or virtual adversarial training also the training split's token counts
        (the frequencies of the normalised embeddings), and with VAT or distillation the encoded unlabelled split
        (with distillation, each text's soft label from the teacher)."""
        task, data = super().for_training(config, tokenizers)
        train = config.train
        if train.perturbs_embeddings:
            task.token_counts = count_tokens(data.train.input_ids, task.tokenizer.get_vocab_size())
        if config.data.unlabelled_split:
            from nlp_rnn.data import load_unlabelled

            split = load_unlabelled(config.data, config.data.text_column)
            soft_labels = (teacher_probabilities(train.distillation.teacher, split, config, task.label_names)
                           if train.distillation.on else None)
            texts = encode_unlabelled(split, task.tokenizer, config, soft_labels)
            task.unlabelled = UnlabelledStream(texts, train.unlabelled_batch_size, train.seed, train.bucket_size,
                                               PAD_ID, distributed.context_from_env())
            log.info("unlabelled: %d texts from %s, %d per step beside %d labelled", len(texts),
                     unlabelled_source(config.data), train.unlabelled_batch_size, train.batch_size)
        return task, data

    def build_model(self) -> nn.Module:
        return SentimentClassifier(self.config.model, self.tokenizer.get_vocab_size(), len(self.label_names),
                                   PAD_ID, self.config.train.label_smoothing,
                                   normalised_embeddings=self.config.train.perturbs_embeddings,
                                   token_counts=self.token_counts)

    def forward(self, model: nn.Module, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        """The cross-entropy, plus the adversarial, virtual adversarial and distillation terms when they are on
        (the loss logged for training is then their weighted sum, what is minimised)."""
        train = self.config.train
        reads_unlabelled = train.virtual_adversarial.on or train.distillation.on
        unlabelled = (self.unlabelled.batch(step, batch.input_ids.device)
                      if self.unlabelled is not None and reads_unlabelled else None)
        if train.perturbs_embeddings:
            losses = perturbed_losses(model, batch, train.adversarial, train.virtual_adversarial,
                                      unlabelled if train.virtual_adversarial.on else None)
            logits, loss = losses.logits, losses.total
        else:
            logits, loss = model(batch, targets=batch.labels)
        if train.distillation.on and unlabelled is not None:
            student_logits, _ = model(unlabelled)  # (unlabelled, classes), with the student's dropout
            loss = loss + train.distillation.weight * soft_cross_entropy(student_logits, unlabelled.labels,
                                                                         train.distillation.temperature)
        return loss, int((logits.argmax(-1) == batch.labels).sum()), len(batch.labels)

    def layer_groups(self, model: nn.Module) -> list[list[nn.Parameter]]:
        return model.layer_groups()

    @classmethod
    def ensemble(cls, members: list[tuple[ClassificationTask, nn.Module]]) -> tuple[ClassificationTask, nn.Module]:
        """Classifiers of one label set (:class:`ClassifierEnsemble`: the mean of their calibrated probabilities).
        Each member reads the text as it was trained to, with its own tokenizer and truncation; members that read
        alike share one encoding. The first run's config (data, labels) is the ensemble's."""
        first = members[0][0]
        problems = [f"run {number}'s labels {task.label_names} differ from {first.label_names}"
                    for number, (task, _) in enumerate(members[1:], start=2) if task.label_names != first.label_names]
        if problems:
            raise NlpRnnError("these runs cannot form an ensemble: " + "; ".join(problems))
        readings: dict[tuple, int] = {}  # reading key -> its view (0: the first member's)
        views = [readings.setdefault(Reading.of(task).key(), len(readings)) for task, _ in members]
        task = cls(first.config, first.tokenizers, {**first.meta, "ensemble": len(members)})
        by_view = {view: Reading.of(member) for (member, _), view in zip(members, views, strict=True)}
        task.other_readings = tuple(by_view[view] for view in range(1, len(readings)))
        return task, ClassifierEnsemble([model for _, model in members], [t.temperature for t, _ in members], views)

    def evaluate(self, model: nn.Module, data: EncodedDataset, device: torch.device, batch_size: int,
                 beam_size: int | None = None) -> dict[str, Any]:
        """Loss, accuracy, macro-F1, per-class scores, confusion matrix, examples/s; NLL and expected calibration
        error before and after the run's temperature."""
        return evaluate_classifier(model, data, self.label_names, batch_size, device, self.config.train.amp,
                                   temperature=self.temperature)

    # -- calibration (Guo et al. 2017) ------------------------------------------------------------------------

    temperature: float = 1.0  # softmax(logits / temperature); a trained run's comes from calibration.json

    def read_run(self, run: ckpt.RunFolder) -> None:
        fitted = ckpt.read_json(run.calibration)
        self.temperature = float(fitted["temperature"]) if fitted else 1.0

    def calibrate(self, model: nn.Module, validation: EncodedDataset, run: ckpt.RunFolder,
                  device: torch.device) -> dict[str, Any]:
        """Fit the temperature on ``validation`` (the run's held-out split, never test) and write it to the run."""
        from nlp_rnn.calibration import calibration_report, fit_temperature

        logits = predict_logits(model, validation, self.config.train.eval_batch_size, device, self.config.train.amp)
        labels = torch.as_tensor(validation.labels, dtype=torch.long)
        report = calibration_report(logits, labels, fit_temperature(logits, labels))
        fitted = {"temperature": report["temperature"], "fitted_on": "validation", "examples": len(labels),
                  **{k: report[k] for k in ("nll_before", "nll_after", "ece_before", "ece_after")}}
        ckpt.write_json(run.calibration, fitted)
        self.temperature = report["temperature"]
        return fitted

    def after_training(self, model: nn.Module, run: ckpt.RunFolder, device: torch.device,
                       validation: Any = None) -> None:
        """Calibrate the best weights on the validation split."""
        if validation is None or not len(validation):
            return
        tensors, _ = ckpt.load_weights(run.weights)
        model.load_state_dict(tensors)
        fitted = self.calibrate(model, validation, run, device)
        log.info("calibration: temperature %.3f (validation NLL %.4f -> %.4f, ECE %.4f -> %.4f)",
                 fitted["temperature"], fitted["nll_before"], fitted["nll_after"], fitted["ece_before"],
                 fitted["ece_after"])

    @classmethod
    def add_commands(cls, commands, parents: list) -> None:
        command = commands.add_parser("calibrate", parents=parents, help="fit a classifier's temperature on its "
                                      "validation split (calibrated probabilities)")
        command.add_argument("run_dir")
        command.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
        command.set_defaults(run=_calibrate_command)

    # -- a trained model -----------------------------------------------------------------------------------

    def predictor(self, model: nn.Module, run_dir: Path, explain_model: nn.Module | None = None):
        return SentimentPredictor(self.config, self.tokenizer, model, self.label_names, run_dir,
                                  explain_model=explain_model, task=self)

    def predict(self, predictor, texts: list[str], beam_size: int | None = None, n_best: int = 1) -> list[dict]:
        return predictor.predict(texts)

    def prediction_line(self, result: dict) -> str:
        return f"{result['label']}\t{result['score']:.4f}"

    def write_evaluation(self, report: dict[str, Any], data: Any, out: Path) -> list[str]:
        from nlp_rnn.calibration import plot_reliability
        from nlp_rnn.plots import plot_confusion_matrix

        labels = self.label_names
        ckpt.write_json(out / ckpt.METRICS_FILE, report)
        plot_confusion_matrix(report["confusion_matrix"], labels, out / ckpt.RunFolder.CONFUSION_MATRIX)
        lines = [f"  {name:>12}: precision {scores['precision']:.4f} recall {scores['recall']:.4f} "
                 f"f1 {scores['f1']:.4f} support {scores['support']}" for name, scores in report["per_class"].items()]
        calibration = report.get("calibration")
        if calibration:
            plot_reliability(calibration, out / ckpt.RunFolder.RELIABILITY)
            lines.append(f"calibration (temperature {calibration['temperature']:.3f}): NLL "
                         f"{calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}, ECE (15 bins) "
                         f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}")
        return [f"accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
                f"{report['examples_per_second']:.0f} examples/s", *lines,
                f"confusion matrix (rows true, columns predicted {labels}): {report['confusion_matrix']}"]

    def card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
        members = run.ensemble_members()
        if members:
            return self._ensemble_card(run, config, metrics, members)
        data, model, train = config["data"], config["model"], config["train"]
        direction = "bidirectional " if model["bidirectional"] else ""
        validation_split = f"split {data['validation_split']!r}" if data["validation_split"] else "carved from train"
        source = self.config.data.source
        labels = ", ".join(f"`{name}`" for name in self.meta.get("labels") or [])
        lines = [
            f"# {source}: {direction}{model['cell']} classifier",
            "",
            f"- **Data**: `{source}` (text `{data['text_column']}`, label `{data['label_column']}`"
            f"{': ' + labels if labels else ''}), "
            f"validation {validation_split}, reported on split `{data['test_split']}`; texts truncated to "
            f"{data['max_length']} tokens ({data['truncation']}).",
            f"- **Tokenizer**: {config['tokenizer']['type']}-level, {self.tokenizer.get_vocab_size():,} types, "
            f"trained on the training split only.",
            f"- **Model**: embedding {model['embedding_dim']} -> {model['num_layers']} x {direction}{model['cell']} "
            f"{model['hidden_size']} -> {model['pooling']} pooling -> linear; "
            f"{metrics.get('num_parameters', 0):,} parameters.",
            f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batch {train['batch_size']}, "
            f"up to {train['epochs']} epochs, best epoch {metrics.get('best_epoch')} by validation "
            f"{metrics.get('metric') or self.config.metric}.{_perturbation_note(self.config)}",
            "",
            "| split | examples | accuracy | macro-F1 |",
            "|---|---|---|---|",
        ]
        validation = metrics.get("validation")
        if validation:
            count = sum(map(sum, validation["confusion_matrix"]))
            lines.append(f"| validation | {count:,} | {validation['accuracy']:.4f} | {validation['macro_f1']:.4f} |")
        lines += _evaluation_rows(run, data["test_split"])
        fitted = ckpt.read_json(run.calibration)
        if fitted:
            lines += ["", f"Probabilities are calibrated (temperature scaling, Guo et al. 2017): softmax(logits / "
                      f"{fitted['temperature']:.3f}), fitted on the {fitted['fitted_on']} split "
                      f"({fitted['examples']:,} examples): NLL {fitted['nll_before']:.4f} -> "
                      f"{fitted['nll_after']:.4f}, expected calibration error {fitted['ece_before']:.4f} -> "
                      f"{fitted['ece_after']:.4f}."]
        return lines

    def _ensemble_card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any],
                       members: list[Path]) -> list[str]:
        """A packed ensemble's card: the data, one line per member (each reads with its own tokenizer and
        truncation), then the scores of the ensemble (``evaluation/``)."""
        data = config["data"]
        labels = ", ".join(f"`{name}`" for name in self.meta.get("labels") or [])
        lines = [f"# {self.config.data.source}: an ensemble of {len(members)} classifiers", "",
                 f"- **Data**: `{self.config.data.source}` (text `{data['text_column']}`, label "
                 f"`{data['label_column']}`{': ' + labels if labels else ''}), reported on split "
                 f"`{data['test_split']}`.",
                 f"- **Prediction**: the mean of the members' calibrated class probabilities; "
                 f"{metrics.get('num_parameters', 0):,} parameters in all. Each member reads with its own tokenizer "
                 "and truncation:"]
        for folder in members:
            member = ckpt.RunFolder(folder)
            member_config, member_metrics = member.read_config(), member.read_metrics() or {}
            model, fitted = member_config.model, ckpt.read_json(member.calibration)
            direction = "bidirectional " if model.bidirectional else ""
            temperature = f"temperature {fitted['temperature']:.3f}" if fitted else "uncalibrated"
            lines.append(
                f"  - `{folder.name}`: {member_config.data.max_length} tokens ({member_config.data.truncation}), "
                f"embedding {model.embedding_dim} -> {model.num_layers} x {direction}{model.cell} "
                f"{model.hidden_size} -> {model.pooling} pooling; best epoch {member_metrics.get('best_epoch')}, "
                f"{temperature}.{_perturbation_note(member_config)}")
        return [*lines, "", "| split | examples | accuracy | macro-F1 |", "|---|---|---|---|",
                *_evaluation_rows(run, data["test_split"])]

    def export_onnx(self, model: nn.Module, out: Path, opset: int) -> list[Path]:
        from nlp_rnn.onnx_graphs import export_classifier

        return export_classifier(model, out, opset)

    def onnx_manifest(self) -> dict[str, Any]:
        return {"labels": self.label_names, "temperature": self.temperature}


def _evaluation_rows(run: ckpt.RunFolder, test_split: str) -> list[str]:
    """A card's score rows for each split the folder was evaluated on (``evaluation/``)."""
    rows = []
    for folder in sorted(run.evaluation().glob("*")):
        report = ckpt.read_json(folder / ckpt.METRICS_FILE)
        if report:
            named = test_split if folder.name == "test" else folder.name  # the dataset's own split name
            shown = folder.name if named == folder.name else f"{folder.name} (split `{named}`)"
            rows.append(f"| {shown} | {report['num_examples']:,} | {report['accuracy']:.4f} | "
                        f"{report['macro_f1']:.4f} |")
    return rows


def unlabelled_source(data: DataConfig) -> str:
    """``split `unsupervised``` or ``split `unsupervised` of `stanfordnlp/imdb`, split into sentences``: where the
    unlabelled texts come from (data.unlabelled_*), for cards and logs."""
    words = f"split `{data.unlabelled_split}`"
    if data.unlabelled_elsewhere:
        words += f" of `{data.unlabelled_dataset}`"
    return words + (", split into sentences" if data.unlabelled_sentences else "")


def _perturbation_note(config) -> str:
    """A card's words for adversarial and virtual adversarial training and distillation, when the run (``config``)
    used them."""
    train, data = config.train, config.data
    parts = []
    if train.adversarial.on:
        adversarial = train.adversarial
        parts.append(f"adversarial training (epsilon {adversarial.epsilon}, weight {adversarial.weight})")
    if train.virtual_adversarial.on:
        virtual = train.virtual_adversarial
        source = f" and unlabelled {unlabelled_source(data)}" if data.unlabelled_split else ""
        parts.append(f"virtual adversarial training on the labelled batches{source} (epsilon {virtual.epsilon}, "
                     f"xi {virtual.xi}, weight {virtual.weight})")
    sentences = ([f" With {' and '.join(parts)} on frequency-normalised embeddings (Miyato, Dai & Goodfellow 2017)."]
                 if parts else [])
    if train.distillation.on:
        distillation = train.distillation
        sentences.append(f" Distilled from the teacher `{Path(distillation.teacher).name}` on the unlabelled "
                         f"{unlabelled_source(data)} (its calibrated probabilities as soft labels, weight "
                         f"{distillation.weight}, temperature {distillation.temperature}; Hinton et al. 2015).")
    return "".join(sentences)


def _calibrate_command(args) -> int:
    """``nlp-rnn calibrate RUN``: fit the temperature on the run's validation split and write calibration.json."""
    from nlp_rnn.data import load_eval_split
    from nlp_rnn.predictor import load_model
    from nlp_rnn.runtime import select_device

    task, model = load_model(args.run_dir, select_device(args.device))
    if not isinstance(task, ClassificationTask):
        raise NlpRnnError(f"{args.run_dir}: calibrate fits a classifier's temperature; this is a {task.name} run")
    split = load_eval_split(task.config.data, "validation", type(task), label_names=task.labels)
    fitted = task.calibrate(model, task.encode(split), ckpt.RunFolder(args.run_dir), next(model.parameters()).device)
    print(f"temperature {fitted['temperature']:.4f} on {fitted['examples']:,} validation examples: NLL "
          f"{fitted['nll_before']:.4f} -> {fitted['nll_after']:.4f}, ECE {fitted['ece_before']:.4f} -> "
          f"{fitted['ece_after']:.4f}; written to {ckpt.RunFolder(args.run_dir).calibration}")
    return 0
