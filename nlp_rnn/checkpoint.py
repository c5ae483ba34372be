"""Run-folder files: weights in safetensors, resumable training state, all written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from nlp_rnn.errors import NlpRnnError
from nlp_rnn.io import atomic_write

if TYPE_CHECKING:
    from nlp_rnn.config import Config

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"  # classification, or a joint translation vocabulary
SOURCE_TOKENIZER_FILE = "tokenizer.source.json"  # translation with separate vocabularies
TARGET_TOKENIZER_FILE = "tokenizer.target.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.jsonl"
STATE_FILE = "training_state.pt"
COMMAND_FILE = "command.txt"  # the command lines that trained the run, one per start or resume


def save_weights(path: str | Path, model: nn.Module | dict[str, torch.Tensor], metadata: dict[str, Any],
                 dtype: torch.dtype | None = None) -> None:
    """Weights plus JSON-encoded metadata (labels, vocabulary size) in one safetensors file.

    ``dtype=torch.float16`` halves the file for shipping; loading casts back to the model's dtype.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
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


def write_json(path: str | Path, value: Any) -> None:
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8"))


def _load_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise NlpRnnError(f"{path}: not found")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise NlpRnnError(f"{path}: cannot load tokenizer ({str(err).splitlines()[0]})") from None


def tokenizer_files(config: Config) -> list[str]:
    """The tokenizer file names a run folder of this config holds."""
    if config.task == "translation" and not config.tokenizer.joint:
        return [SOURCE_TOKENIZER_FILE, TARGET_TOKENIZER_FILE]
    return [TOKENIZER_FILE]


def load_tokenizers(config: Config, folder: Path) -> list[Tokenizer]:
    return [_load_tokenizer(Path(folder) / name) for name in tokenizer_files(config)]
