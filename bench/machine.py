"""What every benchmark prints first: the CPU model and the vector extensions that matter here (figures from
different CPUs are not comparable)."""

from __future__ import annotations

import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def cpu() -> str:
    """The CPU model and which of the vector extensions that matter here it has."""
    model, flags = "", set()
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    model = model or platform.processor() or platform.machine()
    return f"{model}; flags: {' '.join(f for f in FLAGS if f in flags) or 'none of ' + ', '.join(FLAGS)}"
