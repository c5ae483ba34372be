"""What each CPU lever is worth for a BiLSTM training step at the Keras recipe's sizes, measured side by side.

    python bench/cpu_levers.py [--rounds 3] [--steps 8] [--json OUT]

One training step (forward, backward, gradient clipping, AdamW) of our classifier at the Keras recipe's sizes:
Embedding(20k, 128) -> BiLSTM(128) -> max+mean pooling -> Dense, batch 64 of lengths spread over 231-256 tokens
(a length-bucketed batch), dropout as bench/configs/imdb_fast_keras_size.yaml. Each variant runs in its own
process (environment variables such as OMP_PROC_BIND only act at start-up), in a different order every round,
and the table gives the median reviews/s over the rounds and the ratio to ``float32`` (the current default path):

- ``float32``: what ``nlp-rnn train`` ran before issue 18 (2 threads).
- ``bf16``: the same under ``torch.autocast("cpu", dtype=torch.bfloat16)``, what ``train.amp`` now turns on where
  the CPU has AVX-512 BF16 or AMX (oneDNN's bf16 LSTM). On an AVX2 CPU bf16 is emulated; the row says so.
- ``no_gathers``: every row of the batch as long as the longest, so the right-to-left pass can read the sequence
  flipped (``torch.flip``) instead of each row reversed within its own length (``reverse_within_length``, two
  gathers per layer and their scatter-add backward): the most that removing the gathers can win.
- ``one_call``: the same equal-length batch through one ``nn.LSTM(bidirectional=True)``, both directions in one
  oneDNN call; exact only when no row is padded, so again an upper bound.
- ``two_threads``: the two directions at once, each on one thread (a helper thread runs the right-to-left layer's
  forward and backward); what splitting the cores by direction, not by matrix product, can win.
- ``threads_1``: one thread (the per-core figure); ``bind``: ``OMP_PROC_BIND=close OMP_PLACES=cores``.
- ``batch_32`` / ``batch_128``: other batch sizes, reviews/s at the same lengths.
- ``bf16_two_threads``: both of the winning levers together.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

VARIANTS = {
    "float32": {},
    "bf16": {"bf16": True},
    "no_gathers": {"equal": True, "flip": True},
    "one_call": {"equal": True, "one_call": True},
    "two_threads": {"two_threads": True},
    "bf16_two_threads": {"bf16": True, "two_threads": True},
    "threads_1": {"threads": 1},
    "bind": {"env": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}},
    "batch_32": {"batch": 32},
    "batch_128": {"batch": 128},
}
LENGTH, VOCAB, DIM = 256, 20000, 128


def measure(variant: str, steps: int) -> float:
    """Reviews/s of ``steps`` training steps after 3 warm-up steps, in this process."""
    import torch
    from torch import nn

    from nlp_rnn import encoder as encoder_module
    from nlp_rnn.batching import Batch
    from nlp_rnn.classifier import SentimentClassifier
    from nlp_rnn.config import ModelConfig
    from nlp_rnn.runtime import keep_freed_memory

    options = VARIANTS[variant]
    keep_freed_memory()  # as nlp-rnn train does
    torch.set_num_threads(options.get("threads", 2))
    torch.manual_seed(0)
    batch_size = options.get("batch", 64)
    config = ModelConfig(embedding_dim=DIM, hidden_size=DIM, pooling="max_mean", embedding_dropout=0.4,
                         output_dropout=0.5)
    model = SentimentClassifier(config, vocab_size=VOCAB, num_labels=2)
    if options.get("equal"):
        lengths = torch.full((batch_size,), LENGTH)
    else:
        lengths = torch.randint(int(LENGTH * 0.9), LENGTH + 1, (batch_size,))
    if options.get("flip"):
        encoder_module.reverse_within_length = lambda sequences, lengths: sequences.flip(1)
    if options.get("one_call"):
        fused = nn.LSTM(DIM, DIM, batch_first=True, bidirectional=True)
        model.encoder.add_module("fused", fused)

        def one_call(src, lengths):
            outputs = fused(model.encoder.embedding_dropout(model.encoder.embedding(src)))[0]  # (batch, len, 2 * h)
            mask = encoder_module.lengths_to_mask(lengths, src.size(1))
            return encoder_module.EncoderOutput(outputs, outputs[:, -1].unsqueeze(0), mask)

        model.encoder.forward = one_call
    if options.get("two_threads"):
        model.encoder.forward = two_thread_encoder(model.encoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(4, VOCAB, (batch_size, LENGTH))
    mask = torch.arange(LENGTH).unsqueeze(0) < lengths.unsqueeze(1)
    batch = Batch(ids * mask, lengths, mask, torch.randint(0, 2, (batch_size,)))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(options.get("bf16"))):
            _, loss = model(batch, targets=batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def two_thread_encoder(encoder):
    """The encoder's forward with the right-to-left direction's forward and backward on a helper thread that has
    one intra-op thread, the caller on the other (one layer, as at the Keras sizes)."""
    import torch

    from nlp_rnn.encoder import EncoderOutput, lengths_to_mask, reverse_within_length

    forward_layer, backward_layer = encoder.layers[0]
    autocast_on = {}

    def one_thread(function):
        """Run ``function`` on one intra-op thread, then give the calling thread its threads back."""
        def wrapped(*args):
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return function(*args)
            finally:
                torch.set_num_threads(previous)
        return wrapped

    @one_thread
    def run(layer, inputs, lengths, reverse):
        with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_on["bf16"]):
            source = inputs.detach().requires_grad_()
            outputs = layer(reverse_within_length(source, lengths) if reverse else source)[0]
            return source, reverse_within_length(outputs, lengths) if reverse else outputs

    def in_thread(function, *args):
        box = {}
        thread = threading.Thread(target=lambda: box.update(value=function(*args)))
        thread.start()
        return thread, box

    class BothDirections(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inputs, lengths, *parameters):
            thread, box = in_thread(run, backward_layer, inputs, lengths, True)
            ours = run(forward_layer, inputs, lengths, False)
            thread.join()
            ctx.graphs = (forward_layer, *ours), (backward_layer, *box["value"])
            return ours[1].detach(), box["value"][1].detach()

        @staticmethod
        def backward(ctx, forward_grad, backward_grad):
            @one_thread
            def grads(graph, grad):
                layer, source, outputs = graph
                return torch.autograd.grad(outputs, [source, *layer.parameters()], grad)

            thread, box = in_thread(grads, ctx.graphs[1], backward_grad)
            ours = grads(ctx.graphs[0], forward_grad)
            thread.join()
            theirs = box["value"]
            return (ours[0] + theirs[0], None, *ours[1:], *theirs[1:])

    def forward(src, lengths):
        autocast_on["bf16"] = torch.is_autocast_enabled("cpu")
        inputs = encoder.embedding_dropout(encoder.embedding(src))
        parameters = [*forward_layer.parameters(), *backward_layer.parameters()]
        outs = BothDirections.apply(inputs, lengths, *parameters)
        mask = lengths_to_mask(lengths, src.size(1))
        outputs = torch.cat(outs, dim=-1) * mask.unsqueeze(-1)
        return EncoderOutput(outputs, outputs[:, 0].unsqueeze(0), mask)

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this variant in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps({"reviews_per_second": measure(args.one, args.steps)}))
        return
    import torch

    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    print(f"CPU: {cpu()}")
    print(f"torch {torch.__version__}; oneDNN bf16 {'native' if native else 'EMULATED (no AVX-512 BF16 / AMX)'}; "
          f"{args.rounds} rounds x {args.steps} steps per variant, order rotated each round", flush=True)
    readings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            env = {**os.environ, **VARIANTS[name].get("env", {})}
            done = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps)], env=env,
                                  capture_output=True, text=True, check=True)
            readings[name].append(json.loads(done.stdout.strip().splitlines()[-1])["reviews_per_second"])
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {readings[n][-1]:.0f}" for n in names), flush=True)
    base = statistics.median(readings["float32"]) if "float32" in readings else None
    print("| variant | reviews/s (median) | readings | vs float32 |")
    print("|---|---:|---|---:|")
    for name in names:
        median = statistics.median(readings[name])
        ratio = f"{median / base:.2f}x" if base else "-"
        print(f"| {name} | {median:.1f} | {', '.join(f'{r:.0f}' for r in readings[name])} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu(), "torch": torch.__version__, "bf16_native": native,
                                               "readings": readings}, indent=2) + "\n")


if __name__ == "__main__":
    main()
