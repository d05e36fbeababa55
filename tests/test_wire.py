"""The wire format between stages: messages come back as they were sent; bad ones raise WireError."""
from __future__ import annotations

import json

import numpy as np
import pytest

from flirstream import radiometric, wire


def thermal(**changes) -> wire.Frame:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) + 29_000
    measured = dict(t_measured=1.6, unit="C",
                    stats={"min": 16.85, "max": 16.96, "min_xy": [0, 0], "max_xy": [3, 2]},
                    regions={"kiln": {"min": 16.9, "max": 16.96, "mean": 16.93, "max_xy": [3, 2]}})
    values = dict(seq=7, t=1.5, sensor="lepton3", pixels=pixels,
                  telemetry={"frame_counter": 499}, counters={"capture": {"frames": 7}})
    measured.update((k, v) for k, v in changes.items() if k in measured)
    values.update((k, v) for k, v in changes.items() if k not in measured)
    return wire.Frame(**values, measurement=wire.Measurement(**measured))


def test_thermal_frames_come_back_as_sent():
    sent = thermal()
    got = wire.unpack_thermal([bytes(p) for p in wire.pack_thermal(sent)])
    assert np.array_equal(got.pixels, sent.pixels) and got.pixels.dtype == np.uint16
    for name in ("seq", "t", "sensor", "tlinear", "kelvin_per_count", "telemetry", "counters"):
        assert getattr(got, name) == getattr(sent, name), name
    for name in ("t_measured", "unit", "stats", "regions"):
        assert getattr(got.measurement, name) == getattr(sent.measurement, name), name
    assert wire.topic_of(wire.pack_thermal(sent)) == wire.THERMAL_TOPIC
    assert got.measurement.radiometric is None  # none made: the part is empty


def test_a_thermal_frame_carries_its_radiometric_payload():
    sent = thermal()
    sent.measurement.radiometric = payload = radiometric.encode(sent.pixels)
    got = wire.unpack_thermal([bytes(p) for p in wire.pack_thermal(sent)])
    assert got.measurement.radiometric == payload
    assert np.array_equal(radiometric.decode(got.measurement.radiometric), sent.pixels)


@pytest.mark.parametrize("bad", [b"RAD", b"JPEG" + bytes(6), "other shape", "step 0"])
def test_a_radiometric_part_that_does_not_fit_the_frame_is_a_wire_error(bad):
    frame = thermal()
    parts = [bytes(p) for p in wire.pack_thermal(frame)]
    if bad == "other shape":
        bad = radiometric.encode(frame.pixels[:, :-1].copy())
    elif bad == "step 0":
        bad = radiometric.HEADER.pack(radiometric.MAGIC, *frame.pixels.shape, 0)
    with pytest.raises(wire.WireError, match="radiometric part"):
        wire.unpack_thermal(parts[:3] + [bad])
    with pytest.raises(wire.WireError, match="3 parts, expected 4"):
        wire.unpack_thermal(parts[:3])


@pytest.mark.parametrize("field, value", [("stats", None), ("regions", [1]), ("seq", "7"),
                                          ("shape", [3, 5]), ("v", 2)])
def test_bad_thermal_headers_are_wire_errors(field, value):
    topic, head, pixels, rad = wire.pack_thermal(thermal())
    header = json.loads(head)
    header[field] = value
    with pytest.raises(wire.WireError):
        wire.unpack_thermal([topic, json.dumps(header).encode(), bytes(pixels), rad])


def test_a_thermal_frame_with_nan_is_refused_when_sent():
    with pytest.raises(ValueError):
        wire.pack_thermal(thermal(stats={"max": float("nan")}))


def raw(**changes) -> wire.Frame:
    values = dict(seq=3, t=2.5, sensor="lepton3",
                  pixels=np.arange(12, dtype=np.uint16).reshape(3, 4) + 8000)
    values.update(changes)
    return wire.Frame(**values)


@pytest.mark.parametrize("changes, meaning", [
    ({}, "kelvin_x100"), ({"kelvin_per_count": 0.1}, "kelvin_x10"),
    ({"tlinear": False}, "raw_counts"), ({"tlinear": False, "meaning": "agc_8bit"}, "agc_8bit"),
    ({"tlinear": True, "kelvin_per_count": 0.1, "meaning": "kelvin_x10"}, "kelvin_x10")])
def test_raw_frames_say_what_their_pixels_mean(changes, meaning):
    got = wire.unpack_raw([bytes(p) for p in wire.pack_raw(raw(**changes))])
    assert got.meaning == meaning and got.tlinear == (meaning.startswith("kelvin"))


@pytest.mark.parametrize("header_changes, text", [
    ({"meaning": "celsius"}, "expected one of kelvin_x100"),
    ({"meaning": "raw_counts", "tlinear": True}, "contradicts tlinear"),
    ({"meaning": "kelvin_x10", "tlinear": False}, "contradicts tlinear")])
def test_a_meaning_that_is_unknown_or_contradicts_tlinear_is_a_wire_error(header_changes, text):
    topic, head, pixels = wire.pack_raw(raw())
    header = {**json.loads(head), **header_changes}
    with pytest.raises(wire.WireError, match=text):
        wire.unpack_raw([topic, json.dumps(header).encode(), bytes(pixels)])


def test_a_raw_header_of_an_older_capture_without_meaning_is_read_from_tlinear():
    topic, head, pixels = wire.pack_raw(raw(tlinear=False))
    header = json.loads(head)
    del header["meaning"]
    assert wire.unpack_raw([topic, json.dumps(header).encode(), bytes(pixels)]).meaning == \
        "raw_counts"


def pictured(**changes) -> wire.Frame:
    frame = thermal()
    frame.picture = wire.Picture(
        t_encoded=1.7, jpeg=b"\xff\xd8 a JPEG \xff\xd9", pixels=frame.pixels.T.copy(), width=12,
        height=16, palette="ironbow", agc="linear", unit="C", range=(16.85, 16.96),
        stats={"min": 16.85, "max": 16.96, "min_xy": [0, 0], "max_xy": [2, 3]}, **changes)
    return frame


def test_image_frames_come_back_as_sent_with_the_pictures_own_pixels():
    sent = pictured()
    got = wire.unpack_image([bytes(p) for p in wire.pack_image(sent)])
    assert got.pixels is None  # the image topic carries the picture's pixels, not the camera's
    assert np.array_equal(got.picture.pixels, sent.picture.pixels)
    for name in ("t_encoded", "jpeg", "width", "height", "palette", "agc", "unit", "range",
                 "stats"):
        assert getattr(got.picture, name) == getattr(sent.picture, name), name
    for name in ("seq", "t", "sensor", "tlinear", "kelvin_per_count", "meaning", "telemetry",
                 "counters"):
        assert getattr(got, name) == getattr(sent, name), name


def test_every_topic_keeps_the_header_keys_older_peers_read():
    frame = pictured()
    keys = {topic: set(json.loads(parts[1])) for topic, parts in (
        ("raw", wire.pack_raw(frame)), ("thermal", wire.pack_thermal(frame)),
        ("image", wire.pack_image(frame)))}
    capture = {"v", "seq", "t", "sensor", "shape", "tlinear", "kelvin_per_count", "meaning",
               "telemetry", "counters"}
    assert keys["raw"] == capture
    assert keys["thermal"] == capture | {"t_measured", "unit", "stats", "regions"}
    assert keys["image"] == capture | {"t_encoded", "width", "height", "palette", "agc", "unit",
                                       "range", "stats"}
    assert json.loads(wire.pack_raw(frame)[1])["counters"] == {"frames": 7}  # capture's own
    assert wire.unpack_raw(wire.pack_raw(frame)).counters == {"capture": {"frames": 7}}


def test_a_frame_without_the_annotation_a_topic_carries_is_refused_when_sent():
    frame = wire.Frame(seq=1, t=1.0, sensor="lepton3", pixels=np.zeros((2, 2), np.uint16))
    for pack, name in ((wire.pack_image, "picture"), (wire.pack_thermal, "measurement")):
        with pytest.raises(ValueError, match=f"no {name}"):
            pack(frame)
