"""keep_freed_memory: after it, a freed large buffer stays in malloc's heap, ready for the next allocation,
instead of being unmapped (and faulted in and zeroed again by the kernel when it is next needed).

What is measured, and why this way: glibc reports where its memory is (``mallinfo2``: ``hblkhd`` is what it
holds in separate mmaps, ``arena`` its heap, ``fordblks`` the heap's free part), so "a 64 MiB tensor is mmapped
and unmapped by default; carved from the heap, and kept there when freed, after keep_freed_memory" is checked
exactly, at every allocation, whatever else the machine is doing. Which later allocation first *reuses* a kept
block is left to chance by glibc: torch allocates with ``posix_memalign(64, n)``, glibc's memalign asks for
``n + 64 + 32`` bytes and gives back the unused tail, and when that tail lands between the freed block and the
heap's top, the next allocation is carved afresh once more. An earlier test counted the page faults of the second
allocation and failed by that chance (4 times in 8 under load), so the page faults and times per allocation are
measured by ``bench/malloc_reuse.py`` instead (there, the kept mode faults once and then never again).
"""

import json
import subprocess
import sys

import pytest

from nlp_rnn import runtime

MiB = 1 << 20
BLOCK = 64 * MiB
ALLOCATIONS = 8

# Allocate, touch and free a 64 MiB tensor ALLOCATIONS times; print, per allocation, where malloc held the block
# while it lived and after it was freed (and its page faults, for a reader of a failure).
PROBE = f"""
import ctypes, ctypes.util, json, resource, sys
import torch
from nlp_rnn import runtime

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
if not hasattr(libc, "mallinfo2"):  # glibc < 2.33
    print(json.dumps({{"skip": "no mallinfo2 in this libc"}}))
    sys.exit()

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc.mallinfo2.restype = Mallinfo2
applied = runtime.keep_freed_memory() if sys.argv[1] == "keep" else None
torch.ones(1 << 16).sum()  # start torch's worker threads (their malloc arenas) before measuring

steps = []
for _ in range({ALLOCATIONS}):
    before, faults = libc.mallinfo2(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty({BLOCK // 4}).fill_(1.0)
    live = libc.mallinfo2()
    del block
    after = libc.mallinfo2()
    steps.append({{"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
                  "mmapped_live": live.hblkhd - before.hblkhd, "mmapped_after": after.hblkhd - before.hblkhd,
                  "heap_live": live.arena, "heap_after": after.arena, "heap_free_after": after.fordblks}})
print(json.dumps({{"applied": applied, "steps": steps}}))
"""


def run_probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert "skip" not in result, result["skip"]  # keep_freed_memory targets glibc >= 2.33 (Debian 12 has 2.36)
    return result


@pytest.fixture(scope="module")
def probes() -> dict:
    return {mode: run_probe(mode) for mode in ("default", "keep")}


glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")


@glibc_only
def test_by_default_a_large_buffer_is_mmapped_and_unmapped_when_freed(probes):
    # the baseline the keep test is measured against: if this fails, this libc is not the one it assumes
    for step in probes["default"]["steps"]:
        assert step["mmapped_live"] >= BLOCK, step
        assert step["mmapped_after"] < MiB, step


@glibc_only
def test_after_keep_freed_memory_a_large_buffer_lives_in_the_heap_and_stays_there_when_freed(probes):
    keep = probes["keep"]
    assert keep["applied"] is True
    for step in keep["steps"]:
        assert step["mmapped_live"] < MiB, step  # carved from the heap, not mmapped
        assert step["heap_after"] > step["heap_live"] - MiB, step  # freeing it did not shrink the heap
        assert step["heap_free_after"] >= BLOCK, step  # the block is kept, free, for the next allocation


def test_it_is_a_no_op_answer_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert runtime.keep_freed_memory() is False
    assert runtime.release_freed_memory() is False


# Under keep_freed_memory, free two 64 MiB blocks allocated below a live one (a hole in the heap, as a fragmented
# heap has) and print the resident memory before and after release_freed_memory.
RELEASE_PROBE = f"""
import json
import torch
from nlp_rnn import runtime
from nlp_rnn.runtime import resident_bytes as resident

applied = runtime.keep_freed_memory()
first, second = torch.empty({BLOCK // 4}).fill_(1.0), torch.empty({BLOCK // 4}).fill_(1.0)
pinned = torch.empty({MiB // 4}).fill_(1.0)  # above them in the heap: they are not at its top
del first, second
kept = resident()
released = runtime.release_freed_memory()
print(json.dumps({{"applied": applied, "released": released, "kept": kept, "after": resident(),
                  "pinned": float(pinned.sum())}}))
"""


@glibc_only
def test_release_freed_memory_gives_the_kept_free_pages_back_even_inside_the_heap():
    out = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["applied"] is True and result["released"] is True
    assert result["kept"] - result["after"] >= 1.5 * BLOCK, result  # most of the two freed blocks' pages


def test_bf16_training_autocast_only_where_the_cpu_computes_in_bf16():
    """train.amp turns bf16 autocast on for training steps on a CPU with AVX-512 BF16 or AMX and leaves an AVX2
    CPU in float32, where bf16 would be emulated; ``ONEDNN_MAX_CPU_ISA`` capped below AVX512_CORE_BF16 makes any
    x86 CPU one without bf16. Evaluation and prediction on a CPU stay float32 either way."""
    import os

    import torch

    from nlp_rnn.evaluation import autocast, training_autocast

    probe = ("import torch; from nlp_rnn.evaluation import training_autocast; from nlp_rnn.runtime import native_bf16\n"
             "cpu = torch.device('cpu')\n"
             "with training_autocast(cpu, True): out = torch.nn.Linear(4, 4)(torch.randn(2, 4))\n"
             "print(native_bf16(cpu), out.dtype)")
    for cap in ("AVX2", "avx512_core_vnni"):
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": cap}
        capped = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        assert capped.stdout.split() == ["False", "torch.float32"], cap

    cpu = torch.device("cpu")
    native = runtime.native_bf16(cpu)
    assert native == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with training_autocast(cpu, True):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    with training_autocast(cpu, False):  # train.amp: false
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    with autocast(cpu, True):  # evaluation
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
