"""server.tuning: the per-frame RAD1 compressor reuses heap pages instead of faulting in new ones."""
from __future__ import annotations

import ctypes
import gc
import platform
import resource

import numpy as np
import pytest

from server import radiometric, tuning


def _faults_per_encode(frame: np.ndarray, n: int = 40) -> float:
    radiometric.encode(frame)  # the first one may grow the heap
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(n):
        radiometric.encode(frame)
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / n


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_heap_stops_the_page_faults_of_each_encode():
    rng = np.random.default_rng(5)
    frame = (29000 + rng.normal(0, 8, (120, 160))).astype(np.uint16)
    # What the server had: glibc trimming at its default 128 KiB, the compressor's buffers in the
    # heap (its dynamic mmap threshold had grown past them): the pages are given back and faulted
    # in again by every encode.
    mallopt = ctypes.CDLL(None).mallopt
    assert mallopt(tuning.M_TRIM_THRESHOLD, 128 << 10) and mallopt(tuning.M_MMAP_THRESHOLD, 256 << 10)
    assert _faults_per_encode(frame) > 10
    assert tuning.keep_heap()
    assert _faults_per_encode(frame) < 1


def test_freeze_startup_takes_what_exists_out_of_the_collector():
    made = [[i] for i in range(1000)]  # container objects the collector tracks
    try:
        frozen = tuning.freeze_startup()
        assert frozen >= len(made) and gc.get_freeze_count() == frozen
        oldest = {id(x) for x in gc.get_objects(generation=2)}
        assert not any(id(x) in oldest for x in made)
    finally:
        gc.unfreeze()
