#!/usr/bin/env python3
"""Print the telemetry of tCam .tjsn files (e.g. ../shared/realdata) as capture.telemetry parses it.

A .tjsn file is JSON whose `telemetry` member is base64 of 240 little-endian uint16 words (rows A,
B, C) and `radiometric` base64 of the 19,200 little-endian uint16 pixels. Give files or a
directory (all its *.tjsn files). Prints each field, what the pixels are, and the pixel range in
the unit the telemetry implies. Exit 1 if a file cannot be read.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from capture import telemetry  # noqa: E402
from flirstream.wire import KELVIN_AT_0C  # noqa: E402


def load(path: Path) -> tuple[telemetry.Telemetry, np.ndarray]:
    doc = json.loads(path.read_text())
    words = np.frombuffer(base64.b64decode(doc["telemetry"]), dtype="<u2")
    pixels = np.frombuffer(base64.b64decode(doc["radiometric"]), dtype="<u2")
    return telemetry.parse(words), pixels


def describe(path: Path) -> str:
    t, pixels = load(path)
    lines = [f"== {path.name}"]
    for key, value in t.as_dict().items():
        if isinstance(value, float):
            value = round(value, 4)
        elif key == "status":
            value = f"0x{value:08X}"
        lines.append(f"  {key:28} {value}")
    meaning = telemetry.pixel_meaning(t)
    lo, hi = int(pixels.min()), int(pixels.max())
    if meaning in telemetry.KELVIN_PER_COUNT:
        k = telemetry.KELVIN_PER_COUNT[meaning]
        lines.append(f"  pixel range                  {lo}..{hi} = "
                     f"{lo * k - KELVIN_AT_0C:.2f}..{hi * k - KELVIN_AT_0C:.2f} C")
    else:
        lines.append(f"  pixel range                  {lo}..{hi} ({meaning}: no temperature)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help=".tjsn files or directories")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for p in args.paths:
        files += sorted(p.glob("*.tjsn")) if p.is_dir() else [p]
    if not files:
        print("no .tjsn files found", file=sys.stderr)
        return 1
    status = 0
    for f in files:
        try:
            print(describe(f))
        except (OSError, ValueError, KeyError) as exc:
            print(f"{f}: cannot read: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
