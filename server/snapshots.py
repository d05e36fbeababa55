"""Snapshot files of one frame: the JPEG, a 16-bit TIFF of the raw values, a CSV of temperatures."""
from __future__ import annotations

import io
import json
import struct
import time

import numpy as np

from flirstream.wire import KELVIN_AT_0C, Frame

MEANING_TEXT = {"kelvin_x100": "kelvin x 100 (TLinear, 0.01 K)",
                "kelvin_x10": "kelvin x 10 (TLinear, 0.1 K)",
                "raw_counts": "raw 14-bit counts (relative values)",
                "agc_8bit": "8-bit AGC output (relative values)"}


def filename(frame: Frame, extension: str) -> str:
    """e.g. lepton-20261127T044833.123Z-seq42.tiff (capture time, UTC)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(frame.t))
    millis = int((frame.t % 1) * 1000)
    # A TIFF of values that are not temperatures says what they are in its name too.
    what = "" if frame.tlinear or extension != "tiff" else f"-{frame.meaning.replace('_', '-')}"
    return f"lepton-{stamp}.{millis:03d}Z-seq{frame.seq}{what}.{extension}"


def description(frame: Frame) -> dict:
    """What a TIFF's pixels mean, for its ImageDescription (JSON, so tools can read it back)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(frame.t)) + f".{int((frame.t % 1) * 1000):03d}Z"
    about = {"source": "flir-stream", "sensor": frame.sensor, "seq": frame.seq, "capture_time": when,
             "capture_time_unix": round(frame.t, 3), "tlinear": bool(frame.tlinear)}
    if frame.tlinear:
        about.update(unit="kelvin", kelvin_per_count=frame.kelvin_per_count,
                     meaning=f"kelvin = value * {frame.kelvin_per_count:g}; "
                             f"degrees C = value * {frame.kelvin_per_count:g} - {KELVIN_AT_0C}")
    else:
        about.update(unit="counts", kelvin_per_count=None,
                     meaning=f"{MEANING_TEXT.get(frame.meaning, frame.meaning)}: not temperatures "
                             f"(no temperature scale)")
    about["pixels"] = frame.meaning  # kelvin_x100, kelvin_x10, raw_counts or agc_8bit
    return about


_SHORT, _LONG, _ASCII = 3, 4, 2


def pixels_of(frame: Frame) -> np.ndarray:
    """The picture's pixels when the frame has one (so the TIFF lies like the JPEG), else the
    pixels as the camera delivered them (an alarm's measured frame)."""
    return frame.picture.pixels if frame.picture is not None else frame.pixels


def tiff(frame: Frame) -> bytes:
    """The radiometric pixels as they came (TLinear counts, raw counts or AGC output), a 16-bit greyscale
    baseline TIFF (little-endian, one uncompressed strip) that explains itself: ImageDescription
    holds description(frame) as JSON, DateTime the capture time (UTC), Software flir-stream.
    (OpenCV, which encoded it before, cannot write these tags.)"""
    pixels = np.ascontiguousarray(pixels_of(frame), dtype="<u2")
    rows, cols = pixels.shape
    data = pixels.tobytes()
    text = json.dumps(description(frame), separators=(", ", ": ")).encode("ascii") + b"\0"
    stamp = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(frame.t)).encode("ascii") + b"\0"
    data_at = 8
    ifd_at = data_at + len(data) + (len(data) & 1)  # TIFF offsets are word aligned
    entries = [  # (tag, type, value): tags in ascending order, as TIFF 6.0 requires
        (256, _LONG, cols), (257, _LONG, rows), (258, _SHORT, 16), (259, _SHORT, 1),  # no compression
        (262, _SHORT, 1),  # BlackIsZero
        (270, _ASCII, text), (273, _LONG, data_at), (277, _SHORT, 1), (278, _LONG, rows),
        (279, _LONG, len(data)), (284, _SHORT, 1), (305, _ASCII, b"flir-stream\0"),
        (306, _ASCII, stamp), (339, _SHORT, 1),  # SampleFormat: unsigned integer
    ]
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, extra = [struct.pack("<H", len(entries))], []
    for tag, kind, value in entries:
        if kind == _ASCII:
            offset = extra_at + sum(len(e) for e in extra)
            extra.append(value + (b"\0" if len(value) & 1 else b""))
            ifd.append(struct.pack("<HHII", tag, kind, len(value), offset))
        elif kind == _SHORT:
            ifd.append(struct.pack("<HHIHH", tag, kind, 1, value, 0))
        else:
            ifd.append(struct.pack("<HHII", tag, kind, 1, value))
    ifd.append(struct.pack("<I", 0))  # no next IFD
    head = b"II" + struct.pack("<HI", 42, ifd_at)
    return b"".join([head, data, b"\0" * (ifd_at - data_at - len(data)), *ifd, *extra])


def csv(frame: Frame) -> bytes:
    """One line per pixel row: degrees C with TLinear (2 decimals at 0.01 K), else raw counts."""
    out = io.StringIO()
    if frame.tlinear:
        celsius = pixels_of(frame).astype(np.float64) * frame.kelvin_per_count - KELVIN_AT_0C
        decimals = 2 if frame.kelvin_per_count < 0.1 else 1
        np.savetxt(out, celsius, fmt=f"%.{decimals}f", delimiter=",")
    else:
        np.savetxt(out, pixels_of(frame), fmt="%d", delimiter=",")
    return out.getvalue().encode("ascii")
