"""Snapshot files of one frame: the JPEG, a 16-bit TIFF of the raw values, a CSV of temperatures."""
from __future__ import annotations

import io
import time

import numpy as np

from flirstream.wire import ImageFrame

KELVIN_AT_0C = 273.15


def filename(frame: ImageFrame, extension: str) -> str:
    """e.g. lepton-20261127T044833.123Z-seq42.tiff (capture time, UTC)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(frame.t))
    millis = int((frame.t % 1) * 1000)
    return f"lepton-{stamp}.{millis:03d}Z-seq{frame.seq}.{extension}"


def tiff(frame: ImageFrame) -> bytes:
    """The radiometric pixels as they came (TLinear counts or raw counts), 16-bit greyscale TIFF."""
    import cv2  # only here: importing OpenCV adds ~0.2 s to the server's start-up
    ok, data = cv2.imencode(".tiff", np.ascontiguousarray(frame.pixels, dtype=np.uint16))
    if not ok:
        raise ValueError("OpenCV could not encode the frame as TIFF")
    return data.tobytes()


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
