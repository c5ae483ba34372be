"""How cost grows: training time per IMDB epoch against sequence length and batch size, and test2016 decode
time (and BLEU) against beam size. Writes docs/scaling_training.png and docs/scaling_decoding.png.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/scaling.py [--threads 2] [--steps 20]

Training: the shipped IMDB classifier's architecture (BiLSTM 192, max+mean pooling), fresh weights, AdamW
steps on real IMDB training reviews cut to each max length, batched as ``nlp-rnn train`` batches them
(length buckets), with malloc keeping freed buffers as ``nlp-rnn train`` does. A run of ``--steps`` steps
gives tokens/s, and an epoch's time is the split's tokens (at that max length) over it. Decoding: the shipped
translator on all 1,000 test2016 sentences, batches of 128.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from machine import cpu  # bench/machine.py (bench/ is the script's folder)
from matplotlib.figure import Figure

import nlp_rnn
from nlp_rnn import runtime
from nlp_rnn.batching import BucketBatchSampler, Collator
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.data import load_eval_split
from nlp_rnn.evaluation import score_translations
from nlp_rnn.tokenization import encode_texts

DOCS = Path(__file__).resolve().parent.parent / "docs"
SENTIMENT = "demo/models/sentiment-imdb"
TRANSLATION = "demo/models/translate-de-en"


def epoch_seconds(ids: list[list[int]], labels: list[int], config, vocab_size: int, batch_size: int,
                  steps: int) -> tuple[float, float]:
    """(tokens/s, seconds for one epoch over ``ids``) training a fresh classifier for ``steps`` steps."""
    torch.manual_seed(0)
    model = SentimentClassifier(config, vocab_size, 2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = BucketBatchSampler([len(row) for row in ids], batch_size, seed=0)
    collate = Collator(0)
    batches = sampler.batches()[: steps + 1]
    tokens, started = 0, None
    for index, indices in enumerate(batches):
        if index == 1:  # the first step warms up
            started, tokens = time.perf_counter(), 0
        batch = collate([{"input_ids": ids[i], "label": labels[i]} for i in indices])
        _, loss = model(batch, targets=batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tokens += batch.num_tokens
    rate = tokens / (time.perf_counter() - started)
    return rate, sum(len(row) for row in ids) / rate


def plot(results: dict) -> None:
    """docs/scaling_training.png and docs/scaling_decoding.png from the measured points."""
    from matplotlib.ticker import NullLocator

    threads = results["threads"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    for axes, points, key, label, title in (
            (left, results["length"], "max_length", "max tokens per review", "batch 64"),
            (right, results["batch"], "batch_size", "batch size (reviews)", "max 256 tokens")):
        values = [r[key] for r in points]
        axes.plot(values, [r["epoch_seconds"] for r in points], "o-")
        axes.set_xscale("log", base=2)
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set(xticks=values, xticklabels=[str(v) for v in values], xlabel=label,
                 ylabel="seconds per IMDB epoch (25,000 reviews)", title=title, ylim=(0, None))
    figure.suptitle(f"BiLSTM 192 training on IMDB, {threads} CPU threads")
    DOCS.mkdir(exist_ok=True)
    figure.savefig(DOCS / "scaling_training.png", dpi=110)
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    axes = figure.subplots()
    beams = [r["beam"] for r in results["beam"]]
    axes.plot(beams, [r["seconds"] for r in results["beam"]], "o-")
    for point in results["beam"]:
        axes.annotate(f"BLEU {point['bleu']:.1f}", (point["beam"], point["seconds"]), textcoords="offset points",
                      xytext=(4, -10), fontsize=7)
    axes.set(xlabel="beam size", ylabel="seconds for test2016 (1,000 sentences)", xticks=beams, ylim=(0, None),
             title=f"GRU encoder-decoder decoding, {threads} CPU threads")
    figure.savefig(DOCS / "scaling_decoding.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per point")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--replot", help="only redraw the plots from a --json file of an earlier run")
    args = parser.parse_args()
    print(f"CPU: {cpu()}", flush=True)
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()))
        return
    torch.set_num_threads(args.threads)
    runtime.keep_freed_memory()  # as `nlp-rnn train` does on a CPU (train.keep_freed_memory)
    classifier = nlp_rnn.load(SENTIMENT)
    config, data = classifier.config, classifier.config.data
    imdb = load_eval_split(data, "train", type(classifier.task))
    vocab = classifier.tokenizer.get_vocab_size()
    results: dict = {"threads": args.threads, "length": [], "batch": [], "beam": []}
    print(f"torch {torch.__version__}, {args.threads} threads")
    print("| max length | batch | tokens/s | s per epoch (25,000 reviews) |")
    print("|---:|---:|---:|---:|")
    for length, batch_size in [(64, 64), (128, 64), (256, 64), (512, 64), (256, 16), (256, 32), (256, 128),
                               (256, 256)]:
        ids = encode_texts(classifier.tokenizer, imdb["text"], length, data.truncation, data.head_fraction)
        rate, seconds = epoch_seconds(ids, imdb["label"], config.model, vocab, batch_size, args.steps)
        results["length" if batch_size == 64 else "batch"].append(
            {"max_length": length, "batch_size": batch_size, "tokens_per_second": rate, "epoch_seconds": seconds})
        print(f"| {length} | {batch_size} | {rate:,.0f} | {seconds:,.0f} |", flush=True)
    results["batch"].append(next(r for r in results["length"] if r["max_length"] == 256))
    results["batch"].sort(key=lambda r: r["batch_size"])

    translator = nlp_rnn.load(TRANSLATION)
    test = load_eval_split(translator.config.data, "test", type(translator.task))
    print("| beam | seconds (1,000 sentences) | sentences/s | BLEU |")
    print("|---:|---:|---:|---:|")
    for beam in (1, 2, 3, 5, 8, 10):
        started = time.perf_counter()
        hypotheses = [t["translation"] for t in translator.translate(test["de"], beam_size=beam, batch_size=128)]
        seconds = time.perf_counter() - started
        bleu = score_translations(hypotheses, test["en"])["bleu"]
        results["beam"].append({"beam": beam, "seconds": seconds, "bleu": bleu})
        print(f"| {beam} | {seconds:.1f} | {len(hypotheses) / seconds:.0f} | {bleu:.2f} |", flush=True)

    plot(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
