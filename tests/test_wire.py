"""The wire format between stages: messages come back as they were sent; bad ones raise WireError."""
from __future__ import annotations

import json

import numpy as np
import pytest

from flirstream import wire


def thermal(**changes) -> wire.ThermalFrame:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) + 29_000
    values = dict(seq=7, t=1.5, t_measured=1.6, sensor="lepton3", pixels=pixels, unit="C",
                  stats={"min": 16.85, "max": 16.96, "min_xy": [0, 0], "max_xy": [3, 2]},
                  regions={"kiln": {"min": 16.9, "max": 16.96, "mean": 16.93, "max_xy": [3, 2]}},
                  telemetry={"frame_counter": 499}, counters={"capture": {"frames": 7}})
    values.update(changes)
    return wire.ThermalFrame(**values)


def test_thermal_frames_come_back_as_sent():
    sent = thermal()
    got = wire.unpack_thermal([bytes(p) for p in wire.pack_thermal(sent)])
    assert np.array_equal(got.pixels, sent.pixels) and got.pixels.dtype == np.uint16
    for name in ("seq", "t", "t_measured", "sensor", "unit", "stats", "regions", "tlinear",
                 "kelvin_per_count", "telemetry", "counters"):
        assert getattr(got, name) == getattr(sent, name), name
    assert wire.topic_of(wire.pack_thermal(sent)) == wire.THERMAL_TOPIC


@pytest.mark.parametrize("field, value", [("stats", None), ("regions", [1]), ("seq", "7"),
                                          ("shape", [3, 5]), ("v", 2)])
def test_bad_thermal_headers_are_wire_errors(field, value):
    topic, head, pixels = wire.pack_thermal(thermal())
    header = json.loads(head)
    header[field] = value
    with pytest.raises(wire.WireError):
        wire.unpack_thermal([topic, json.dumps(header).encode(), bytes(pixels)])


def test_a_thermal_frame_with_nan_is_refused_when_sent():
    with pytest.raises(ValueError):
        wire.pack_thermal(thermal(stats={"max": float("nan")}))
