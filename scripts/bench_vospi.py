#!/usr/bin/env python3
"""Benchmark the VoSPI frame assembler: milliseconds to parse and CRC-check one frame.

Prints the figures and writes them as JSON (--json, default bench-results/vospi.json). Each figure
is CPU time of this process per frame (so time spent waiting for a busy machine's cores does not
count), the best of several rounds and their median, plus the wall-clock best. The plain
per-packet Python loop is measured alongside, for the ratio. --quick runs for about a second (a
smoke run the test suite uses).
"""
from __future__ import annotations

import argparse
import binascii
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture import vospi  # noqa: E402
from capture.vospi import PACKET_BYTES, FrameAssembler, encode_frame  # noqa: E402
from flirstream.testing import write_json  # noqa: E402


def rounds(fn: Callable[[], object], per_round: int, count: int) -> tuple[list[float], list[float]]:
    """(CPU seconds, wall seconds) per call of fn, one figure per round."""
    fn()
    cpu, wall = [], []
    for _ in range(count):
        start_cpu, start = time.process_time(), time.perf_counter()
        for _ in range(per_round):
            fn()
        cpu.append((time.process_time() - start_cpu) / per_round)
        wall.append((time.perf_counter() - start) / per_round)
    return cpu, wall


def per_packet_loop(stream: bytes) -> int:
    """The plain way, for comparison: one Python iteration and one crc_hqx per packet."""
    good = 0
    for o in range(0, len(stream), PACKET_BYTES):
        p = stream[o:o + PACKET_BYTES]
        if p[0] & 0x0F == 0x0F:
            continue
        crc = binascii.crc_hqx(bytes((p[0] & 0x0F, p[1], 0, 0)) + p[4:], 0)
        good += crc == (p[2] << 8 | p[3])
        np.frombuffer(p[4:], ">u2")
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="bench-results/vospi.json", help="where to write JSON")
    parser.add_argument("--quick", action="store_true", help="about one second in all")
    args = parser.parse_args()
    n, r = (30, 3) if args.quick else (400, 9)
    rng = np.random.default_rng(0)

    def frame(sensor: str, telemetry: str = "off") -> bytes:
        rows, cols = vospi.SENSORS[sensor]
        image = rng.integers(27000, 32000, (rows, cols), dtype=np.uint16)
        return encode_frame(image, sensor, telemetry)

    l3, l2, l3t = frame("lepton3"), frame("lepton2"), frame("lepton3", "footer")
    packets = np.frombuffer(l3, np.uint8).reshape(-1, PACKET_BYTES)
    # A stream as an SPI reader sees it: discards between frames, fed in chunks of 24 packets
    # (one 4096-byte spidev read) or 72 (what SpiSource.read() gathers per call).
    stream = b"".join(vospi.discard_packets(40) + frame("lepton3") for _ in range(8))

    def feeder(packets_per_feed: int):
        chunk = packets_per_feed * PACKET_BYTES
        asm = FrameAssembler("lepton3")

        def feed_stream():
            for i in range(0, len(stream), chunk):
                asm.feed(stream[i:i + chunk])
        return feed_stream

    cases = {
        "lepton3_frame": (lambda asm=FrameAssembler("lepton3"): asm.feed(l3), 1),
        "lepton3_frame_telemetry": (lambda asm=FrameAssembler("lepton3", "footer"): asm.feed(l3t), 1),
        "lepton2_frame": (lambda asm=FrameAssembler("lepton2"): asm.feed(l2), 1),
        "lepton3_crc_only": (lambda: vospi.packet_crcs(packets), 1),
        # the assembler's check: capture/_vospi_crc.c where built (vospi.CRC_CHECK), else the table
        "lepton3_crc_check": (lambda: vospi.packets_ok(packets), 1),
        "lepton3_stream_fed_24_packets": (feeder(24), 8),
        "lepton3_stream_fed_72_packets": (feeder(72), 8),
        "lepton3_per_packet_python_loop": (lambda: per_packet_loop(l3), 1),
    }
    results = {}
    for name, (fn, frames_per_call) in cases.items():
        cpu, wall = rounds(fn, max(n // frames_per_call, 3), r)
        cpu = [t / frames_per_call * 1e3 for t in cpu]
        wall = [t / frames_per_call * 1e3 for t in wall]
        results[name] = {"best_ms": round(min(cpu), 4), "median_ms": round(statistics.median(cpu), 4),
                         "wall_best_ms": round(min(wall), 4)}
        print(f"{name:34s} CPU best {min(cpu):7.4f} ms/frame  median {statistics.median(cpu):7.4f}"
              f"  (wall best {min(wall):7.4f})")
    best = results["lepton3_frame"]["best_ms"]
    ratio = results["lepton3_per_packet_python_loop"]["best_ms"] / best
    results["speedup_vs_per_packet_loop"] = round(ratio, 2)
    print(f"Lepton 3 frame (240 packets) parsed + CRC-checked: {best:.3f} ms CPU "
          f"({1000 / best:.0f} frames/s on one core; the sensor sends 26.5), "
          f"{ratio:.1f}x the per-packet loop")
    report = {"benchmark": "vospi", "quick": args.quick, "python": platform.python_version(),
              "numpy": np.__version__, "crc_check": vospi.CRC_CHECK,
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "results": results}
    print(f"wrote {write_json(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
