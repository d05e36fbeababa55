"""server.tuning: the per-frame RAD2 compressor reuses heap pages instead of faulting in new ones;
and the GC freeze after start-up it (like every stage) applies."""
from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys

import pytest

from flirstream import startup


# Run in a fresh interpreter, as the server is: whether freed memory sits at the top of the heap
# (and so is given back) depends on what the process allocated before, which pytest's is not.
PROBE = """
import ctypes, resource, sys
import numpy as np
from flirstream import radiometric
from server import tuning

def faults_per_encode(frame, n=40):
    radiometric.encode(frame)  # the first one may grow the heap
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(n):
        radiometric.encode(frame)
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / n

frame = (29000 + np.random.default_rng(5).normal(0, 8, (120, 160))).astype(np.uint16)
# What the server had: glibc trimming at its default 128 KiB, the compressor's buffers in the heap
# (its dynamic mmap threshold had grown past them).
mallopt = ctypes.CDLL(None).mallopt
assert mallopt(tuning.M_TRIM_THRESHOLD, 128 << 10) and mallopt(tuning.M_MMAP_THRESHOLD, 256 << 10)
trimming = faults_per_encode(frame)
kept = tuning.keep_heap()
print(trimming, kept, faults_per_encode(frame))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_heap_stops_the_page_faults_of_each_encode():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    trimming, kept, after = out.stdout.split()
    assert float(trimming) > 10  # the heap given back and faulted in again, every encode
    assert kept == "True"
    assert float(after) < 1


def test_freeze_startup_takes_what_exists_out_of_the_collector():
    # flirstream.startup's, which server.tuning.apply (and every stage) calls
    made = [[i] for i in range(1000)]  # container objects the collector tracks
    thresholds = gc.get_threshold()
    try:
        frozen = startup.freeze_startup()
        assert frozen >= len(made) and gc.get_freeze_count() == frozen
        oldest = {id(x) for x in gc.get_objects(generation=2)}
        assert not any(id(x) in oldest for x in made)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
