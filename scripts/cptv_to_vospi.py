#!/usr/bin/env python3
"""Convert a CPTV v2 recording (Cacophony Project thermal video) into a VoSPI recording.

    scripts/cptv_to_vospi.py ../shared/realdata/cacophony-v2.cptv real.vospi
    flir-stream capture --source vospi-file:real.vospi        # with [capture] tlinear = no

Each CPTV frame goes out as the VoSPI packets a Lepton 3 sends (CRCs, segments with TTT, a few
discard packets before each frame), pixels unchanged: raw counts, i.e. TLinear off, so replay it
with `tlinear = no`. --repeat N sends each frame N times (a real Lepton repeats each of its
~8.7 unique frames 3 times in 26.5 Hz; the default 1 makes every replayed frame unique).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture import cptv, vospi  # noqa: E402

DISCARDS = 3  # discard packets before each frame, as the sensor sends between frames


def convert(recording: cptv.Recording, out, repeat: int = 1, telemetry: str = "off") -> int:
    """Write the VoSPI bytes of every frame (`repeat` times each); returns frames written."""
    sensor = next((name for name, shape in vospi.SENSORS.items()
                   if shape == (recording.rows, recording.cols)), None)
    if sensor is None:
        raise cptv.CptvError(f"CPTV: frames are {recording.cols}x{recording.rows}; a Lepton sends "
                             f"160x120 or 80x60")
    written = 0
    for frame in recording.frames:
        for _ in range(repeat):
            out.write(vospi.discard_packets(DISCARDS))
            out.write(vospi.encode_frame(frame.pixels, sensor, telemetry, frame_counter=written,
                                         time_ms=int(frame.time_ms or 0)))
            written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cptv", help="CPTV v2 file to read")
    parser.add_argument("out", help="VoSPI recording to write")
    parser.add_argument("--repeat", type=int, default=1,
                        help="send each frame this many times (default 1: every frame unique)")
    parser.add_argument("--telemetry", choices=vospi.TELEMETRY_MODES, default="off",
                        help="telemetry lines (frame counter, uptime from the CPTV frame times)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        recording = cptv.parse(Path(args.cptv).read_bytes())
        with open(args.out, "wb") as out:
            written = convert(recording, out, args.repeat, args.telemetry)
    except (OSError, cptv.CptvError) as exc:
        print(f"cptv_to_vospi: {args.cptv}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(recording.frames)} frames of {recording.cols}x{recording.rows} "
          f"raw counts, {written} VoSPI frames (replay with [capture] tlinear = no)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
