"""A simulated Lepton: a moving thermal scene, sent as the VoSPI bytes a real sensor produces.

Pure generator of bytes (no clock): each next_period() returns what the SPI bus carries during one
VoSPI frame period - a few discard packets, then the frame (4 segments with TTT on a Lepton 3,
telemetry lines when configured). Pixels are TLinear values (kelvin / kelvin_per_count). Each scene
frame is sent `unique_every` times, like the real sensor (3: ~8.7 unique frames per second out of
~26.5). Faults can be injected for tests: corrupted packets, lost packets, invalid (TTT = 0)
segments and runs of garbage bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import vospi

ZERO_C = 273.15


@dataclass
class Faults:
    """Probabilities of faults: `crc` and `lost` per packet, the others per frame period."""
    crc: float = 0.0               # flip 1-3 CRC-covered bits of a packet
    lost: float = 0.0              # a packet never arrives
    invalid_segments: float = 0.0  # an invalid (TTT = 0) Lepton 3 segment before the frame
    garbage: float = 0.0           # random bytes before the frame (misaligning the stream)
    garbage_bytes: int = 1500      # at most this many


class SimulatedLepton:
    """See the module docstring. `last_image` is the image of the last frame sent and
    `last_intact` says whether its packets went out unharmed."""

    def __init__(self, sensor: str = "lepton3", telemetry: str = "off", unique_every: int = 3,
                 kelvin_per_count: float = 0.01, fps: float = 26.5, seed: Optional[int] = 0,
                 faults: Optional[Faults] = None, discards: tuple[int, int] = (2, 12)):
        if sensor not in vospi.SENSORS:
            raise ValueError(f"sensor {sensor!r}: expected one of {', '.join(vospi.SENSORS)}")
        if unique_every < 1:
            raise ValueError("unique_every must be at least 1")
        self.sensor = sensor
        self.telemetry = telemetry
        self.unique_every = unique_every
        self.kelvin_per_count = kelvin_per_count
        self.fps = fps
        self.faults = faults or Faults()
        self.discards = discards
        self.rng = np.random.default_rng(seed)
        self.rows, self.cols = vospi.SENSORS[sensor]
        self.frame_counter = 0
        self.last_image: Optional[np.ndarray] = None
        self.last_intact = True
        y, x = np.mgrid[0:self.rows, 0:self.cols]
        self._x = x / (self.cols - 1)  # 0..1
        self._y = y / (self.rows - 1)
        self._scene_index = -1
        self._scene: Optional[np.ndarray] = None
        self._ids = vospi.segment_ids(sensor, telemetry)

    # -- the scene

    def scene(self, index: int) -> np.ndarray:
        """Scene frame `index` as TLinear counts, (rows, cols) uint16."""
        t = index * self.unique_every / self.fps  # seconds
        x, y = self._x, self._y
        celsius = 20.0 + 2.5 * x + 1.5 * y  # background: 20..24 C across the view
        # A warm body (~34 C) walking left and right: an ellipse with a soft edge.
        bx = 0.5 + 0.3 * math.sin(0.4 * t)
        d = ((x - bx) / 0.13) ** 2 + ((y - 0.6) / 0.35) ** 2
        body = 1.0 / (1.0 + np.exp((d - 1.0) * 8.0))
        celsius = celsius + body * (34.0 - celsius)
        # A hot spot (60-80 C, e.g. a soldering iron tip) circling.
        hx = 0.5 + 0.25 * math.cos(0.7 * t)
        hy = 0.35 + 0.2 * math.sin(0.7 * t)
        h = ((x - hx) * self.cols) ** 2 + ((y - hy) * self.rows) ** 2
        hot = 70.0 + 10.0 * math.sin(0.25 * t)
        spot = np.exp(-h / (2 * (self.cols / 60.0) ** 2))
        celsius = celsius + spot * (hot - celsius)
        noise = self.rng.normal(0.0, 0.05, celsius.shape)  # sensor noise, ~50 mK
        counts = np.rint((celsius + noise + ZERO_C) / self.kelvin_per_count)
        return np.clip(counts, 0, 65535).astype(np.uint16)

    # -- the byte stream

    def next_period(self) -> bytes:
        """The bytes of one VoSPI frame period: discards, then the next frame (faults applied)."""
        index = self.frame_counter // self.unique_every
        if index != self._scene_index:
            self._scene = self.scene(index)
            self._scene_index = index
        image = self._scene
        f = self.faults
        parts = [vospi.discard_packets(int(self.rng.integers(*self.discards)))]
        if f.garbage and self.rng.random() < f.garbage:
            size = int(self.rng.integers(1, f.garbage_bytes + 1))
            parts.append(self.rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        if f.invalid_segments and self.sensor == "lepton3" and self.rng.random() < f.invalid_segments:
            parts.append(vospi.invalid_segment(self.sensor, self.telemetry))
        frame = self._frame_bytes(image)
        intact = True
        if f.crc or f.lost:
            frame, intact = self._damage(frame)
        parts.append(frame)
        self.last_image = image
        self.last_intact = intact
        self.frame_counter += 1
        return b"".join(parts)

    def _frame_bytes(self, image: np.ndarray) -> bytes:
        t = self.frame_counter / self.fps
        return vospi.encode_frame(image, self.sensor, self.telemetry,
                                  frame_counter=self.frame_counter,
                                  fpa_temp_k=300.0 + 0.5 * math.sin(t / 60.0), ffc_state=3,
                                  time_ms=int(t * 1000))

    def _damage(self, frame: bytes) -> tuple[bytes, bool]:
        packets = np.frombuffer(frame, dtype=np.uint8).reshape(-1, vospi.PACKET_BYTES).copy()
        n = len(packets)
        f = self.faults
        corrupt = np.flatnonzero(self.rng.random(n) < f.crc)
        for i in corrupt.tolist():
            # Only bits the CRC covers (not the ID's top nibble, which carries TTT unprotected).
            for _ in range(int(self.rng.integers(1, 4))):
                bit = int(self.rng.integers(4, vospi.PACKET_BYTES * 8))
                packets[i, bit // 8] ^= 0x80 >> (bit % 8)
        keep = self.rng.random(n) >= f.lost
        intact = bool(keep.all()) and corrupt.size == 0
        return packets[keep].tobytes(), intact
