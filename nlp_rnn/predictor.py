"""The public inference API: ``nlp_rnn.load(run_dir)`` returns the predictor of the run's task. The CLI and the
demo use only this.

A classification run gives a :class:`SentimentPredictor` (``.predict(texts)``), a translation run a
:class:`TranslationPredictor` (``.translate(texts, beam_size=5, return_attention=False)``); a plugin task, what
its ``Task.predictor`` returns. Every predictor has ``.config``, ``.task``, ``.model``, ``.device`` and
``.run_dir``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.checkpoint import load_tokenizers
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.runtime import select_device
from nlp_rnn.tasks import get_task
from nlp_rnn.tasks.classification import Explanation, Prediction, SentimentPredictor
from nlp_rnn.tasks.translation import Candidate, Translation, TranslationPredictor

log = logging.getLogger(__name__)

__all__ = ["Candidate", "Explanation", "Prediction", "SentimentPredictor", "Translation", "TranslationPredictor",
           "load", "load_model", "quantize_int8"]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with dynamic int8 quantization (weights int8, activations quantized on the fly) of every
    ``nn.LSTM``, ``nn.GRU`` and ``nn.Linear``: ``torch.ao.quantization.quantize_dynamic``, CPU only. Custom
    cells and embeddings stay float32."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(model.float(), {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)


def load_model(path: str | Path, device: str | torch.device = "cpu", ensemble: list[str | Path] = ()):
    """A run folder's task (its config, tokenizers and metadata) and its model with the trained weights, on
    ``device``: what :func:`load` wraps in a predictor, and what ``nlp-rnn evaluate`` scores (a language model
    has no predictor, but it has a perplexity).

    A packed ensemble (``nlp-rnn pack --ensemble``) loads all its members; ``ensemble`` adds more run folders
    (or packed ensembles).
    Several runs come back as one task and one model through their task's ``Task.ensemble``."""
    folders = [run for folder in [path, *ensemble] for run in ckpt.RunFolder(folder).runs()]
    members = [_load_run(folder) for folder in folders]
    task, model = members[0]
    if len(members) > 1:
        other = next(((f, t) for f, (t, _) in zip(folders, members, strict=True) if t.name != task.name), None)
        if other is not None:
            raise NlpRnnError(f"an ensemble's runs must be of one task: {folders[0]} is {task.name}, {other[0]} is "
                              f"{other[1].name}")
        task, model = type(task).ensemble(members)
    return task, model.to(select_device(str(device), "device")).eval()


def _load_run(path: Path):
    run = ckpt.RunFolder(path)
    config = run.read_config()
    task_class = get_task(config.task)
    tokenizers = load_tokenizers(task_class.tokenizer_files(config), run.path)
    tensors, metadata = run.load_weights()
    task = task_class(config, tokenizers, metadata)
    task.check_tokenizers(run.path)
    task.read_run(run)
    model = task.build_model()
    ckpt.load_into(model, tensors, run.weights)
    run.warn_if_unfinished()
    return task, model


def load(path: str | Path, device: str | torch.device = "cpu", quantize: bool = False,
         ensemble: list[str | Path] = ()):
    """Rebuild a trained model from its run folder (config.yaml, tokenizer file(s), model.safetensors) and return
    its task's predictor. ``ensemble``: more run folders of the same task, predicting together with it (as does a
    packed ensemble folder on its own), where the task supports ensembles.

    ``device``: ``cpu`` (the default), ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available); hardware
    that is not there is one :class:`NlpRnnError`. ``quantize=True`` runs the model with dynamic int8
    quantization (:func:`quantize_int8`), which is CPU only (``auto`` then means the CPU)."""
    if quantize and str(device) == "auto":
        device = "cpu"
    device = select_device(str(device), "device")
    if quantize and device.type != "cpu":
        raise NlpRnnError(f"quantize=True runs on the CPU (dynamic int8 kernels), not on {device}")
    task, model = load_model(path, device, ensemble)
    if quantize:
        return task.predictor(quantize_int8(model), Path(path), explain_model=model)
    return task.predictor(model, Path(path))
