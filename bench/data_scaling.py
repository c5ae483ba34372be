"""Data larger than memory: peak resident memory and time to the first training step, on a first run (nothing
cached) and on a second run (the encoded splits cached), against the in-memory encoding that came before.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/data_scaling.py [--sizes 250000,1000000,4000000] \\
        [--baseline REV] [--num-proc 2] [--json out.json]
    NLP_RNN_DATA_DIR=../shared/data/hf python bench/data_scaling.py --collate-only   # batch reading: Arrow vs lists

Every measurement is a fresh process (``python bench/data_scaling.py --child SPEC``) that builds a ``Trainer`` and
stops at its first optimizer step; it reports the wall time from before it was started to that step, its peak
resident set (``VmHWM``: anonymous memory and the pages of memory-mapped files it touched), its peak anonymous
memory (``RssAnon``, sampled every 10 ms: what the kernel cannot drop), and the largest child process's peak
(the ``num_proc`` encoding workers; the Trainer's ``ldconfig -p`` starts at its parent's size). A first run starts
with empty caches (a fresh ``HF_DATASETS_CACHE``, where ``datasets`` keeps its Arrow copy of the parquet files, and
a fresh ``data.cache_dir``); the cached run is the same command again.

"before" runs the code at ``--baseline`` (a commit before the Arrow cache: ``git archive`` of its ``nlp_rnn/``
into a temporary folder, put first on ``PYTHONPATH``), where every run tokenizes the corpus into Python lists.

Corpora: IMDB's training split (the mirror; the classifier at the default ``max_length`` 400 and a word
vocabulary of 30,000), and a synthetic corpus this script writes once to ``--corpus`` as parquet shards of 250,000
rows: each row 4 to 24 words (uniform; 14 on average, a sentence) drawn from 50,000 made-up words (3 to 9 random
lowercase letters) with Zipf-like frequencies (p ~ 1 / rank ** 1.1), numpy seed 0, and a random 0/1 label. A size
is the first shards of it (``data.data_files``); on it the generation task reads one token stream
(``data.stream``, bptt 64, a word vocabulary of 8,000), the shape of an LM corpus. Models are tiny (16 units, so
that the first step itself adds little memory; ``after_imports`` in the JSON is the floor: Python, torch and
datasets imported). Writes docs/data-scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
SHARD_ROWS = 250_000
BASELINE = "8739422b5fe53466a6d2b499fcf03eb131870f27"  # the last commit that encoded into Python lists

TINY_MODEL = {"embedding_dim": 16, "hidden_size": 16}
TRAIN = {"epochs": 1, "batch_size": 32, "num_threads": 1, "progress": False, "log_every": 1000,
         "checkpoint_every": 1000000}


def imdb_config(num_proc: int) -> dict:
    return {"task": "classification", "data": {"dataset": "stanfordnlp/imdb", "num_proc": num_proc},
            "model": dict(TINY_MODEL), "train": dict(TRAIN)}


def synthetic_config(corpus: Path, rows: int, num_proc: int) -> dict:
    shards = [str(corpus / f"train-{i:05d}.parquet") for i in range(rows // SHARD_ROWS)]
    return {"task": "generation",
            "data": {"data_files": {"train": shards, "validation": str(corpus / "validation.parquet"),
                                    "test": str(corpus / "test.parquet")}, "validation_split": "validation",
                     "bptt": 64, "num_proc": num_proc},
            "tokenizer": {"type": "word", "vocab_size": 8000, "strip_html": False},
            "model": {**TINY_MODEL, "num_layers": 1}, "train": dict(TRAIN)}


# -- the corpus ---------------------------------------------------------------------------------------------------

def write_corpus(folder: Path, rows: int) -> None:
    """Parquet shards of random word sequences (module docstring), written once and reused."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = np.array(["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(50_000)])
    probabilities = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.1
    probabilities /= probabilities.sum()

    def texts(count: int) -> pa.Table:
        lengths = rng.integers(4, 25, count)
        words = vocabulary[rng.choice(len(vocabulary), lengths.sum(), p=probabilities)]
        ends = np.cumsum(lengths)
        text = [" ".join(words[end - length : end]) for end, length in zip(ends, lengths, strict=True)]
        return pa.table({"text": text, "label": rng.integers(0, 2, count)})

    shards = [f"train-{i:05d}.parquet" for i in range(rows // SHARD_ROWS)] + ["validation.parquet", "test.parquet"]
    for name in shards:
        if not (folder / name).is_file():
            temp = folder / f".{name}.tmp"
            pq.write_table(texts(SHARD_ROWS if name.startswith("train") else 5000), temp)
            os.replace(temp, folder / name)


# -- one measurement (a fresh process) ------------------------------------------------------------------------

def _status() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "RssAnon"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def child(spec: dict) -> None:
    """Build a Trainer on ``spec["config"]``, stop at its first step, write what was measured to ``spec["out"]``."""
    peak_anon = [0]

    def sample() -> None:
        while True:
            peak_anon[0] = max(peak_anon[0], _status()["RssAnon"])
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    import logging

    logging.basicConfig(level=logging.WARNING)
    import nlp_rnn
    from nlp_rnn.config import config_from_dict
    from nlp_rnn.training import Trainer

    after_imports = _status()["RssAnon"]

    def first_step(step: int) -> None:
        seconds = time.time() - spec["started"]
        peak_anon[0] = max(peak_anon[0], _status()["RssAnon"])
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        result = {"seconds": seconds, "peak_rss": _status()["VmHWM"], "peak_anon": peak_anon[0],
                  "after_imports": after_imports, "child_peak_rss": workers, "code": nlp_rnn.__file__}
        Path(spec["out"]).write_text(json.dumps(result))
        os._exit(0)  # nothing after the first step is measured

    Trainer(config_from_dict(spec["config"]), spec["run_dir"], on_step=first_step).run()
    raise SystemExit("training ended before a first step")


def measure(config: dict, code: Path, caches: Path, label: str) -> dict:
    """One fresh process on ``config`` with ``code`` first on the path and its caches in ``caches``."""
    with tempfile.TemporaryDirectory(prefix="data-scaling-") as scratch:
        spec = {"config": config, "run_dir": f"{scratch}/run", "out": f"{scratch}/result.json", "started": 0.0}
        env = {**os.environ, "PYTHONPATH": str(code), "HF_DATASETS_CACHE": str(caches / "hf"),
               "NLP_RNN_CACHE_DIR": str(caches / "nlp_rnn"), "TQDM_DISABLE": "1"}
        spec["started"] = time.time()
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                              env=env, cwd=scratch, capture_output=True, text=True)
        if done.returncode or not Path(spec["out"]).is_file():
            raise SystemExit(f"{label}: the measuring process failed:\n{done.stderr[-3000:]}")
        result = json.loads(Path(spec["out"]).read_text())
    if not result["code"].startswith(str(code)):
        raise SystemExit(f"{label}: measured {result['code']}, not the code in {code}")
    print(f"  {label}: {result['seconds']:.1f} s to the first step, peak RSS {result['peak_rss'] / 2**20:.0f} MiB "
          f"(anonymous {result['peak_anon'] / 2**20:.0f} MiB; largest child "
          f"process {result['child_peak_rss'] / 2**20:.0f} MiB)", flush=True)
    return result


def first_and_cached(config: dict, code: Path, work: Path, label: str) -> dict:
    if code != REPO:  # the code before has no data.num_proc
        config = {**config, "data": {k: v for k, v in config["data"].items() if k != "num_proc"}}
    caches = work / "caches"
    shutil.rmtree(caches, ignore_errors=True)
    first = measure(config, code, caches, f"{label}, first run")
    cached = measure(config, code, caches, f"{label}, cached run")
    shutil.rmtree(caches, ignore_errors=True)
    return {"first": first, "cached": cached}


def baseline_code(rev: str, folder: Path) -> Path:
    """``nlp_rnn/`` as of ``rev``, extracted into ``folder`` (the working tree is left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "nlp_rnn"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


# -- reading batches ----------------------------------------------------------------------------------------------

def collate_check(corpus: Path) -> dict:
    """Seconds for one epoch's collate calls, rows read from the Arrow cache against the same rows as Python lists:
    IMDB's training split (classification, in the sampler's order) and a 1M-row synthetic stream (generation)."""
    import torch

    from nlp_rnn.batching import EncodedDataset
    from nlp_rnn.config import config_from_dict
    from nlp_rnn.tasks import get_task
    from nlp_rnn.tasks.generation import StreamChunks, StreamSampler

    torch.set_num_threads(1)

    def epoch(dataset, batches, collate) -> float:
        started = time.perf_counter()
        for indices in batches:
            collate([dataset[i] for i in indices])
        return time.perf_counter() - started

    found = {}
    for name, config in (("imdb", imdb_config(2)), ("stream", synthetic_config(corpus, 1_000_000, 2))):
        config = config_from_dict(config)
        task, data = get_task(config.task).for_training(config)
        if isinstance(data.train, StreamChunks):
            lists = StreamChunks(data.train.data.tolist(), data.train.rows, data.train.bptt)
            batches = StreamSampler(data.train).batches()
        else:
            lists = EncodedDataset([list(ids) for ids in data.train.input_ids], list(data.train.labels))
            batches = task.sampler(data.train, config.train).batches()
        epoch(data.train, batches[:50], task.collate)  # warm the pages and the allocator
        found[name] = {"batches": len(batches), "lists": epoch(lists, batches, task.collate),
                       "arrow": epoch(data.train, batches, task.collate)}
        print(f"  {name}: an epoch's collate calls ({len(batches):,} batches): Python lists "
              f"{found[name]['lists']:.2f} s, Arrow {found[name]['arrow']:.2f} s", flush=True)
    return found


# -- the plot ---------------------------------------------------------------------------------------------------

def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    sizes = sorted(int(size) for size in results["synthetic"])
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    memory, seconds = figure.subplots(1, 2)
    styles = {("before", "first"): ("tab:red", "o-", "before (lists), first run"),
              ("before", "cached"): ("tab:red", "o--", "before (lists), second run"),
              ("arrow", "first"): ("tab:blue", "s-", "Arrow cache, first run"),
              ("arrow", "cached"): ("tab:blue", "s--", "Arrow cache, cached run")}
    for (code, run), (colour, style, name) in styles.items():
        shown = [s for s in sizes if code in results["synthetic"][str(s)]]
        if not shown:
            continue
        rows = [results["synthetic"][str(s)][code][run] for s in shown]
        millions = [s / 1e6 for s in shown]
        memory.plot(millions, [r["peak_rss"] / 2**30 for r in rows], style, color=colour, label=name)
        seconds.plot(millions, [r["seconds"] for r in rows], style, color=colour, label=name)
    memory.set(xlabel="corpus rows (millions; 14 words a row on average)", ylabel="peak resident memory (GiB)",
               title="Peak RSS up to the first training step")
    seconds.set(xlabel="corpus rows (millions; 14 words a row on average)", ylabel="seconds",
                title="Time to the first training step")
    for axes in (memory, seconds):
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
    memory.legend(fontsize=8)
    figure.suptitle("Generation task on a synthetic token stream; a fresh process each")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


# -- main ---------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="250000,500000,1000000,2000000,4000000",
                        help="synthetic corpus sizes in rows (multiples of 250,000)")
    parser.add_argument("--before-up-to", type=int, default=1_000_000,
                        help="measure the in-memory code only up to this many rows (it needs ~3 GiB a million)")
    parser.add_argument("--baseline", default=BASELINE, help="the commit measured as 'before'")
    parser.add_argument("--num-proc", type=int, default=2, help="data.num_proc of the Arrow runs")
    parser.add_argument("--corpus", default=str(Path(tempfile.gettempdir()) / "nlp-rnn-synthetic-corpus"))
    parser.add_argument("--no-imdb", action="store_true")
    parser.add_argument("--collate-only", action="store_true", help="only time an epoch's collate calls")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    from bench.machine import cpu

    print(cpu(), flush=True)
    sizes = [int(size) for size in args.sizes.split(",")]
    corpus = Path(args.corpus)
    started = time.perf_counter()
    write_corpus(corpus, max(sizes))
    print(f"corpus: {max(sizes):,} rows in {corpus} ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.collate_only:
        with tempfile.TemporaryDirectory(prefix="data-scaling-cache-") as cache:
            os.environ["NLP_RNN_CACHE_DIR"] = cache
            found = collate_check(corpus)
        if args.json:
            Path(args.json).write_text(json.dumps(found, indent=1))
        return
    results: dict = {"imdb": {}, "synthetic": {}, "num_proc": args.num_proc, "baseline": args.baseline}
    with tempfile.TemporaryDirectory(prefix="data-scaling-work-") as work:
        work = Path(work)
        codes = {"before": baseline_code(args.baseline, work / "baseline"), "arrow": REPO}
        if not args.no_imdb:
            print("IMDB train (22,500 reviews after carving validation), classification", flush=True)
            for name, code in codes.items():
                results["imdb"][name] = first_and_cached(imdb_config(args.num_proc), code, work, name)
        for size in sizes:
            print(f"synthetic, {size:,} rows, generation (one token stream)", flush=True)
            results["synthetic"][str(size)] = {}
            for name, code in codes.items():
                if name == "before" and size > args.before_up_to:
                    continue
                results["synthetic"][str(size)][name] = first_and_cached(
                    synthetic_config(corpus, size, args.num_proc), code, work, name)
    plot(results, DOCS / "data-scaling.png")
    print(f"wrote {DOCS / 'data-scaling.png'} ({time.perf_counter() - started:.0f} s in all)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    if "--child" not in sys.argv:
        sys.path.insert(0, str(REPO))  # bench.machine; a child imports the code on its PYTHONPATH
    main()
