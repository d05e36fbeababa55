"""How the server process uses memory: no heap trimming between frames, no GC walks of start-up.

A RAD1 encode (RAD2 since, the same deflate) with zlib builds a compressor (~400 KB of state:
window, hash chains, the pending buffer) and frees it ~0.3 ms later. (The encoder now makes each
frame's payload while there are thermal-mode viewers; the server still encodes the frames that come
without, and when this was measured it encoded every one.) glibc gives the top of its heap back to
the kernel whenever more than M_TRIM_THRESHOLD (128 KiB) is free there, so every frame the heap shrank (brk)
and grew again (brk), and the kernel zeroed and faulted in the same pages again: strace on the
bench's server counted ~3 brk calls and ~50 page faults a frame. A trim threshold of a few MiB
keeps those pages; a fixed mmap threshold above the compressor's biggest buffer (128 KiB, which
glibc would otherwise mmap and munmap per frame once the threshold is fixed) keeps them in the heap.

And, as every stage does once it is set up, flirstream.startup's GC freeze.
"""
from __future__ import annotations

import ctypes
import logging

from flirstream import startup

log = logging.getLogger("tuning")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
TRIM_THRESHOLD = 8 << 20  # free heap top kept, bytes
MMAP_THRESHOLD = 1 << 20  # allocations this size or larger get their own mapping


def keep_heap() -> bool:
    """Tell glibc's malloc to keep freed memory for the next frame; False where it is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, macOS: their allocators, their defaults
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and \
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def apply() -> None:
    """Both, once the server is set up (before frames flow)."""
    kept = keep_heap()
    frozen = startup.freeze_startup()
    log.debug("malloc keeps its heap: %s; gc froze %d start-up objects", kept, frozen)
