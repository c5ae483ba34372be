"""CPU inference speed of the shipped models, float32 and dynamic int8 (``nlp_rnn.load(..., quantize=True)``).

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/inference.py [--threads 1] [--json OUT]

Latency: one request at a time through the public API, as the demo calls it (tokenization included): an IMDB
test review of at most 400 tokens, and a Multi30k test2016 sentence of 13-17 words translated with beam 5.
Throughput: the whole IMDB test split (25,000 reviews) and test2016 (1,000 sentences) in batches, which also
scores both variants (IMDB test accuracy, test2016 sacreBLEU with beam 5): the speed-up and what it costs in
quality come from the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import nlp_rnn
from nlp_rnn.data import load_eval_split
from nlp_rnn.evaluation import score_translations

SENTIMENT = "demo/models/sentiment-imdb"
TRANSLATION = "demo/models/translate-de-en"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(call, inputs: list, repeats: int) -> dict[str, float]:
    call(inputs[:1])  # warm-up
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        call([inputs[index % len(inputs)]])
        times.append(time.perf_counter() - started)
    return {"p50_ms": 1000 * statistics.median(times), "p90_ms": 1000 * percentile(times, 0.9)}


def measure(quantize: bool, args: argparse.Namespace, reviews: list[str], labels: list[int],
            sources: list[str], references: list[str]) -> dict:
    classifier = nlp_rnn.load(SENTIMENT, quantize=quantize)
    translator = nlp_rnn.load(TRANSLATION, quantize=quantize)
    short = [r for r in reviews if len(classifier.encode([r])[0]) <= 400][: args.repeats]
    fifteen = [s for s in sources if 13 <= len(s.split()) <= 17][: args.repeats]
    result = {
        "review_latency": latency(classifier.predict, short, args.repeats),
        "review_tokens_mean": statistics.mean(len(ids) for ids in classifier.encode(short)),
        "sentence_latency_beam5": latency(lambda s: translator.translate(s, beam_size=5), fifteen, args.repeats),
    }
    started = time.perf_counter()
    probabilities = classifier.predict_proba(reviews, batch_size=256)
    seconds = time.perf_counter() - started
    result["reviews_per_second"] = len(reviews) / seconds
    result["imdb_test_accuracy"] = float((probabilities.argmax(-1) == torch.tensor(labels)).float().mean())
    started = time.perf_counter()
    hypotheses = [t["translation"] for t in translator.translate(sources, beam_size=5, batch_size=128)]
    result["sentences_per_second_beam5"] = len(sources) / (time.perf_counter() - started)
    result["test2016_bleu_beam5"] = score_translations(hypotheses, references)["bleu"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200, help="single requests timed per model")
    parser.add_argument("--reviews", type=int, default=25000, help="IMDB test reviews for throughput/accuracy")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classifier = nlp_rnn.load(SENTIMENT)
    imdb = load_eval_split(classifier.config.data, "test", type(classifier.task))
    reviews, labels = imdb["text"][: args.reviews], imdb["label"][: args.reviews]
    translator = nlp_rnn.load(TRANSLATION)
    multi30k = load_eval_split(translator.config.data, "test", type(translator.task))
    sources, references = multi30k["de"], multi30k["en"]
    print(f"torch {torch.__version__}, {platform.machine()}, {args.threads} thread(s), "
          f"{len(reviews)} IMDB test reviews, {len(sources)} test2016 sentences")
    results = {name: measure(name == "int8", args, reviews, labels, sources, references)
               for name in ("float32", "int8")}
    rows = [("review p50 latency (ms)", lambda r: r["review_latency"]["p50_ms"], "{:.2f}"),
            ("review p90 latency (ms)", lambda r: r["review_latency"]["p90_ms"], "{:.2f}"),
            ("15-word sentence, beam 5, p50 (ms)", lambda r: r["sentence_latency_beam5"]["p50_ms"], "{:.1f}"),
            ("15-word sentence, beam 5, p90 (ms)", lambda r: r["sentence_latency_beam5"]["p90_ms"], "{:.1f}"),
            ("reviews/s (batches of 256)", lambda r: r["reviews_per_second"], "{:.0f}"),
            ("sentences/s, beam 5 (batches of 128)", lambda r: r["sentences_per_second_beam5"], "{:.1f}"),
            ("IMDB test accuracy (%)", lambda r: 100 * r["imdb_test_accuracy"], "{:.2f}"),
            ("test2016 BLEU, beam 5", lambda r: r["test2016_bleu_beam5"], "{:.2f}")]
    print("| measure | float32 | int8 | int8 / float32 |")
    print("|---|---:|---:|---:|")
    for name, get, fmt in rows:
        full, small = get(results["float32"]), get(results["int8"])
        print(f"| {name} | {fmt.format(full)} | {fmt.format(small)} | {small / full:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"threads": args.threads, "torch": torch.__version__, **results}, handle, indent=2)


if __name__ == "__main__":
    main()
