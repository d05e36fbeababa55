#!/usr/bin/env python3
"""Fuzz the VoSPI frame assembler with damaged streams and check what comes out.

The stream is a run of blocks, each one of: a clean frame; random bytes; a frame with bit flips
(1-3 CRC-covered bits in a few packets); a frame with packets dropped, duplicated, swapped with a
neighbour or cut short; or a slip: 1-3 bytes lost in zero-filled discards, then a frame whose
packet 0 is cut to its first 0-5 bytes (2 lost and 2 kept re-align the stream on an all-zero
"packet 0" with a valid CRC). After every damaged block comes a clean frame. Every clean frame
must be found. The bytes are fed in random chunk sizes, for Lepton 2 and 3, with and without telemetry.

Checked: no exception; every frame returned equals a frame that was sent (so none holds a bad
packet); every clean frame after a damaged block is found. Prints counts; exit status 1 on failure.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture import vospi  # noqa: E402
from capture.vospi import PACKET_BYTES, FrameAssembler, encode_frame  # noqa: E402

KINDS = ("clean", "random", "flip", "drop", "duplicate", "swap", "cut", "slip")


def digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()


class Stream:
    """Builds the fuzz stream for one sensor / telemetry setting and remembers what it sent."""

    def __init__(self, sensor: str, telemetry: str, rng: np.random.Generator):
        self.sensor, self.telemetry, self.rng = sensor, telemetry, rng
        self.rows, self.cols = vospi.SENSORS[sensor]
        self.sent: set[bytes] = set()       # every image put in the stream, damaged or not
        self.required: list[bytes] = []     # clean frames (after damage or not): must come out
        self.kinds = dict.fromkeys(KINDS, 0)

    def frame(self) -> tuple[bytes, bytes]:
        image = self.rng.integers(0, 1 << 16, (self.rows, self.cols), dtype=np.uint16)
        key = digest(image)
        self.sent.add(key)
        return encode_frame(image, self.sensor, self.telemetry), key

    def discards(self) -> bytes:
        return vospi.discard_packets(int(self.rng.integers(0, 6)))

    def block(self) -> bytes:
        kind = KINDS[int(self.rng.integers(len(KINDS)))]
        self.kinds[kind] += 1
        if kind == "clean":
            data, key = self.frame()
            self.required.append(key)
            return self.discards() + data
        if kind == "slip":
            data, _ = self.frame()
            lead = bytearray(vospi.discard_packets(int(self.rng.integers(1, 4))))
            lost = int(self.rng.integers(1, 4))
            at = int(self.rng.integers(0, len(lead) - lost))
            del lead[at:at + lost]
            damaged = bytes(lead) + data[:int(self.rng.integers(0, 6))] + data[PACKET_BYTES:]
        elif kind == "random":
            damaged = self.rng.integers(0, 256, int(self.rng.integers(1, 6000)),
                                        dtype=np.uint8).tobytes()
        else:
            data, _ = self.frame()
            packets = [data[i:i + PACKET_BYTES] for i in range(0, len(data), PACKET_BYTES)]
            self.damage(kind, packets)
            damaged = b"".join(packets)
        after, key = self.frame()
        self.required.append(key)
        return self.discards() + damaged + self.discards() + after

    def damage(self, kind: str, packets: list[bytes]) -> None:
        rng = self.rng
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(packets)))
            if kind == "flip":
                p = bytearray(packets[i])
                bits = len(p) * 8  # an earlier "cut" may have shortened this packet
                for _ in range(int(rng.integers(1, 4)) if bits > 4 else 0):
                    bit = int(rng.integers(4, bits))  # not the unprotected top nibble
                    p[bit // 8] ^= 0x80 >> (bit % 8)
                packets[i] = bytes(p)
            elif kind == "drop":
                del packets[i]
            elif kind == "duplicate":
                packets.insert(i, packets[i])
            elif kind == "swap" and i + 1 < len(packets):
                packets[i], packets[i + 1] = packets[i + 1], packets[i]
            elif kind == "cut":
                packets[i] = packets[i][:int(rng.integers(0, PACKET_BYTES))]


def fuzz(sensor: str, telemetry: str, packets: int, rng: np.random.Generator) -> dict:
    stream = Stream(sensor, telemetry, rng)
    assembler = FrameAssembler(sensor, telemetry)
    found: set[bytes] = set()
    false_frames = 0
    fed = 0
    while fed < packets * PACKET_BYTES:
        data = b"".join(stream.block() for _ in range(8))
        i = 0
        while i < len(data):
            n = int(rng.choice([1, 100, PACKET_BYTES, 4096, 3 * 4096, int(rng.integers(1, 30000))]))
            for frame in assembler.feed(data[i:i + n]):
                key = digest(frame.image)
                if key in stream.sent:
                    found.add(key)
                else:
                    false_frames += 1
            i += n
        fed += len(data)
    missed = sum(1 for key in stream.required if key not in found)
    counters = assembler.counters_dict()
    return {"sensor": sensor, "telemetry": telemetry, "bytes": fed,
            "packets": counters["packets"], "frames_out": counters["frames"],
            "frames_sent": len(stream.sent), "required": len(stream.required),
            "missed_required": missed, "false_frames": false_frames, "blocks": stream.kinds,
            "counters": counters}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=float, default=1e6,
                        help="packets' worth of bytes to feed in all (default 1e6)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = np.random.default_rng(seed)
    settings = [(s, t) for s in ("lepton3", "lepton2") for t in ("off", "header", "footer")]
    per = max(int(args.packets) // len(settings), 1)
    print(f"fuzzing the VoSPI assembler: {int(args.packets)} packets, seed {seed}")
    failed = False
    start = time.monotonic()
    for sensor, telemetry in settings:
        r = fuzz(sensor, telemetry, per, rng)
        ok = r["false_frames"] == 0 and r["missed_required"] == 0
        failed |= not ok
        c = r["counters"]
        print(f"{'ok  ' if ok else 'FAIL'} {sensor} telemetry={telemetry:6s} packets={r['packets']:>8} "
              f"frames out={r['frames_out']:>5}/{r['frames_sent']:<5} clean found="
              f"{r['required'] - r['missed_required']}/{r['required']} false={r['false_frames']} "
              f"crc_errors={c['crc_errors']} sequence_errors={c['sequence_errors']} "
              f"realigns={c['realigns']} skipped_bytes={c['skipped_bytes']}")
    print(f"{'FAILED' if failed else 'passed'} in {time.monotonic() - start:.1f} s (seed {seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
