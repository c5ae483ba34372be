"""What every task fills in: the interface the Trainer, ``nlp_rnn.load``, the CLI, packaging and export call.

A task is one kind of model with everything that differs between kinds: the ``model:`` section of its config
and its checks, the dataset columns it reads and which rows it keeps, its tokenizers, how it encodes, batches
and samples examples, the model it builds and the metadata saved beside the weights, its training step, its
evaluation (one, for validation during training and for ``nlp-rnn evaluate``), its predictor, how predictions
print on the CLI, its model card and its ONNX graphs (fairseq's ``FairseqTask``, Hugging Face's pipelines).

Class-level facts (``name``, ``model_config``, ``metrics``...) describe the task before any data is read;
an instance is the task over a config and its trained tokenizers, with the metadata (label names...) of one
run. ``Task.for_training(config)`` also loads and encodes the training and validation data.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.utils.data import Dataset

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import BucketBatchSampler
from nlp_rnn.config import Config, DataConfig, TrainConfig
from nlp_rnn.errors import NlpRnnError

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """What the Trainer needs from a task's data: encoded training and validation examples."""

    train: Dataset
    validation: Any  # the task's encoded evaluation data (what ``Task.evaluate`` takes)
    # epoch (from 0) -> that epoch's training examples, when they differ between epochs (BPE-dropout draws a new
    # segmentation); None: ``train`` every epoch. ``train`` is epoch 0's.
    train_for_epoch: Callable[[int], Dataset] | None = None


class Task(ABC):
    """One model family. Subclass it, fill in the abstract methods, and register it:

    ``@register_task("length_bucket")`` on the class (``nlp_rnn.tasks.register_task``); then ``task:
    length_bucket`` in a config trains it, and ``nlp-rnn --plugin my_module ...`` imports a module that does.
    """

    name: ClassVar[str] = ""  # set by register_task
    model_config: ClassVar[type]  # the frozen dataclass of the config's ``model:`` section
    data_config: ClassVar[type] = DataConfig  # the ``data:`` section: a subclass adds the task's own columns
    metrics: ClassVar[tuple[str, ...]]  # valid train.metric values; the first is what ``auto`` means
    unit: ClassVar[str] = "examples"  # what ``nlp-rnn evaluate`` counts
    logged: ClassVar[tuple[str, ...]]  # validation scores written to log.jsonl every epoch ...
    kept: ClassVar[tuple[str, ...]]  # ... and to metrics.json for the best epoch
    unused_parameters: ClassVar[bool] = False  # DDP: some parameters may get no gradient in a step
    subword_dropout: ClassVar[bool] = False  # encode_training applies tokenizer.dropout (else a config error)
    layered: ClassVar[bool] = False  # its model splits into layer groups (``layer_groups``): ULMFiT's options apply
    onnx_runner: ClassVar[str | None] = None  # nlp_rnn.onnx_inference runner for its exported graphs
    card_hint: ClassVar[str] = ""  # the model card's last line: how to score or use the model
    adversarial: ClassVar[bool] = False  # its training reads train.adversarial / virtual_adversarial (issue 19)

    def __init__(self, config: Config, tokenizers: list[Tokenizer], metadata: dict[str, Any]) -> None:
        self.config = config
        self.tokenizers = tokenizers
        self.meta = dict(metadata)

    # -- the config, before any data ----------------------------------------------------------------------

    @classmethod
    def check_config(cls, config: Config, errors: list[str]) -> None:
        """Append a line to ``errors`` for every problem no field check can see (combinations of values)."""
        return None

    @classmethod
    @abstractmethod
    def columns(cls, data: DataConfig) -> tuple[str, ...]:
        """The dataset columns this task reads."""

    @classmethod
    def keep_row(cls, row: dict[str, Any], columns: tuple[str, ...]) -> bool:
        """Whether a raw row is usable: by default every column holds non-empty text."""
        return all(has_text(row[column]) for column in columns)

    @classmethod
    def label_column(cls, data: DataConfig) -> str | None:
        """The column whose ``ClassLabel`` names the classes (None: the task has no label set)."""
        return None

    @classmethod
    def tokenizer_files(cls, config: Config) -> list[str]:
        """The tokenizer file names a run folder of this config holds (one shared vocabulary by default)."""
        return [ckpt.TOKENIZER_FILE]

    # -- data and model ----------------------------------------------------------------------------------

    @classmethod
    def for_training(cls, config: Config, tokenizers: list[Tokenizer] | None = None) -> tuple[Task, TrainingData]:
        """Load the splits, train the tokenizers unless given (resume, ``train.init_from``), encode."""
        from nlp_rnn.data import load_splits

        splits = load_splits(config.data, cls)
        tokenizers = tokenizers or cls.cached_tokenizers(config, splits.train)
        task = cls(config, tokenizers, cls.metadata_from(config, tokenizers, splits.label_names))
        return task, TrainingData(task.encode_training(splits.train), task.encode(splits.validation),
                                  task.training_epochs(splits.train))

    @classmethod
    def cached_tokenizers(cls, config: Config, train: datasets.Dataset) -> list[Tokenizer]:
        """:meth:`train_tokenizers`, or the tokenizers an earlier run trained on the same split with the same
        ``tokenizer:`` config (kept in the data cache, :mod:`nlp_rnn.encoded`)."""
        from nlp_rnn.encoded import cached_tokenizers

        tokenizer = {k: v for k, v in asdict(config.tokenizer).items() if k != "dropout"}  # only how training reads
        options = {"task": cls.name, "columns": cls.columns(config.data), "tokenizer": tokenizer,
                   "trainer": f"{cls.train_tokenizers.__func__.__module__}.{cls.train_tokenizers.__qualname__}"}
        return cached_tokenizers(train, config.data, options, lambda: cls.train_tokenizers(config, train))

    @classmethod
    def train_tokenizers(cls, config: Config, train: datasets.Dataset) -> list[Tokenizer]:
        """Tokenizers trained on the training split only: by default one, on ``data.text_column`` (read a batch
        of rows at a time)."""
        from nlp_rnn.encoded import read_column
        from nlp_rnn.tokenization import train_tokenizer

        return [train_tokenizer(read_column(train, config.data.text_column), config.tokenizer)]

    @classmethod
    def metadata_from(cls, config: Config, tokenizers: list[Tokenizer], label_names: list[str]) -> dict[str, Any]:
        """The metadata saved beside the weights (safetensors), from which ``nlp_rnn.load`` rebuilds the model:
        the vocabulary size, and the class names when the task reads a label column."""
        labels = {"labels": list(label_names)} if cls.label_column(config.data) else {}
        return {"task": cls.name, **labels, "vocab_size": tokenizers[0].get_vocab_size()}

    def metadata(self) -> dict[str, Any]:
        return dict(self.meta)

    @property
    def labels(self) -> list[str] | None:
        """The class names the model was trained with (a task with a label set keeps them in its metadata)."""
        return self.meta.get("labels")

    def vocabulary_keys(self) -> list[tuple[str, int]]:
        """(metadata key, index into ``tokenizers``) for every vocabulary size the weights were built for."""
        return [("vocab_size", 0)]

    def read_run(self, run: ckpt.RunFolder) -> None:
        """Read what the task keeps in a trained run's folder beside the weights (a classifier: its calibration
        temperature); ``nlp_rnn.load`` calls it. Nothing by default."""
        return None

    def check_tokenizers(self, run_dir: Path) -> None:
        """One clear error when a run folder's tokenizer is not the one its weights were trained with."""
        names = self.tokenizer_files(self.config)
        for key, index in self.vocabulary_keys():
            expected = self.meta.get(key)
            size = self.tokenizers[index].get_vocab_size()
            if expected not in (None, size):
                raise NlpRnnError(f"{Path(run_dir) / names[index]}: vocabulary of {size} tokens does not match the "
                                  f"model's {expected} ({ckpt.WEIGHTS_FILE}); the tokenizer is from another run")

    def encode_training(self, split: datasets.Dataset) -> Dataset:
        """Training examples (by default encoded as for evaluation)."""
        return self.encode(split)

    def training_epochs(self, split: datasets.Dataset) -> Callable[[int], Dataset] | None:
        """epoch -> the training examples of that epoch, where they change from epoch to epoch (``encode_training``
        is epoch 0's); None (the default): the same every epoch."""
        return None

    @abstractmethod
    def encode(self, split: datasets.Dataset) -> Any:
        """Evaluation data from a cleaned split: the same encoding for validation and ``nlp-rnn evaluate``."""

    @property
    @abstractmethod
    def collate(self):
        """The collator that pads a list of encoded examples into a batch."""

    def sampler(self, dataset: Dataset, train: TrainConfig) -> BucketBatchSampler:
        """Length-bucketed, shuffled batches; their order is a pure function of (seed, epoch)."""
        return BucketBatchSampler(dataset.lengths(), train.batch_size, train.max_tokens, shuffle=True,
                                  bucket_size=train.bucket_size, seed=train.seed)

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model for this config, tokenizers and metadata (seeded by the caller)."""

    @abstractmethod
    def forward(self, model: nn.Module, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        """One training forward pass: loss, correct predictions, predictions made."""

    def layer_groups(self, model: nn.Module) -> list[list[nn.Parameter]]:
        """Every parameter of ``model`` in one of its layer groups, bottom (the embedding) to top (the output
        layers): what ULMFiT's discriminative learning rates and gradual unfreezing act on (Howard & Ruder 2018,
        section 3.2-3.3; ``train.layer_lr_decay``, ``train.gradual_unfreezing``). Only a task that sets
        ``layered`` has them (the config check refuses those options for any other)."""
        raise NlpRnnError(f"the {self.name} model has no layer groups")

    def training_state(self) -> Any:
        """What the task carries from step to step in training (generation: the hidden state between chunks),
        saved with each checkpoint so a resumed run continues exactly; None by default."""
        return None

    def restore_training_state(self, state: Any) -> None:
        """Take back what :meth:`training_state` gave (None when the checkpoint has nothing of the task's)."""
        return None

    @abstractmethod
    def evaluate(self, model: nn.Module, data: Any, device: torch.device, batch_size: int,
                 beam_size: int | None = None) -> dict[str, Any]:
        """Scores on encoded evaluation data: every key in ``logged`` and ``kept``, plus what the CLI prints.
        ``beam_size`` applies to tasks that search (validation during training passes 1)."""

    def after_training(self, model: nn.Module, run: ckpt.RunFolder, device: torch.device,
                       validation: Any = None) -> None:
        """Extra files from the best weights (e.g. attention plots); nothing by default."""
        return None

    def tensorboard_examples(self, model: nn.Module, validation: Any, device: torch.device) -> list[tuple[str, Any]]:
        """What TensorBoard shows of a few validation examples after every epoch (``train.tensorboard``):
        (tag, markdown text or a matplotlib Figure) pairs. None by default."""
        return []

    @classmethod
    def add_commands(cls, commands, parents: list) -> None:
        """Subcommands of ``nlp-rnn`` that this task brings (``generate``): ``commands`` is the CLI's
        ``add_subparsers`` object and ``parents`` the parsers every command inherits. Each sets ``run``, a function
        of the parsed arguments that returns the exit status. None by default."""
        return None

    # -- using a trained model ---------------------------------------------------------------------------

    def predictor(self, model: nn.Module, run_dir: Path, explain_model: nn.Module | None = None):
        """The object ``nlp_rnn.load`` returns for this task."""
        raise NlpRnnError(f"{run_dir}: a {self.name} run has no predictor")

    @classmethod
    def ensemble(cls, members: list[tuple[Task, nn.Module]]) -> tuple[Task, nn.Module]:
        """One task and one model that read as all ``members`` (trained runs of this task, each with its own
        tokenizers) together: what ``--ensemble`` loads. The returned model takes the returned task's batches."""
        raise NlpRnnError(f"the {cls.name} task cannot combine runs into an ensemble")

    def predict(self, predictor, texts: list[str], beam_size: int | None = None, n_best: int = 1) -> list[dict]:
        """``nlp-rnn predict``: one JSON-able result per text."""
        raise NlpRnnError(f"a {self.name} run has no predictions to print")

    def prediction_line(self, result: dict) -> str:
        """How one ``predict`` result prints without ``--json``."""
        return str(result)

    def write_evaluation(self, report: dict[str, Any], data: Any, out: Path) -> list[str]:
        """Write ``nlp-rnn evaluate``'s files to ``out``; return the lines it prints."""
        ckpt.write_json(out / ckpt.METRICS_FILE, report)
        return [f"{name}: {value}" for name, value in report.items() if isinstance(value, (int, float))]

    def card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
        """The model card's lines (Markdown) between its title and its "Trained with" command."""
        return [f"- **Task**: {self.name}", f"- **Data**: `{config['data']['dataset']}`",
                f"- **Parameters**: {metrics.get('num_parameters', 0):,}"]

    def export_onnx(self, model: nn.Module, out: Path, opset: int) -> list[Path]:
        """Write the model's ONNX graph(s) to ``out``; return their paths."""
        raise NlpRnnError(f"a {self.name} run cannot be exported to ONNX")

    def onnx_manifest(self) -> dict[str, Any]:
        """Extra entries for the export folder's manifest (e.g. label names)."""
        return {}


def has_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def check_weight_drop(config: Config, errors: list[str]) -> None:
    """``model.weight_drop`` needs a cell with a hidden-to-hidden matrix to drop (every built-in cell has one)."""
    from nlp_rnn.cells import available_cells, make_sequence_layer
    from nlp_rnn.dropout import recurrent_weight_names

    model = config.model
    if not (isinstance(model.weight_drop, float) and model.weight_drop > 0 and model.cell in available_cells()):
        return
    if not recurrent_weight_names(make_sequence_layer(model.cell, 2, 2)):
        errors.append(f"model.weight_drop: cell {model.cell!r} has no hidden-to-hidden matrix named weight_hh* to drop")


def check_cell(config: Config, key: str, errors: list[str]) -> None:
    """``model.<key>`` names a registered recurrent cell (rnn, lstm, ..., or a user's ``register_cell``)."""
    from nlp_rnn.cells import available_cells

    cell = getattr(config.model, key)
    if isinstance(cell, str) and cell not in available_cells():
        errors.append(f"model.{key}: {cell!r} is not one of {', '.join(available_cells())}")
