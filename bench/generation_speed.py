"""Speed of the generation task: training tokens/s on a config's real stream, and writing tokens/s with one thread
for one sample and for 16 at once (the state carried from token to token).

    NLP_RNN_DATA_DIR=../shared/data/hf python bench/generation_speed.py
        [--config configs/generation/shakespeare_char.yaml] [--run demo/models/shakespeare-char]
        [--set model.hidden_size=256 ...] [--threads 2] [--steps 50] [--json OUT]

Training: ``--steps`` optimizer steps (after 5 warm-up steps) of the config's model, in stream order with the
state carried, through the task's own forward. Writing (with ``--run``): 300 new tokens by sampling
(temperature 1, seed 0) from a short prompt, batch 1 and batch 16, on one thread; stops at ``</s>`` are not
counted. Prints the CPU model and its vector flags first: figures from different CPUs are not comparable.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import cpu, report, training_speed  # bench/machine.py (bench/ is the script's folder)

import nlp_rnn
from nlp_rnn.config import load_config


def training(config_path: str, overrides: list[str], steps: int) -> dict[str, float]:
    config = load_config(config_path, ["train.progress=false", *overrides])
    return {**training_speed(config, steps, warmup=5), "bptt": config.data.bptt}


def writing_speed(run: str, prompt: str, new_tokens: int = 300) -> dict[str, float]:
    writer = nlp_rnn.load(run)
    label = writer.labels[-1] if writer.labels else None  # a conditioned writer writes on request of a label
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = {}
    writer.generate([prompt], label=label, max_new_tokens=20, seed=0)  # warm-up
    for samples in (1, 16):
        started = time.perf_counter()
        found = writer.generate([prompt], label=label, num_samples=samples, max_new_tokens=new_tokens, seed=0)
        written = sum(r["tokens"] for r in found)
        result[f"write_tokens_per_second_batch_{samples}_1_thread"] = written / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/generation/shakespeare_char.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--run", default=None, help="a trained generation run to time writing with")
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for training (0: default)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    result = {"cpu": cpu(), "threads": torch.get_num_threads(), "config": args.config, "overrides": args.set,
              **training(args.config, args.set, args.steps)}
    if args.run:
        result.update(run=args.run, **writing_speed(args.run, args.prompt))
    report(result, args.json)


if __name__ == "__main__":
    main()
