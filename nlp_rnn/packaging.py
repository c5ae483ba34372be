"""Turn a run folder into a shippable model folder: no training state, optional float16 weights, a model card."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.config import describe_source
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.io import atomic_write_text

SHIPPED = [ckpt.CONFIG_FILE, ckpt.TOKENIZER_FILE, ckpt.SOURCE_TOKENIZER_FILE, ckpt.TARGET_TOKENIZER_FILE,
           ckpt.METRICS_FILE, ckpt.LOG_FILE, "learning_curve.png", ckpt.COMMAND_FILE]
SHIPPED_FOLDERS = ["evaluation", "attention"]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _vocabulary_sizes(run_dir: Path) -> list[int]:
    """The size of each tokenizer file the folder holds (joint, or source then target): what the model reads,
    not the ``tokenizer.vocab_size`` the config asked for (a small corpus gives fewer types)."""
    from tokenizers import Tokenizer

    names = [ckpt.TOKENIZER_FILE] if (run_dir / ckpt.TOKENIZER_FILE).is_file() else \
        [ckpt.SOURCE_TOKENIZER_FILE, ckpt.TARGET_TOKENIZER_FILE]
    return [Tokenizer.from_file(str(run_dir / name)).get_vocab_size() for name in names
            if (run_dir / name).is_file()]


def _metric(config: dict, metrics: dict) -> str:
    """The validation metric that picked the best epoch, ``auto`` resolved (older runs' metrics.json lack it)."""
    from nlp_rnn.config import config_from_dict

    return metrics.get("metric") or config_from_dict(config).metric


def _command(run_dir: Path) -> str:
    path = run_dir / ckpt.COMMAND_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else "(not recorded)"


def translation_card(run_dir: Path, config: dict, metrics: dict) -> str:
    data, tokenizer, model, train = config["data"], config["tokenizer"], config["model"], config["train"]
    sizes = _vocabulary_sizes(run_dir)
    vocabulary = (f"{sizes[0]:,} subwords in one joint vocabulary" if len(sizes) == 1 else
                  f"separate vocabularies of {sizes[0]:,} source and {sizes[-1]:,} target subwords")
    feeding = ", input feeding" if model["input_feeding"] else ""
    tied = ", tied output embeddings" if model["tie_embeddings"] else ""
    batch = f"{train['max_tokens']:,} padded tokens" if train["max_tokens"] else f"{train['batch_size']} pairs"
    source = describe_source(data["dataset"], data.get("data_files"))
    lines = [
        f"# {source}: {data['source_column']} -> {data['target_column']} GRU encoder-decoder with attention",
        "",
        f"- **Data**: `{source}` (`{data['source_column']}` -> `{data['target_column']}`); training pairs "
        f"longer than {data['max_length']} subwords left out, longer inputs cut at prediction time.",
        f"- **Tokenizer**: {tokenizer['type']}, {vocabulary}, "
        f"{'lowercased' if tokenizer['lowercase'] else 'cased'}, trained on the training split only.",
        f"- **Model**: embeddings {model['embedding_dim']}; {model['num_layers']} x bidirectional "
        f"{model['encoder_cell']} {model['hidden_size']} encoder; {model['decoder_layers']} x GRU "
        f"{model['decoder_hidden_size']} decoder with {model['attention']} attention{feeding}{tied}; "
        f"{metrics.get('num_parameters', 0):,} parameters.",
        f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batches of {batch}, label "
        f"smoothing {train['label_smoothing']}, teacher forcing {train['teacher_forcing']} "
        f"({train['teacher_forcing_schedule']}), up to {train['epochs']} epochs; best epoch "
        f"{metrics.get('best_epoch')} by validation {_metric(config, metrics)} (greedy).",
        "",
        "| split | sentences | search | BLEU | chrF | TER | lowercased BLEU |",
        "|---|---|---|---|---|---|---|",
    ]
    signature = None
    for folder in sorted((run_dir / "evaluation").glob("*")):
        for path in sorted(folder.glob("metrics*.json")):
            report = _read_json(path)
            search = "greedy" if report["beam_size"] == 1 else f"beam {report['beam_size']}"
            lines.append(f"| {folder.name} | {report['num_sentences']:,} | {search} | {report['bleu']:.2f} | "
                         f"{report['chrf']:.2f} | {report['ter']:.2f} | {report['bleu_lowercase']:.2f} |")
            signature = report["signature"]["bleu"]
    if signature:
        lines += ["", f"BLEU is sacreBLEU on detokenized, cased output (signature `{signature}`); lowercased BLEU "
                  "only for comparison with tutorials."]
    lines += ["", "Trained with:", "", "```", _command(run_dir), "```", "",
              "Scores: `nlp-rnn evaluate <this folder> --split SPLIT --beam N` on this folder's own weights."]
    return "\n".join(lines) + "\n"


def model_card(run_dir: Path) -> str:
    """A short Markdown card: data, configuration, parameters, metrics and the command that trained it."""
    config = yaml.safe_load((run_dir / ckpt.CONFIG_FILE).read_text(encoding="utf-8"))
    metrics = _read_json(run_dir / ckpt.METRICS_FILE) or {}
    if config.get("task") == "translation":
        return translation_card(run_dir, config, metrics)
    data, model, train = config["data"], config["model"], config["train"]
    direction = "bidirectional " if model["bidirectional"] else ""
    source = describe_source(data["dataset"], data.get("data_files"))
    labels = ", ".join(f"`{name}`" for name in (metrics.get("validation") or {}).get("per_class", {}))
    lines = [
        f"# {source}: {direction}{model['cell']} classifier",
        "",
        f"- **Data**: `{source}` (text `{data['text_column']}`, label `{data['label_column']}`"
        f"{': ' + labels if labels else ''}), "
        f"validation {'split ' + repr(data['validation_split']) if data['validation_split'] else 'carved from train'}"
        f", reported on split `{data['test_split']}`; texts truncated to {data['max_length']} tokens "
        f"({data['truncation']}).",
        f"- **Tokenizer**: {config['tokenizer']['type']}-level, {_vocabulary_sizes(run_dir)[0]:,} types, "
        f"trained on the training split only.",
        f"- **Model**: embedding {model['embedding_dim']} -> {model['num_layers']} x {direction}{model['cell']} "
        f"{model['hidden_size']} -> {model['pooling']} pooling -> linear; "
        f"{metrics.get('num_parameters', 0):,} parameters.",
        f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batch {train['batch_size']}, "
        f"up to {train['epochs']} epochs, best epoch {metrics.get('best_epoch')} by validation "
        f"{_metric(config, metrics)}.",
        "",
        "| split | examples | accuracy | macro-F1 |",
        "|---|---|---|---|",
    ]
    validation = metrics.get("validation")
    if validation:
        count = sum(map(sum, validation["confusion_matrix"]))
        lines.append(f"| validation | {count:,} | {validation['accuracy']:.4f} | {validation['macro_f1']:.4f} |")
    for folder in sorted((run_dir / "evaluation").glob("*")):
        report = _read_json(folder / "metrics.json")
        if report:
            lines.append(f"| {folder.name} ({data['test_split'] if folder.name == 'test' else folder.name}) | "
                         f"{report['num_examples']:,} | {report['accuracy']:.4f} | {report['macro_f1']:.4f} |")
    lines += ["", "Trained with:", "", "```", _command(run_dir), "```", "",
              "Test metrics: `nlp-rnn evaluate <this folder> --split test` on this folder's own weights."]
    return "\n".join(lines) + "\n"


def pack_run(run_dir: str | Path, out: str | Path, fp16: bool = False, force: bool = False) -> Path:
    """Write the shippable copy of ``run_dir`` to ``out``. It is built beside ``out`` and renamed into place, so
    a crash leaves the old copy whole; ``force`` replaces an existing ``out`` only when it holds a model (a
    packed or run folder) or nothing, and never the run folder itself or a folder that contains it."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / ckpt.WEIGHTS_FILE).is_file():
        raise NlpRnnError(f"{run_dir / ckpt.WEIGHTS_FILE}: not found (is {run_dir} a finished run folder?)")
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise NlpRnnError(f"{out}: is (or contains) the run folder {run_dir}; pack into another folder")
    if out.exists():
        if not force:
            raise NlpRnnError(f"{out} exists; pass --force to replace it")
        if not out.is_dir() or (any(out.iterdir()) and not (out / ckpt.CONFIG_FILE).is_file()):
            raise NlpRnnError(f"{out} exists and is not a model folder (no {ckpt.CONFIG_FILE}); --force only "
                              "replaces a packed or run folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in SHIPPED:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, building / name)
        for folder in SHIPPED_FOLDERS:
            if (run_dir / folder).is_dir():
                shutil.copytree(run_dir / folder, building / folder)
        tensors, metadata = ckpt.load_weights(run_dir / ckpt.WEIGHTS_FILE)
        ckpt.save_weights(building / ckpt.WEIGHTS_FILE, tensors, metadata, dtype=torch.float16 if fp16 else None)
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


def write_model_card(folder: str | Path) -> Path:
    """(Re)write ``README.md`` from the folder's config, metrics and evaluation results."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, model_card(Path(folder)))
    return path
