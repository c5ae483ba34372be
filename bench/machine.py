"""What the benchmarks share: the CPU line every one prints first (the model, the vector extensions that matter
here and the ones torch actually uses; figures from different CPUs are not comparable) and the timing of training
steps."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
# Variables that cap the instruction set below what the CPU has, e.g. to emulate an AVX2-only machine on an
# AVX-512 one: ATen's own kernels, oneDNN (torch's float LSTM/GRU), MKL (torch's float Linear), FBGEMM (torch's
# dynamic int8). onnxruntime (MLAS) has none: it always picks its kernels from CPUID.
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
              "FBGEMM_ENABLE_INSTRUCTIONS")


def cpu() -> str:
    """The CPU model, which of the vector extensions that matter here it has, the level torch's own kernels run
    at (``torch.backends.cpu.get_cpu_capability()``) and any variable in :data:`ISA_LIMITS` that is set."""
    model, flags = "", set()
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    model = model or platform.processor() or platform.machine()
    line = f"{model}; flags: {' '.join(f for f in FLAGS if f in flags) or 'none of ' + ', '.join(FLAGS)}"
    try:
        import torch

        line += f"; torch kernels: {torch.backends.cpu.get_cpu_capability()}"
    except ImportError:
        pass
    limits = [f"{name}={os.environ[name]}" for name in ISA_LIMITS if os.environ.get(name)]
    return line + (f"; restricted by {' '.join(limits)}" if limits else "")


def training_speed(config, steps: int, warmup: int) -> dict:
    """Tokens/s of ``steps`` optimizer steps (after ``warmup``) of ``config``'s model on its real training batches,
    in the sampler's order, through the task's own forward (what ``nlp-rnn train`` runs, without validation)."""
    from dataclasses import replace

    import torch

    from nlp_rnn import runtime
    from nlp_rnn.tasks import get_task

    if config.train.keep_freed_memory:
        runtime.keep_freed_memory()  # as nlp-rnn train does on a CPU
    task, data = get_task(config.task).for_training(config)
    torch.manual_seed(0)
    model = task.build_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    batches = task.sampler(data.train, replace(config.train)).batches()
    tokens, seconds = 0, 0.0
    for index in range(warmup + steps):
        batch = task.collate([data.train[i] for i in batches[index % len(batches)]])
        started = time.perf_counter()
        loss, _, _ = task.forward(model, batch, index, steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_norm or float("inf"))
        optimizer.step()
        if index >= warmup:
            seconds += time.perf_counter() - started
            tokens += batch.num_tokens
    return {"train_tokens_per_second": tokens / seconds, "train_steps": steps, "batch_size": config.train.batch_size,
            "parameters": sum(p.numel() for p in model.parameters())}


def report(result: dict, json_path: str | None) -> None:
    """Print every figure (floats to one decimal) and, with ``json_path``, write them all there."""
    import json

    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
