"""CPU allocator tuning for training: keep freed memory for reuse instead of faulting it back every step."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling on 64-bit: blocks up to 32 MiB come from the reusable heap
_TRIM_THRESHOLD = 2**30  # return at most what is free beyond 1 GiB at the heap's top


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed blocks up to 32 MiB for reuse; True where it took effect.

    By default glibc maps multi-MiB blocks afresh and unmaps them on free, and trims the heap's free top, so
    each training step page-faults its activations and gradients back in: on a 2-core machine that was
    15-25% of a DeepFM step. Raising the mmap and trim thresholds (what ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` do, and what jemalloc and tcmalloc do by design) lets the steps reuse the
    same memory. Process-wide and lasting: the process keeps its peak heap. A no-op (False) where malloc is
    not glibc's (macOS, Windows, musl).

    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    if not done:
        log.debug("mallopt refused the thresholds; freed memory is returned as usual")
    return done
