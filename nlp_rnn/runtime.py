"""Where a model runs (:func:`select_device`) and process settings that make CPU training faster
(:func:`keep_freed_memory`).

A training step allocates and frees the same large buffers every time (the recurrent layers' gate
activations for backward are tens of MB per batch). glibc's malloc serves blocks above its mmap threshold
(at most 32 MB) with a fresh ``mmap`` and gives them back with ``munmap`` when freed, so every step the
kernel faults in and zeroes those pages again. On the 2-core machine this cost about 40% of a BiLSTM training
step (bench/encoder_paths.py). Telling malloc never to use ``mmap`` and to keep freed memory at the top of its
heap makes later steps reuse the same pages, as a caching allocator (or jemalloc / tcmalloc) would. The
price: the process keeps its peak memory instead of returning it between steps. One of the first few
allocations of a size may still be carved afresh (glibc pads aligned requests, see tests/test_runtime.py), so
the peak can be one such block higher; from then on the kept blocks are reused (bench/malloc_reuse.py).

Where the shapes of batches vary widely, malloc may fail to reuse what it kept: a distillation step (64 labelled +
128 unlabelled reviews of up to 512 tokens) grew the process by about 1 GB a minute, all of it free memory, until
the kernel killed it at 24 GB, where the same run without keep_freed_memory stays under 2.5 GB. So training
watches its resident memory (:func:`resident_bytes`, one read of /proc/self/statm a step) and, whenever it has grown
``RELEASE_MARGIN`` past what it was after the last release, calls :func:`release_freed_memory` (glibc's
``malloc_trim(0)``: every whole free page of every arena back to the kernel). A run whose freed memory malloc
reuses stays under the margin and keeps the whole speed-up; one whose memory it does not reuse is bounded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

import torch

from nlp_rnn.errors import NlpRnnError

log = logging.getLogger(__name__)

DEVICES = "auto, cpu, cuda, cuda:N or mps"
# ONEDNN_MAX_CPU_ISA values below AVX512_CORE_BF16 (oneDNN's names); torch's own bf16 check ignores the cap
_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})


def select_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` (the first CUDA GPU when this torch build has one, else the CPU), ``cpu``, ``cuda``, ``cuda:N``
    or ``mps``. Hardware that was asked for and is absent is one clear error naming ``option`` (where the user
    set it), not torch's assertion."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise NlpRnnError(f"{option} {name!r}: not a device (use {DEVICES})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA (a CPU wheel)" if torch.version.cuda is None
                   else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)")
            raise NlpRnnError(f"{option} {name!r}: {why}; run on the CPU ({option} cpu), or install a CUDA build "
                              "of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NlpRnnError(f"{option} {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise NlpRnnError(f"{option} {name!r}: Apple's MPS backend is not available here; use {option} cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise NlpRnnError(f"{option} {name!r}: not supported (use {DEVICES})")
    return device

def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively, so bf16 autocast speeds it up: CUDA GPUs that support it, and
    CPUs where oneDNN has bf16 instructions (AVX-512 BF16 or AMX; ``ONEDNN_MAX_CPU_ISA`` can withhold them).
    An AVX2 CPU would emulate bf16, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ISAS_WITHOUT_BF16:  # oneDNN was told to stop below AVX512_CORE_BF16: it would emulate bf16
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30  # give memory back to the kernel only when 1 GiB is free at the heap's top


RELEASE_MARGIN = 2 << 30  # bytes of growth in resident memory after which training releases malloc's free pages


def _glibc_function(name: str):
    """glibc's function ``name``, or None off Linux or where the C library has no such function (musl...)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of unmapping it; True where it applied (Linux with
    glibc), False elsewhere (a no-op: other allocators do not need it or cannot be told)."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    if not applied:
        log.debug("mallopt refused the settings; malloc left as it is")
    return applied


def resident_bytes() -> int:
    """This process's resident memory in bytes (Linux: /proc/self/statm); 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_freed_memory() -> bool:
    """Give every whole free page that malloc holds, in every arena, back to the kernel (glibc's
    ``malloc_trim(0)``); True where it ran and released memory, False where nothing was released or off glibc.
    Bounds the heap that :func:`keep_freed_memory` keeps when it fragments."""
    malloc_trim = _glibc_function("malloc_trim")
    return bool(malloc_trim(0)) if malloc_trim is not None else False
