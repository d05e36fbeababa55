#!/usr/bin/env python3
"""How rough a thermal recording is: neighbour differences, frame-to-frame change, drift.

    scripts/scene_stats.py ../shared/realdata/cacophony-v2.cptv sim-raw sim-still sim [--json out.json]

Each source is a CPTV, VoSPI or tCam (.tjsn) file, or `sim` (the simulator's scene, TLinear),
`sim-raw` (the same in raw counts), `sim-still` (raw counts, only the noise moving) or
`sim-smooth` (the scene before issue 15); see scripts/recordings.py. Figures in the frames' counts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from recordings import load


def stats(frames: np.ndarray, fps: float) -> dict:
    """The figures for one (n, rows, cols) stack of frames."""
    a = frames.astype(np.int64)
    h = np.abs(np.diff(a, axis=2))
    v = np.abs(np.diff(a, axis=1))
    out = {"frames": len(a), "min": int(a.min()), "p1": float(np.percentile(a, 1)),
           "median": float(np.median(a)), "p99": float(np.percentile(a, 99)), "max": int(a.max()),
           "neighbour_median": float(np.median(np.concatenate((h.ravel(), v.ravel())))),
           "neighbour_p90": float(np.percentile(np.concatenate((h.ravel(), v.ravel())), 90))}
    if len(a) > 1:
        d = np.abs(np.diff(a, axis=0))
        share = np.bincount(np.minimum(d, 4).ravel(), minlength=5) / d.size
        level = a.mean(axis=(1, 2))
        out.update({
            "changed": float(1 - share[0]),
            "change_1": float(share[1]), "change_2": float(share[2]), "change_3": float(share[3]),
            "change_over_3": float(share[4]),
            "pixel_temporal_std_median": float(np.median(a.std(axis=0))),
            "level_range": float(level.max() - level.min()),
            "seconds": round(len(a) / fps, 1),
        })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+",
                        help="a CPTV, VoSPI or tCam file, or sim, sim-raw, sim-still or sim-smooth")
    parser.add_argument("--frames", type=int, default=119, help="frames from the simulator")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    results = {}
    for spec in args.sources:
        f = load(spec, args.frames)
        results[f.label] = stats(f.pixels, f.fps)
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    width = max(12, *(len(k) for k in results))
    print(f"{'':28}" + "".join(f"{name:>{width + 2}}" for name in results))
    for key in keys:
        cells = []
        for r in results.values():
            value = r.get(key, "")
            text = f"{value:.3g}" if isinstance(value, float) else str(value)
            cells.append(f"{text:>{width + 2}}")
        print(f"{key:28}" + "".join(cells))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
