"""Turn a run folder into a shippable model folder: no training state, optional float16 weights, a model card."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.io import atomic_write_text
from nlp_rnn.tasks import get_task


def model_card(run_dir: Path) -> str:
    """A short Markdown card: what the run's task says of its data, model, training and scores (``evaluation/``),
    then the command that trained it; for a packed ensemble, the members and their commands."""
    run = ckpt.RunFolder(run_dir)
    config = run.read_config()  # imports the run's plugins, as nlp_rnn.load does
    metrics = run.read_metrics() or {}
    members = run.ensemble_members()
    if members:
        from nlp_rnn.predictor import load_model

        task, _ = load_model(run.path)  # the ensemble's task: its tokenizers read every member's vocabulary
    else:
        task_class = get_task(config.task)
        task = task_class(config, ckpt.load_tokenizers(task_class.tokenizer_files(config), run.path), metrics)
    lines = task.card(run, yaml.safe_load(run.config.read_text(encoding="utf-8")), metrics)
    if members:
        lines += ["", f"An ensemble of {len(members)} runs (`{run.ENSEMBLE}/`, each a packed run with its own card); "
                  "`nlp_rnn.load` and every command on this folder use them all.", "",
                  "| member | trained on | seed | best epoch | validation |", "|---|---|---|---|---|"]
        for member in metrics.get("members", []):
            score = (member.get("validation") or {}).get(metrics.get("metric"))
            shown = "" if score is None else f"{score:.4f}" + (" (trained on it)" if member.get(
                "validation_seen_in_training") else "")
            lines.append(f"| `{member['folder']}` | {member['train_split']} | {member['seed']} | "
                         f"{member['best_epoch']} | {shown} |")
        lines += ["", "Trained with:", "", "```", *(ckpt.RunFolder(m).read_command() for m in members), "```"]
    else:
        lines += ["", "Trained with:", "", "```", run.read_command(), "```"]
    if task.card_hint:
        lines += ["", task.card_hint]
    return "\n".join(lines) + "\n"


def pack_run(run_dir: str | Path, out: str | Path, fp16: bool = False, force: bool = False,
             ensemble: list[str | Path] = ()) -> Path:
    """Write the shippable copy of ``run_dir`` to ``out``. It is built beside ``out`` and renamed into place, so
    a crash leaves the old copy whole; ``force`` replaces an existing ``out`` only when it holds a model (a
    packed or run folder) or nothing, and never the run folder itself or a folder that contains it.

    ``ensemble``: more runs of the same task; ``out`` then holds every run packed in ``ensemble/``, listed in
    ``ensemble.json``, with the first run's config at the top, and it loads as one model. A packed ensemble
    given as a run stands for its runs."""
    runs = [member for folder in [run_dir, *ensemble] for member in ckpt.RunFolder(folder).runs()]
    out = Path(out)
    for folder in runs:
        run = ckpt.RunFolder(folder)
        run.check_weights()
        run.warn_if_unfinished()
        if out.resolve() == folder.resolve() or out.resolve() in folder.resolve().parents:
            raise NlpRnnError(f"{out}: is (or contains) the run folder {folder}; pack into another folder")
    if out.exists():
        if not force:
            raise NlpRnnError(f"{out} exists; pass --force to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not ckpt.RunFolder(out).config.is_file()):
            raise NlpRnnError(f"{out} exists and is not a model folder (no {ckpt.CONFIG_FILE}); --force only "
                              "replaces a packed or run folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if len(runs) > 1:
            _pack_ensemble(runs, ckpt.RunFolder(building), fp16)
        else:
            _copy_run(ckpt.RunFolder(runs[0]), building, fp16)
        write_model_card(building)  # for an ensemble, this also loads it: runs that cannot combine fail here
        if out.exists():  # swap: the old copy goes only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(building, out)
            shutil.rmtree(old)
        else:
            os.replace(building, out)
    finally:
        if building.exists():
            shutil.rmtree(building)
    return out


def _copy_run(run: ckpt.RunFolder, building: Path, fp16: bool) -> None:
    """What a run ships (no training state), its weights in float16 with ``fp16``, and its card."""
    building.mkdir(parents=True, exist_ok=True)
    for name in [*run.SHIPPED, *_tokenizer_files(run)]:
        if (run / name).is_file():
            shutil.copy2(run / name, building / name)
    for folder in run.SHIPPED_FOLDERS:
        if (run / folder).is_dir():
            shutil.copytree(run / folder, building / folder)
    tensors, metadata = run.load_weights()
    ckpt.RunFolder(building).write_weights(tensors, metadata, dtype=torch.float16 if fp16 else None)
    write_model_card(building)


def _pack_ensemble(runs: list[Path], building: ckpt.RunFolder, fp16: bool) -> None:
    """Every run packed in ``ensemble/`` (named ``0-<run>``, ``1-<run>``, ... in order), their list, the first
    run's config (what the ensemble's data and task are), and what the card tells of each."""
    names, members = [], []
    for i, folder in enumerate(runs):
        run = ckpt.RunFolder(folder)
        name = f"{i}-{re.sub(r'^[0-9]+-', '', folder.resolve().name)}"  # a member of a packed ensemble: 0-name
        _copy_run(run, building / building.ENSEMBLE / name, fp16)
        config, metrics = run.read_config(), run.read_metrics() or {}
        names.append(name)
        seen = config.data.validation_split in config.data.train_split.split("+")
        members.append({"folder": f"{building.ENSEMBLE}/{name}", "train_split": config.data.train_split,
                        "validation_seen_in_training": seen,
                        "seed": config.train.seed, "best_epoch": metrics.get("best_epoch"),
                        "validation": metrics.get("validation"), "num_parameters": metrics.get("num_parameters")})
    shutil.copy2(ckpt.RunFolder(runs[0]).config, building.config)
    building.write_ensemble_list(names)
    first = ckpt.RunFolder(runs[0]).read_metrics() or {}
    building.write_metrics({"metric": first.get("metric"), "members": members,
                            "num_parameters": sum(m["num_parameters"] or 0 for m in members)})


def _tokenizer_files(run: ckpt.RunFolder) -> list[str]:
    config = run.read_config()
    return get_task(config.task).tokenizer_files(config)


def write_model_card(folder: str | Path) -> Path:
    """(Re)write ``README.md`` from the folder's config, metrics and evaluation results."""
    path = ckpt.RunFolder(folder).card
    atomic_write_text(path, model_card(Path(folder)))
    return path
