"""Gradient-flow diagnostics: vanishing and exploding gradients, measured (``nlp-rnn diagnose gradients``).

Vanishing (Bengio et al. 1994; Pascanu et al. 2013): for a many-to-one classifier whose loss sits on the last
state, how large is dLoss/dh_t for every earlier step t? The model is the config's classifier read left to right
with the loss on its last state (``model.bidirectional: false``, ``model.pooling: last``: the setting of those
papers; a backward direction is the mirror image, and a pooling over all steps would give every step a direct
path to the loss and hide what the recurrence does). Texts of the training split with at least ``length`` tokens
are cut to exactly ``length`` (no padding), and the top layer is run one step at a time so that the gradient with
respect to each h_t is the total one (through every later step), for each cell type at initialisation and after
``steps`` optimizer steps of the ordinary Trainer, averaged over ``batches`` batches (eval mode: no dropout).

Exploding: the same short trainings run twice per cell, with the config's gradient clipping (``train.clip_norm``,
or 1.0 when it is null) and without; every step's global gradient norm (before clipping) is read from their logs
and drawn as two distributions.

Writes ``gradient_flow.png`` (norm against the distance from the loss, log scale), ``gradient_norms.png`` and
``gradients.json`` (every number drawn), and keeps the trainings' run folders in ``runs/``.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.cells import CellLayer, available_cells
from nlp_rnn.config import Config, load_config
from nlp_rnn.errors import NlpRnnError

FLOW_PLOT = "gradient_flow.png"
NORMS_PLOT = "gradient_norms.png"
RESULTS = "gradients.json"
RUNS = "runs"


def parse_cells(value: str) -> list[str]:
    """``rnn,lstm`` -> ["rnn", "lstm"], each a known cell."""
    cells = [c.strip() for c in value.split(",") if c.strip()]
    unknown = [c for c in cells if c not in available_cells()]
    if not cells or unknown:
        raise NlpRnnError(f"--cells {value!r}: choose from {', '.join(available_cells())}")
    return list(dict.fromkeys(cells))


def diagnostic_config(config: Config, cell: str) -> Config:
    """The config's classifier, one direction, loss on the last state, with ``cell``; progress bars off."""
    return replace(config, model=replace(config.model, cell=cell, bidirectional=False, pooling="last"),
                   train=replace(config.train, progress=False))


def read_source(source: str | Path, overrides: list[str] | None = None) -> Config:
    """A YAML config, or a run folder's saved config."""
    path = Path(source)
    if path.is_dir():
        if overrides:
            return load_config(ckpt.RunFolder(path).config, overrides)
        return ckpt.RunFolder(path).read_config()
    return load_config(path, overrides)


def unrolled_states(encoder, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Run a one-direction encoder on unpadded ``input_ids`` (batch, length) with its top layer unrolled step by
    step; return h_t for every step (each (batch, hidden), keeping its gradient): the tensor every later step and
    the loss read, so its gradient is the total dLoss/dh_t."""
    inputs = encoder.embedding_dropout(encoder.embedding(input_ids))  # (batch, length, emb)
    for directions in encoder.layers[:-1]:
        inputs = encoder.dropout(directions[0](inputs)[0])  # lower layers as usual: (batch, length, hidden)
    layer = encoder.layers[-1][0]
    if len(encoder.layers) > 1:
        inputs = encoder.dropout(inputs)
    states: list[torch.Tensor] = []
    if isinstance(layer, CellLayer):
        projected = layer.cell.project_input(inputs)  # (batch, length, *)
        state = layer.cell.initial_state(inputs.size(0), projected)
        for step in range(inputs.size(1)):
            output, state = layer.cell(projected[:, step], state)
            output.retain_grad()
            states.append(output)
        return states
    state = None
    for step in range(inputs.size(1)):
        output, new_state = layer(inputs[:, step : step + 1], state)  # one step of the fused layer
        hidden = output[:, 0]  # (batch, hidden): equal to new_state's h, and now the one the next step reads
        hidden.retain_grad()
        states.append(hidden)
        if isinstance(new_state, tuple):  # LSTM: (h, c)
            state = (hidden.unsqueeze(0), new_state[1])
        else:
            state = hidden.unsqueeze(0)
    return states


def gradient_by_step(model, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Mean over examples and batches of ||dLoss_i/dh_t|| for t = 1..length (each example's own loss: the
    batch's losses are summed, so no 1/batch scale)."""
    model.eval()
    totals: list[float] | None = None
    count = 0
    for input_ids, labels in batches:
        with torch.enable_grad():
            states = unrolled_states(model.encoder, input_ids)
            logits = model.head(model.dropout(states[-1]))  # pooling "last" on unpadded rows is h_T
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            loss.backward()
        norms = [float(h.grad.norm(dim=-1).sum()) for h in states]
        totals = norms if totals is None else [a + b for a, b in zip(totals, norms, strict=True)]
        count += input_ids.size(0)
        model.zero_grad(set_to_none=True)
    return [value / count for value in totals]


def measurement_batches(task, data, length: int, batches: int, batch_size: int,
                        seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` batches of training texts with at least ``length`` tokens, cut to ``length``, drawn with
    ``seed``; the same for every cell (the tokenizer is trained the same way for each)."""
    long_enough = [i for i, ids in enumerate(data.input_ids) if len(ids) >= length]
    needed = batches * batch_size
    if len(long_enough) < needed:
        longest = max((len(ids) for ids in data.input_ids), default=0)
        raise NlpRnnError(f"--length {length}: only {len(long_enough)} training texts have {length} tokens and "
                          f"{needed} are needed (--batches {batches} x {batch_size}); the longest has {longest}: "
                          "give a smaller --length or fewer --batches")
    chosen = random.Random(seed).sample(long_enough, needed)
    result = []
    for start in range(0, needed, batch_size):
        rows = chosen[start : start + batch_size]
        input_ids = torch.tensor([list(data.input_ids[i][:length]) for i in rows], dtype=torch.long)
        labels = torch.tensor([data.labels[i] for i in rows], dtype=torch.long)
        result.append((input_ids, labels))
    return result


def _write_start(task, model, folder: Path) -> Path:
    """A run folder holding the measured initial weights and the shared tokenizer: the trainings start from it
    (``train.init_from``), so "after training" is these very weights trained, read with the same vocabulary."""
    run = ckpt.RunFolder(folder)
    run.write_config(task.config)
    run.write_tokenizers(task.tokenizer_files(task.config), task.tokenizers)
    run.write_weights(model, task.metadata())
    return folder


def _train(config: Config, start: Path, run_dir: Path, steps: int, clip_norm: float | None) -> None:
    """``steps`` optimizer steps of the ordinary Trainer from ``start``'s weights, every step's gradient norm
    logged (validation on at most 1,000 examples); an existing finished run is reused."""
    from nlp_rnn.training import train

    folder = ckpt.RunFolder(run_dir)
    if folder.state.exists() and folder.load_state()["progress"]["done"]:
        return
    batch = config.train.batch_size
    trained = replace(config,
                      data=replace(config.data, max_train_examples=steps * batch,
                                   max_eval_examples=min(config.data.max_eval_examples or 1000, 1000)),
                      train=replace(config.train, epochs=1, log_every=1, clip_norm=clip_norm, max_tokens=None,
                                    checkpoint_every=max(steps, 1), patience=None, init_from=str(start.resolve())))
    train(None if folder.state.exists() else trained, run_dir, resume=folder.state.exists())


def _gradient_norms(run_dir: Path) -> list[float]:
    return [float(r["grad_norm"]) for r in ckpt.RunFolder(run_dir).read_log()
            if r.get("kind") == "step" and math.isfinite(float(r.get("grad_norm", float("nan"))))]


def diagnose_gradients(source: str | Path, out: str | Path, cells: list[str], length: int = 200, batches: int = 4,
                       batch_size: int = 32, steps: int = 200, overrides: list[str] | None = None) -> dict[str, Any]:
    """Measure, plot and write everything; return the results (as ``gradients.json`` holds them)."""
    from nlp_rnn.predictor import load_model
    from nlp_rnn.tasks import get_task
    from nlp_rnn.tasks.classification import ClassificationTask
    from nlp_rnn.training import seed_everything

    base = read_source(source, overrides)
    task_class = get_task(base.task)
    if not issubclass(task_class, ClassificationTask):  # the classifier's encoder, head and labelled texts
        raise NlpRnnError(f"diagnose gradients measures a many-to-one classifier (task: classification or a "
                          f"subclass of ClassificationTask); {source} is task {base.task!r}")
    if length < 2 or batches < 1 or batch_size < 1 or steps < 0:
        raise NlpRnnError("--length must be at least 2, --batches and --batch-size at least 1, --steps at least 0")
    out = Path(out)
    clip = base.train.clip_norm if base.train.clip_norm is not None else 1.0
    results: dict[str, Any] = {"source": str(source), "dataset": base.data.source, "length": length,
                               "batches": batches, "batch_size": batch_size, "steps": steps, "clip_norm": clip,
                               "distance": list(range(length)), "cells": {}}
    first = measured = None
    for cell in cells:
        config = diagnostic_config(base, cell)
        if first is None:  # one tokenizer and one encoding for every cell
            first, data = task_class.for_training(config)
            measured = measurement_batches(first, data.train, length, batches, batch_size, base.train.seed)
        task = task_class(config, first.tokenizers, first.metadata())
        seed_everything(config.train.seed)
        model = task.build_model()
        entry: dict[str, Any] = {"init": _from_loss(gradient_by_step(model, measured))}
        if steps:
            start = _write_start(task, model, out / RUNS / f"{cell}-init")
            runs = {"clipped": out / RUNS / f"{cell}-clipped", "unclipped": out / RUNS / f"{cell}-unclipped"}
            for name, run_dir in runs.items():
                _train(config, start, run_dir, steps, clip if name == "clipped" else None)
                entry[f"grad_norms_{name}"] = _gradient_norms(run_dir)
            _, trained = load_model(runs["clipped"], torch.device("cpu"))
            entry["trained"] = _from_loss(gradient_by_step(trained, measured))
            entry["runs"] = {name: str(path) for name, path in runs.items()}
        measured_at = [when for when in ("init", "trained") if when in entry]
        entry["decay"] = {when: entry[when][-1] / entry[when][0] if entry[when][0] else None for when in measured_at}
        entry["millionth"] = {when: _millionth(entry[when]) for when in measured_at}
        results["cells"][cell] = entry
    from nlp_rnn.plots import plot_gradient_flow, plot_gradient_norms

    plot_gradient_flow(results, out / FLOW_PLOT)
    if steps:
        plot_gradient_norms(results, out / NORMS_PLOT)
    ckpt.write_json(out / RESULTS, results)
    return results


def _millionth(norms: list[float]) -> int | None:
    """The first distance from the loss where the norm is below a millionth of its value at the loss (None: never
    within the measured steps)."""
    return next((distance for distance, norm in enumerate(norms) if norm < 1e-6 * norms[0]), None)


def _from_loss(norms: list[float]) -> list[float]:
    """Per-step norms reordered by distance from the loss: index 0 is the last step."""
    return list(reversed(norms))
