#!/usr/bin/env python3
"""Benchmark flirstream.regions.measure: readings of every region of one frame, table + JSON.

    python scripts/bench_measure.py            # ~8 s
    python scripts/bench_measure.py --quick    # ~0.5 s smoke run (the test suite runs this)

Input: 16 synthetic 160x120 TLinear frames and 10 regions (a whole-frame box, 6 boxes from 3x3 to
120x46, 3 spots), as server.conf would define them. Figures (this thread's CPU time, median of
batches, so other programs on a busy machine do not count):
  measure_us          one measure() call: frame min/max/centre + the 10 regions (goal well under 1000)
  frame_only_us       measure() with no regions: the frame's own readings
  per_region_us       (measure_us - frame_only_us) / 10
  monitor_us          server.monitor.Monitor.on_thermal without MQTT / webhooks: the 10 regions measured
                      (the encoder sent none), 4 alarms, history, and the MQTT state message built
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics as stat
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flirstream.regions import Region, celsius, measure  # noqa: E402
from flirstream.testing import tlinear_counts, write_json  # noqa: E402

ROWS, COLS = 120, 160
REGIONS = [Region("all", 0, 0, COLS - 1, ROWS - 1), Region("left", 0, 0, 79, 59),
           Region("nozzle", 100, 20, 102, 22), Region("bed", 20, 70, 139, 115),
           Region("cabinet", 40, 10, 60, 40), Region("fan", 140, 90, 155, 105),
           Region("psu", 5, 100, 30, 119), Region("spot1", 80, 60, 80, 60),
           Region("spot2", 0, 0, 0, 0), Region("spot3", 159, 119, 159, 119)]


def frames(count: int = 16, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    out = []
    for i in range(count):
        c = (22 + 3 * xx / COLS + 40 * np.exp(-((xx - 100 - i) ** 2 + (yy - 21) ** 2) / 6.0)
             + rng.normal(0, 0.05, (ROWS, COLS)))
        out.append(tlinear_counts(c))
    return out


def per_call_us(regions: list[Region], images: list[np.ndarray], seconds: float, batch: int) -> float:
    to_c = celsius(0.01)
    measure(images[0], regions, to_c)  # warm up
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 3:
        t0 = time.thread_time()
        for k in range(batch):
            measure(images[k % len(images)], regions, to_c)
        samples.append((time.thread_time() - t0) / batch * 1e6)
    return stat.median(samples)


def monitor_us(images: list[np.ndarray], seconds: float, batch: int) -> float:
    from flirstream.regions import AlarmRule
    from encoder.measure import Meter
    from flirstream.wire import Frame
    from server.monitor import Monitor

    class Publisher:  # stands in for MqttPublisher.offer: only the state message is built
        def offer(self, state, jpeg=None, urgent=False):
            return state

    logging.getLogger("monitor").setLevel(logging.ERROR)  # the alarm lines are not the point here
    rules = {f"a{i}": AlarmRule(f"a{i}", REGIONS[i].name, "above", 60.0) for i in range(4)}
    monitor = Monitor({r.name: r for r in REGIONS}, rules, mqtt=Publisher())  # type: ignore[arg-type]
    meter = Meter()  # the encoder's thermal frames, without readings of their own: all measured here
    frames = [Frame(seq=i, t=1000.0 + i, sensor="lepton3", pixels=p) for i, p in enumerate(images)]
    for frame in frames:
        frame.measurement = meter.measure(frame)
    monitor.on_thermal(frames[0])
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 3:
        t0 = time.thread_time()
        for k in range(batch):
            monitor.on_thermal(frames[k % len(frames)])
        samples.append((time.thread_time() - t0) / batch * 1e6)
    return stat.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about half a second (smoke test)")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "measure.json"),
                        help="where to write the results (default bench-results/measure.json)")
    args = parser.parse_args()
    seconds = 0.15 if args.quick else 2.5
    images = frames()
    with_regions = per_call_us(REGIONS, images, seconds, 200)
    frame_only = per_call_us([], images, seconds, 200)
    monitor = monitor_us(images, seconds, 200)
    result = {"measure_us": round(with_regions, 2), "frame_only_us": round(frame_only, 2),
              "per_region_us": round((with_regions - frame_only) / len(REGIONS), 2),
              "monitor_us": round(monitor, 2),
              "setup": {"shape": [ROWS, COLS], "regions": len(REGIONS), "quick": args.quick,
                        "numpy": np.__version__, "python": platform.python_version(),
                        "machine": platform.machine()}}
    print(f"measure() 160x120, {len(REGIONS)} regions : {with_regions:8.1f} us per frame")
    print(f"measure() frame only          : {frame_only:8.1f} us per frame")
    print(f"per region                    : {result['per_region_us']:8.1f} us")
    print(f"Monitor.on_thermal (no network): {monitor:8.1f} us per frame")
    print(f"wrote {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
