"""Training speed at the peers' sizes, with FLOPs accounting against this machine's measured GEMM peak.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/train_speed.py sentiment [--threads 2] [--epochs 2]
    NLP_RNN_DATA_DIR=../shared/data/hf python bench/train_speed.py translation [--config FILE] [--epochs 1]

``sentiment`` trains bench/configs/imdb_keras_size.yaml (the Keras recipe's sizes: Embedding(20k, 128) ->
BiLSTM(128) -> Dense, 256 tokens, batch 64) on the full IMDB training split through ``nlp_rnn.train`` and
reports, per epoch: training seconds (validation excluded), non-pad tokens/s, reviews/s and IMDB test
accuracy, then the training time to 86% test accuracy. In the same process it measures the machine's fp32
GEMM peak (square matmuls on the same threads, before and after training; the higher reading counts) and
prints the model's FLOPs per token and the share of the peak its training reaches. ``--peer FILE`` (a
bench/peers result JSON) adds the ratios.

``translation`` trains bench/configs/multi30k_joeynmt_size.yaml (JoeyNMT's recurrent recipe: embeddings 256,
bidirectional GRU 256, GRU decoder 512 with Bahdanau attention, 64 sentences per batch) on the full Multi30k
training split and reports per epoch: training seconds, target tokens/s, sentences/s and greedy validation
BLEU. ``--config`` trains another config instead (for example bench/configs/multi30k_fast_joeynmt_size.yaml,
our shipped architecture at the same sizes).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu  # bench/machine.py (bench/ is the script's folder)

from nlp_rnn.config import load_config
from nlp_rnn.training import Trainer

BENCH = Path(__file__).resolve().parent
GATES = {"rnn": 1, "gru": 3, "lstm": 4, "peephole_lstm": 4}


def gemm_peak(threads: int, size: int = 2048, seconds: float = 3.0) -> float:
    """Best fp32 matmul FLOP/s over a few seconds of (size x size) @ (size x size) on ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def encoder_flops_per_token(model) -> float:
    """Forward multiply-adds x 2 of the recurrent layers per input token (input and recurrent projections;
    the gate nonlinearities and the pooling are a few percent more and not counted)."""
    gates, hidden = GATES[model.cell], model.hidden_size
    directions = 2 if model.bidirectional else 1
    total, input_size = 0.0, model.embedding_dim
    for _ in range(model.num_layers):
        total += directions * 2 * gates * hidden * (input_size + hidden)
        input_size = directions * hidden
    return total


def train_timed(config_path: Path, args: argparse.Namespace) -> tuple[Trainer, list[dict]]:
    """Train ``config_path`` through ``nlp_rnn``'s own Trainer; per epoch: training seconds (validation
    excluded), cumulative training seconds and the validation report."""
    overrides = [f"train.epochs={args.epochs}", f"train.num_threads={args.threads}", "train.progress=false",
                 "train.log_every=50"]
    if args.max_train:
        overrides.append(f"data.max_train_examples={args.max_train}")
    config = load_config(config_path, overrides + args.set)
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="train_speed_")) / config_path.stem
    trainer = Trainer(config, run_dir)
    trainer.run()
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs, previous_seconds = [], 0.0
    for record in records:
        if record["kind"] == "step":
            continue
        seconds = record["seconds"] - previous_seconds
        previous_seconds = record["seconds"]
        epochs.append({"epoch": record["epoch"], "train_seconds": seconds, "cumulative_seconds": record["seconds"],
                       **{k: v for k, v in record.items() if k.startswith("val_")}})
    return trainer, epochs


def sentiment(args: argparse.Namespace) -> dict:
    config_path = Path(args.config) if args.config else BENCH / "configs" / "imdb_keras_size.yaml"
    trainer, epochs = train_timed(config_path, args)
    lengths = trainer.data.train.lengths()  # what one epoch reads
    tokens, reviews = sum(lengths), len(lengths)
    for epoch in epochs:
        epoch["test_accuracy"] = epoch["val_accuracy"]
        epoch["tokens_per_second"] = tokens / epoch["train_seconds"]
        epoch["reviews_per_second"] = reviews / epoch["train_seconds"]
    reached = next((e["cumulative_seconds"] for e in epochs if e["test_accuracy"] >= 0.86), None)
    forward = encoder_flops_per_token(trainer.config.model)
    return {"config": str(config_path), "train_reviews": reviews, "train_tokens": tokens,
            "epochs": epochs, "seconds_to_86": reached, "forward_flops_per_token": forward,
            "train_flops_per_token": 3 * forward}


def translation(args: argparse.Namespace) -> dict:
    """Target tokens/s (every non-pad target token the loss reads, </s> included, as JoeyNMT counts them)."""
    config_path = Path(args.config) if args.config else BENCH / "configs" / "multi30k_joeynmt_size.yaml"
    trainer, epochs = train_timed(config_path, args)
    targets = [len(t) - 1 for t in trainer.data.train.tgt]  # <s> x y z </s> -> 4 predicted tokens
    tokens, sentences = sum(targets), len(targets)
    for epoch in epochs:
        epoch["target_tokens_per_second"] = tokens / epoch["train_seconds"]
        epoch["sentences_per_second"] = sentences / epoch["train_seconds"]
    parameters = sum(p.numel() for p in trainer.model.parameters())
    return {"config": str(config_path), "train_sentences": sentences, "train_target_tokens": tokens,
            "parameters": parameters, "epochs": epochs}


def print_translation(result: dict) -> None:
    print(f"{result['config']}: {result['parameters']:,} parameters; {result['train_sentences']} training pairs, "
          f"{result['train_target_tokens']} target tokens per epoch")
    print("| epoch | train s | target tokens/s | sentences/s | validation BLEU (greedy) |")
    print("|---:|---:|---:|---:|---:|")
    for epoch in result["epochs"]:
        print(f"| {epoch['epoch']} | {epoch['train_seconds']:.1f} | {epoch['target_tokens_per_second']:,.0f} | "
              f"{epoch['sentences_per_second']:.1f} | {epoch['val_bleu']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["sentiment", "translation"])
    parser.add_argument("--config", help="train this config instead of the model's bench/configs default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=None, help="fewer training examples (a quick check)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, as nlp-rnn train --set (repeatable)")
    parser.add_argument("--out", help="keep the run folder here (default: a temporary folder)")
    parser.add_argument("--peer", help="a bench/peers result JSON to compare with")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(f"CPU: {cpu()}", flush=True)
    if args.model == "translation":
        result = translation(args)
        result.update(threads=args.threads, torch=torch.__version__, machine=platform.machine())
        print_translation(result)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return
    peak_before = gemm_peak(args.threads)
    result = sentiment(args)
    peak_after = gemm_peak(args.threads)
    peak = max(peak_before, peak_after)  # one reading can come out low
    result.update(threads=args.threads, torch=torch.__version__, machine=platform.machine(), gemm_peak_flops=peak,
                  gemm_peak_readings=[peak_before, peak_after])
    print(f"torch {torch.__version__}, {platform.machine()}, {args.threads} threads; fp32 GEMM peak "
          f"{peak / 1e9:.1f} GFLOP/s; model: {result['forward_flops_per_token'] / 1e6:.3f} MFLOP forward per "
          f"token, x3 for training = {result['train_flops_per_token'] / 1e6:.3f} MFLOP")
    print(f"{result['train_reviews']} training reviews, {result['train_tokens']} non-pad tokens per epoch")
    print("| epoch | train s | tokens/s | reviews/s | test acc | GFLOP/s | % of peak |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for epoch in result["epochs"]:
        flops = epoch["tokens_per_second"] * result["train_flops_per_token"]
        epoch["achieved_flops"] = flops
        print(f"| {epoch['epoch']} | {epoch['train_seconds']:.0f} | {epoch['tokens_per_second']:,.0f} | "
              f"{epoch['reviews_per_second']:.1f} | {100 * epoch['test_accuracy']:.2f} | {flops / 1e9:.1f} | "
              f"{100 * flops / peak:.1f} |")
    print(f"training time to 86% test accuracy: {result['seconds_to_86']}")
    if args.peer:
        peer = json.loads(Path(args.peer).read_text())
        result["peer"] = peer
        print(f"peer: {json.dumps(peer)[:400]}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
