#!/usr/bin/env python3
"""Benchmark the encoder's core (encoder.render.Renderer) on one core: table + JSON.

    python scripts/bench_encoder.py            # ~30 s
    python scripts/bench_encoder.py --quick    # ~1 s smoke run (the test suite runs this)

Input: 32 different synthetic 160x120 TLinear frames (room at ~22 °C, a warm moving blob, a hot
spot, a gradient and sensor noise). Output: 640x480 ironbow JPEG at quality 80.

Figures:
  render_fps         frames/s through Renderer.render (everything: AGC, LUT, resize, JPEG, stats)
  bare_jpeg_fps      cv2.imencode alone of the same 640x480 BGR images: the floor
  vs_bare_jpeg       render time / bare JPEG time (goal <= 1.4)
  steps_us           per step: orient, AGC, LUT, resize, JPEG, stats (which step is slowest);
                     LUT here is the one cv2.LUT call that also widens 4x, resize the row repeat
  plain_steps_us     the plain way for comparison: 1-pixel LUT, then cv2.resize
  seed_speedup       the seed's way (8-bit normalise, matplotlib jet, JPEG file written and read
                     back, base64) time / ours (goal >= 6)
Times are this thread's CPU time (so other programs on a busy machine do not count), render and
bare-JPEG batches alternate, and medians are reported; wall-clock figures are in the JSON as well.
OpenCV runs with one thread and the process is pinned to one CPU.
"""
from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics as stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from encoder import agc as agcs  # noqa: E402
from encoder import palettes  # noqa: E402
from encoder.render import Renderer, Units, orient, scale, statistics  # noqa: E402
from flirstream.testing import cpu_name, tlinear_counts, write_json  # noqa: E402

ROWS, COLS = 120, 160


def scenes(count: int = 32, seed: int = 7) -> list[np.ndarray]:
    """Realistic TLinear frames (kelvin x 100): no two alike, like a real sensor's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    frames = []
    for i in range(count):
        cx, cy = 50 + 40 * np.cos(i / 5), 60 + 25 * np.sin(i / 7)
        celsius = (22.0 + 3.0 * xx / COLS                                    # wall gradient
                   + 12.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 300.0)  # a person
                   + 45.0 * np.exp(-((xx - 130) ** 2 + (yy - 25) ** 2) / 8.0)   # a mug of tea
                   + rng.normal(0, 0.05, (ROWS, COLS)))                       # sensor noise
        frames.append(tlinear_counts(celsius))
    return frames


def timed_batches(funcs: dict[str, Callable[[int], None]], seconds: float,
                  batch: int) -> dict[str, list[float]]:
    """Run each func(i) `batch` times per round, alternating, for `seconds` of wall time; CPU
    seconds per call (this thread's CPU time, so other programs running meanwhile do not count;
    the wall-clock figures are in the JSON too)."""
    per_call: dict[str, list[float]] = {name: [] for name in funcs}
    for f in funcs.values():  # warm up
        f(0)
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or not all(per_call.values()):
        for name, f in funcs.items():
            t0 = time.thread_time()
            w0 = time.perf_counter()
            for k in range(batch):
                f(i + k)
            per_call[name].append((time.thread_time() - t0) / batch)
            WALL.setdefault(name, []).append((time.perf_counter() - w0) / batch)
        i += batch
    return per_call


WALL: dict[str, list[float]] = {}  # wall-clock seconds per call, by measurement name


def seed_way(frame: np.ndarray, path: str, size: tuple[int, int], plt) -> bytes:
    """What the seed did per frame: 8-bit normalise, jet heatmap JPEG on disk, read back, base64."""
    lo, hi = float(frame.min()), float(frame.max())
    gray = ((frame - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
    big = cv2.resize(gray, size, interpolation=cv2.INTER_NEAREST)  # same picture size as ours
    plt.imsave(path, big, cmap="jet", format="jpeg", pil_kwargs={"quality": 80})
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read())


def pin_one_cpu() -> str:
    cv2.setNumThreads(1)
    try:
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    except (AttributeError, OSError):
        return "not pinned"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about one second in all (smoke test)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="per measurement (default 6, or 0.15 with --quick)")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "encoder.json"),
                        help="where to write the results (default bench-results/encoder.json)")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (0.15 if args.quick else 6.0)
    batch = 10 if args.quick else 50
    pinned = pin_one_cpu()

    frames = scenes()
    size = (640, 480)
    renderer = Renderer(palette="ironbow", agc="linear", size=size, quality=80)
    n = len(frames)
    bgr = []
    for f in frames:  # the exact images render() encodes, for the bare JPEG floor
        renderer.render(f)
        bgr.append(renderer.last.bgr.copy())
    params = (cv2.IMWRITE_JPEG_QUALITY, 80)

    whole = timed_batches({
        "render": lambda i: renderer.render(frames[i % n]),
        "bare_jpeg": lambda i: cv2.imencode(".jpg", bgr[i % n], params),
    }, seconds, batch)
    render_s, bare_s = stat.median(whole["render"]), stat.median(whole["bare_jpeg"])

    # the steps render() takes, each alone on its own realistic input
    table = palettes.lut("ironbow")
    wide = palettes.wide_table("ironbow", 4)
    linear = agcs.LinearAGC((1.0, 99.0), 0.8)
    grays = [linear(f)[0] for f in frames]
    small = [palettes.colorize(g, table) for g in grays]
    widened = [palettes.colorize_wide(g, wide) for g in grays]
    units = Units(True, 0.01)
    steps = timed_batches({
        "orient": lambda i: orient(frames[i % n], 0, "none"),
        "agc": lambda i: linear(frames[i % n]),
        "lut": lambda i: palettes.colorize_wide(grays[i % n], wide),  # colour + widen 4x
        "resize": lambda i: np.repeat(widened[i % n], 4, axis=0),  # the rows 4x
        "jpeg": lambda i: cv2.imencode(".jpg", bgr[i % n], params),
        "stats": lambda i: statistics(frames[i % n], units),
    }, seconds / 2, batch)
    steps_us = {name: round(stat.median(v) * 1e6, 1) for name, v in steps.items()}
    # the plain way for comparison: a 1-pixel LUT, then cv2.resize
    plain = timed_batches({
        "lut": lambda i: palettes.colorize(grays[i % n], table),
        "resize": lambda i: scale(small[i % n], size, "nearest"),
        "cv2_resize": lambda i: cv2.resize(small[i % n], size, interpolation=cv2.INTER_NEAREST),
    }, seconds / 4, batch)
    plain_us = {name: round(stat.median(v) * 1e6, 1) for name, v in plain.items()}

    variants = {}
    for label, settings in [("agc=histogram", {"agc": "histogram"}),
                            ("agc=fixed", {"agc": "fixed"}),
                            ("interpolation=linear", {"interpolation": "linear"}),
                            ("rotate=90", {"rotate": 90, "size": (480, 640)})]:
        r = Renderer(palette="ironbow", size=size, quality=80)
        r.update(**settings)
        t = timed_batches({"v": lambda i, r=r: r.render(frames[i % n])}, seconds / 4, batch)["v"]
        variants[label] = round(1.0 / stat.median(t), 1)

    seed = None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "thermal.jpg")
            seed_t = timed_batches({
                "ours": lambda i: base64.b64encode(renderer.render(frames[i % n])),
                "seed": lambda i: seed_way(frames[i % n], path, size, plt),
            }, max(seconds / 2, 0.1), max(2, batch // 10))
        ours_b64, seed_s = stat.median(seed_t["ours"]), stat.median(seed_t["seed"])
        seed = {"seed_ms": round(seed_s * 1e3, 3), "ours_with_base64_ms": round(ours_b64 * 1e3, 3),
                "seed_speedup": round(seed_s / ours_b64, 1)}

    result = {
        "timing": "CPU time of the benchmarking thread (one core); wall-clock figures below",
        "render_fps": round(1.0 / render_s, 1),
        "render_ms": round(render_s * 1e3, 3),
        "bare_jpeg_fps": round(1.0 / bare_s, 1),
        "bare_jpeg_ms": round(bare_s * 1e3, 3),
        "vs_bare_jpeg": round(render_s / bare_s, 3),
        "steps_us": steps_us,
        "plain_steps_us": plain_us,
        "slowest_step": max(steps_us, key=steps_us.get),
        "variants_fps": variants,
        "seed_speedup": seed["seed_speedup"] if seed else None,
        "seed": seed,
        "wall_clock": {"render_fps": round(1.0 / stat.median(WALL["render"]), 1),
                       "bare_jpeg_fps": round(1.0 / stat.median(WALL["bare_jpeg"]), 1),
                       "vs_bare_jpeg": round(stat.median(WALL["render"])
                                             / stat.median(WALL["bare_jpeg"]), 3),
                       "load_average": [round(x, 2) for x in os.getloadavg()]},
        "goals": {"render_fps": ">= 800", "vs_bare_jpeg": "<= 1.4", "seed_speedup": ">= 6"},
        "setup": {"input": f"{len(frames)} synthetic {COLS}x{ROWS} TLinear frames",
                  "output": f"{size[0]}x{size[1]} ironbow JPEG q80, agc linear 1/99 %",
                  "seconds_per_measurement": seconds, "quick": args.quick, "pinned": pinned,
                  "opencv_threads": cv2.getNumThreads(), "opencv": cv2.__version__,
                  "numpy": np.__version__, "python": platform.python_version(),
                  "machine": platform.machine(), "cpu": cpu_name(),
                  "jpeg_bytes": len(renderer.render(frames[0]))},
    }

    rows = [("Renderer.render (ironbow, linear, 640x480 q80)",
             f"{result['render_fps']:.0f} frames/s", f"{result['render_ms']:.3f} ms"),
            ("bare cv2.imencode of the same image", f"{result['bare_jpeg_fps']:.0f} frames/s",
             f"{result['bare_jpeg_ms']:.3f} ms"),
            ("render / bare JPEG (goal <= 1.4)", f"{result['vs_bare_jpeg']:.2f}x", "")]
    labels = {"lut": "lut (cv2.LUT, colours + widens 4x)", "resize": "resize (rows 4x)"}
    rows += [(f"  step {labels.get(name, name)}", "", f"{us:.1f} us")
             for name, us in steps_us.items()]
    rows += [("  instead: 1-pixel LUT + resize (cv2 widen, rows 4x)", "",
              f"{plain_us['lut'] + plain_us['resize']:.1f} us"),
             ("  instead: 1-pixel LUT + cv2.resize", "",
              f"{plain_us['lut'] + plain_us['cv2_resize']:.1f} us")]
    rows += [(f"  variant {label}", f"{fps:.0f} frames/s", "") for label, fps in variants.items()]
    if seed:
        rows += [("seed's way (matplotlib jet, file, base64)", "", f"{seed['seed_ms']:.3f} ms"),
                 ("ours + base64", "", f"{seed['ours_with_base64_ms']:.3f} ms"),
                 ("seed / ours (goal >= 6)", f"{seed['seed_speedup']:.1f}x", "")]
    else:
        rows.append(("seed's way", "matplotlib not installed", ""))
    width = max(len(r[0]) for r in rows)
    print(f"encoder benchmark ({'quick' if args.quick else f'{seconds:g} s per figure'}, "
          f"one core: {pinned}; CPU time per frame; load average {os.getloadavg()[0]:.1f})")
    for label, a, b in rows:
        print(f"  {label:<{width}}  {a:>16}  {b:>12}")

    print(f"  written to {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
