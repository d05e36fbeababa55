#!/usr/bin/env python3
"""Benchmark capture under load: the fraction of the Lepton's frames it captures with a CPU hog on
its core.

The real capture loop (capture.app's, publishing on ZeroMQ) reads the timing-faithful simulated
Lepton 3 (capture.spi_sim: segments on the camera's own clock, bus time per byte, unread segments
lost, long stalls lose sync for >= 185 ms) through the real SpiSource, in real time, in a child
process pinned to one CPU; a busy-loop process is pinned to the same CPU. This process (on the
other CPUs) subscribes and reads, from every frame, the camera's frame counter (telemetry row A,
stamped with the camera's own frame index) and capture's published count (its seq):

    captured fraction = frames published / frames the camera produced meanwhile

over --seconds (default 60) after a short warm-up. Every frame is unique (unique_every = 1), so
every one of the ~26.5 a second counts. The runs (--modes):

  before    the reader before this work: 72-packet read() calls of bufsiz transfers joined
            into new bytes, Python's GC as it comes, normal scheduling (nice 0)
  segments  whole-segment reads into one preallocated buffer (readv), gc.freeze() and a higher
            GC threshold, still normal scheduling (what the reading changes alone give)
  after     all of it with SCHED_FIFO ([capture] realtime = fifo) where permitted

Prints the figures and writes JSON (--json, default bench-results/capture.json). Speed is not a
test: the suite only runs this for a few seconds to see that it works (tests/test_bench_capture.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq  # noqa: E402

from flirstream import config as configuration, wire  # noqa: E402
from flirstream.testing import free_port, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = ("before", "segments", "after")
GOAL = 0.99
WARMUP_S = 2.0
POOL_FRAMES = 64  # frames whose packets are built beforehand so the simulator's pixels cost capture no CPU
LATENCY_FRAMES = 3  # frames from the camera's frame start to its arrival here, at most


# ---------------------------------------------------------------- the child: capture

class PlainDevice:
    """Only read(size), as SpiSource saw devices before (no readinto / readv)."""

    def __init__(self, device):
        self._device = device

    def read(self, size: int) -> bytes:
        return self._device.read(size)

    def close(self) -> None:
        self._device.close()


def child(mode: str, endpoint: str, cpu: int, speed_hz: int) -> int:
    from capture import app, realtime, spi
    from capture.sim import SimulatedLepton
    from capture.spi_sim import TimedLepton
    from flirstream import links

    fifo = "fifo" if mode == "after" else "off"  # segments: the same but normal scheduling
    config = configuration.loads(
        "[capture]\nsource = spi:/dev/spidev0.0\nsensor = lepton3\ntelemetry = header\n"
        f"dedupe = yes\nrealtime = {fifo}\ncpu = {cpu}\n")
    camera = TimedLepton(SimulatedLepton("lepton3", "header", unique_every=1, seed=0),
                         speed_hz=speed_hz, pool=POOL_FRAMES)
    if mode == "before":
        source = spi.SpiSource("/dev/spidev0.0", speed_hz, bufsiz=spi.SPIDEV_DEFAULT_BUFSIZ,
                               device_factory=lambda p: PlainDevice(camera.open(p)),
                               read_packets=spi.BATCH_PACKETS)
        scheduling = realtime.apply("off", cpus=(cpu,))
    else:
        source = spi.SpiSource("/dev/spidev0.0", speed_hz, bufsiz=spi.SPIDEV_DEFAULT_BUFSIZ,
                               device_factory=camera.open)
        scheduling = ""
    ctx = zmq.Context()
    sock = links.publisher(ctx, "frames", endpoint)
    if mode != "before":
        scheduling = app.tune(config.capture)
    print(json.dumps({"epoch": camera.epoch, "fps": camera.sim.fps, "scheduling": scheduling}),
          flush=True)
    cpu_start = time.process_time()
    try:
        control, _ = app.make_camera(config, config.capture.source)  # no I2C here: no control
        control.start()
        app._loop(config.capture, source, sock, control, threading.Event(), scheduling=scheduling)
    finally:
        sock.close(linger=0)
        ctx.destroy(linger=0)
    print(json.dumps({
        "cpu_s": round(time.process_time() - cpu_start, 3),
        "segments_read": camera.segments_read, "segments_lost": camera.segments_lost,
        "sync_losses": camera.sync_losses, "resyncs": camera.resyncs,
        "read_sizes": sorted(camera.read_sizes), "opens": camera.opens}), flush=True)
    return 0


# ---------------------------------------------------------------- the parent

def hog(cpu: int) -> subprocess.Popen:
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def run_mode(mode: str, seconds: float, cpu: int, speed_hz: int, with_hog: bool) -> dict:
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    hogs = [hog(cpu)] if with_hog else []
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--endpoint", endpoint,
                             "--cpu", str(cpu), "--speed-hz", str(speed_hz)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10_000)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    first = last = None
    received = 0
    marks = []
    counted = []  # capture's counters, from its statuses in the window (about once a second)
    scheduling = ""
    try:
        start = json.loads(proc.stdout.readline() or "{}")
        if "epoch" not in start:
            raise RuntimeError(f"capture child did not start: {proc.stderr.read()[-2000:]}")
        measure_from = time.monotonic() + WARMUP_S
        end = measure_from + seconds
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        while time.monotonic() < end:
            if not poller.poll(200):
                continue
            parts = sub.recv_multipart(copy=False)
            if wire.topic_of(parts) == wire.STATUS_TOPIC:
                status = wire.unpack_status(parts)
                scheduling = status.get("scheduling", scheduling)
                if time.monotonic() >= measure_from:
                    counted.append(status["counters"])
                continue
            if time.monotonic() < measure_from:
                continue
            frame = wire.unpack_raw(parts)
            # capture numbers the frames it publishes 1, 2, 3...: the seq is its published count
            mark = (frame.telemetry["frame_counter"], frame.seq)
            first = first or mark
            marks.append(mark)
            received += 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        for h in hogs:
            h.kill()
            h.wait()
        sub.close()
        ctx.term()
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    if first is None:
        raise RuntimeError(f"no frame from capture ({mode}): {err[-2000:]}")
    # The window: from the first frame received to the camera's frame at the end (by its clock,
    # CLOCK_MONOTONIC in both processes), less a few frames of publishing latency; so frames
    # lost at the end count as lost too.
    last_frame = int((end - start["epoch"]) * start["fps"]) - LATENCY_FRAMES
    inside = [m for m in marks if m[0] <= last_frame]
    last = inside[-1] if inside else first
    produced = max(last_frame, last[0]) - first[0] + 1
    published = last[1] - first[1] + 1
    # The error counts between the first and the last status in the window (a second or so
    # less than the window); None if fewer than two came.
    def grew(name: str) -> Optional[int]:
        if len(counted) < 2:
            return None
        return counted[-1].get(name, 0) - counted[0].get(name, 0)

    return {
        "mode": mode, "seconds": seconds, "hog": with_hog, "cpu": cpu,
        "scheduling": scheduling or start.get("scheduling", ""),
        "frames_produced": produced, "frames_published": published,
        "frames_received_here": received,
        "captured_fraction": round(published / produced, 5),
        "dropped_frames": grew("dropped_frames"),
        "dropped_segments": grew("dropped_segments"),
        "crc_errors": grew("crc_errors"),
        "resyncs": grew("resyncs"),
        "camera": stats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated runs: before, segments, after")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU for capture and the hog (default: the highest allowed)")
    parser.add_argument("--speed-hz", type=int, default=16_000_000, help="simulated SPI clock")
    parser.add_argument("--no-hog", action="store_true", help="without the CPU hog")
    parser.add_argument("--json", default="bench-results/capture.json", help="where to write JSON")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if args.cpu is None else args.cpu
    if args.child:
        return child(args.child, args.endpoint, cpu, args.speed_hz)
    others = [c for c in allowed if c != cpu]
    if others:  # keep this process off the measured CPU
        os.sched_setaffinity(0, others)
    runs = []
    for mode in args.modes.split(","):
        result = run_mode(mode.strip(), args.seconds, cpu, args.speed_hz, not args.no_hog)
        runs.append(result)
        cam = result["camera"]
        print(f"{mode:8s} captured {result['frames_published']:5d} of "
              f"{result['frames_produced']:5d} frames = {100 * result['captured_fraction']:6.2f} %"
              f"  (segments lost {cam.get('segments_lost', '?')}, sync losses "
              f"{cam.get('sync_losses', '?')}, resyncs {result['resyncs']}; capture CPU "
              f"{cam.get('cpu_s', '?')} s)  [{result['scheduling']}]", flush=True)
    for result in runs:
        verdict = "meets" if result["captured_fraction"] >= GOAL else "misses"
        print(f"{result['mode']}: {100 * result['captured_fraction']:.2f} % {verdict} the "
              f"goal of {100 * GOAL:.0f} %")
    report = {"benchmark": "capture", "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "goal": GOAL, "runs": runs}
    print(f"wrote {write_json(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
