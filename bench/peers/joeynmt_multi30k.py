"""Peer benchmark: JoeyNMT 2.3 GRU encoder-decoder with Bahdanau attention on Multi30k de->en, for speed comparisons.

Run it with the JoeyNMT venv's interpreter (bench/peers/setup.sh makes it); it calls JoeyNMT as
`python -m joeynmt ...` in a child process of the same venv and reads JoeyNMT's own log.

    PY=bench/peers/.venv-joeynmt/bin/python
    $PY bench/peers/joeynmt_multi30k.py prepare                 # parquet -> text, joint 8k BPE, YAML configs
    $PY bench/peers/joeynmt_multi30k.py throughput --steps 300  # fixed number of updates: target tokens/s
    $PY bench/peers/joeynmt_multi30k.py train --epochs 30       # full training (plateau LR decay, early stop)
    $PY bench/peers/joeynmt_multi30k.py decode --ckpt PATH      # beam-5 test2016 decode, timed, sacreBLEU

Every mode prints its figures and writes a JSON result (default bench/peers/work/joeynmt/<mode>.json).
The other modes run `prepare` first when its outputs are missing.

Data: $NLP_RNN_DATA_DIR/bentrevett/multi30k/{train,validation,test}.parquet (default root /work/shared/data/hf),
columns de, en; `test` is test2016. Model: embeddings 256 (separate source and target tables), bidirectional GRU
encoder 256 per direction, GRU decoder 512 with Bahdanau attention, input feeding and a bridge from the
encoder's final state (JoeyNMT's recurrent defaults), batches of 64 sentences, Adam.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "joeynmt"
DATA = WORK / "data"
MODELS = WORK / "models"
SPM_PREFIX = DATA / "spm8k"
SPLITS = {"train": "train", "validation": "dev", "test": "test"}  # mirror split -> file stem
SRC, TRG = "de", "en"


def data_root() -> Path:
    return Path(os.environ.get("NLP_RNN_DATA_DIR", "/work/shared/data/hf")) / "bentrevett" / "multi30k"


# ---------------------------------------------------------------------------------------------------------------
# prepare: text files, sentencepiece model, configs
# ---------------------------------------------------------------------------------------------------------------

def prepare(force: bool = False, vocab_size: int = 8000) -> None:
    import pyarrow.parquet as pq
    import sentencepiece as spm

    DATA.mkdir(parents=True, exist_ok=True)
    for split, stem in SPLITS.items():
        outs = [DATA / f"{stem}.{lang}" for lang in (SRC, TRG)]
        if not force and all(p.is_file() for p in outs):
            continue
        table = pq.read_table(data_root() / f"{split}.parquet", columns=[SRC, TRG])
        for lang, path in zip((SRC, TRG), outs, strict=True):
            lines = [" ".join(s.split("\n")).rstrip("\r") for s in table.column(lang).to_pylist()]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"exported {split}: {table.num_rows} pairs -> {outs[0].name}, {outs[1].name}")

    model_file = SPM_PREFIX.with_suffix(".model")
    if force or not model_file.is_file():
        t = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=[str(DATA / f"train.{SRC}"), str(DATA / f"train.{TRG}")],
            model_prefix=str(SPM_PREFIX),
            vocab_size=vocab_size,
            model_type="bpe",
            character_coverage=1.0,
            num_threads=2,
            minloglevel=2,
        )
        print(f"trained joint {vocab_size} BPE sentencepiece model {model_file} in {time.perf_counter() - t:.1f} s")


def make_config(name: str, *, epochs: int = 30, updates: int | None = None, logging_freq: int = 100,
                validation_freq: int = 500, lr: float = 1e-3, patience: int = 2, beam: int = 5,
                eval_batch_size: int = 64, with_dev: bool = True, load_model: Path | None = None,
                model_dir: Path | None = None, seed: int = 42) -> dict:
    """The JoeyNMT YAML configuration (as a dict) for one run."""
    tok = {"level": "bpe", "tokenizer_type": "sentencepiece", "lowercase": False, "max_length": 100,
           "tokenizer_cfg": {"model_file": str(SPM_PREFIX.with_suffix(".model"))}}
    data = {
        "train": str(DATA / "train"),
        "test": str(DATA / "test"),
        "dataset_type": "plain",
        # Vocabularies are built per language from the BPE-tokenized training text (JoeyNMT's default), so
        # each side holds only the pieces of the joint 8k model that its language uses.
        "src": {"lang": SRC, **tok},
        "trg": {"lang": TRG, **tok},
    }
    if with_dev:
        data["dev"] = str(DATA / "dev")
    training = {
        "random_seed": seed,
        "optimizer": "adam",
        "adam_betas": [0.9, 0.999],
        "learning_rate": lr,
        "learning_rate_min": 1.0e-5,
        "scheduling": "plateau",  # ReduceLROnPlateau: the builders.py path patched by patch_joeynmt.py
        "patience": patience,
        "decrease_factor": 0.5,
        "clip_grad_norm": 1.0,
        "label_smoothing": 0.1,
        "normalization": "tokens",
        "loss": "crossentropy",
        "batch_size": 64,
        "batch_type": "sentence",
        "epochs": epochs,
        "logging_freq": logging_freq,
        "validation_freq": validation_freq,
        "early_stopping_metric": "bleu",
        "keep_best_ckpts": 1,
        "shuffle": True,
        "use_cuda": False,
        "num_workers": 0,
        "overwrite": True,
        "print_valid_sents": [0, 1, 2],
    }
    if updates is not None:
        training["updates"] = updates
    testing = {
        "beam_size": beam,
        "beam_alpha": 1.0,
        "batch_size": eval_batch_size,
        "batch_type": "sentence",
        "eval_metrics": ["bleu"],
        "sacrebleu_cfg": {"tokenize": "13a"},
    }
    if load_model is not None:
        testing["load_model"] = str(load_model)
    emb = {"embedding_dim": 256, "scale": False}
    model = {
        "initializer": "xavier_uniform",
        "bias_initializer": "zeros",
        "init_gain": 1.0,
        "embed_initializer": "normal",
        "embed_init_weight": 0.1,
        "tied_embeddings": False,
        "tied_softmax": False,  # impossible here anyway: decoder hidden 512 != embedding 256
        "encoder": {"type": "recurrent", "rnn_type": "gru", "embeddings": dict(emb), "hidden_size": 256,
                    "bidirectional": True, "num_layers": 1, "dropout": 0.3},
        "decoder": {"type": "recurrent", "rnn_type": "gru", "embeddings": dict(emb), "hidden_size": 512,
                    "num_layers": 1, "dropout": 0.3, "hidden_dropout": 0.3, "attention": "bahdanau",
                    "input_feeding": True, "init_hidden": "bridge"},
    }
    return {
        "name": name,
        "joeynmt_version": "2.3.0",
        "model_dir": str(model_dir or MODELS / name),
        "use_cuda": False,
        "data": data,
        "training": training,
        "testing": testing,
        "model": model,
    }


def write_config(cfg: dict, path: Path) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# running JoeyNMT and reading its log
# ---------------------------------------------------------------------------------------------------------------

def run_joeynmt(args: list[str], threads: int, log_path: Path) -> float:
    """Run `python -m joeynmt ARGS` in this venv; its console output goes to log_path. Returns wall seconds."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "joeynmt", *args]
    print("running:", " ".join(cmd), f"(OMP_NUM_THREADS={threads}; console log {log_path})", flush=True)
    t = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        sys.exit(f"JoeyNMT failed (exit {proc.returncode}); last lines of {log_path}:\n" + "\n".join(tail))
    return wall


STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ")
STEP_LINE = re.compile(r"Epoch\s+(\d+), Step:\s+(\d+), Batch Loss:\s+([\d.]+), Batch Acc: ([\d.]+), "
                       r"Tokens per Sec:\s+(\d+), Lr: ([\d.e-]+)")


def _stamp(line: str) -> float | None:
    m = STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


def parse_log(text: str) -> dict:
    lines = text.splitlines()
    out: dict = {"intervals": []}
    m = re.search(r"Total params: (\d+)", text)
    out["parameters"] = int(m.group(1)) if m else None
    m = re.findall(r"Number of unique (Src|Trg) tokens \(vocab_size\): (\d+)", text)
    out["vocab_sizes"] = {k.lower(): int(v) for k, v in m} if m else None
    prev, in_validation = None, False
    for line in lines:
        ts = _stamp(line)
        sm = STEP_LINE.search(line)
        if sm:
            rec = {"epoch": int(sm.group(1)), "step": int(sm.group(2)), "loss": float(sm.group(3)),
                   "tokens_per_s": int(sm.group(5)), "lr": float(sm.group(6))}
            if ts is not None and prev is not None:
                rec["seconds"] = round(ts - prev, 3)  # log-timestamp gap: the interval's training time
            out["intervals"].append(rec)
            prev, in_validation = ts, False
        elif re.search(r" - EPOCH \d+$", line):
            prev = ts  # JoeyNMT restarts its interval clock at every epoch start
        elif "Evaluation result" in line:
            in_validation = True
        if in_validation and ts is not None and not sm:
            # JoeyNMT's rate excludes validation (and the checkpoint save after it): the next interval is timed
            # from the last line that validation logged (its examples or "Checkpoint saved").
            prev = ts
    m = re.findall(r"Generation took ([\d.]+)\[sec\]", text)
    out["generation_seconds"] = [float(x) for x in m]
    m = re.findall(r"Evaluation result \(beam search\)[^\n]*?bleu:\s+([\d.]+)", text)
    out["joeynmt_bleu"] = [float(x) for x in m]
    return out


def read_validations(path: Path) -> list[dict]:
    """JoeyNMT's validations.txt: one line per validation, `Steps: N<TAB>bleu: x<TAB>...<TAB>LR: y<TAB>*`."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = {}
            for field in line.split("\t"):
                if ": " in field:
                    k, v = field.split(": ", 1)
                    row[k.strip().lower()] = float(v)
            row["new_best"] = line.rstrip().endswith("*")
            rows.append(row)
    return rows


def versions() -> dict:
    from importlib.metadata import version

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "joeynmt": version("joeynmt"),
            "sentencepiece": version("sentencepiece"), "sacrebleu": version("sacrebleu")}


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------------------------------------------

def cmd_throughput(a: argparse.Namespace) -> dict:
    name = a.name or "throughput"
    log_every = max(1, min(a.log_every, a.steps))
    # validation_freq must be a multiple of logging_freq; put it past the last step so no validation runs
    cfg = make_config(name, epochs=1000, updates=a.steps, logging_freq=log_every,
                      validation_freq=log_every * (a.steps // log_every + 1), seed=a.seed)
    cfg_path = write_config(cfg, WORK / f"{name}.yaml")
    wall = run_joeynmt(["train", str(cfg_path), "--skip-test"], a.threads, WORK / f"{name}.console.log")
    text = (Path(cfg["model_dir"]) / "train.log").read_text(encoding="utf-8")
    info = parse_log(text)
    iv = info["intervals"]
    timed = [r for r in iv if "seconds" in r]
    steady = timed[1:] if len(timed) > 1 else timed  # the first interval carries warm-up
    def weighted(rs):  # total target tokens / total seconds over intervals
        secs = sum(r["seconds"] for r in rs)
        return round(sum(r["tokens_per_s"] * r["seconds"] for r in rs) / secs, 1) if secs > 0 else None
    steps_timed = sum(log_every for _ in timed)
    result = {
        "toolkit": "joeynmt", "task": "multi30k-de-en", "mode": "throughput", "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "threads": a.threads,
        "steps": a.steps, "batch": "64 sentences", "parameters": info["parameters"],
        "vocab_sizes": info["vocab_sizes"],
        "target_tokens_per_s_all": weighted(timed),
        "target_tokens_per_s_steady": weighted(steady),
        "steps_per_s_steady": round(len(steady) * log_every / sum(r["seconds"] for r in steady), 3) if steady else None,
        "train_seconds_logged": round(sum(r["seconds"] for r in timed), 2), "steps_logged": steps_timed,
        "process_wall_seconds": round(wall, 2), "intervals": iv,
        "config": str(cfg_path), "model_dir": cfg["model_dir"],
        "checkpoint": str(Path(cfg["model_dir"]) / "latest.ckpt"),
    }
    print(f"JoeyNMT {result['versions']['joeynmt']} (torch {result['versions']['torch']}): "
          f"{info['parameters']:,} parameters, vocab {info['vocab_sizes']}; {a.steps} steps of 64 sentences; "
          f"target tokens/s: {result['target_tokens_per_s_steady']} steady (after the first {log_every} steps), "
          f"{result['target_tokens_per_s_all']} over all logged steps; process wall {wall:.1f} s")
    save(result, Path(a.out or WORK / f"{name}.json"))
    return result


def cmd_train(a: argparse.Namespace) -> dict:
    name = a.name or "full"
    cfg = make_config(name, epochs=a.epochs, updates=a.max_updates, logging_freq=math.gcd(100, a.validation_freq),
                      validation_freq=a.validation_freq, lr=a.lr, patience=a.patience, seed=a.seed)
    cfg_path = write_config(cfg, WORK / f"{name}.yaml")
    wall = run_joeynmt(["train", str(cfg_path), "--skip-test"], a.threads, WORK / f"{name}.console.log")
    text = (Path(cfg["model_dir"]) / "train.log").read_text(encoding="utf-8")
    info = parse_log(text)
    timed = [r for r in info["intervals"] if "seconds" in r]
    secs = sum(r["seconds"] for r in timed)
    result = {
        "toolkit": "joeynmt", "task": "multi30k-de-en", "mode": "train", "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "threads": a.threads,
        "epochs": a.epochs, "parameters": info["parameters"], "vocab_sizes": info["vocab_sizes"],
        "process_wall_seconds": round(wall, 2), "train_seconds_logged": round(secs, 2),
        "target_tokens_per_s": round(sum(r["tokens_per_s"] * r["seconds"] for r in timed) / secs, 1) if secs else None,
        "steps": info["intervals"][-1]["step"] if info["intervals"] else None,
        "validations": read_validations(Path(cfg["model_dir"]) / "validations.txt"),
        "config": str(cfg_path), "model_dir": cfg["model_dir"],
        "checkpoint": str(Path(cfg["model_dir"]) / "best.ckpt"),
    }
    print(f"trained {result['steps']} steps in {wall:.0f} s (process wall); {result['target_tokens_per_s']} target "
          f"tokens/s; best checkpoint {result['checkpoint']}")
    save(result, Path(a.out or WORK / f"{name}.json"))
    if not a.no_decode:
        dec = argparse.Namespace(ckpt=result["checkpoint"], beam=a.beam, batch_size=a.batch_size, threads=a.threads,
                                 out=None, name=f"{name}_decode")
        result["decode"] = cmd_decode(dec)
    return result


def cmd_decode(a: argparse.Namespace) -> dict:
    import sacrebleu

    ckpt = Path(a.ckpt).resolve() if a.ckpt else MODELS / "full" / "best.ckpt"
    if not ckpt.exists():
        sys.exit(f"checkpoint {ckpt} not found (train first, or pass --ckpt)")
    model_dir = ckpt.parent
    name = a.name or "decode"
    cfg = make_config(name, with_dev=False, beam=a.beam, eval_batch_size=a.batch_size, load_model=ckpt,
                      model_dir=model_dir)
    cfg_path = write_config(cfg, WORK / f"{name}.yaml")
    hyp_prefix = WORK / f"{name}.hyps"
    wall = run_joeynmt(["test", str(cfg_path), "--output-path", str(hyp_prefix)], a.threads,
                       WORK / f"{name}.console.log")
    info = parse_log((WORK / f"{name}.console.log").read_text(encoding="utf-8"))
    hyps = Path(f"{hyp_prefix}.test").read_text(encoding="utf-8").splitlines()
    refs = (DATA / f"test.{TRG}").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(refs), (len(hyps), len(refs))
    bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF()
    bleu = bleu_metric.corpus_score(hyps, [refs])  # default 13a tokenization, cased, on detokenized text
    chrf = chrf_metric.corpus_score(hyps, [refs])
    gen = info["generation_seconds"][-1] if info["generation_seconds"] else None
    result = {
        "toolkit": "joeynmt", "task": "multi30k-de-en test2016", "mode": "decode", "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "threads": a.threads,
        "checkpoint": str(ckpt), "beam": a.beam, "batch_size": a.batch_size, "sentences": len(hyps),
        "parameters": info["parameters"],
        "generation_seconds": gen, "sentences_per_s": round(len(hyps) / gen, 2) if gen else None,
        "process_wall_seconds": round(wall, 2),
        "bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2),
        "bleu_signature": str(bleu_metric.get_signature()),
        "joeynmt_reported_bleu": info["joeynmt_bleu"][-1] if info["joeynmt_bleu"] else None,
        "hypotheses": f"{hyp_prefix}.test",
    }
    print(f"beam-{a.beam} decode of {len(hyps)} test2016 sentences: generation {gen} s "
          f"({result['sentences_per_s']} sentences/s), process wall {wall:.1f} s; sacreBLEU {bleu.score:.2f} "
          f"(chrF {chrf.score:.2f}) on detokenized output")
    save(result, Path(a.out or WORK / f"{name}.json"))
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)

    sp = sub.add_parser("prepare", help="export text, train the joint 8k BPE model")
    sp.add_argument("--force", action="store_true", help="redo even if the outputs exist")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of the JoeyNMT process")
    common.add_argument("--out", default=None, help="JSON result file")
    common.add_argument("--name", default=None, help="run name (model dir and file names)")

    sp = sub.add_parser("throughput", parents=[common], help="train a fixed number of steps, report target tokens/s")
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--log-every", type=int, default=50, help="JoeyNMT logging_freq (one rate per interval)")
    sp.add_argument("--seed", type=int, default=42)

    sp = sub.add_parser("train", parents=[common], help="full training, then a beam-5 test decode")
    sp.add_argument("--epochs", type=int, default=30, help="upper bound; training stops earlier at the minimum lr")
    sp.add_argument("--lr", type=float, default=1e-3)
    sp.add_argument("--patience", type=int, default=2, help="validations without a BLEU gain before lr is halved")
    sp.add_argument("--validation-freq", type=int, default=500, help="steps between validations (one epoch = 454)")
    sp.add_argument("--max-updates", type=int, default=None, help="stop after N updates (a smoke test)")
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument("--no-decode", action="store_true", help="skip the test decode after training")
    sp.add_argument("--beam", type=int, default=5)
    sp.add_argument("--batch-size", type=int, default=64, help="decode batch size (sentences)")

    sp = sub.add_parser("decode", parents=[common], help="beam search on test2016 with a checkpoint, timed, BLEU")
    sp.add_argument("--ckpt", default=None, help="checkpoint (default work/joeynmt/models/full/best.ckpt)")
    sp.add_argument("--beam", type=int, default=5)
    sp.add_argument("--batch-size", type=int, default=64, help="sentences per decode batch")

    a = p.parse_args(argv)
    prepare(force=getattr(a, "force", False))
    if a.mode == "throughput":
        cmd_throughput(a)
    elif a.mode == "train":
        cmd_train(a)
    elif a.mode == "decode":
        cmd_decode(a)


if __name__ == "__main__":
    main()
