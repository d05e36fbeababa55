"""What waking up costs on this machine: the floor under the pipeline's CPU share.

Each frame wakes each stage (a timer in capture, a message in the encoder and the server) and
each stage's ZeroMQ I/O thread. On a virtual machine a wake-up after a frame period's sleep costs
far more than the work it does (caches, TLB and branch predictors start cold), so the same
pipeline's share differs between machines and between hours on a shared one. These two programs do
nothing but wake at the frame rate, so their figures, taken next to the pipeline's, say how much of
it is the machine's:

  timer   one Python process sleeping until the next frame period, 26.5 times a second
  hop     a PUB process sending a raw frame (header + 38,400 bytes) 26.5 times a second to a SUB
          process over ipc://: one link of the pipeline with no work at either end (both counted)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .harness import SIM_FPS, cpu_seconds

_TIMER = """
import time
due = time.monotonic()
while True:
    due += 1 / {fps}
    time.sleep(max(0.0, due - time.monotonic()))
"""

_PUB = """
import os, time, zmq
sock = zmq.Context().socket(zmq.PUB)
sock.setsockopt(zmq.SNDHWM, 2)
sock.bind({endpoint!r})
header, pixels = b"x" * 350, os.urandom(160 * 120 * 2)
due = time.monotonic()
while True:
    due += 1 / {fps}
    time.sleep(max(0.0, due - time.monotonic()))
    sock.send_multipart([b"raw", header, pixels], zmq.NOBLOCK)
"""

_SUB = """
import zmq
sock = zmq.Context().socket(zmq.SUB)
sock.setsockopt(zmq.SUBSCRIBE, b"raw")
sock.connect({endpoint!r})
while True:
    sock.recv_multipart()
"""


def _cpu_percent(programs: list[str], duration: float) -> float:
    """The programs' CPU over `duration` seconds after a second to settle, % of one core."""
    procs = [subprocess.Popen([sys.executable, "-c", p], stdout=subprocess.DEVNULL)
             for p in programs]
    try:
        watched = [psutil.Process(p.pid) for p in procs]
        time.sleep(1.0)
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a floor program exited: " + ", ".join(
                str(p.returncode) for p in procs))
        t0 = time.monotonic()
        c0 = sum(cpu_seconds(w) for w in watched)  # (measured as the pipeline's stages are)
        time.sleep(duration)
        c1 = sum(cpu_seconds(w) for w in watched)
        return round((c1 - c0) / (time.monotonic() - t0) * 100, 2)
    finally:
        for p in procs:
            p.kill()
            p.wait(5)


def wake_floor(duration: float, fps: float = SIM_FPS) -> dict:
    """{"timer_percent", "hop_percent"}: see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="flir-floor-") as tmp:
        endpoint = f"ipc://{Path(tmp) / 'hop'}"
        return {"fps": fps, "duration_s": duration,
                "timer_percent": _cpu_percent([_TIMER.format(fps=fps)], duration),
                "hop_percent": _cpu_percent([_PUB.format(endpoint=endpoint, fps=fps),
                                             _SUB.format(endpoint=endpoint)], duration)}
