"""Training throughput of the BiLSTM encoder: our length-aware unpacked path vs PackedSequence, on this CPU.

    python bench/encoder_paths.py [--threads 2] [--batch 64] [--length 256]

Both paths give the same outputs (tests/test_encoder.py); this measures forward + backward + AdamW step
in tokens/s on random ids with lengths spread over the top 10% of --length, as a bucketed batch has.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from machine import cpu  # bench/machine.py (bench/ is the script's folder)

from nlp_rnn.batching import Batch
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import ModelConfig


def measure(packed: str, cell: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embedding_dim=args.dim, hidden_size=args.dim, pooling="max", packed=packed)
    model = SentimentClassifier(config, vocab_size=20000, num_labels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    lengths = torch.randint(int(args.length * 0.9), args.length + 1, (args.batch,))
    ids = torch.randint(4, 20000, (args.batch, args.length))
    mask = torch.arange(args.length).unsqueeze(0) < lengths.unsqueeze(1)
    batch = Batch(ids * mask, lengths, mask, torch.randint(0, 2, (args.batch,)))

    def step() -> None:
        _, loss = model(batch, targets=batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.steps * int(lengths.sum()) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu()}", flush=True)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"batch {args.batch}, length <= {args.length}, embedding = hidden = {args.dim}, bidirectional")
    print("| cell | packed (tokens/s) | ours, unpacked (tokens/s) | speed-up |")
    print("|---|---|---|---|")
    for cell in ("lstm", "gru"):
        packed, ours = measure("always", cell, args), measure("never", cell, args)
        print(f"| {cell} | {packed:,.0f} | {ours:,.0f} | {ours / packed:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
