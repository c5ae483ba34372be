"""Watching a run train: per-layer gradient and weight norms (``train.log_gradients``) and TensorBoard
(``train.tensorboard``).

TensorBoard gets, under ``RUN/tensorboard/``: ``train/loss``, ``train/accuracy``, ``train/lr``,
``train/grad_norm`` and ``train/tokens_per_second`` every ``train.log_every`` steps (the figures ``log.jsonl``
records), ``validation/<metric>`` for every metric the task logs after each epoch, per-layer histograms of the
weights and of their gradients (before clipping) every ``train.tensorboard_every`` steps, and what the task shows
of its validation examples (translation: a few translations as text and an attention heatmap). ``tensorboard
--logdir runs`` shows every run below ``runs/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


def layer_of(parameter_name: str) -> str:
    """``encoder.layers.0.0.weight_ih_l0`` -> ``encoder.layers.0.0``: the module that owns the parameter."""
    return parameter_name.rpartition(".")[0] or parameter_name


def layer_norms(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per layer (module owning parameters): the L2 norm of its gradients and of its weights, all of its
    trainable parameters together. Layers without a gradient yet are left out of ``grad``."""
    grads: dict[str, float] = {}
    weights: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = layer_of(name)
        weights[layer] = weights.get(layer, 0.0) + float(parameter.detach().float().pow(2).sum())
        if parameter.grad is not None:
            grads[layer] = grads.get(layer, 0.0) + float(parameter.grad.detach().float().pow(2).sum())
    return {"grad": {k: v ** 0.5 for k, v in grads.items()}, "weight": {k: v ** 0.5 for k, v in weights.items()}}


class TensorBoard:
    """One run's event files (torch's SummaryWriter); resuming at ``step`` drops events written after it."""

    def __init__(self, folder: str | Path, purge_step: int | None = None) -> None:
        from nlp_rnn.errors import NlpRnnError

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise NlpRnnError("train.tensorboard needs TensorBoard: pip install 'nlp-rnn[workbench]' "
                              "(or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def histograms(self, model: nn.Module, step: int) -> None:
        """Every trainable parameter's values and (when it has one) gradient, named by layer."""
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            self.writer.add_histogram(f"weights/{name}", parameter.detach().float().cpu(), step)
            if parameter.grad is not None:
                self.writer.add_histogram(f"gradients/{name}", parameter.grad.detach().float().cpu(), step)

    def examples(self, items: list[tuple[str, Any]], step: int) -> None:
        """A task's examples: text (markdown) or a matplotlib figure, each under its tag."""
        from matplotlib.figure import Figure

        for tag, item in items:
            if isinstance(item, Figure):
                self.writer.add_figure(tag, item, step, close=True)
            else:
                self.writer.add_text(tag, str(item), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
