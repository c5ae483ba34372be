"""Run-folder files: weights in safetensors, resumable training state, all written atomically."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from nlp_rnn.config import Config, ConfigError, config_from_dict, read_yaml, save_config
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.io import atomic_write

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"  # classification, or a joint translation vocabulary
SOURCE_TOKENIZER_FILE = "tokenizer.source.json"  # translation with separate vocabularies
TARGET_TOKENIZER_FILE = "tokenizer.target.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.jsonl"
STATE_FILE = "training_state.pt"
COMMAND_FILE = "command.txt"  # the command lines that trained the run, one per start or resume


def save_weights(path: str | Path, weights: nn.Module | dict[str, torch.Tensor], metadata: dict[str, Any],
                 dtype: torch.dtype | None = None) -> None:
    """Weights (a model's, or a state dict) plus JSON-encoded metadata (labels, vocabulary size) in one
    safetensors file.

    ``dtype=torch.float16`` halves the file for shipping; loading casts back to the model's dtype.
    """
    state = weights if isinstance(weights, dict) else weights.state_dict()
    tensors = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().to(dtype if dtype and tensor.is_floating_point() else tensor.dtype)
        tensors[name] = tensor.clone().contiguous()  # tied weights share memory; safetensors stores copies
    encoded = {key: json.dumps(value) for key, value in metadata.items()}
    atomic_write(path, lambda temp: save_file(tensors, temp, metadata=encoded))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise NlpRnnError(f"{path}: weights file not found")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
        metadata = {key: json.loads(value) for key, value in raw.items() if key != "format"}
    except (SafetensorError, OSError, ValueError) as err:
        raise NlpRnnError(f"{path}: not a readable safetensors file ({err})") from None
    return tensors, metadata


def load_into(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Strict load with an error that names the file instead of a wall of key names."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:3]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            details.append(f"{k} has shape {tuple(tensors[k].shape)}, the config builds {tuple(expected[k].shape)}")
        raise NlpRnnError(f"{path}: weights do not match the model in config.yaml ({'; '.join(details)})")
    model.load_state_dict(tensors)


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda temp: torch.save(state, temp))


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise NlpRnnError(f"{path}: no training state to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise NlpRnnError(f"{path}: cannot read training state ({err})") from None


def read_json(path: str | Path) -> Any:
    """A JSON file's value, or None when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_json(path: str | Path, value: Any) -> None:
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8"))


def _load_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise NlpRnnError(f"{path}: not found")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise NlpRnnError(f"{path}: cannot load tokenizer ({str(err).splitlines()[0]})") from None


def load_tokenizers(names: list[str], folder: Path) -> list[Tokenizer]:
    """The tokenizer files ``names`` (a task's ``tokenizer_files(config)``) of a run folder."""
    return [_load_tokenizer(Path(folder) / name) for name in names]


class RunFolder:
    """The one owner of a run folder's layout: every file name is spelled here, and the writes go through it.

    ``config.yaml`` (the resolved config), the tokenizer file(s), ``model.safetensors`` (best weights and their
    metadata), ``metrics.json``, ``log.jsonl``, ``training_state.pt`` (for --resume), ``command.txt``,
    ``learning_curve.png``, ``attention/`` (translation plots), ``evaluation/SPLIT/`` (``nlp-rnn evaluate``),
    ``README.md`` (the model card, ``nlp-rnn pack``), ``onnx/`` (``nlp-rnn export``) and ``tensorboard/``
    (``train.tensorboard``), ``epochs/`` (the last epochs' weights, ``train.keep_epoch_weights``) and
    ``averaged/`` (their mean, ``nlp-rnn average``: a run folder of its own). A packed ensemble
    (``nlp-rnn pack --ensemble``) holds packed runs in ``ensemble/``, listed in ``ensemble.json``, and the first
    one's config; loading it loads them all.
    """

    CONFIG = CONFIG_FILE
    WEIGHTS = WEIGHTS_FILE
    METRICS = METRICS_FILE
    LOG = LOG_FILE
    STATE = STATE_FILE
    COMMAND = COMMAND_FILE
    LEARNING_CURVE = "learning_curve.png"
    CARD = "README.md"
    ATTENTION = "attention"
    EVALUATION = "evaluation"
    ONNX = "onnx"
    CONFUSION_MATRIX = "confusion_matrix.png"  # in evaluation/SPLIT/, beside metrics.json (classification)
    RELIABILITY = "reliability.png"  # in evaluation/SPLIT/ (classification: calibration before and after)
    CALIBRATION = "calibration.json"  # a classifier's temperature, fitted on validation (nlp-rnn calibrate)
    ENSEMBLE = "ensemble"  # a packed ensemble's members, each a packed run folder (nlp-rnn pack --ensemble)
    ENSEMBLE_LIST = "ensemble.json"  # their folder names in ensemble/, in order
    SEEDS_LIST = "seeds.json"  # a folder of seeds (nlp-rnn train --seeds): the seeds, each run in seed-N/
    SUMMARY = "summary.json"  # ... and the mean and standard deviation of their validation scores
    TENSORBOARD = "tensorboard"  # event files (train.tensorboard: true)
    EPOCHS = "epochs"  # the last epochs' weights, epoch-E.safetensors (train.keep_epoch_weights)
    AVERAGED = "averaged"  # nlp-rnn average's run folder of their mean, unless --out says where
    # what a shipped copy keeps (no training state): files, then folders; tokenizer files come from the task
    SHIPPED = (CONFIG, METRICS, LOG, LEARNING_CURVE, COMMAND, CALIBRATION)
    SHIPPED_FOLDERS = (EVALUATION, ATTENTION)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def command(self) -> Path:
        return self.path / self.COMMAND

    @property
    def learning_curve(self) -> Path:
        return self.path / self.LEARNING_CURVE

    @property
    def card(self) -> Path:
        return self.path / self.CARD

    @property
    def attention(self) -> Path:
        return self.path / self.ATTENTION

    @property
    def calibration(self) -> Path:
        return self.path / self.CALIBRATION

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def onnx(self) -> Path:
        return self.path / self.ONNX

    @staticmethod
    def beam_results(folder: Path, beam: int) -> tuple[Path, Path]:
        """A translation's ``metrics.beamN.json`` and ``hypotheses.beamN.txt`` in an evaluation folder: greedy and
        beam results side by side."""
        return folder / f"metrics.beam{beam}.json", folder / f"hypotheses.beam{beam}.txt"

    def evaluation(self, split: str | None = None) -> Path:
        """``evaluation/`` (every split's results), or ``evaluation/SPLIT/``."""
        return self.path / self.EVALUATION if split is None else self.path / self.EVALUATION / split

    def ensemble_members(self) -> list[Path]:
        """The members' folders when this folder is a packed ensemble; none otherwise."""
        listed = read_json(self.path / self.ENSEMBLE_LIST)
        if listed is None:
            return []
        folders = [self.path / self.ENSEMBLE / name for name in listed.get("members", [])]
        for folder in folders:
            if not folder.is_dir():
                raise NlpRnnError(f"{self.path / self.ENSEMBLE_LIST} names {folder}, which is not there")
        return folders

    def runs(self) -> list[Path]:
        """The run folders this folder stands for: its ensemble's members, or itself."""
        return self.ensemble_members() or [self.path]

    def seed_list(self) -> list[int]:
        """The seeds of a folder of seeds (``nlp-rnn train --seeds``); none for a run folder."""
        listed = read_json(self.path / self.SEEDS_LIST)
        return list(listed["seeds"]) if listed else []

    def seed_run(self, seed: int) -> Path:
        return self.path / f"seed-{seed}"

    def write_seed_list(self, seeds: list[int]) -> None:
        write_json(self.path / self.SEEDS_LIST, {"seeds": seeds})

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    def epoch_weights(self, epoch: int) -> Path:
        """``epochs/epoch-E.safetensors``: the weights at the end of epoch ``epoch`` (counted from 1)."""
        return self.path / self.EPOCHS / f"epoch-{epoch}.safetensors"

    def kept_epochs(self) -> list[tuple[int, Path]]:
        """(epoch, weights file) of every epoch kept in ``epochs/``, oldest first."""
        folder = self.path / self.EPOCHS
        found = []
        for path in folder.glob("epoch-*.safetensors") if folder.is_dir() else []:
            number = path.name.removeprefix("epoch-").removesuffix(".safetensors")
            if number.isdigit():
                found.append((int(number), path))
        return sorted(found)

    def write_epoch_weights(self, epoch: int, model: nn.Module, metadata: dict[str, Any], keep: int) -> None:
        """Keep epoch ``epoch``'s weights, and only the last ``keep`` epochs' (older files are deleted)."""
        save_weights(self.epoch_weights(epoch), model, metadata)
        for _, path in self.kept_epochs()[:-keep]:
            path.unlink(missing_ok=True)

    def write_ensemble_list(self, names: list[str]) -> None:
        write_json(self.path / self.ENSEMBLE_LIST, {"members": names})

    def holds_run(self) -> bool:
        """A run, or a folder of seeds, was started here (training into it again would mix two runs)."""
        return self.state.exists() or self.weights.exists() or (self.path / self.SEEDS_LIST).exists()

    def refuse_if_holds_run(self) -> None:
        """One error line instead of training a second run (or folder of seeds) into this one."""
        if self.holds_run():
            raise NlpRnnError(f"{self.path} already holds a run: pass --resume to continue it, or choose another --out")

    def check_weights(self) -> None:
        """One error line where ``model.safetensors`` is missing: a run still in its first epoch has none yet, and
        a folder without training state is no run folder."""
        if self.weights.is_file():
            return
        if self.state.is_file():
            raise NlpRnnError(f"{self.path}: no weights yet: its training has not finished an epoch (nlp-rnn train "
                              f"--resume --out {self.path} continues it)")
        raise NlpRnnError(f"{self.weights}: not found (is {self.path} a finished run folder?)")

    def load_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``model.safetensors``: the tensors and their metadata."""
        self.check_weights()
        return load_weights(self.weights)

    def unfinished(self) -> dict[str, Any] | None:
        """The training progress of a run whose training has not finished (still going, or interrupted before its
        last epoch): its ``model.safetensors`` holds the best weights so far. None for a finished run, a packed copy
        (no training state) or a state that cannot be read (loading the weights reports what matters)."""
        if not self.state.is_file():
            return None
        try:  # memory-mapped: only the small progress record is read, not the optimizer's moments
            progress = torch.load(self.state, map_location="cpu", weights_only=True, mmap=True)["progress"]
        except Exception:  # noqa: BLE001 - half-written or foreign: not this check's business
            return None
        return None if progress.get("done") else dict(progress)

    def warn_if_unfinished(self, reader: str = "") -> None:
        """One warning when this run's training is still going or was interrupted: what is scored, packed, served or
        started from (``reader`` names it, e.g. ``train.init_from``) is its best epoch so far, not the trained model.
        The config is read only then, for the number of epochs."""
        progress = self.unfinished()
        if progress is None:
            return
        best = f"the weights of epoch {progress['best_epoch']}" if progress.get("best_epoch") else "its weights"
        log.warning("%s%s has not finished training (%d of %d epochs done): this loads %s, the best so far (if it "
                    "was interrupted, nlp-rnn train --resume --out %s finishes it)", f"{reader}: " if reader else "",
                    self.path, progress["epoch"], self.read_config().train.epochs, best, self.path)

    def read_config(self) -> Config:
        """The run's checked config; its plugins (a user's task or cells) are imported first."""
        if not self.path.is_dir():
            raise NlpRnnError(f"{self.path}: run folder not found")
        if not self.config.is_file():
            raise NlpRnnError(f"{self.config}: not found (is {self.path} a run folder?)")
        try:
            return config_from_dict(read_yaml(self.config))
        except ConfigError as err:
            raise NlpRnnError(f"{self.config}: {err}") from None

    # -- writes ------------------------------------------------------------------------------------------

    def write_config(self, config: Config) -> None:
        save_config(config, self.config)

    def write_tokenizers(self, names: list[str], tokenizers: list[Tokenizer]) -> None:
        for name, tokenizer in zip(names, tokenizers, strict=True):
            atomic_write(self.path / name, lambda temp, tokenizer=tokenizer: tokenizer.save(temp))

    def write_weights(self, model: nn.Module | dict[str, torch.Tensor], metadata: dict[str, Any],
                      dtype: torch.dtype | None = None) -> None:
        save_weights(self.weights, model, metadata, dtype)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics, metrics)

    def read_metrics(self) -> dict[str, Any] | None:
        return read_json(self.metrics)

    def vocabulary_sizes(self, names: list[str]) -> list[int]:
        """The size of each tokenizer file ``names``: what the model reads, not the ``tokenizer.vocab_size``
        the config asked for (a small corpus gives fewer types)."""
        return [tokenizer.get_vocab_size() for tokenizer in load_tokenizers(names, self.path)]

    def save_state(self, state: dict[str, Any]) -> None:
        save_training_state(self.state, state)

    def load_state(self) -> dict[str, Any]:
        return load_training_state(self.state)

    def append_command(self, command: str) -> None:
        with open(self.command, "a", encoding="utf-8") as handle:
            handle.write(command + "\n")

    def read_command(self) -> str:
        return self.command.read_text(encoding="utf-8").strip() if self.command.is_file() else "(not recorded)"

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines() if line]

    def keep_log_until(self, step: int) -> None:
        """Drop log records written after a checkpoint at ``step``: a resumed run writes them again."""
        if self.log.exists():
            kept = [record for record in self.read_log() if record["step"] <= step]
            atomic_write(self.log, lambda temp: Path(temp).write_text(
                "".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8"))

    def clear_log(self) -> None:
        self.log.unlink(missing_ok=True)
