"""Hyperparameter search on Optuna: ``nlp-rnn tune CONFIG --space SPACE.yaml --trials N``.

The search space is YAML over the config's dotted keys::

    train.lr: {float: [1.0e-4, 1.0e-2], log: true}
    model.hidden_size: {int: [64, 512], step: 64}
    model.cell: {choice: [lstm, gru]}

Every key (and both ends of every range, and every choice) is checked against the config schema before the first
trial, all problems in one error. Each trial is an ordinary run folder (``OUT/trials/trial-NNNN``) trained by the
same Trainer as ``nlp-rnn train`` (its resumable state deleted once the trial finishes); the validation metric is
reported to Optuna after every epoch so the pruner can stop a poor trial early. The objective is the best
validation score: ``tune`` never scores the test split.

The study lives in Optuna's storage, SQLite in ``OUT/study.db`` unless ``--storage`` names another database, so
running the same command again continues the study: ``--trials N`` counts every finished (complete or pruned)
trial of the study, whichever process ran it. A trial stopped by Ctrl-C, or by a worker that died (its heartbeat
stopped), is queued again with the same parameters and continues its run folder where it stopped. Several worker
processes (several machines, with a PostgreSQL or MySQL URL) may run one study at once.

At the end: ``best_config.yaml`` (the best trial's full config, ready for ``nlp-rnn train``), ``trials.csv`` and
plots of the optimisation history, parameter importances, a slice plot and a contour plot of the two most
important parameters.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.config import ConfigError, load_config, read_yaml, save_config
from nlp_rnn.errors import NlpRnnError

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
KINDS = ("float", "int", "choice")


class TuneFolder:
    """The files of a study's folder: every name written once, here."""

    STUDY = "study.db"
    BEST_CONFIG = "best_config.yaml"
    TRIALS = "trials.csv"
    TRIALS_FOLDER = "trials"
    PLOTS = {"history": "optimization_history.png", "importances": "param_importances.png",
             "slice": "slice.png", "contour": "contour.png"}

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def storage(self) -> str:
        return f"sqlite:///{(self.path / self.STUDY).resolve()}"

    def trial_run(self, number: int) -> Path:
        return self.path / self.TRIALS_FOLDER / f"trial-{number:04d}"

    def __truediv__(self, name: str) -> Path:
        return self.path / name


@dataclass(frozen=True)
class Parameter:
    """One dimension of the search space: a float or int range (``log``, ``step``) or a list of choices."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def grid(self) -> list[Any]:
        """Every value the grid sampler tries: the choices, or the range at its step."""
        if self.kind == "choice":
            return list(self.choices)
        if self.step is None and self.kind == "float":
            raise NlpRnnError(f"--sampler grid: {self.key} is a float range without a step; give it a step "
                              "or a choice list")
        count = int(math.floor((self.high - self.low) / (self.step or 1) + 1e-9)) + 1
        values = [self.low + i * (self.step or 1) for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]

    def ends(self) -> list[Any]:
        """The values the schema check tries: both ends of a range, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _parse_parameter(key: Any, spec: Any, errors: list[str]) -> Parameter | None:
    """``{float: [lo, hi], log: true, step: x}``, ``{int: [lo, hi], step: n, log: bool}`` or ``{choice: [...]}``."""
    where = f"{key}"
    if not isinstance(key, str) or "." not in key:
        errors.append(f"{key!r}: a dotted config key, e.g. train.lr")
        return None
    if not isinstance(spec, dict):
        errors.append(f"{where}: expected {{float: [low, high]}}, {{int: [low, high]}} or {{choice: [...]}}, "
                      f"got {spec!r}")
        return None
    kinds = [k for k in KINDS if k in spec]
    extra = sorted(set(spec) - {*KINDS, "log", "step"})
    if len(kinds) != 1 or extra:
        errors.append(f"{where}: give exactly one of float, int, choice (with log, step for ranges)"
                      + (f"; unknown: {', '.join(map(str, extra))}" if extra else ""))
        return None
    kind = kinds[0]
    values = spec[kind]
    if kind == "choice":
        if not isinstance(values, list) or not values or len({json.dumps(v) for v in values}) != len(values):
            errors.append(f"{where}: choice needs a non-empty list of distinct values")
            return None
        if "log" in spec or "step" in spec:
            errors.append(f"{where}: log and step apply to ranges, not to choice")
            return None
        return Parameter(key, kind, choices=tuple(values))
    number = int if kind == "int" else (int, float)
    if (not isinstance(values, list) or len(values) != 2
            or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)):
        errors.append(f"{where}: {kind} needs [low, high] ({'integers' if kind == 'int' else 'numbers'}), "
                      f"got {values!r}")
        return None
    low, high = values
    log_scale, step = spec.get("log", False), spec.get("step")
    problems = []
    if low >= high:
        problems.append(f"low {low} must be below high {high}")
    if not isinstance(log_scale, bool):
        problems.append(f"log must be true or false, not {log_scale!r}")
    elif log_scale and low <= 0:
        problems.append("a log range needs low > 0")
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        problems.append(f"step must be a positive {'integer' if kind == 'int' else 'number'}, not {step!r}")
    elif step is not None and log_scale and (kind == "float" or step != 1):
        problems.append("Optuna takes either log or step, not both")
    if problems:
        errors.append(f"{where}: {'; '.join(problems)}")
        return None
    if kind == "float":
        low, high, step = float(low), float(high), None if step is None else float(step)
    return Parameter(key, kind, low, high, step, log_scale)


def _assignment(values: dict[str, Any]) -> list[str]:
    """``{"train.lr": 0.001}`` -> ``["train.lr=0.001"]``: --set overrides (JSON scalars are YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def read_space(space_path: str | Path, config_path: str | Path, overrides: list[str] | None = None) -> list[Parameter]:
    """The search space, checked: its syntax, then every key and the values it may take against the config schema
    (the lower ends together, the upper ends together, each choice alone). One error lists every problem."""
    try:
        raw = read_yaml(space_path)
    except ConfigError as err:
        raise NlpRnnError(f"--space {str(err).replace('config file', 'search space file')}") from None
    errors: list[str] = []
    space = [p for key, spec in raw.items() if (p := _parse_parameter(key, spec, errors)) is not None]
    if not raw:
        errors.append("the space is empty: give at least one key, e.g. train.lr: {float: [1.0e-4, 1.0e-2], log: true}")
    trials = [{p.key: p.low for p in space if p.kind != "choice"},
              {p.key: p.high for p in space if p.kind != "choice"}]
    trials += [{p.key: choice} for p in space if p.kind == "choice" for choice in p.choices]
    bad: dict[str, None] = {}  # in order, once each
    for values in trials:
        try:
            load_config(config_path, [*(overrides or []), *_assignment(values)])
        except ConfigError as err:
            lines = str(err).splitlines()
            if len(lines) == 1:  # the config file itself cannot be read
                raise
            bad.update(dict.fromkeys(line.strip() for line in lines[1:]))
    errors += list(bad)
    if errors:
        raise NlpRnnError(f"{space_path}: bad search space:\n  " + "\n  ".join(errors))
    return space


def require_optuna():
    """The optuna module, or one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise NlpRnnError("nlp-rnn tune needs Optuna: pip install 'nlp-rnn[workbench]' (or pip install optuna)") \
            from None
    return optuna


def _sampler(name: str, space: list[Parameter], seed: int | None):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.key: p.grid() for p in space}, seed=seed)
    if name == "cmaes":
        if any(p.kind == "choice" for p in space):
            log.warning("--sampler cmaes searches numbers only: choices are sampled at random")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise NlpRnnError(f"--sampler {name!r}: one of {', '.join(SAMPLERS)}")


def _pruner(name: str, epochs: int, startup_trials: int = 3):
    import optuna

    if name == "median":  # once startup_trials have finished, stop a trial whose score after an epoch is below the
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)  # median then
    if name == "hyperband":  # resource = epochs (Li et al. 2018)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise NlpRnnError(f"--pruner {name!r}: one of {', '.join(PRUNERS)}")


def _requeue(study, trial) -> None:
    """A trial that did not finish (Ctrl-C, or its worker's heartbeat stopped): queue it again with the same
    parameters; the new trial continues the old one's run folder."""
    run_dir = trial.user_attrs.get("run_dir")
    study.enqueue_trial(trial.params, user_attrs={"resumes": run_dir, "resumes_trial": trial.number},
                        skip_if_exists=False)
    log.warning("trial %d did not finish: queued again, to continue %s", trial.number, run_dir)


def open_study(out: Path, study_name: str, direction: str, sampler, pruner, storage: str | None,
               heartbeat: int = 30):
    """Create the study or load it from its storage (the default: SQLite in ``out/study.db``)."""
    import optuna
    import sqlalchemy.exc

    if storage is None:
        out.mkdir(parents=True, exist_ok=True)
    url = storage or TuneFolder(out).storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, heartbeat_stale_trial_callback=_requeue,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})
        return optuna.create_study(study_name=study_name, storage=rdb, direction=direction, sampler=sampler,
                                   pruner=pruner, load_if_exists=True)
    except ValueError as err:  # e.g. the stored study's direction differs
        raise NlpRnnError(f"--storage {url}: {err}") from None
    except (ImportError, sqlalchemy.exc.SQLAlchemyError) as err:  # a missing driver (psycopg2), a bad URL
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NlpRnnError(f"--storage {url}: cannot open it ({reason})") from None


def tune(config_path: str | Path, space_path: str | Path, trials: int, out: str | Path,
         overrides: list[str] | None = None, timeout: float | None = None, sampler: str = "tpe",
         pruner: str = "median", storage: str | None = None, study_name: str | None = None,
         seed: int | None = None, heartbeat: int = 30, startup_trials: int = 3) -> dict[str, Any]:
    """Run (or continue) the study until it holds ``trials`` finished trials or ``timeout`` seconds pass in this
    process; write the best config, the trials table and the plots; return a summary."""
    optuna = require_optuna()
    from nlp_rnn.training import TrainingInterrupted, lower_is_better, train

    if trials < 1:
        raise NlpRnnError("--trials must be at least 1")
    overrides = list(overrides or [])
    space = read_space(space_path, config_path, overrides)
    base = load_config(config_path, overrides)
    metric = base.metric
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = TuneFolder(out)
    direction = "minimize" if lower_is_better(metric) else "maximize"
    study = open_study(out, study_name or Path(config_path).stem, direction, _sampler(sampler, space, seed),
                       _pruner(pruner, base.train.epochs, startup_trials), storage, heartbeat)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial) -> float:
        values = {p.key: p.suggest(trial) for p in space}
        resumes = trial.user_attrs.get("resumes")
        run_dir = Path(resumes) if resumes else folder.trial_run(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", worker)
        started = resumes is not None and ckpt.RunFolder(run_dir).state.exists()
        if started:  # the epochs it reported before it stopped, again, so the pruner sees them
            for record in ckpt.RunFolder(run_dir).read_log():
                if record.get("kind") == "epoch" and f"val_{metric}" in record:
                    trial.report(float(record[f"val_{metric}"]), int(record["epoch"]))

        def on_epoch(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {value:.4f} after epoch {epoch}")

        config = None if started else load_config(config_path, [*overrides, *_assignment(values)])
        command = f"nlp-rnn tune {config_path} (trial {trial.number}: {' '.join(_assignment(values))})"
        try:
            metrics = train(config, run_dir, resume=started, on_epoch=on_epoch, command=command)
        except optuna.TrialPruned:
            ckpt.RunFolder(run_dir).state.unlink(missing_ok=True)  # finished: only --resume reads it
            raise
        except TrainingInterrupted:
            _requeue(study, trial)
            raise
        ckpt.RunFolder(run_dir).state.unlink(missing_ok=True)
        return float(metrics["validation"][metric])

    class QuietInterruption(logging.Filter):
        """Optuna logs a failed trial with its traceback; one stopped by Ctrl-C is said once, by us."""

        def filter(self, record: logging.LogRecord) -> bool:
            interrupted = record.exc_info is not None and isinstance(record.exc_info[1], TrainingInterrupted)
            return not interrupted and "failed with value None" not in record.getMessage()

    quiet = QuietInterruption()
    handlers = logging.getLogger("optuna").handlers  # a parent logger's filters miss its children's records
    for handler in handlers:
        handler.addFilter(quiet)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    stop_at = optuna.study.MaxTrialsCallback(trials, states=finished)
    if len(study.get_trials(deepcopy=False, states=finished)) < trials:
        try:
            study.optimize(objective, timeout=timeout, callbacks=[stop_at], gc_after_trial=True)
        except TrainingInterrupted:
            raise TrainingInterrupted(f"tune interrupted; the trial was queued again: run the same command to "
                                      f"continue the study in {out}") from None
        finally:
            for handler in handlers:
                handler.removeFilter(quiet)
    return write_results(study, folder, metric)


def write_results(study, folder: TuneFolder, metric: str) -> dict[str, Any]:
    """``best_config.yaml``, ``trials.csv`` and the plots, from what the study holds now."""
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == states.COMPLETE]
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in states}
    summary: dict[str, Any] = {"study": study.study_name, "metric": metric, "direction": study.direction.name.lower(),
                               "trials": {k: v for k, v in counts.items() if v}, "out": str(folder.path)}
    _write_table(trials, folder / TuneFolder.TRIALS, metric)
    if not complete:
        return summary
    best = study.best_trial
    best_run = ckpt.RunFolder(best.user_attrs["run_dir"])
    save_config(best_run.read_config(), folder / TuneFolder.BEST_CONFIG)
    summary.update(best_trial=best.number, best_value=best.value, best_params=best.params, best_run=str(best_run),
                   best_config=str(folder / TuneFolder.BEST_CONFIG),
                   plots=[str(p) for p in _plot(study, folder)])
    return summary


def _write_table(trials: list, path: Path, metric: str) -> None:
    import csv
    import io

    from nlp_rnn.io import atomic_write_text

    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", metric, "epochs", "seconds", *keys, "run_dir", "worker"])
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
        writer.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6g}",
                         len(t.intermediate_values), f"{seconds:.1f}" if seconds != "" else "",
                         *(t.params.get(k, "") for k in keys), t.user_attrs.get("run_dir", ""),
                         t.user_attrs.get("worker", "")])
    atomic_write_text(path, buffer.getvalue())


def _plot(study, folder: TuneFolder) -> list[Path]:
    """Optuna's matplotlib plots; one that cannot be drawn yet (too few trials, one parameter) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as views

    from nlp_rnn.plots import save_figure

    written = []
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "unique value length is less than 2" and the like
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental plots, too few trials for importances
        importances = {}
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as err:
            log.info("no parameter importances yet: %s", err)
        ranked = list(importances) or list(study.best_params)
        drawers = {"history": lambda: views.plot_optimization_history(study),
                   "importances": lambda: views.plot_param_importances(study) if importances else None,
                   "slice": lambda: views.plot_slice(study),
                   "contour": lambda: views.plot_contour(study, params=ranked[:2]) if len(ranked) > 1 else None}
        for name, draw in drawers.items():
            try:
                axes = draw()
            except (RuntimeError, ValueError) as err:
                log.info("no %s plot: %s", name, err)
                continue
            if axes is None:
                continue
            first = axes.flat[0] if hasattr(axes, "flat") else axes
            path = folder / TuneFolder.PLOTS[name]
            save_figure(first.figure, path)
            written.append(path)
    return written
