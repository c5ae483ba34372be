"""Beam-search decoding of test2016 against JoeyNMT's: seconds, sentences/s and sacreBLEU, same beam and batch.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/decode_speed.py [--model demo/models/translate-de-en]
        [--beam 5] [--batch-size 64] [--threads 2] [--peer bench/peers/work/joeynmt/full_decode.json]

Translates all 1,000 test2016 sentences (bentrevett/multi30k ``test``) with ``nlp_rnn.load(model).translate``:
tokenization, batched beam search (length penalty and limits from the model's config) and detokenization are
all timed. ``--peer`` is the JSON that ``bench/peers/joeynmt_multi30k.py decode`` writes (its
``generation_seconds`` is JoeyNMT's own timing of its test-set generation); the script prints both and the ratio.
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
from nlp_rnn.evaluation import score_translations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo/models/translate-de-en", help="a run or model folder")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (JoeyNMT's default here)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantize", action="store_true", help="dynamic int8 (nlp_rnn.load(..., quantize=True))")
    parser.add_argument("--peer", help="a bench/peers/joeynmt_multi30k.py decode JSON to compare with")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(f"CPU: {cpu()}", flush=True)
    torch.set_num_threads(args.threads)
    translator = nlp_rnn.load(args.model, quantize=args.quantize)
    test = load_eval_split(translator.config.data, "test", type(translator.task))
    source, references = test[translator.config.data.source_column], test[translator.config.data.target_column]
    translator.translate(source[:64], beam_size=args.beam, batch_size=args.batch_size)  # warm-up
    started = time.perf_counter()
    found = translator.translate(source, beam_size=args.beam, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    hypotheses = [item["translation"] for item in found]
    scores = score_translations(hypotheses, references)
    # int8 layers keep their weights as packed buffers, not parameters: count only a float model's
    parameters = None if args.quantize else sum(p.numel() for p in translator.model.parameters())
    result = {"model": args.model, "parameters": parameters, "beam": args.beam, "batch_size": args.batch_size,
              "threads": args.threads, "quantize": args.quantize, "sentences": len(hypotheses),
              "seconds": seconds, "sentences_per_s": len(hypotheses) / seconds, "bleu": scores["bleu"],
              "torch": torch.__version__}
    print(f"torch {torch.__version__}, {args.threads} threads, beam {args.beam}, batches of {args.batch_size}")
    print("| toolkit | parameters | seconds | sentences/s | BLEU |")
    print("|---|---:|---:|---:|---:|")
    shown = "int8" if parameters is None else f"{parameters:,}"
    print(f"| nlp-rnn ({args.model}) | {shown} | {seconds:.1f} | {result['sentences_per_s']:.1f} | "
          f"{result['bleu']:.2f} |")
    if args.peer:
        peer = json.loads(Path(args.peer).read_text())
        result["peer"] = peer
        print(f"| JoeyNMT {peer['versions']['joeynmt']} | {peer['parameters']:,} | {peer['generation_seconds']:.1f} "
              f"| {peer['sentences_per_s']:.1f} | {peer['bleu']:.2f} |")
        print(f"ours is {peer['generation_seconds'] / seconds:.2f}x faster, BLEU {result['bleu'] - peer['bleu']:+.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
