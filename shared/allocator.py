"""Keep freed memory in the process: glibc's allocator otherwise maps every buffer over 32 MiB afresh and
hands it back when it is freed, so each forward pass pays page faults to zero its buffers again.

Measured on 2 CPU threads (bench/speed.py's 1024² photo, hints given, medians of runs taken in turn): the
previous default 350–430 → 295–305 ms, the bank student 680–745 → 505–520 ms per image. Buffers up to
``MMAP_THRESHOLD`` come from one heap (one arena: per-thread arenas fragmented it, and a 40 MP image then
needed 2.6 float copies instead of 2.1, tests/unit/test_peak_memory.py) and stay resident for the next image,
up to ``TRIM_THRESHOLD`` free.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1     # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 << 20  # buffers above this (a huge image's) are still mapped and handed back when freed,
                            # so that the heap does not fragment around them
TRIM_THRESHOLD = 256 << 20  # free memory at the heap's top beyond this is handed back
_done = False


def keep_freed_memory() -> bool:
    """Have glibc serve buffers up to ``MMAP_THRESHOLD`` from the heap and keep them when freed (once per
    process; False where the C library is not glibc or refuses)."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(libc.mallopt(param, value) == 1 for param, value in (
            (_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    except (OSError, AttributeError):   # not glibc (musl, macOS): nothing to tune
        ok = False
    if not ok:
        log.debug("mallopt unavailable: large buffers are mapped afresh for every image")
    _done = ok
    return ok
