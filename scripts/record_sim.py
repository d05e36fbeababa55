#!/usr/bin/env python3
"""Write a recording of the simulated Lepton, optionally with faults, for `vospi-file:` replay.

    scripts/record_sim.py out.vospi --frames 300 --faults crc=0.002,garbage=0.1
    flir-stream capture --source vospi-file:out.vospi
    scripts/record_sim.py tlinear-off.vospi --telemetry footer --camera tlinear=0

--camera sets the simulated camera's CCI state (capture.cci_sim.CameraState fields, e.g.
tlinear=0, agc=1, gain_mode=1); the recording's telemetry then says so.

Prints how many frames went out intact and damaged.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture.cci_sim import CameraState, SimulatedCCI  # noqa: E402
from capture.sim import Faults, SimulatedLepton  # noqa: E402


def parse_camera(text: str) -> dict:
    """'tlinear=0,gain_mode=1' -> {"tlinear": False, "gain_mode": 1} (CameraState fields)."""
    names = {f.name: f.type for f in fields(CameraState)}
    values = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = item.partition("=")
        kind = names.get(name)
        if kind not in ("bool", "int", bool, int):
            settable = ", ".join(n for n, k in names.items() if k in ("bool", "int", bool, int))
            raise argparse.ArgumentTypeError(f"camera setting {name!r}: expected one of {settable}")
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"camera setting {name}: {value!r} is not a "
                                             f"number") from None
        values[name] = bool(number) if kind in ("bool", bool) else number
    return values


def parse_faults(text: str) -> Faults:
    """'crc=0.002,garbage=0.1' -> Faults(crc=0.002, garbage=0.1)."""
    names = {f.name: f.type for f in fields(Faults)}
    values = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = item.partition("=")
        if name not in names:
            raise argparse.ArgumentTypeError(f"unknown fault {name!r} (expected {', '.join(names)})")
        try:
            values[name] = int(value) if name == "garbage_bytes" else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"fault {name}: {value!r} is not a number") from None
    return Faults(**values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="file to write")
    parser.add_argument("--frames", type=int, default=300, help="VoSPI frame periods (default 300)")
    parser.add_argument("--sensor", choices=("lepton3", "lepton2"), default="lepton3")
    parser.add_argument("--telemetry", choices=("off", "header", "footer"), default="off")
    parser.add_argument("--unique-every", type=int, default=3, help="scene repeats (default 3)")
    parser.add_argument("--faults", type=parse_faults, default=Faults(),
                        help="e.g. crc=0.002,lost=0.001,invalid_segments=0.1,garbage=0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera", type=parse_camera, default=None,
                        help="simulate the camera's CCI too, with these settings, "
                             "e.g. tlinear=0 or agc=1 or gain_mode=1")
    args = parser.parse_args()
    cci = None
    if args.camera is not None:
        cci = SimulatedCCI(part_number="500-0763-01" if args.sensor == "lepton2" else "500-0771-01")
        cci.set_power_on(**args.camera)
    sim = SimulatedLepton(args.sensor, args.telemetry, unique_every=args.unique_every,
                          seed=args.seed, faults=args.faults, cci=cci)
    intact = 0
    with open(args.path, "wb") as out:
        for _ in range(args.frames):
            out.write(sim.next_period())
            intact += sim.last_intact
    print(f"wrote {args.path}: {args.frames} {args.sensor} frames, {intact} intact, "
          f"{args.frames - intact} damaged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
