"""Controllability of a label-conditioned review writer: write N reviews per label with fixed seeds, classify
them with the shipped IMDB classifier, and report the share classified as the label asked for, with distinct-1/2
(the share of unique word unigrams / bigrams over all N, Li et al. 2016), so a writer that repeats itself cannot
hide. The same figures for N real IMDB test reviews of each label, cut to the writer's length, are the reference.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/review_control.py [--writer demo/models/reviews-imdb]
        [--classifier demo/models/sentiment-imdb] [--n 500] [--max-new-tokens 128] [--temperature 0.9]
        [--top-p 0.95] [--seed 0] [--guidance 0] [--json OUT]

Sample i of a label uses seed ``--seed + i`` (the same texts every run). Prints the CPU model first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from machine import cpu  # bench/machine.py (bench/ is the script's folder)

import nlp_rnn
from nlp_rnn.data import load_eval_split


def distinct(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (lowercased words)."""
    grams = [tuple(words[i : i + n]) for words in (t.lower().split() for t in texts)
             for i in range(len(words) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def scores(classifier, texts: list[str], label: str) -> dict[str, float]:
    kept = [t for t in texts if t.strip()]
    predicted = [r["label"] for r in classifier.predict(kept)] if kept else []
    return {"texts": len(texts), "empty": len(texts) - len(kept),
            "as_requested": sum(p == label for p in predicted) / len(texts),
            "distinct_1": distinct(texts, 1), "distinct_2": distinct(texts, 2),
            "mean_words": sum(len(t.split()) for t in texts) / max(1, len(texts))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writer", default="demo/models/reviews-imdb")
    parser.add_argument("--classifier", default="demo/models/sentiment-imdb")
    parser.add_argument("--n", type=int, default=500, help="reviews per label")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight (0 = none)")
    parser.add_argument("--batch", type=int, default=50, help="reviews written at once")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    writer, classifier = nlp_rnn.load(args.writer), nlp_rnn.load(args.classifier)
    result = {"cpu": cpu(), "writer": args.writer, "classifier": args.classifier, "n": args.n,
              "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
              "seed": args.seed, "guidance": args.guidance, "generated": {}, "real_test_reviews": {}}
    started = time.perf_counter()
    for label in writer.labels:
        texts = []
        for start in range(0, args.n, args.batch):
            count = min(args.batch, args.n - start)
            found = writer.generate([""], label=label, num_samples=count, max_new_tokens=args.max_new_tokens,
                                    temperature=args.temperature, top_p=args.top_p, seed=args.seed + start,
                                    guidance=args.guidance)
            texts += [r["text"] for r in found]
        result["generated"][label] = {**scores(classifier, texts, label), "examples": texts[:3]}
    result["seconds"] = time.perf_counter() - started
    test = load_eval_split(writer.config.data, "test", type(writer.task))
    names = writer.labels
    tokenizer = writer.task.tokenizer
    for index, label in enumerate(names):
        rows = [t for t, y in zip(test[writer.config.data.text_column], test[writer.config.data.label_column],
                                  strict=True) if y == index][: args.n]
        cut = [tokenizer.decode(tokenizer.encode(t).ids[: args.max_new_tokens]) for t in rows]
        result["real_test_reviews"][label] = scores(classifier, cut, label)
    for kind in ("generated", "real_test_reviews"):
        for label, figures in result[kind].items():
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items() if k != "examples"}
            print(f"{kind} [{label}]: {shown}")
    share = sum(r["as_requested"] for r in result["generated"].values()) / len(result["generated"])
    result["as_requested_overall"] = share
    print(f"classified as requested, both labels: {share:.4f} ({args.n} per label, {result['seconds']:.0f} s)")
    for label, figures in result["generated"].items():
        print(f"example [{label}]: {figures['examples'][0][:300]!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
