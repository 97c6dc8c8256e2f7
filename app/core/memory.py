"""How the C allocator hands large blocks back, set once per process (`wiring.wire_process`).

glibc serves a block above its mmap threshold with a mapping of its own, unmapped on free, but
after each such free it raises the threshold to that block's size (up to 32 MiB). From then on
blocks that large come from the allocating thread's arena and stay in the process's RSS once
freed. An argon2id hash (`core.security`) takes a 19 MiB block in the thread that runs it: every
thread that ever hashed a password kept 19 MiB, so an API process grew by that much per hashing
thread, up to one arena per thread. A fixed threshold keeps such blocks mapped and returned.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
# Blocks from 4 MiB up are mapped (and unmapped on free); smaller ones, such as I/O buffers, stay
# in the arenas, where reusing them costs no system call.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def release_large_blocks() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`; False where the C library has no
    `mallopt` (musl, macOS), which changes nothing there."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not done:  # pragma: no cover - glibc refuses only values above its maximum
        log.warning("the C library refused a fixed mmap threshold")
    return done
