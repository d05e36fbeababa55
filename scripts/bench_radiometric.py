#!/usr/bin/env python3
"""Bytes per frame of the browser's stream: today's JPEG against ways of sending the radiometric frame.

    scripts/bench_radiometric.py ../shared/realdata/cacophony-v2.cptv sim sim-smooth \
        ../shared/realdata/fox.tjsn ../shared/realdata/agc_off.tjsn

For each source (a CPTV / VoSPI / tCam file, or the simulator: see scripts/recordings.py) it prints
the mean bytes per frame of: the encoder's default picture (640x480 nearest, JPEG q80, ironbow,
linear AGC), a 160x120 JPEG, and the radiometric frame through several filters and zlib settings,
with the encode time per frame. flirstream/radiometric.py implements the chosen one ("raster-off-planes
rle": RAD2; RAD1 was "avg-zz-planes rle"), also with its lossy `step`. Writes
bench-results/radiometric.json.
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoder.render import Renderer  # noqa: E402
from flirstream.testing import write_json  # noqa: E402
from recordings import load  # noqa: E402
from flirstream import radiometric  # noqa: E402


def zigzag(d: np.ndarray) -> np.ndarray:
    d = (d & 0xFFFF).astype(np.uint16).view(np.int16).astype(np.int32)
    return ((d << 1) ^ (d >> 15)).astype(np.uint16)


def planes(u: np.ndarray) -> bytes:
    return np.concatenate(((u & 0xFF).astype(np.uint8).ravel(), (u >> 8).astype(np.uint8).ravel())).tobytes()


def left(i):
    p = np.zeros_like(i)
    p[:, 1:] = i[:, :-1]
    return p


def up(i):
    p = np.zeros_like(i)
    p[1:] = i[:-1]
    return p


def gradient(i):  # left + up - up-left
    p = left(i) + up(i) - up(left(i))
    p[0, 1:], p[1:, 0] = i[0, :-1], i[:-1, 0]
    return p


def average(i):
    p = (left(i) + up(i)) >> 1
    p[0, 1:], p[1:, 0] = i[0, :-1], i[:-1, 0]
    return p


FILTERS = {  # name -> frame (int32) -> bytes to compress
    "raw16": lambda i: i.astype("<u2").tobytes(),
    "raw-planes": lambda i: planes(i.astype(np.uint16)),
    "left16": lambda i: (i - left(i)).astype("<i2").tobytes(),
    "up16 (PNG up)": lambda i: (i - up(i)).astype("<i2").tobytes(),
    "left-zz-planes": lambda i: planes(zigzag(i - left(i))),
    "grad-zz-planes": lambda i: planes(zigzag(i - gradient(i))),
    "avg-zz-planes": lambda i: planes(zigzag(i - average(i))),
    "raster-off-planes": lambda i: planes(radiometric.residuals(i.astype(np.uint16))),  # RAD2's
}
ZLIB = {"L1": (1, zlib.Z_DEFAULT_STRATEGY), "L6": (6, zlib.Z_DEFAULT_STRATEGY),
        "L9": (9, zlib.Z_DEFAULT_STRATEGY), "L6 filtered": (6, zlib.Z_FILTERED),
        "rle": (1, zlib.Z_RLE)}


def deflate(data: bytes, level: int, strategy: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    return c.compress(data) + c.flush()


def measure(frames: np.ndarray, tlinear: bool) -> dict:
    rows = {}

    def timed(name, fn):
        sizes, start = [], time.perf_counter()
        for f in frames:
            sizes.append(len(fn(f)))
        rows[name] = {"bytes": round(float(np.mean(sizes)), 1), "max_bytes": int(max(sizes)),
                      "ms": round((time.perf_counter() - start) * 1000 / len(frames), 3)}

    big = Renderer()
    timed("JPEG 640x480 q80 (today)", lambda f: big.render(f, tlinear=tlinear))
    small = Renderer(size=(frames.shape[2], frames.shape[1]))
    timed("JPEG 160x120 q80", lambda f: small.render(f, tlinear=tlinear))
    for fname, filt in FILTERS.items():
        for zname, (level, strategy) in ZLIB.items():
            if fname in ("raw16", "left16", "up16 (PNG up)") and zname == "rle":
                continue
            timed(f"{fname} zlib {zname}",
                  lambda f, filt=filt, level=level, strategy=strategy:
                  deflate(filt(f.astype(np.int32)), level, strategy))
    timed("flirstream/radiometric.encode (chosen)", radiometric.encode)
    for step in (2, 3, 5):
        timed(f"  the same, step {step} (values within ±{step // 2})",
              lambda f, step=step: radiometric.encode(f, step=step))
    if len(frames) < 2:
        return rows
    # Not an option (a viewer that skips a frame could not decode the next), shown for scale:
    previous = np.vstack((frames[:1], frames[:-1])).astype(np.int32)
    pairs = iter(previous)
    timed("(previous-frame delta, zz-planes rle)",
          lambda f: deflate(planes(zigzag(f.astype(np.int32) - next(pairs))), 1, zlib.Z_RLE))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "radiometric.json"))
    args = parser.parse_args()
    results = {}
    for spec in args.sources:
        f = load(spec)
        results[f.label] = rows = measure(f.pixels, f.tlinear)
        print(f"\n{f.label}: {len(f.pixels)} frames, {f.fps:.1f} unique frames/s")
        print(f"  {'':42} {'KB/frame':>9} {'max KB':>8} {'ms/frame':>9} {'kbit/s':>8}")
        for name, r in rows.items():
            print(f"  {name:42} {r['bytes'] / 1000:9.2f} {r['max_bytes'] / 1000:8.2f} {r['ms']:9.3f} "
                  f"{r['bytes'] * 8 * f.fps / 1000:8.0f}")
    print(f"\nwrote {write_json(args.json, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
