#!/usr/bin/env python3
"""Check flirstream.regions.measure against a Lepton's own spotmeter, on frames a camera recorded.

    python scripts/check_spotmeter.py /work/shared/realdata/fox.tjsn /work/shared/realdata/agc_off.tjsn

Input: tCam .tjsn files (JSON: base64 TLinear frame of 120x160 little-endian uint16, and the three
telemetry rows). Telemetry words 210-213 (row C) are the camera's spotmeter mean, max, min (K x 100)
and population, words 214-217 its ROI, ordered like the RAD spotmeter ROI: start row, start column,
end row, end column, inclusive (docs: ../shared/LEPTON_VOSPI.md, telemetry rows). The same box measured by
measure() must give the same max and min and, to within the camera's integer truncation, the mean.
Prints one line per file; exit status 1 if any differs.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flirstream.regions import Region, celsius, counts, measure  # noqa: E402

SPOT_VALUES = slice(210, 214)  # mean, max, min, population
SPOT_ROI = slice(214, 218)  # start row, start column, end row, end column


def check(path: Path) -> tuple[bool, str]:
    data = json.loads(path.read_text())
    pixels = np.frombuffer(base64.b64decode(data["radiometric"]), "<u2").reshape(120, 160)
    telemetry = np.frombuffer(base64.b64decode(data["telemetry"]), "<u2")
    mean, hi, lo, population = (int(v) for v in telemetry[SPOT_VALUES])
    r0, c0, r1, c1 = (int(v) for v in telemetry[SPOT_ROI])
    box = Region("spotmeter", c0, r0, c1, r1)
    got = measure(pixels, [box], counts)["regions"]["spotmeter"]
    cells = (c1 - c0 + 1) * (r1 - r0 + 1)
    ok = (got["max"] == hi and got["min"] == lo and abs(got["mean"] - mean) < 1.0
          and cells == population)
    in_c = measure(pixels, [box], celsius(0.01))["regions"]["spotmeter"]
    return ok, (f"{path.name}: box x {c0}-{c1}, y {r0}-{r1} ({cells} px): camera max/min/mean "
                f"{hi}/{lo}/{mean}, measure {got['max']:g}/{got['min']:g}/{got['mean']:g} "
                f"({in_c['max']:.2f}/{in_c['min']:.2f}/{in_c['mean']:.2f} °C): "
                + ("same" if ok else "DIFFERENT"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="tCam .tjsn files (TLinear on)")
    args = parser.parse_args()
    failed = False
    for path in args.files:
        try:
            ok, line = check(path)
        except (OSError, ValueError, KeyError) as exc:
            ok, line = False, f"{path}: cannot read it as a tCam .tjsn file: {exc}"
        print(line)
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
