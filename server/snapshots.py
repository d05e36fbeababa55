"""Snapshot files of one frame: the JPEG, a 16-bit TIFF of the raw values, a CSV of temperatures."""
from __future__ import annotations

import io
import time

import numpy as np

from flirstream.wire import ImageFrame

KELVIN_AT_0C = 273.15
MEANING_TEXT = {"kelvin_x100": "kelvin x 100 (TLinear, 0.01 K)",
                "kelvin_x10": "kelvin x 10 (TLinear, 0.1 K)",
                "raw_counts": "raw 14-bit counts (relative values)",
                "agc_8bit": "8-bit AGC output (relative values)"}


def filename(frame: ImageFrame, extension: str) -> str:
    """e.g. lepton-20261127T044833.123Z-seq42.tiff (capture time, UTC)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(frame.t))
    millis = int((frame.t % 1) * 1000)
    # A TIFF of values that are not temperatures says what they are in its name too.
    what = "" if frame.tlinear or extension != "tiff" else f"-{frame.meaning.replace('_', '-')}"
    return f"lepton-{stamp}.{millis:03d}Z-seq{frame.seq}{what}.{extension}"


def tiff(frame: ImageFrame) -> bytes:
    """The radiometric pixels as they came (TLinear kelvin, raw counts or AGC output), 16-bit
    greyscale TIFF; its ImageDescription tag says which (MEANING_TEXT)."""
    import cv2  # only here: importing OpenCV adds ~0.2 s to the server's start-up
    ok, data = cv2.imencode(".tiff", np.ascontiguousarray(frame.pixels, dtype=np.uint16))
    if not ok:
        raise ValueError("OpenCV could not encode the frame as TIFF")
    return describe_tiff(data.tobytes(), f"flir-stream: {MEANING_TEXT.get(frame.meaning, frame.meaning)}")


def describe_tiff(data: bytes, text: str) -> bytes:
    """A TIFF with an ImageDescription (tag 270) added to its first IFD: the IFD is copied to the
    end of the file with the new entry (tags stay sorted), the header pointed at it."""
    import struct

    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    entries = [data[ifd + 2 + 12 * i: ifd + 14 + 12 * i] for i in range(count)]
    if any(struct.unpack_from(order + "H", e)[0] == 270 for e in entries):
        return data
    (next_ifd,) = struct.unpack_from(order + "I", data, ifd + 2 + 12 * count)
    note = text.encode("ascii", "replace") + b"\0"
    out = bytearray(data)
    if len(out) % 2:
        out += b"\0"
    note_at = len(out)
    out += note + (b"\0" if len(note) % 2 else b"")
    entries.append(struct.pack(order + "HHII", 270, 2, len(note), note_at))
    entries.sort(key=lambda e: struct.unpack_from(order + "H", e)[0])
    new_ifd = len(out)
    out += struct.pack(order + "H", len(entries)) + b"".join(entries) + \
        struct.pack(order + "I", next_ifd)
    struct.pack_into(order + "I", out, 4, new_ifd)
    return bytes(out)


def csv(frame: ImageFrame) -> bytes:
    """One line per pixel row: degrees C with TLinear (2 decimals at 0.01 K), else raw counts."""
    out = io.StringIO()
    if frame.tlinear:
        celsius = frame.pixels.astype(np.float64) * frame.kelvin_per_count - KELVIN_AT_0C
        decimals = 2 if frame.kelvin_per_count < 0.1 else 1
        np.savetxt(out, celsius, fmt=f"%.{decimals}f", delimiter=",")
    else:
        np.savetxt(out, frame.pixels, fmt="%d", delimiter=",")
    return out.getvalue().encode("ascii")
