"""Training: AdamW, warmup + decay or plateau schedule, clipping, early stopping, resumable checkpoints.

One Trainer serves every model family; what differs (data, model, loss, validation) lives in the task
objects of :mod:`nlp_rnn.tasks`. A run folder ends up holding ``config.yaml`` (fully resolved), the
tokenizer file(s), ``model.safetensors`` (the best epoch), ``metrics.json``, ``log.jsonl``,
``learning_curve.png`` and ``training_state.pt`` (everything ``--resume`` needs: current weights, optimizer,
scheduler, position in the epoch, RNG states). Batch order is a pure function of (seed, epoch) and the RNG
states are restored, so an interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from nlp_rnn import checkpoint as ckpt
from nlp_rnn import distributed, runtime
from nlp_rnn.checkpoint import load_tokenizers
from nlp_rnn.config import Config, TrainConfig, load_config
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import training_autocast
from nlp_rnn.monitoring import TensorBoard, layer_norms
from nlp_rnn.plots import plot_learning_curve
from nlp_rnn.tasks import get_task

log = logging.getLogger(__name__)


class TrainingInterrupted(NlpRnnError):
    """Training stopped early (Ctrl-C or SIGTERM) after saving a resumable checkpoint."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _parameter_groups(model: torch.nn.Module, weight_decay: float,
                      layers: list[list[torch.nn.Parameter]] | None = None, lr: float = 0.0,
                      layer_lr_decay: float = 1.0) -> list[dict]:
    """Decay matrices only; biases, peepholes and embeddings are left alone (as in BERT/nanoGPT).
    Frozen parameters are not optimised at all. The peephole LSTM stores its three diagonal peephole vectors as
    one (3, hidden) tensor: not a matrix, so named here.

    Given the model's ``layers`` (layer groups, bottom to top), each gets its own pair of groups with ULMFiT's
    discriminative rate, ``lr / layer_lr_decay ** depth`` at ``depth`` groups below the top (Howard & Ruder 2018,
    eq. 2 with eta^{l-1} = eta^l / 2.6), the top group first (its rate is the one logged)."""
    if layers is None:
        layers, rates = [list(model.parameters())], [None]
    else:
        rates = [lr / layer_lr_decay**depth for depth in range(len(layers))]
        layers = layers[::-1]  # top first
    depth_of = {id(parameter): depth for depth, layer in enumerate(layers) for parameter in layer}
    groups = [([], []) for _ in layers]
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) not in depth_of:
            raise ValueError(f"{name} is in none of the model's layer groups")
        is_matrix = parameter.dim() >= 2 and "embedding" not in name and not name.endswith("peephole")
        groups[depth_of[id(parameter)]][0 if is_matrix else 1].append(parameter)
    return [{"params": params, "weight_decay": decay, **({} if rate is None else {"lr": rate})}
            for (matrices, others), rate in zip(groups, rates, strict=True)
            for params, decay in ((matrices, weight_decay), (others, 0.0))]


def frozen_layers(epoch: int, num_layers: int) -> int:
    """Gradual unfreezing (Howard & Ruder 2018, section 3.3): the layer groups still frozen, counted from the
    bottom, in 0-based ``epoch``: the top group trains from the first epoch, each later epoch one more below."""
    return max(0, num_layers - (epoch + 1))


def _warmup_then(decay: Callable[[float], float]):
    """A per-step schedule: linear warmup over ``warmup_ratio`` of the steps, then ``decay(progress)`` times the
    peak rate, ``progress`` going from 0 to 1 over the remaining steps."""

    def build(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int, metric: str):
        warmup = int(train.warmup_ratio * total_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return decay(min(1.0, (step - warmup) / max(1, total_steps - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return build


def _plateau(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int, metric: str):
    """Stepped once per epoch with the validation metric (Trainer._end_epoch)."""
    mode = "min" if lower_is_better(metric) else "max"
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=train.plateau_factor, patience=train.plateau_patience)


def _slanted_triangular(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int, metric: str):
    """ULMFiT's slanted triangular rates (Howard & Ruder 2018, eq. 3): over the first ``stlr_cut_frac`` of the
    steps the rate rises linearly from lr / ratio to lr, then falls linearly back towards lr / ratio:

        cut = floor(T * cut_frac)
        p = t / cut                                      if t < cut
            1 - (t - cut) / (cut * (1 / cut_frac - 1))   otherwise
        lr_t = lr * (1 + p * (ratio - 1)) / ratio

    t counts the optimizer steps taken before this one. Where flooring ``cut`` makes the fall end before the last
    step, p stops at 0 (the rate at lr / ratio) instead of going negative."""
    cut = max(1, math.floor(total_steps * train.stlr_cut_frac))
    fall = cut * (1 / train.stlr_cut_frac - 1)
    ratio = train.stlr_ratio

    def factor(step: int) -> float:
        p = step / cut if step < cut else max(0.0, 1 - (step - cut) / fall)
        return (1 + p * (ratio - 1)) / ratio

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# Keyed by exactly config.choices(TrainConfig, "schedule") (tests/test_training.py checks).
SCHEDULES = {
    "linear": _warmup_then(lambda progress: 1.0 - progress),
    "cosine": _warmup_then(lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress))),
    "constant": _warmup_then(lambda progress: 1.0),
    "plateau": _plateau,
    "slanted_triangular": _slanted_triangular,
}


def _make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int, metric: str):
    if train.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {train.schedule!r}; available: {', '.join(SCHEDULES)}")
    return SCHEDULES[train.schedule](optimizer, train, total_steps, metric)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of the validation metric is better (the loss) or a larger (every score)."""
    return metric == "loss"


def _improved(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better(metric) else value > best


class Trainer:
    """One training run in one run folder. ``run()`` trains to the end or raises TrainingInterrupted.

    ``on_step(step)`` is called after every optimizer step and ``on_epoch(epoch, value)`` after every validation
    (once the epoch's checkpoint is saved) with the validation metric; either may raise to stop the run there
    (``nlp-rnn tune`` prunes a trial so), leaving a run folder that ``--resume`` continues."""

    def __init__(self, config: Config, run_dir: str | Path, resume: bool = False,
                 on_step: Callable[[int], None] | None = None, overrides: list[str] | None = None,
                 command: str | None = None, on_epoch: Callable[[int, float], None] | None = None) -> None:
        self.folder = ckpt.RunFolder(run_dir)  # every file this run writes goes through it
        self.run_dir = self.folder.path
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.command = command  # the command line, appended to command.txt once training starts
        self.dist = distributed.context_from_env()  # one process, or this rank of a torchrun job
        self.state: dict[str, Any] | None = None
        if resume:
            self.state = self.folder.load_state()
            config = load_config(self.folder.config, overrides)  # e.g. more threads
        else:
            self.folder.refuse_if_holds_run()
        self.config = config
        self._prepare_process()
        self._load_task(resume)
        self._build_model(resume)
        self._build_optimisation()
        self.progress = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": None, "bad_epochs": 0,
                         "done": False, "seconds": 0.0, "sums": _empty_sums()}
        if self.state is not None:
            self._restore(self.state)

    # -- setting up ---------------------------------------------------------------------------------

    def _prepare_process(self) -> None:
        """Threads, seed, device, malloc reuse and (under torchrun) the process group."""
        train = self.config.train
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        seed_everything(train.seed)
        self.device = runtime.select_device(train.device, "train.device")
        # malloc keeps freed memory for the next step; its free pages go back to the kernel whenever the process
        # has grown by RELEASE_MARGIN (runtime: where batch shapes vary widely, malloc may not reuse what it kept)
        keeps = self.device.type == "cpu" and train.keep_freed_memory and runtime.keep_freed_memory()
        self._release_above = runtime.resident_bytes() + runtime.RELEASE_MARGIN if keeps else None
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        distributed.setup(self.dist, self.device)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _load_task(self, resume: bool) -> None:
        """The task with its data; tokenizers from the run (resume), from ``train.init_from``, or trained."""
        config = self.config
        task_class = get_task(config.task)
        names = task_class.tokenizer_files(config)
        tokenizers = None
        if resume:
            tokenizers = load_tokenizers(names, self.run_dir)
        elif config.train.init_from:
            tokenizers = _init_tokenizers(names, Path(config.train.init_from))
        self.task, self.data = task_class.for_training(config, tokenizers)
        if not resume and self.dist.is_main:
            self.folder.write_config(config)
            self.folder.write_tokenizers(names, self.task.tokenizers)
            self.folder.clear_log()

    def _build_model(self, resume: bool) -> None:
        train = self.config.train
        seed_everything(train.seed)  # same initial weights whatever the data loading consumed
        self.model = self.task.build_model()
        if train.init_from and not resume:
            _init_weights(self.model, Path(train.init_from))
        if train.freeze_embeddings:
            for module in self.model.modules():
                if isinstance(module, torch.nn.Embedding):
                    module.weight.requires_grad_(False)  # a tied output layer shares it: frozen too
        self.model.to(self.device)
        self.step_module = _TaskStep(self.task, self.model)
        if self.dist.enabled:
            torch.manual_seed(train.seed + self.dist.rank)  # each rank its own dropout masks
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.task.unused_parameters)

    def _build_optimisation(self) -> None:
        """AdamW (with ULMFiT's per-layer rates when ``train.layer_lr_decay`` > 1), the batches of an epoch and the
        learning-rate schedule."""
        train = self.config.train
        layered = train.layer_lr_decay != 1.0 or train.gradual_unfreezing
        self.layers = self.task.layer_groups(self.model) if layered else None  # bottom to top
        groups = (_parameter_groups(self.model, train.weight_decay, self.layers, train.lr, train.layer_lr_decay)
                  if train.layer_lr_decay != 1.0 else _parameter_groups(self.model, train.weight_decay))
        self.optimizer = torch.optim.AdamW(groups, lr=train.lr)
        world = self.dist.world_size  # every rank cuts the same global batches, then takes its share
        self.batching = replace(train, batch_size=train.batch_size * world,
                                max_tokens=train.max_tokens and train.max_tokens * world)
        self.sampler = self.task.sampler(self.data.train, self.batching)
        self.data_epoch = 0  # the epoch whose training examples self.data.train holds
        self.steps_per_epoch = len(self.sampler.batches())  # epoch 0's (BPE-dropout: later epochs' about the same)
        self.scheduler = _make_scheduler(self.optimizer, train, self.steps_per_epoch * train.epochs,
                                         self.config.metric)

    # -- state --------------------------------------------------------------------------------------

    def _save_state(self) -> None:
        """Checkpoint for --resume. Under torchrun every rank calls it at the same step: each rank draws its own
        dropout masks (and teacher-forcing coins), so every rank's RNG state is gathered and saved by rank 0."""
        rng = distributed.gather(_rng_state(), self.dist)  # one per rank, in rank order
        if not self.dist.is_main:
            return
        state = {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": dict(self.progress),
            "rng": rng,
            "task": self.task.training_state(),
        }
        self.folder.save_state(state)

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress = dict(state["progress"])
        self.task.restore_training_state(state.get("task"))
        saved = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # a dict: one process (older runs)
        rank, world = self.dist.rank, self.dist.world_size
        if len(saved) != world and self.dist.is_main:
            log.warning("this run was checkpointed by %d process(es) and resumes on %d: the global batch and the "
                        "random draws differ from an uninterrupted run", len(saved), world)
        if rank < len(saved):
            _set_rng_state(saved[rank])
        else:  # a rank the checkpoint did not have: a fresh stream of its own, not a copy of another rank's
            torch.manual_seed(self.config.train.seed + rank + self.progress["step"])
            random.seed(self.config.train.seed + rank + self.progress["step"])
        if self.dist.is_main:
            self.folder.keep_log_until(self.progress["step"])

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.folder.append_log(record)

    # -- loop ---------------------------------------------------------------------------------------

    def _train_step(self, batch) -> tuple[float, int, int, float]:
        """One optimizer step -> loss, correct predictions, predictions made, gradient norm."""
        train = self.config.train
        batch = batch.to(self.device)
        with training_autocast(self.device, train.amp):
            loss, correct, count = self.step_module(batch, self.progress["step"], self.steps_per_epoch * train.epochs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._drop_frozen_gradients()
        self._watch_gradients(self.progress["step"] + 1)  # before clipping scales them
        max_norm = train.clip_norm if train.clip_norm is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        self.optimizer.step()
        if train.schedule != "plateau":
            self.scheduler.step()
        return loss.item(), correct, count, grad_norm

    def _drop_frozen_gradients(self) -> None:
        """Gradual unfreezing: the layer groups still frozen this epoch get no gradient, so AdamW leaves them
        exactly as they are (no step, no weight decay) and clipping measures only the groups that train. Dropping
        gradients rather than switching ``requires_grad`` keeps every rank of a torchrun job (whose gradient
        all-reduce was set up for all parameters) in step, and a resumed run frozen alike: the epoch decides."""
        if not self.config.train.gradual_unfreezing:
            return
        for layer in self.layers[: frozen_layers(self.progress["epoch"], len(self.layers))]:
            for parameter in layer:
                parameter.grad = None

    def _watch_gradients(self, step: int) -> None:
        """At ``step`` (about to be taken): per-layer norms for the log record (``train.log_gradients``) and
        TensorBoard histograms (``train.tensorboard``), from the gradients before clipping."""
        train = self.config.train
        if train.log_gradients and step % train.log_every == 0:
            self._layer_norms = layer_norms(self.model)
        if self.board is not None and step % train.tensorboard_every == 0:
            self.board.histograms(self.model, step)

    def _end_epoch(self, epoch: int) -> tuple[bool, float]:
        """Validate, keep the best weights, step the plateau schedule -> (whether training should stop, the
        validation metric)."""
        train = self.config.train
        progress = self.progress
        report = self.task.evaluate(self.model, self.data.validation, self.device, train.eval_batch_size,
                                    beam_size=1) if self.dist.is_main else None
        report = distributed.from_main(report, self.dist)  # every rank decides alike
        metric = self.config.metric
        sums = progress["sums"]
        value = float(report[metric])  # a numpy scalar (seqeval's) would not reload with weights_only
        record = {"kind": "epoch", "epoch": epoch + 1, "step": progress["step"],
                  "train_loss": sums["loss"] / max(1, sums["batches"]),
                  "train_accuracy": sums["correct"] / max(1, sums["examples"]),
                  **{f"val_{name}": report[name] for name in self.task.logged},
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": progress["seconds"]}
        self._log(record)
        if self.board is not None:
            self.board.scalars("validation", {name: report[name] for name in self.task.logged}, progress["step"])
            self.board.scalars("epoch", {"train_loss": record["train_loss"],
                                         "train_accuracy": record["train_accuracy"]}, progress["step"])
            self.board.examples(self.task.tensorboard_examples(self.model, self.data.validation, self.device),
                                progress["step"])
        log.info("epoch %d: val %s %.4f", epoch + 1, metric, value)
        if _improved(value, progress["best"], metric):
            progress.update(best=value, best_epoch=epoch + 1, bad_epochs=0)
            if self.dist.is_main:
                self.folder.write_weights(self.model, self.task.metadata())
                self.folder.write_metrics(self._metrics(report))
        else:
            progress["bad_epochs"] += 1
        if train.keep_epoch_weights and self.dist.is_main:  # for checkpoint averaging (nlp_rnn.averaging)
            self.folder.write_epoch_weights(epoch + 1, self.model, self.task.metadata(), train.keep_epoch_weights)
        if train.schedule == "plateau":
            self.scheduler.step(value)
        progress.update(epoch=epoch + 1, batch=0, sums=_empty_sums())
        return train.patience is not None and progress["bad_epochs"] >= train.patience, value

    def _metrics(self, report: dict) -> dict[str, Any]:
        return {"best_epoch": self.progress["best_epoch"], "step": self.progress["step"],
                "metric": self.config.metric, "validation": {k: report[k] for k in self.task.kept},
                "num_parameters": sum(p.numel() for p in self.model.parameters()),
                "train_seconds": self.progress["seconds"], **self.task.metadata()}

    def run(self) -> dict[str, Any]:
        train = self.config.train
        progress = self.progress
        self._stop_requested = False  # a signal arrived (set by the handler)
        self._stop_agreed = False  # torchrun: some rank's signal, as voted after a step
        if progress["done"]:
            log.info("%s: training already finished", self.run_dir)
            return self.folder.read_metrics()
        if self.command and self.dist.is_main:  # only commands that really train reach the model card
            self.folder.append_command(self.command)
        self._in_step = False
        self._layer_norms = None
        self.board = (TensorBoard(self.folder.tensorboard, purge_step=progress["step"] or None)
                      if train.tensorboard and self.dist.is_main else None)
        try:
            with _stop_signals(self):
                for epoch in range(progress["epoch"], train.epochs):
                    self._epoch_data(epoch)
                    self.sampler.set_epoch(epoch, start=progress["batch"])
                    if self._run_epoch(epoch):
                        break
            progress["done"] = True
            self._save_state()
        except KeyboardInterrupt:
            # Between steps the state is consistent: save it. Under torchrun only when the ranks agreed to stop
            # (they are then all here, after the same step); a second signal may catch each rank elsewhere.
            saved = not self._in_step and (self._stop_agreed or not self.dist.enabled)
            if saved:
                self._save_state()
            where = f"step {progress['step']}" if saved else "the last checkpoint"
            launcher = (f"torchrun --nproc_per_node {self.dist.world_size} -m nlp_rnn" if self.dist.enabled
                        else "nlp-rnn")
            raise TrainingInterrupted(f"training interrupted; continue from {where} with: "
                                      f"{launcher} train --resume --out {self.run_dir}") from None
        finally:
            if self.board is not None:
                self.board.close()
        if self.dist.is_main:
            plot_learning_curve(self.folder.read_log(), self.folder.learning_curve, self.task.logged[-1]
                                if self.config.metric == "loss" else self.config.metric)
            self.task.after_training(self.model, self.folder, self.device, self.data.validation)
        distributed.barrier(self.dist)  # metrics.json is written
        return self.folder.read_metrics()

    def _epoch_data(self, epoch: int) -> None:
        """Epoch ``epoch``'s training examples and their batches, where the task draws them anew every epoch
        (BPE-dropout); the batch order stays a function of (seed, epoch)."""
        if self.data.train_for_epoch is None or epoch == self.data_epoch:
            return
        self.data.train = self.data.train_for_epoch(epoch)
        self.sampler = self.task.sampler(self.data.train, self.batching)
        self.data_epoch = epoch

    def _run_epoch(self, epoch: int) -> bool:
        """The rest of epoch ``epoch`` (from ``progress["batch"]`` on a resume), then validation; True to stop."""
        train = self.config.train
        progress = self.progress
        self.model.train()
        bar = tqdm(total=self.steps_per_epoch, initial=progress["batch"], desc=f"epoch {epoch + 1}/{train.epochs}",
                   disable=not (train.progress and self.dist.is_main), dynamic_ncols=True, leave=False)
        window = {**_empty_sums(), "start": time.perf_counter()}  # figures since the last log record
        for indices in self.sampler:
            # several ranks stop only on the vote, so they all stop after the same step
            if self._stop_agreed if self.dist.enabled else self._stop_requested:
                raise KeyboardInterrupt
            if len(indices) < self.dist.world_size:  # too few examples to give every rank one: skip it
                progress["batch"] += 1
                continue
            self._in_step = True  # from here until the figures are counted, the state is not consistent
            figures, grad_norm = self._global_step(indices)
            progress["step"] += 1
            progress["batch"] += 1
            for store in (progress["sums"], window):
                _accumulate(store, *figures)
            self._in_step = False
            self._report_step(epoch, window, grad_norm, bar)
            if progress["step"] % train.checkpoint_every == 0:
                self._save_state()
            if self._release_above is not None and runtime.resident_bytes() > self._release_above:
                runtime.release_freed_memory()
                self._release_above = runtime.resident_bytes() + runtime.RELEASE_MARGIN
            if self.on_step is not None:
                self.on_step(progress["step"])
        bar.close()
        stop, value = self._end_epoch(epoch)
        self._save_state()
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, value)
        return stop

    def _global_step(self, indices: list[int]) -> tuple[tuple[float, int, int, int], float]:
        """One optimizer step on this rank's share of a global batch -> the whole step's (loss, correct, count,
        tokens) across ranks (the loss averaged like the gradients, counts summed) and the gradient norm."""
        started = time.perf_counter()
        batch = self.task.collate([self.data.train[i] for i in distributed.shard(indices, self.dist)])
        loss, correct, count, grad_norm = self._train_step(batch)
        num_tokens = batch.num_tokens
        if self.dist.enabled:
            loss, correct, count, num_tokens, stops = distributed.sum_across(
                [loss, correct, count, num_tokens, float(self._stop_requested)], self.dist)
            loss /= self.dist.world_size
            self._stop_agreed = stops > 0  # a signal to any rank stops all of them after this step
        self.progress["seconds"] += time.perf_counter() - started
        return (loss, correct, count, num_tokens), grad_norm

    def _report_step(self, epoch: int, window: dict[str, Any], grad_norm: float, bar) -> None:
        """The progress bar, and every ``train.log_every`` steps a log record (then a fresh window)."""
        elapsed = time.perf_counter() - window["start"]
        tokens_per_second = window["tokens"] / elapsed if elapsed > 0 else 0.0
        bar.update(1)
        bar.set_postfix(loss=f"{window['loss'] / window['batches']:.3f}",
                        acc=f"{window['correct'] / window['examples']:.3f}", tok_s=f"{tokens_per_second:.0f}")
        step = self.progress["step"]
        if step % self.config.train.log_every == 0:
            record = {"kind": "step", "epoch": epoch + 1, "step": step, "loss": window["loss"] / window["batches"],
                      "accuracy": window["correct"] / window["examples"], "grad_norm": grad_norm,
                      "lr": self.optimizer.param_groups[0]["lr"], "tokens_per_second": tokens_per_second}
            if self.board is not None:
                self.board.scalars("train", {k: v for k, v in record.items() if k not in ("kind", "epoch", "step")},
                                   step)
            if self._layer_norms is not None:
                record.update(grad_norms=self._layer_norms["grad"], weight_norms=self._layer_norms["weight"])
                self._layer_norms = None
            self._log(record)
            window.update(_empty_sums(), start=time.perf_counter())


@contextlib.contextmanager
def _stop_signals(trainer: Trainer):
    """First Ctrl-C or SIGTERM: finish the current step, checkpoint, stop. A second Ctrl-C stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        if trainer._stop_requested:
            raise KeyboardInterrupt
        trainer._stop_requested = True
        if trainer.dist.is_main:  # torchrun signals every rank; one line says it
            log.warning("stopping after this step (again to stop at once)")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _init_tokenizers(names: list[str], source: Path) -> list[Tokenizer]:
    try:
        return load_tokenizers(names, source)
    except NlpRnnError as err:
        raise NlpRnnError(f"train.init_from: {err} (init_from takes a run folder)") from None


def _init_weights(model: torch.nn.Module, source: Path) -> None:
    """Copy every parameter whose name and shape match from another run (transfer learning).

    The head is re-initialised when the label sets differ in size; the tokenizer is the source run's.
    """
    run = ckpt.RunFolder(source)
    tensors, _ = run.load_weights()
    run.warn_if_unfinished("train.init_from")
    own = model.state_dict()
    matching = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("encoder.") for k in matching):
        raise NlpRnnError(f"train.init_from: {source / ckpt.WEIGHTS_FILE} shares no encoder weights with this model")
    model.load_state_dict(matching, strict=False)
    skipped = sorted(set(own) - set(matching))
    log.info("initialised %d tensors from %s%s", len(matching), source,
             f"; kept fresh: {', '.join(skipped)}" if skipped else "")


class _TaskStep(torch.nn.Module):
    """The task's training forward as a module, so DistributedDataParallel can wrap it whatever the task."""

    def __init__(self, task, model: torch.nn.Module) -> None:
        super().__init__()
        self.task = task
        self.model = model

    def forward(self, batch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        return self.task.forward(self.model, batch, step, total_steps)


def _empty_sums() -> dict[str, float]:
    """Running sums of step figures (an epoch's, kept in the checkpoint as plain numbers, or a log window's)."""
    return {"loss": 0.0, "correct": 0, "examples": 0, "tokens": 0, "batches": 0}


def _accumulate(sums: dict[str, float], loss: float, correct: int, count: int, tokens: int) -> None:
    sums["loss"] += loss
    sums["correct"] += correct
    sums["examples"] += count
    sums["tokens"] += tokens
    sums["batches"] += 1


def train(config: Config, run_dir: str | Path, resume: bool = False,
          on_step: Callable[[int], None] | None = None, overrides: list[str] | None = None,
          command: str | None = None, on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (or continue the run there, ``overrides`` applied to its saved
    config) and return its metrics. ``command`` (the command line) is recorded in ``command.txt`` once
    training starts, so a refused command never reaches the model card."""
    try:
        return Trainer(config, run_dir, resume=resume, on_step=on_step, overrides=overrides, command=command,
                       on_epoch=on_epoch).run()
    finally:
        distributed.teardown()
