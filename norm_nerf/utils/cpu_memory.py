"""Keep freed CPU memory in the process instead of handing every large block back to the OS.

glibc serves allocations above 32 MiB with ``mmap`` and unmaps them on free, so every fresh 64 MiB activation
of a 65 536 x 256 layer pays its page faults again (about 20-35 ms on a 2-core machine: more than the
elementwise work of a normalization). Raising glibc's mmap and trim thresholds lets freed blocks be reused from
the heap. The cost is that the process keeps its peak memory instead of shrinking after a step. Training
processes (our CLIs, ns-train on CPU) reuse that memory every step anyway.

Set ``NORM_NERF_RETAIN_MEMORY=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 2**30
"""Blocks up to 1 GiB come from the heap; up to 2 GiB of free heap is kept (the largest values mallopt takes)."""

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds for this process (once); returns whether they are in effect.

    A no-op returning False off glibc (macOS, Windows, musl) or with ``NORM_NERF_RETAIN_MEMORY=0``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("NORM_NERF_RETAIN_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * _THRESHOLD - 1))
    return _applied
