"""CPTV v2 (the Cacophony Project's thermal video format) -> uint16 frames. Pure code, no I/O.

    recording = cptv.parse(open("v2.cptv", "rb").read())
    recording.cols, recording.rows, recording.header["device_name"]
    for frame in recording.frames: frame.pixels, frame.time_ms

Format (the project's SPECv2.md), all numbers little-endian. The whole file is gzip-compressed;
inside: b"CPTV", version 2, then a header section and frame sections. A section is a code byte
(b"H" header, b"F" frame), a field count, and that many fields; a field is its data length (uint8),
a code (one ASCII letter) and the data. A frame section is followed by `f` bytes of frame data.

Frame data (compression 1): an int32 (the first value), then rows x cols - 1 signed integers of
`w` bits, two's complement, packed most significant bit first. Their running sum starting from the
first value is the frame's delta from the previous frame (zeros before the first) in "snake"
order: even rows left to right, odd rows right to left.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

MAGIC = b"CPTV"

# Field code -> (name, struct format or None for text / raw bytes). Unknown codes are kept as bytes.
HEADER_FIELDS = {
    "T": ("timestamp_us", "<Q"), "X": ("cols", "<I"), "Y": ("rows", "<I"),
    "C": ("compression", "<B"), "D": ("device_name", None), "E": ("model", None),
    "B": ("brand", None), "I": ("device_id", "<I"), "P": ("preview_secs", "<B"),
    "M": ("motion_config", None), "Z": ("fps", "<B"), "L": ("latitude", "<f"),
    "O": ("longitude", "<f"), "S": ("loc_timestamp_us", "<Q"), "U": ("altitude", "<f"),
    "N": ("accuracy", "<f"), "K": ("background_frame", "<B"),
}
FRAME_FIELDS = {
    "t": ("time_ms", "<I"), "w": ("bit_width", "<B"), "f": ("data_bytes", "<I"),
    "c": ("last_ffc_ms", "<I"), "a": ("temp_c", "<f"), "b": ("last_ffc_temp_c", "<f"),
}


class CptvError(ValueError):
    """The bytes are not a CPTV v2 file this reader understands; str() says where and why."""


@dataclass
class Frame:
    pixels: np.ndarray  # (rows, cols) uint16 raw counts
    time_ms: Optional[int]  # since power-on
    fields: dict = field(default_factory=dict)


@dataclass
class Recording:
    header: dict
    frames: list

    @property
    def rows(self) -> int:
        return int(self.header["rows"])

    @property
    def cols(self) -> int:
        return int(self.header["cols"])


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise CptvError(f"CPTV: file ends inside {what} (byte {self.pos}, {n} needed, "
                            f"{len(self.data) - self.pos} left)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def fields(self, known: dict, what: str) -> dict:
        count = self.take(1, what)[0]
        values: dict[str, Any] = {}
        for _ in range(count):
            length, code = self.take(2, f"a {what} field")
            data = self.take(length, f"a {what} field")
            name, fmt = known.get(chr(code), (chr(code), None))
            if fmt is None:
                values[name] = data.decode("utf-8", "replace") if chr(code) in known else data
            elif struct.calcsize(fmt) != length:
                raise CptvError(f"CPTV: {what} field {chr(code)!r} ({name}) is {length} bytes, "
                                f"expected {struct.calcsize(fmt)}")
            else:
                values[name] = struct.unpack(fmt, data)[0]
        return values


def unpack_deltas(data: bytes, count: int, width: int) -> np.ndarray:
    """`count` signed `width`-bit integers packed MSB first -> int64 array."""
    if not 1 <= width <= 32:
        raise CptvError(f"CPTV: bit width {width}: expected 1..32")
    need = (count * width + 7) // 8
    if len(data) < need:
        raise CptvError(f"CPTV: frame data holds {len(data)} bytes of deltas, {count} x {width} "
                        f"bits need {need}")
    bits = np.unpackbits(np.frombuffer(data, np.uint8, count=need))[:count * width]
    weights = np.left_shift(np.int64(1), np.arange(width - 1, -1, -1, dtype=np.int64))
    values = bits.reshape(count, width).astype(np.int64) @ weights
    return np.where(values >= 1 << (width - 1), values - (1 << width), values)


def unsnake(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Snake order (odd rows right to left) -> row-major (rows, cols)."""
    image = values.reshape(rows, cols).copy()
    image[1::2] = image[1::2, ::-1]
    return image


def decode_frame(data: bytes, width: int, rows: int, cols: int) -> np.ndarray:
    """One frame's data -> its delta from the previous frame, (rows, cols) int64."""
    if len(data) < 4:
        raise CptvError(f"CPTV: frame data is {len(data)} bytes, shorter than its first value")
    first = struct.unpack("<i", data[:4])[0]
    steps = unpack_deltas(data[4:], rows * cols - 1, width)
    snake = np.concatenate(([first], first + np.cumsum(steps)))
    return unsnake(snake, rows, cols)


def parse(data: bytes) -> Recording:
    """A CPTV v2 file's bytes (gzip-compressed, as stored, or already decompressed) -> Recording."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CptvError(f"CPTV: gzip: {exc}") from None
    if data[:4] != MAGIC:
        raise CptvError(f"CPTV: starts with {data[:4]!r}, expected {MAGIC!r}")
    if data[4:5] != b"\x02":
        raise CptvError(f"CPTV: version {data[4:5].hex() or 'missing'}, only version 2 is read")
    r = _Reader(data)
    r.pos = 5
    if r.take(1, "the header") != b"H":
        raise CptvError("CPTV: no header section after the version")
    header = r.fields(HEADER_FIELDS, "header")
    for key in ("cols", "rows"):
        if not header.get(key):
            raise CptvError(f"CPTV: the header has no {key}")
    if header.get("compression", 1) != 1:
        raise CptvError(f"CPTV: compression {header['compression']}: only 1 (bit-packed deltas) "
                        f"is read")
    rows, cols = int(header["rows"]), int(header["cols"])
    frames = []
    previous = np.zeros((rows, cols), np.int64)
    while r.pos < len(data):
        index = len(frames)
        if r.take(1, f"frame {index}") != b"F":
            raise CptvError(f"CPTV: byte {r.pos - 1} should start frame {index} (b'F')")
        values = r.fields(FRAME_FIELDS, f"frame {index}")
        if "bit_width" not in values or "data_bytes" not in values:
            raise CptvError(f"CPTV: frame {index} lacks its bit width (w) or data size (f)")
        payload = r.take(values["data_bytes"], f"frame {index}'s data")
        current = previous + decode_frame(payload, values["bit_width"], rows, cols)
        if current.min() < 0 or current.max() > 0xFFFF:
            raise CptvError(f"CPTV: frame {index} decodes to values outside 0..65535 "
                            f"({current.min()}..{current.max()})")
        frames.append(Frame(current.astype(np.uint16), values.get("time_ms"), values))
        previous = current
    return Recording(header, frames)
