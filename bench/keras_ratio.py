"""Our BiLSTM training against Keras's, alternating on this machine, at its own ISA and restricted to AVX2.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/keras_ratio.py [--rounds 2] [--max-train 6000] [--json OUT]

Needs the Keras peer venv (``bash bench/peers/setup.sh keras``). Each round runs, one after the other and each in
its own process: ``bench/peers/keras_imdb.py --epochs 1`` and ``bench/train_speed.py sentiment --epochs 1`` (the
Keras recipe's sizes, bench/configs/imdb_keras_size.yaml, our defaults: bf16 autocast where the CPU has it) on the
first ``--max-train`` training reviews, then both again with the vector ISA capped at AVX2
(``ONEDNN_MAX_CPU_ISA=AVX2`` for both toolkits' oneDNN; ``ATEN_CPU_CAPABILITY=avx2`` and
``MKL_ENABLE_INSTRUCTIONS=AVX2`` for torch's own kernels and MKL):
on an AVX-512 machine that stands in for an AVX2-only CPU of the same clock (same cores and caches, so it is an
emulation, not the other machine). ``--configs`` adds further configs of ours (``--set`` style overrides after a
colon, e.g. ``imdb_keras_size.yaml:train.amp=false``). Reviews/s are of the training epoch alone; the ratio is
ours / Keras within the same round and ISA.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KERAS_PYTHON = BENCH / "peers" / ".venv-keras" / "bin" / "python"
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def keras(args: argparse.Namespace, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "keras.json"
        subprocess.run([str(KERAS_PYTHON), str(BENCH / "peers" / "keras_imdb.py"), "--epochs", "1", "--max-train",
                        str(args.max_train), "--max-test", str(args.max_test), "--verbose", "0", "--out", str(out)],
                       env=env, check=True, capture_output=True, text=True)
        epoch = json.loads(out.read_text())["epochs"][0]
    return {"reviews_per_second": epoch["reviews_per_s"], "test_accuracy": epoch["test_accuracy"],
            "train_seconds": epoch["train_seconds"]}


def ours(spec: str, args: argparse.Namespace, env: dict) -> dict:
    config, _, overrides = spec.partition(":")
    sets = [item for override in overrides.split(",") if override for item in ("--set", override)]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "ours.json"
        subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "sentiment", "--epochs", "1", "--max-train",
                        str(args.max_train), "--config", str(BENCH / "configs" / config), *sets, "--json", str(out)],
                       env=env, check=True, capture_output=True, text=True, cwd=ROOT)
        epoch = json.loads(out.read_text())["epochs"][0]
    return {"reviews_per_second": epoch["reviews_per_second"], "test_accuracy": epoch["test_accuracy"],
            "train_seconds": epoch["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=6000)
    parser.add_argument("--max-test", type=int, default=2000, help="Keras scores this many test reviews (ours: all)")
    parser.add_argument("--configs", default="imdb_keras_size.yaml",
                        help="comma-separated bench/configs files of ours, each optionally CONFIG:KEY=VALUE;KEY=VALUE")
    parser.add_argument("--isa", default="native,avx2", help="native, avx2 or both (comma-separated)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not KERAS_PYTHON.exists():
        sys.exit(f"error: no Keras venv at {KERAS_PYTHON}; run: bash bench/peers/setup.sh keras")
    specs = [spec.replace(";", ",") for spec in args.configs.split(",")]
    isas = args.isa.split(",")
    print(f"CPU: {cpu()}", flush=True)
    results: dict[str, dict[str, list[dict]]] = {isa: {"keras": [], **{s: [] for s in specs}} for isa in isas}
    for round_index in range(args.rounds):
        for isa in isas:
            env = {**os.environ, **(AVX2 if isa == "avx2" else {})}
            results[isa]["keras"].append(keras(args, env))
            for spec in specs:
                results[isa][spec].append(ours(spec, args, env))
            line = ", ".join(f"{name} {runs[-1]['reviews_per_second']:.1f}" for name, runs in results[isa].items())
            print(f"round {round_index + 1}, {isa}: reviews/s {line}", flush=True)
    print("| ISA | toolkit | reviews/s per round | test accuracy after 1 epoch | ours / Keras per round |")
    print("|---|---|---|---|---|")
    for isa in isas:
        peer = [run["reviews_per_second"] for run in results[isa]["keras"]]
        for name, runs in results[isa].items():
            speeds = [run["reviews_per_second"] for run in runs]
            accuracy = statistics.mean(run["test_accuracy"] for run in runs)
            ratios = "" if name == "keras" else ", ".join(f"{s / p:.2f}x" for s, p in zip(speeds, peer, strict=True))
            print(f"| {isa} | {name} | {', '.join(f'{s:.1f}' for s in speeds)} | {100 * accuracy:.2f} | {ratios} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu(), "max_train": args.max_train, "results": results},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
