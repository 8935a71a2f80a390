"""The process's native heap (glibc's malloc): how much it holds, and handing its free pages back to the system.

The app allocates and frees big temporaries (tensors, images, audio, pictures) again and again in several worker
threads. glibc keeps what is freed in per-thread arenas for later and gives little of it back on its own, so the
resident memory of a process left running (attract mode at a booth) creeps up although nothing leaks: the heap's
free part grows, its used part does not (``heap_stats``). Two remedies:

* ``fixed_mmap_threshold`` (at start): blocks of 1 MB and more (tensors, images, audio) always get their own
  mapping, given back whole when freed. By default glibc raises that threshold up to 32 MB each time such a block
  is freed, after which those blocks are carved from the arenas and leave holes there.
* ``release_free_memory`` (``malloc_trim(0)``) hands the free pages of every arena back to the system; the attract
  mode calls it in a worker at each tab.

Elsewhere than glibc (macOS, Windows, musl) these are no-ops. No Qt here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from typing import Any

log = logging.getLogger(__name__)
OFF_ENV = "NIPS_EXPLORER_NO_MALLOC_TRIM"  # set (to anything but "" or "0") to leave the heap alone (benchmarks)
_libc: Any = None
_libc_lock = threading.Lock()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _glibc() -> Any:
    """glibc's handle, or False where the C library is not glibc (or lacks malloc_trim)."""
    global _libc
    with _libc_lock:
        if _libc is None:
            _libc = False
            if sys.platform.startswith("linux"):
                try:
                    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                    lib.malloc_trim.argtypes = [ctypes.c_size_t]
                    lib.malloc_trim.restype = ctypes.c_int
                    _libc = lib
                except (OSError, AttributeError):
                    pass
        return _libc


def trim_enabled() -> bool:
    return os.environ.get(OFF_ENV, "") in ("", "0")


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 1 << 20


def fixed_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Blocks of ``nbytes`` and more always mmapped (and unmapped when freed); glibc's sliding threshold off. Leaves
    a ``MALLOC_MMAP_THRESHOLD_`` set in the environment alone. True if set."""
    if not trim_enabled() or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    lib = _glibc()
    if not lib or not hasattr(lib, "mallopt"):
        return False
    return bool(lib.mallopt(M_MMAP_THRESHOLD, int(nbytes)))


def heap_stats() -> dict[str, float] | None:
    """The heap in MB: ``used`` (allocated, arenas + big mmapped blocks) and ``free`` (held by malloc for reuse,
    part of the resident memory until trimmed); None without glibc >= 2.33."""
    lib = _glibc()
    if not lib or not hasattr(lib, "mallinfo2"):
        return None
    lib.mallinfo2.restype = _MallInfo2
    m = lib.mallinfo2()
    mb = 2.0**20
    return {"used": round((m.uordblks + m.hblkhd) / mb, 1), "free": round(m.fordblks / mb, 1)}


def release_free_memory() -> float | None:
    """``malloc_trim(0)``: the free pages of every arena go back to the system. Returns the seconds it took, or None
    when it did nothing (not glibc, or turned off by ``NIPS_EXPLORER_NO_MALLOC_TRIM``). Thread-safe; it locks one
    arena at a time (a few ms per 100 MB freed), so call it from a worker, not the GUI thread."""
    if not trim_enabled():
        return None
    lib = _glibc()
    if not lib:
        return None
    t0 = time.perf_counter()
    lib.malloc_trim(0)
    return time.perf_counter() - t0
