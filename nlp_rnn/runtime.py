"""Process settings that make CPU training faster: keep freed memory for reuse.

A training step allocates and frees the same large buffers every time (the recurrent layers' gate
activations for backward are tens of MB per batch). glibc's malloc serves blocks above its mmap threshold
(at most 32 MB) with a fresh ``mmap`` and gives them back with ``munmap`` when freed, so every step the
kernel faults in and zeroes those pages again. On the 2-core machine this cost about 40% of a BiLSTM training
step (bench/encoder_paths.py). Telling malloc never to use ``mmap`` and to keep freed memory at the top of its
heap makes later steps reuse the same pages, as a caching allocator (or jemalloc / tcmalloc) would. The
price: the process keeps its peak memory instead of returning it between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 1 << 30  # give memory back to the kernel only when 1 GiB is free at the heap's top


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of unmapping it; True where it applied (Linux with
    glibc), False elsewhere (a no-op: other allocators do not need it or cannot be told)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    if not applied:
        log.debug("mallopt refused the settings; malloc left as it is")
    return applied
