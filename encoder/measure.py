"""Measurements on every frame, watched or not: what alarms, MQTT and the history are made of.

The picture pauses when nobody watches; measurements never do (a camera that watches a printer at
night has no viewer). They work on the frame as the camera delivered it, before rotate/flip, so a
region's coordinates are sensor pixels whatever the mounting. Plain code, no sockets.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from flirstream import wire
from flirstream.regions import Region, celsius, counts, measure

from .render import Units, statistics


class Meter:
    """Frame -> its Measurement: the frame's statistics and each region's readings (regions.measure:
    min, max, mean, max_xy; °C for TLinear frames, else raw counts)."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 regions: Callable[[], Iterable[Region]] = tuple):
        self.clock = clock
        self.regions = regions  # the regions to read, asked on every frame (they change at run time)

    def measure(self, frame: wire.Frame) -> wire.Measurement:
        unit = Units(frame.tlinear, frame.kelvin_per_count)
        regions = list(self.regions())
        readings = measure(frame.pixels, regions, celsius(frame.kelvin_per_count) if frame.tlinear
                           else counts)["regions"] if regions else {}
        return wire.Measurement(t_measured=self.clock(), unit=unit.name,
                                stats=statistics(frame.pixels, unit), regions=readings)
