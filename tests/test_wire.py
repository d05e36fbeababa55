"""The wire format between stages: messages come back as they were sent; bad ones raise WireError."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from flirstream import radiometric, wire


STATS = {"min": 16.85, "max": 16.96, "mean": 16.9, "centre": 16.91, "min_xy": [0, 0],
         "max_xy": [3, 2]}


def thermal(**changes) -> wire.Frame:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) + 29_000
    measured = dict(t_measured=1.6, unit="C", stats=dict(STATS),
                    regions={"kiln": {"min": 16.9, "max": 16.96, "mean": 16.93, "max_xy": [3, 2]}})
    values = dict(seq=7, t=1.5, sensor="lepton3", pixels=pixels, telemetry={"frame_counter": 499})
    measured.update((k, v) for k, v in changes.items() if k in measured)
    values.update((k, v) for k, v in changes.items() if k not in measured)
    return wire.Frame(**values, measurement=wire.Measurement(**measured))


CAPTURE_FIELDS = ("seq", "t", "sensor", "tlinear", "kelvin_per_count", "meaning", "telemetry")


def test_thermal_frames_come_back_as_sent():
    sent = thermal()
    got = wire.unpack_thermal([bytes(p) for p in wire.pack_thermal(sent)])
    assert np.array_equal(got.pixels, sent.pixels) and got.pixels.dtype == np.uint16
    for name in CAPTURE_FIELDS:
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


def test_a_lossless_payload_stands_for_the_pixels_until_they_are_asked_for():
    sent = thermal()
    sent.measurement.radiometric = radiometric.encode(sent.pixels)
    parts = [bytes(p) for p in wire.pack_thermal(sent)]
    assert parts[2] == b""  # no pixel part: the payload says the same, exactly
    got = wire.unpack_thermal(parts)
    assert got.shape == (3, 4) and "_encoded" in vars(got) and vars(got)["_encoded"]  # not decoded
    assert np.array_equal(got.pixels, sent.pixels) and got.pixels.dtype == np.uint16
    assert vars(got)["_encoded"] is None  # decoded once, kept
    again = wire.unpack_thermal([bytes(p) for p in wire.pack_thermal(got)])  # sent on as it came
    assert np.array_equal(again.pixels, sent.pixels)
    got.pixels = np.zeros((3, 4), np.uint16)  # set: the payload no longer stands for them
    assert not got.pixels.any() and got.shape == (3, 4)


def test_a_lossy_payload_travels_with_the_pixels():
    sent = thermal()
    sent.measurement.radiometric = radiometric.encode(sent.pixels, step=3)  # within 1 count only
    parts = [bytes(p) for p in wire.pack_thermal(sent)]
    assert parts[2] == sent.pixels.astype("<u2").tobytes()
    with pytest.raises(wire.WireError, match="without pixels, and its radiometric part is not lossless"):
        wire.unpack_thermal(parts[:2] + [b""] + parts[3:])


def test_a_thermal_message_with_neither_pixels_nor_payload_is_a_wire_error():
    parts = [bytes(p) for p in wire.pack_thermal(thermal())]
    with pytest.raises(wire.WireError, match="pixel part is 0 bytes"):
        wire.unpack_thermal(parts[:2] + [b""] + parts[3:])


def test_a_bad_payload_standing_for_the_pixels_is_a_wire_error_when_they_are_asked_for():
    sent = thermal()
    sent.measurement.radiometric = radiometric.encode(sent.pixels)
    topic, head, pixels, good = [bytes(p) for p in wire.pack_thermal(sent)]
    got = wire.unpack_thermal([topic, head, pixels, good[:radiometric.HEADER.size] + b"garbage"])
    with pytest.raises(wire.WireError, match="radiometric part: radiometric frame"):
        got.pixels


def test_a_payload_not_of_the_pixels_shape_is_not_sent():
    sent = thermal()
    sent.measurement.radiometric = radiometric.encode(sent.pixels[:, :-1].copy())
    with pytest.raises(ValueError, match="not of its pixels' shape"):
        wire.pack_thermal(sent)


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


def with_values(head: bytes, topic: bytes, **changes) -> bytes:
    """A frame header with some of its block's values changed (by index: v2=seq, v5=rows...)."""
    block = wire.FRAME_BLOCKS[topic]
    values = list(block.unpack_from(head))
    for name, value in changes.items():
        values[int(name[1:])] = value
    return block.pack(*values) + head[block.size:]


def thermal_head(change) -> bytes:
    head = bytes(wire.pack_thermal(thermal())[1])
    return change(head) if callable(change) else change


@pytest.mark.parametrize("change, why", [
    (lambda h: h[:20], "is 20 bytes, its block alone is"),
    (b'{"v": 1, "seq": 7}', "JSON: sent by a stage of an older flir-stream"),
    (lambda h: b"XY" + h[2:], "starts with b'XY'"),
    (lambda h: h[:2] + bytes([wire.FRAME_VERSION + 1]) + h[3:],
     f"frame format version {wire.FRAME_VERSION + 1}, this program reads {wire.FRAME_VERSION}"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v4=9), "sensor code 9"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v7=9), "meaning code 9"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v10=9), "unit code 9"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v3=float("nan")), "holds nan"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v12=float("-inf")), "holds -inf"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v6=5), "shape [3, 5] needs 30"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v5=0), "bad shape [0, 4]"),
    (lambda h: with_values(h, wire.THERMAL_TOPIC, v5=5000), "bad shape [5000, 4]"),
    (lambda h: h[:wire.FRAME_BLOCKS[wire.THERMAL_TOPIC].size] + b"[1]", "tail is not a JSON object"),
    (lambda h: h[:wire.FRAME_BLOCKS[wire.THERMAL_TOPIC].size] + b'{"regions": [1]}', "'regions'"),
    (lambda h: h[:wire.FRAME_BLOCKS[wire.THERMAL_TOPIC].size] + b'{"a": NaN}', "NaN"),
    (lambda h: h + b"x", "not JSON"),
])
def test_bad_thermal_headers_are_wire_errors_naming_the_problem(change, why):
    topic, head, pixels, rad = wire.pack_thermal(thermal())
    with pytest.raises(wire.WireError, match=re.escape(why)):
        wire.unpack_thermal([topic, thermal_head(change), bytes(pixels), rad])


@pytest.mark.parametrize("changes, why", [
    ({"stats": {**STATS, "max": float("nan")}}, "nan in its header"),
    ({"stats": {**STATS, "mean": float("inf")}}, "inf in its header"),
    ({"stats": {**STATS, "centre": np.float32("nan")}}, "nan) in its header"),  # numpy's too
    ({"stats": {"min": 1.0}}, "stats"),
    ({"stats": {**STATS, "max_xy": [-1, 2]}}, "cannot pack its header"),
    ({"telemetry": {"x": float("nan")}}, "Out of range float"),
    ({"sensor": "lepton9"}, "sensor 'lepton9' is not one of lepton2, lepton3"),
    ({"unit": "K"}, "unit 'K' is not one of C, counts"),
    ({"seq": 2 ** 63}, "cannot pack"),
])
def test_a_thermal_frame_the_format_cannot_carry_is_refused_when_sent(changes, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        wire.pack_thermal(thermal(**changes))


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
    sent = raw(**changes)
    got = wire.unpack_raw([bytes(p) for p in wire.pack_raw(sent)])
    assert got.meaning == meaning and got.tlinear == (meaning.startswith("kelvin"))
    for name in CAPTURE_FIELDS:
        assert getattr(got, name) == getattr(sent, name), name


@pytest.mark.parametrize("changes, text", [
    ({"meaning": "celsius"}, "meaning 'celsius' is not one of kelvin_x100"),
    ({"meaning": "raw_counts", "tlinear": True}, "contradicts tlinear"),
    ({"meaning": "kelvin_x10", "tlinear": False}, "contradicts tlinear")])
def test_a_meaning_that_is_unknown_or_contradicts_tlinear_is_refused_when_sent(changes, text):
    with pytest.raises(ValueError, match=text):
        wire.pack_raw(raw(**changes))


def pictured(**changes) -> wire.Frame:
    frame = thermal()
    frame.picture = wire.Picture(
        t_encoded=1.7, jpeg=b"\xff\xd8 a JPEG \xff\xd9", pixels=frame.pixels.T.copy(), width=12,
        height=16, palette="ironbow", agc="linear", unit="C", range=(16.85, 16.96),
        stats={**STATS, "max_xy": [2, 3]}, **changes)
    return frame


def test_image_frames_come_back_as_sent_with_the_pictures_own_pixels():
    sent = pictured()
    got = wire.unpack_image([bytes(p) for p in wire.pack_image(sent)])
    assert got.pixels is None  # the image topic carries the picture's pixels, not the camera's
    assert np.array_equal(got.picture.pixels, sent.picture.pixels)
    for name in ("t_encoded", "jpeg", "width", "height", "palette", "agc", "unit", "range",
                 "stats"):
        assert getattr(got.picture, name) == getattr(sent.picture, name), name
    for name in CAPTURE_FIELDS:
        assert getattr(got, name) == getattr(sent, name), name


@pytest.mark.parametrize("tail, why", [(b"", "'palette' is None"),
                                       (b'{"palette": "jet", "agc": 3}', "'agc' is 3")])
def test_an_image_header_without_its_names_is_a_wire_error(tail, why):
    topic, head, jpeg, pixels = wire.pack_image(pictured())
    head = bytes(head)[:wire.FRAME_BLOCKS[topic].size] + tail
    with pytest.raises(wire.WireError, match=re.escape(why)):
        wire.unpack_image([topic, head, jpeg, bytes(pixels)])


def test_a_header_is_its_block_and_a_json_tail_of_the_fields_that_have_a_value():
    frame = pictured()
    bare = raw()  # no telemetry
    bare.measurement = dataclasses.replace(frame.measurement, regions={})

    def tail(topic, parts):
        head = bytes(parts[1])
        block = wire.FRAME_BLOCKS[topic]
        assert head[:3] == wire.FRAME_MAGIC + bytes([wire.FRAME_VERSION])
        return set(json.loads(head[block.size:])) if len(head) > block.size else set()

    assert tail(wire.RAW_TOPIC, wire.pack_raw(frame)) == {"telemetry"}
    assert tail(wire.THERMAL_TOPIC, wire.pack_thermal(frame)) == {"telemetry", "regions"}
    assert tail(wire.IMAGE_TOPIC, wire.pack_image(frame)) == {"telemetry", "palette", "agc"}
    assert tail(wire.RAW_TOPIC, wire.pack_raw(bare)) == set()  # the block alone
    assert tail(wire.THERMAL_TOPIC, wire.pack_thermal(bare)) == set()
    assert wire.unpack_thermal(wire.pack_thermal(bare)).measurement.regions == {}
    assert wire.unpack_raw(wire.pack_raw(bare)).telemetry is None
    assert len(wire.pack_raw(bare)[1]) == wire.FRAME_BLOCKS[wire.RAW_TOPIC].size == 33


def test_a_frame_without_the_annotation_a_topic_carries_is_refused_when_sent():
    frame = wire.Frame(seq=1, t=1.0, sensor="lepton3", pixels=np.zeros((2, 2), np.uint16))
    for pack, name in ((wire.pack_image, "picture"), (wire.pack_thermal, "measurement")):
        with pytest.raises(ValueError, match=f"no {name}"):
            pack(frame)


@pytest.mark.parametrize("topic", [wire.RAW_TOPIC, wire.THERMAL_TOPIC, wire.IMAGE_TOPIC])
def test_any_header_near_a_good_one_is_read_or_refused_with_a_wire_error(topic):
    from hypothesis import HealthCheck, given, settings
    from fuzz_support import frame_headers

    pack, unpack = {wire.RAW_TOPIC: (wire.pack_raw, wire.unpack_raw),
                    wire.THERMAL_TOPIC: (wire.pack_thermal, wire.unpack_thermal),
                    wire.IMAGE_TOPIC: (wire.pack_image, wire.unpack_image)}[topic]
    good = [bytes(p) for p in pack(pictured())]

    @settings(max_examples=400, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(frame_headers(good[1], topic))
    def one(head):
        try:
            frame = unpack([good[0], head, *good[2:]])
        except wire.WireError:
            return
        # what was read can be sent on again as it is (no value the format cannot carry)
        assert unpack([bytes(p) for p in pack(frame)]).seq == frame.seq

    one()
