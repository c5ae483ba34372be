"""Does a tagger's ONNX export tag as the run does? Export RUN_DIR, then tag every sentence of a split twice:
``nlp_rnn.load(RUN_DIR).tag_tokens`` (PyTorch) and the ONNX runner (``tagger.onnx`` on onnxruntime, decoding in
numpy), and count the sentences whose tags agree; both sides' entity F1 against the gold tags is printed too.

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/onnx_tagger_check.py RUN_DIR [--split test] [--threads 1]

The run may still be training: its config, tokenizers and weights are copied to a temporary folder first, so
both sides read the same weights, and nothing is written into RUN_DIR.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import nlp_rnn
from nlp_rnn import checkpoint as ckpt
from nlp_rnn.data import load_eval_split
from nlp_rnn.export import export_run
from nlp_rnn.onnx_inference import load_onnx
from nlp_rnn.tasks import get_task
from nlp_rnn.tasks.tagging import score_tags


def snapshot(run_dir: Path, folder: Path) -> Path:
    """The files a predictor loads from, copied from a run folder that may be saving new weights meanwhile."""
    run = ckpt.RunFolder(run_dir)
    config = run.read_config()
    copy = folder / run_dir.name
    copy.mkdir()
    names = [ckpt.CONFIG_FILE, ckpt.WEIGHTS_FILE, *get_task(config.task).tokenizer_files(config)]
    for name in names:
        shutil.copyfile(run / name, copy / name)
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        run = snapshot(args.run_dir, Path(temp))
        export_run(run, Path(temp) / "onnx")
        predictor = nlp_rnn.load(run)
        data = predictor.config.data
        split = load_eval_split(data, args.split, type(predictor.task), label_names=predictor.labels)
        sentences = [[str(token) for token in row] for row in split[data.tokens_column]]
        feature = getattr(split.features[data.tags_column], "feature", None)
        gold = [[feature.int2str(t) if hasattr(feature, "int2str") else str(t) for t in row]
                for row in split[data.tags_column]]

        started = time.perf_counter()
        ours = [tags for tags, _ in predictor.tag_tokens(sentences, args.batch_size)]
        torch_seconds = time.perf_counter() - started
        runner = load_onnx(Path(temp) / "onnx", threads=args.threads)
        started = time.perf_counter()
        exported = runner.tag_tokens(sentences, args.batch_size)
        onnx_seconds = time.perf_counter() - started

    agree = sum(a == b for a, b in zip(ours, exported, strict=True))
    tokens = sum(map(len, ours))
    differing = sum(x != y for a, b in zip(ours, exported, strict=True) for x, y in zip(a, b, strict=True))
    print(f"{args.run_dir} ({predictor.config.model.output}), {args.split}: {len(sentences)} sentences, "
          f"{tokens} tokens")
    print(f"sentences whose tags agree: {agree} / {len(sentences)}; tokens tagged differently: {differing}")
    for name, predicted, seconds in (("pytorch", ours, torch_seconds), ("onnx", exported, onnx_seconds)):
        report = score_tags(gold, predicted, predictor.task.scheme)
        print(f"  {name:>7}: {report['scheme']} F1 {report['f1']:.4f}, token accuracy {report['accuracy']:.4f}, "
              f"{seconds:.1f} s ({len(sentences) / seconds:.0f} sentences/s, {args.threads} thread(s))")
    return 0 if agree == len(sentences) else 1


if __name__ == "__main__":
    sys.exit(main())
