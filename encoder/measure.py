"""Measurements on every frame, watched or not: what alarms, MQTT and the history are made of.

The picture pauses when nobody watches; measurements never do (a camera that watches a printer at
night has no viewer). They work on the frame as the camera delivered it, before rotate/flip, so a
region's coordinates are sensor pixels whatever the mounting. Plain code, no sockets.
"""
from __future__ import annotations

import time
from typing import Callable

from flirstream import wire

from .render import Units, statistics


class Meter:
    """RawFrame -> ThermalFrame: the frame's statistics (and, with regions, their readings)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock

    def measure(self, raw: wire.RawFrame, counters: dict) -> wire.ThermalFrame:
        unit = Units(raw.tlinear, raw.kelvin_per_count)
        return wire.ThermalFrame(
            seq=raw.seq, t=raw.t, t_measured=self.clock(), sensor=raw.sensor, pixels=raw.pixels,
            unit=unit.name, stats=statistics(raw.pixels, unit), regions={}, tlinear=raw.tlinear,
            kelvin_per_count=raw.kelvin_per_count, telemetry=raw.telemetry, meaning=raw.meaning,
            counters={"capture": raw.counters, "encoder": counters})
