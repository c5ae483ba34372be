"""CPU inference speed of the shipped models: PyTorch and ONNX Runtime, each in float32 and dynamic int8.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/inference.py [--threads 1] [--runtime torch|onnx|both]
        [--precision float32|int8|both] [--model sentiment|translation|both] [--reviews N] [--onnx-dir DIR]
        [--sentiment-dir DIR] [--translation-dir DIR] [--json OUT]

The variants: ``torch float32`` is ``nlp_rnn.load(MODEL)``; ``torch int8`` is ``nlp_rnn.load(MODEL, quantize=True)``
(dynamic int8 LSTM, GRU and Linear); ``onnx float32`` is ``nlp-rnn export MODEL`` run by
``nlp_rnn.onnx_inference.load_onnx``; ``onnx int8`` is ``nlp-rnn export MODEL --int8`` (onnxruntime's dynamic int8
LSTM and Linear; its GRUs stay float32: onnxruntime has no int8 GRU). MODEL is the shipped one unless
--sentiment-dir or --translation-dir names another model folder (a packed ensemble: --runtime torch, as ONNX export
takes one model). The ONNX folders are exported into a temporary folder, or into --onnx-dir (kept, and reused by the
next run). On a CPU, torch float32 is float32 arithmetic everywhere: prediction does not autocast to bf16
(``nlp_rnn.evaluation.autocast``).

Latency: one request at a time through each variant's public call (tokenization and search included, as the demo
calls it): an IMDB test review of at most 400 tokens, and a Multi30k test2016 sentence of 13-17 words translated
with beam 5 (the ONNX translator runs nlp_rnn.search's beam search over ``decoder_step.onnx``). Throughput: the
whole IMDB test split (25,000 reviews, batches of 256; --reviews N takes N spread evenly over it, both labels)
and test2016 (1,000 sentences, beam 5, batches of 128), which also scores every variant (IMDB test accuracy,
test2016 sacreBLEU): each speed-up comes with its cost in quality from the same run. The variants of one run
take turns, in an order that rotates: 10 requests each, then the splits in chunks (1,280 reviews, 256 sentences),
so a change in the machine's load hits every variant alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import nlp_rnn
from nlp_rnn.data import load_eval_split
from nlp_rnn.evaluation import score_translations

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ISA_LIMITS, cpu  # noqa: E402  (bench/machine.py; bench/ is the script's folder)

MODELS = {"sentiment": "demo/models/sentiment-imdb", "translation": "demo/models/translate-de-en"}
RUNTIMES = {"torch": ("torch",), "onnx": ("onnx",), "both": ("torch", "onnx")}
PRECISIONS = {"float32": ("float32",), "int8": ("int8",), "both": ("float32", "int8")}
BEAM = 5
REVIEW_BATCH, SENTENCE_BATCH = 256, 128
LATENCY_BLOCK = 10  # requests one variant answers in a row before the next takes over (latency)
REVIEW_CHUNK, SENTENCE_CHUNK = 1280, 256  # the same for throughput


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rotated(names: list[str], index: int) -> list[str]:
    shift = index % len(names)
    return names[shift:] + names[:shift]


def latency(calls: dict[str, Callable], inputs: list, repeats: int) -> dict[str, dict[str, float]]:
    """p50 and p90 of ``repeats`` single requests per variant. The variants take turns in blocks: each answers the
    same ``LATENCY_BLOCK`` requests in a row, after one untimed request that brings its weights back into the caches
    (a server keeps one model warm; four models taking turns request by request would time cold caches)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index, start in enumerate(range(0, repeats, LATENCY_BLOCK)):
        requests = [inputs[i % len(inputs)] for i in range(start, min(start + LATENCY_BLOCK, repeats))]
        for name in rotated(list(calls), round_index):
            calls[name]([inputs[(start - 1) % len(inputs)]])  # untimed warm-up, on another request
            for request in requests:
                started = time.perf_counter()
                calls[name]([request])
                times[name].append(time.perf_counter() - started)
    return {name: {"p50_ms": 1000 * statistics.median(t), "p90_ms": 1000 * percentile(t, 0.9)}
            for name, t in times.items()}


def throughput(calls: dict[str, Callable], inputs: list, chunk: int) -> tuple[dict[str, float], dict[str, list]]:
    """Items per second of each variant over all ``inputs``, chunk by chunk in turn, and each one's outputs."""
    seconds = dict.fromkeys(calls, 0.0)
    outputs: dict[str, list] = {name: [] for name in calls}
    for index, start in enumerate(range(0, len(inputs), chunk)):
        for name in rotated(list(calls), index):
            started = time.perf_counter()
            result = calls[name](inputs[start : start + chunk])
            seconds[name] += time.perf_counter() - started
            outputs[name].extend(result)
    return {name: len(inputs) / s for name, s in seconds.items()}, outputs


def export(model: str, folder: Path, int8: bool) -> Path:
    """The exported ONNX folder of ``model`` in ``folder``, exported there unless it is already."""
    from nlp_rnn.export import export_run

    out = folder / (model + ("-int8" if int8 else ""))
    if not (out / "export.json").is_file():
        export_run(MODELS[model], out, force=True, int8=int8)
    return out


def load_variants(model: str, runtimes: tuple[str, ...], precisions: tuple[str, ...], onnx_dir: Path,
                  threads: int) -> dict:
    """Variant name -> predictor (a torch one, or an onnxruntime runner)."""
    from nlp_rnn.onnx_inference import load_onnx

    variants = {}
    for runtime in runtimes:
        for precision in precisions:
            if runtime == "torch":
                variants[f"torch {precision}"] = nlp_rnn.load(MODELS[model], quantize=precision == "int8")
            else:
                variants[f"onnx {precision}"] = load_onnx(export(model, onnx_dir, precision == "int8"), threads)
    return variants


def measure_sentiment(variants: dict, args: argparse.Namespace) -> dict[str, dict]:
    reference = nlp_rnn.load(MODELS["sentiment"])
    imdb = load_eval_split(reference.config.data, "test", type(reference.task))
    spread = [round(i * len(imdb) / args.reviews) for i in range(min(args.reviews, len(imdb)))]  # both labels
    reviews, labels = [imdb["text"][i] for i in spread], np.array([imdb["label"][i] for i in spread])
    lengths = [len(ids) for ids in reference.encode(imdb["text"][:1000])]
    short = [r for r, n in zip(imdb["text"], lengths, strict=False) if n <= 400][: args.repeats]
    tokens = statistics.mean(len(ids) for ids in reference.encode(short))
    timed = latency({name: v.predict for name, v in variants.items()}, short, args.repeats)
    results = {name: {"review_latency": timed[name], "review_tokens_mean": tokens} for name in variants}

    def probabilities(variant) -> Callable:
        return lambda texts: np.asarray(variant.predict_proba(texts, batch_size=REVIEW_BATCH)).tolist()

    rates, outputs = throughput({name: probabilities(v) for name, v in variants.items()}, reviews, REVIEW_CHUNK)
    first = np.argmax(outputs[next(iter(variants))], axis=-1)
    for name in variants:
        predicted = np.argmax(outputs[name], axis=-1)
        results[name].update(reviews_per_second=rates[name], imdb_test_accuracy=float((predicted == labels).mean()),
                             agree_with_first=float((predicted == first).mean()))
    return results


def measure_translation(variants: dict, args: argparse.Namespace) -> dict[str, dict]:
    reference = nlp_rnn.load(MODELS["translation"])
    multi30k = load_eval_split(reference.config.data, "test", type(reference.task))
    sources, references = multi30k["de"][: args.sentences], multi30k["en"][: args.sentences]
    fifteen = [s for s in sources if 13 <= len(s.split()) <= 17][: args.repeats]

    def translate(name: str) -> Callable:  # texts -> translations (a torch predictor's come in dicts)
        variant = variants[name]
        if name.startswith("torch"):
            return lambda texts: [t["translation"] for t in variant.translate(texts, BEAM, batch_size=SENTENCE_BATCH)]
        return lambda texts: variant.translate(texts, BEAM, batch_size=SENTENCE_BATCH)

    calls = {name: translate(name) for name in variants}
    timed = latency(calls, fifteen, args.repeats)
    results = {name: {"sentence_latency_beam5": timed[name]} for name in variants}
    rates, outputs = throughput(calls, sources, SENTENCE_CHUNK)
    first = outputs[next(iter(variants))]
    for name in variants:
        bleu = score_translations(outputs[name], references)
        results[name].update(sentences_per_second_beam5=rates[name], test2016_bleu_beam5=bleu["bleu"],
                             bleu_signature=bleu["signature"]["bleu"],
                             agree_with_first=sum(a == b for a, b in zip(outputs[name], first, strict=True))
                             / len(first))
    return results


ROWS = {
    "sentiment": [("review p50 latency (ms)", lambda r: r["review_latency"]["p50_ms"], "{:.2f}"),
                  ("review p90 latency (ms)", lambda r: r["review_latency"]["p90_ms"], "{:.2f}"),
                  (f"reviews/s (batches of {REVIEW_BATCH})", lambda r: r["reviews_per_second"], "{:.0f}"),
                  ("IMDB test accuracy (%)", lambda r: 100 * r["imdb_test_accuracy"], "{:.2f}"),
                  ("labels agreeing with the first column (%)", lambda r: 100 * r["agree_with_first"], "{:.2f}")],
    "translation": [("15-word sentence, beam 5, p50 (ms)", lambda r: r["sentence_latency_beam5"]["p50_ms"], "{:.1f}"),
                    ("15-word sentence, beam 5, p90 (ms)", lambda r: r["sentence_latency_beam5"]["p90_ms"], "{:.1f}"),
                    (f"sentences/s, beam 5 (batches of {SENTENCE_BATCH})",
                     lambda r: r["sentences_per_second_beam5"], "{:.1f}"),
                    ("test2016 BLEU, beam 5", lambda r: r["test2016_bleu_beam5"], "{:.2f}"),
                    ("translations equal to the first column's (%)", lambda r: 100 * r["agree_with_first"],
                     "{:.1f}")],
}
# (p50 latency key, throughput key) of the speed-up rows: the baseline's time over the variant's
SPEEDUPS = {"sentiment": ("review_latency", "reviews_per_second"),
            "translation": ("sentence_latency_beam5", "sentences_per_second_beam5")}


def print_table(model: str, results: dict[str, dict]) -> None:
    names = list(results)
    print(f"\n{MODELS[model]}\n")
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, get, fmt in ROWS[model]:
        print(f"| {label} | " + " | ".join(fmt.format(get(results[n])) for n in names) + " |")
    latency_key, rate_key = SPEEDUPS[model]
    baseline = names[0]

    def own_float(name: str) -> str:  # the float variant of the same runtime, if measured
        return next((n for n in names if n.split()[0] == name.split()[0] and "int8" not in n), "")

    def speedup(base: str, name: str) -> str:
        return f"{results[base][latency_key]['p50_ms'] / results[name][latency_key]['p50_ms']:.2f}" if base else "-"

    print(f"| p50 speed-up over {baseline} | " + " | ".join(speedup(baseline, n) for n in names) + " |")
    print("| p50 speed-up over the same runtime's float | " + " | ".join(speedup(own_float(n), n) for n in names)
          + " |")
    print(f"| throughput speed-up over {baseline} | " + " | ".join(
        f"{results[n][rate_key] / results[baseline][rate_key]:.2f}" for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--runtime", choices=list(RUNTIMES), default="torch")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="both")
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--onnx-dir", type=Path, help="keep the exported ONNX folders here (reused when present)")
    parser.add_argument("--repeats", type=int, default=200, help="single requests timed per model and variant")
    parser.add_argument("--reviews", type=int, default=25000,
                        help="IMDB test reviews for throughput/accuracy, spread evenly over the split")
    parser.add_argument("--sentences", type=int, default=1000, help="test2016 sentences for throughput/BLEU")
    parser.add_argument("--sentiment-dir", default=MODELS["sentiment"], help="the classifier's model folder")
    parser.add_argument("--translation-dir", default=MODELS["translation"], help="the translator's model folder")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    MODELS.update(sentiment=args.sentiment_dir, translation=args.translation_dir)
    torch.set_num_threads(args.threads)
    runtimes = RUNTIMES[args.runtime]
    versions = f"torch {torch.__version__}"
    if "onnx" in runtimes:
        import onnxruntime

        versions += f", onnxruntime {onnxruntime.__version__}"
    print(f"CPU: {cpu()}\n{versions}, {args.threads} thread(s)", flush=True)
    if "onnx" in runtimes and any(os.environ.get(name) for name in ISA_LIMITS):
        print("note: onnxruntime has no such limit; its figures are this CPU's own", flush=True)
    models = list(MODELS) if args.model == "both" else [args.model]
    measures = {"sentiment": measure_sentiment, "translation": measure_translation}
    results = {}
    with tempfile.TemporaryDirectory() as temp:
        onnx_dir = args.onnx_dir or Path(temp)
        for model in models:
            variants = load_variants(model, runtimes, PRECISIONS[args.precision], onnx_dir, args.threads)
            results[model] = measures[model](variants, args)
            print_table(model, results[model])
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu(), "versions": versions, "threads": args.threads,
                                               **results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
