"""Speed of the sequence tagger on CoNLL-2003: training tokens/s, and tagging sentences/s in batches and one
sentence at a time on one thread (the demo's case).

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/tagging_speed.py [--run demo/models/ner-conll2003]
        [--config configs/tagging/conll2003_ner.yaml] [--threads 2] [--steps 300] [--json OUT]

Training: ``--steps`` optimizer steps of the config's model (word vectors left out: they change only the start)
on real shuffled batches of the training split, through the task's own forward, after 20 warm-up steps.
Tagging: the whole test split (3,453 sentences) through ``load(run).tag_tokens`` in batches of 256, then 300 test
sentences as raw text through ``load(run).tag([text])`` with one thread. Prints the CPU model and its vector
flags first: figures from different CPUs are not comparable.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import cpu, report, training_speed  # bench/machine.py (bench/ is the script's folder)

import nlp_rnn
from nlp_rnn.config import load_config
from nlp_rnn.data import load_eval_split


def training(config_path: str, steps: int) -> dict[str, float]:
    config = load_config(config_path, ["model.word_vectors=null", "train.progress=false"])
    return training_speed(config, steps, warmup=20)


def tagging_speed(run: str) -> dict[str, float]:
    tagger = nlp_rnn.load(run)
    config = tagger.config
    test = load_eval_split(config.data, "test", type(tagger.task))
    sentences = [list(tokens) for tokens in test[config.data.tokens_column]]
    tagger.tag_tokens(sentences[:64])  # warm-up
    started = time.perf_counter()
    tagger.tag_tokens(sentences, batch_size=256)
    batched = len(sentences) / (time.perf_counter() - started)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    texts = [" ".join(tokens) for tokens in sentences if len(tokens) >= 5][:300]
    tagger.tag(texts[:5])
    times = []
    for text in texts:
        started = time.perf_counter()
        tagger.tag([text])
        times.append(time.perf_counter() - started)
    torch.set_num_threads(threads)
    ordered = sorted(times)
    return {"tag_sentences_per_second_batched": batched, "test_sentences": len(sentences),
            "single_sentence_p50_ms_1_thread": 1000 * statistics.median(times),
            "single_sentence_p90_ms_1_thread": 1000 * ordered[int(0.9 * len(ordered))],
            "single_sentence_words_mean": statistics.mean(len(t.split()) for t in texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="demo/models/ner-conll2003")
    parser.add_argument("--config", default="configs/tagging/conll2003_ner.yaml")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for training and batches (0: default)")
    parser.add_argument("--steps", type=int, default=300, help="training steps to time (0: tagging only)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    result = {"cpu": cpu(), "threads": torch.get_num_threads(),
              **(training(args.config, args.steps) if args.steps else {}), **tagging_speed(args.run)}
    report(result, args.json)


if __name__ == "__main__":
    main()
