"""What keep_freed_memory saves per allocation: page faults and time of allocating, filling and freeing one
large tensor again and again, with glibc's malloc as it comes and after ``runtime.keep_freed_memory()``.

    python bench/malloc_reuse.py [--mib 64] [--times 10] [--threads 2]

Each mode runs in its own process (mallopt settings are process-wide). By default every allocation is a fresh
mmap, so every page faults in again (64 MiB = 16,384 pages of 4 KiB). After keep_freed_memory the block is
carved from the heap and kept there when freed; one of the first few allocations may still be carved afresh
(glibc's memalign pads its request, see tests/test_runtime.py), and after that they reuse a kept block: no
faults. Run it beside a busy process too: the settled allocations cost no faults either way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from machine import cpu  # bench/machine.py (bench/ is the script's folder)

PROBE = """
import json, resource, sys, time
import torch
from nlp_rnn import runtime
mode, numel, times, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
if mode == "keep":
    assert runtime.keep_freed_memory(), "mallopt refused (not glibc?)"
torch.ones(1 << 16).sum()
steps = []
for _ in range(times):
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    torch.empty(numel).fill_(1.0)
    steps.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, time.perf_counter() - start))
print(json.dumps(steps))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {cpu()}", flush=True)
    numel = args.mib * (1 << 20) // 4
    print(f"{args.mib} MiB float32 tensor, allocated + filled + freed {args.times} times, {args.threads} threads")
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode, str(numel), str(args.times), str(args.threads)],
                             capture_output=True, text=True, check=True)
        steps = json.loads(out.stdout.splitlines()[-1])
        print(f"{mode:>8}: faults " + " ".join(f"{faults:6d}" for faults, _ in steps))
        print(f"{'':>8}  ms     " + " ".join(f"{seconds * 1e3:6.1f}" for _, seconds in steps))


if __name__ == "__main__":
    main()
