"""Turn a run folder into a shippable model folder: no training state, optional float16 weights, a model card."""

from __future__ import annotations

import os
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
    then the command that trained it."""
    run = ckpt.RunFolder(run_dir)
    config = run.read_config()  # imports the run's plugins, as nlp_rnn.load does
    task_class = get_task(config.task)
    tokenizers = ckpt.load_tokenizers(task_class.tokenizer_files(config), run.path)
    metrics = run.read_metrics() or {}
    task = task_class(config, tokenizers, metrics)
    lines = task.card(run, yaml.safe_load(run.config.read_text(encoding="utf-8")), metrics)
    lines += ["", "Trained with:", "", "```", run.read_command(), "```"]
    if task.card_hint:
        lines += ["", task.card_hint]
    return "\n".join(lines) + "\n"


def pack_run(run_dir: str | Path, out: str | Path, fp16: bool = False, force: bool = False) -> Path:
    """Write the shippable copy of ``run_dir`` to ``out``. It is built beside ``out`` and renamed into place, so
    a crash leaves the old copy whole; ``force`` replaces an existing ``out`` only when it holds a model (a
    packed or run folder) or nothing, and never the run folder itself or a folder that contains it."""
    run, run_dir, out = ckpt.RunFolder(run_dir), Path(run_dir), Path(out)
    if not run.weights.is_file():
        raise NlpRnnError(f"{run.weights}: not found (is {run_dir} a finished run folder?)")
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise NlpRnnError(f"{out}: is (or contains) the run folder {run_dir}; pack into another folder")
    if out.exists():
        if not force:
            raise NlpRnnError(f"{out} exists; pass --force to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not ckpt.RunFolder(out).config.is_file()):
            raise NlpRnnError(f"{out} exists and is not a model folder (no {ckpt.CONFIG_FILE}); --force only "
                              "replaces a packed or run folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in [*run.SHIPPED, *_tokenizer_files(run)]:
            if (run / name).is_file():
                shutil.copy2(run / name, building / name)
        for folder in run.SHIPPED_FOLDERS:
            if (run / folder).is_dir():
                shutil.copytree(run / folder, building / folder)
        tensors, metadata = ckpt.load_weights(run.weights)
        ckpt.RunFolder(building).write_weights(tensors, metadata, dtype=torch.float16 if fp16 else None)
        write_model_card(building)
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


def _tokenizer_files(run: ckpt.RunFolder) -> list[str]:
    config = run.read_config()
    return get_task(config.task).tokenizer_files(config)


def write_model_card(folder: str | Path) -> Path:
    """(Re)write ``README.md`` from the folder's config, metrics and evaluation results."""
    path = ckpt.RunFolder(folder).card
    atomic_write_text(path, model_card(Path(folder)))
    return path
