"""The radiometric frame, compressed for the browser: each viewer paints its own view from it.

    payload = radiometric.encode(pixels)        # uint16 (rows, cols) -> bytes, once per frame
    pixels = radiometric.decode(payload)        # the inverse (web/thermal.js decode() in the browser)
    payload = radiometric.encode(pixels, step=3)  # values rounded to multiples of 3 counts

Lossless by default, and built for what a browser can undo cheaply: DecompressionStream("deflate")
plus one short loop (web/thermal.js). Layout, all little-endian:

    0  4 bytes  b"RAD2" (format, version 2)
    4  uint16   rows
    6  uint16   cols
    8  uint16   step: the values sent are round(pixel / step); the receiver multiplies back
   10  ...      zlib stream of the residual planes: rows x cols low bytes, then rows x cols high bytes

A value's residual is it minus the value before it in row-major order (the first: minus 0), plus
128, modulo 2^16, so residuals of -128..127 have a zero high byte. Split into byte planes the high
plane is almost all zeros, which deflate codes in a few hundred bytes, and the low plane holds the
sensor's noise. Undoing it is a running sum: numpy's cumsum here, one loop in the browser.

Why this one, measured on a real Lepton 3 recording (scripts/bench_radiometric.py): 11.2 KB a frame
with ISA-L's deflate (below) against 15.7 KB for plain zlib of the 16-bit values and ~70 KB for
today's 640x480 JPEG. RAD1 (until December 2026) predicted each pixel from the mean of its left and
upper neighbours and zigzagged the residual: 10.8 KB, 4 % smaller, but its encode took three times
the numpy calls (after a frame period's sleep each call costs far more than its arithmetic:
docs/PERFORMANCE.md, sixth pass) and its decode is a Python loop per pixel, where this one's is a
cumsum - what lets the encoder send a lossless frame to the server as RAD2 alone, without its
pixels (flirstream/wire.py). Predicting from the previous frame would halve the size again but
needs every viewer to get every frame (they skip frames when slow), so each frame stands alone.

`step`: TLinear frames count 0.01 K, five times finer than the sensor's raw counts (~50 mK, about
its noise), so the same scene costs more: real Lepton 3.5 TLinear images (tCam) take ~18 KB
lossless, ~14 KB with step 3 (values within 0.01 K) and ~12 KB with step 5 (0.025 K).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # ISA-L (the isal package: wheels for x86_64 and aarch64, so a 64-bit Pi OS)
    from isal import isal_zlib
except ImportError:  # e.g. a 32-bit Pi OS: zlib, the same format
    isal_zlib = None

MAGIC = b"RAD2"
HEADER = struct.Struct("<4sHHH")
# Z_RLE: only runs (the high plane) and Huffman codes (the noise in the low plane). Measured (on
# RAD1's residuals): as small as level 6's default strategy with Z_FILTERED and ~3x faster; the level
# does not matter for RLE.
LEVEL = 1
STRATEGY = zlib.Z_RLE
# ISA-L's level 1 where it is installed: the same zlib stream format, so the browser's
# DecompressionStream and decode() below read either. Measured on the real recording (RAD1), a
# frame after a frame period's sleep (cold caches): 0.10 ms against zlib Z_RLE's 0.21 ms, for
# 10.8 KB against 10.1 KB (docs/PERFORMANCE.md).
ISAL_LEVEL = 1
DEFLATE = "isa-l" if isal_zlib is not None else "zlib"


class RadiometricError(ValueError):
    """A payload that is not a radiometric frame this module wrote; str() says why."""


OFFSET = 128  # added to each residual: -128..127 -> a zero high byte


def residuals(pixels: np.ndarray) -> np.ndarray:
    """The residuals of a uint16 frame as the format defines them, flat (rows * cols) uint16.

    All in uint16, wrapping modulo 2^16 as the format does. Every numpy call counts: once per
    frame, after the loop has slept a frame period with cold caches, each call costs far more than
    its arithmetic (see docs/PERFORMANCE.md), so this is three calls on the frame."""
    flat = np.ascontiguousarray(pixels, np.uint16).reshape(-1)
    z = np.empty_like(flat)
    np.subtract(flat[1:], flat[:-1], out=z[1:])
    z[0] = flat[0]
    z += OFFSET
    return z


def encode(pixels: np.ndarray, step: int = 1) -> bytes:
    """A (rows, cols) uint16 frame -> payload bytes (see the module docstring); step 1: lossless,
    step n: every value within n // 2 counts."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint16 or pixels.ndim != 2 \
            or pixels.size == 0 or max(pixels.shape) > 0xFFFF:
        raise ValueError(f"expected a 2-D uint16 frame, got {getattr(pixels, 'dtype', type(pixels))} "
                         f"of shape {getattr(pixels, 'shape', '?')}")
    if not isinstance(step, int) or not 1 <= step <= 0xFFFF:
        raise ValueError(f"step {step!r}: expected a whole number of counts, 1..65535")
    if step > 1:
        pixels = ((pixels.astype(np.uint32) + step // 2) // step).astype(np.uint16)
    z = residuals(pixels)
    # the low bytes, then the high bytes: the little-endian values' bytes, transposed
    planes = np.ascontiguousarray(z.astype("<u2", copy=False).view(np.uint8).reshape(-1, 2).T)
    return HEADER.pack(MAGIC, *pixels.shape, step) + deflate(planes)


def deflate(planes: np.ndarray) -> bytes:
    """The zlib stream of the residual planes: ISA-L where installed, else zlib's Z_RLE."""
    if isal_zlib is not None:
        return isal_zlib.compress(planes, ISAL_LEVEL)
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, 15, 9, STRATEGY)
    return packer.compress(planes) + packer.flush()


def step_for(tlinear: bool, kelvin_per_count: float) -> int:
    """The step a camera frame is sent with: 3 for TLinear at 0.01 K (every value within one
    count, 0.01 K - five times finer than the sensor's own noise of ~50 mK - and the stream ~25 %
    smaller, under 15 KB a frame for a real scene's noise), else 1 (lossless: 0.1 K frames, raw
    counts, AGC)."""
    return 3 if tlinear and kelvin_per_count <= 0.01 else 1


def encode_frame(pixels: np.ndarray, tlinear: bool, kelvin_per_count: float) -> bytes:
    """A camera frame's payload for thermal-mode viewers (the encoder's, or the server's when the
    encoder made none), at step_for's step."""
    return encode(pixels.astype("=u2", copy=False), step=step_for(tlinear, kelvin_per_count))


def read_header(payload: bytes) -> tuple[int, int, int]:
    """(rows, cols, step) of a payload's header; RadiometricError if it is not one."""
    if len(payload) < HEADER.size:
        raise RadiometricError(f"radiometric frame: {len(payload)} bytes, shorter than its header")
    magic, rows, cols, step = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise RadiometricError(f"radiometric frame: starts with {magic!r}, expected {MAGIC!r}")
    if step == 0:
        raise RadiometricError("radiometric frame: step 0")
    return rows, cols, step


def decode(payload: bytes) -> np.ndarray:
    """Payload bytes -> the (rows, cols) uint16 frame; RadiometricError if it is not one."""
    rows, cols, step = read_header(payload)
    n = rows * cols
    inflater = zlib.decompressobj()
    try:  # (at most what the frame needs: a peer's payload cannot inflate without bound)
        planes = inflater.decompress(memoryview(payload)[HEADER.size:], 2 * n + 1)
    except zlib.error as exc:
        raise RadiometricError(f"radiometric frame: {exc}") from None
    if len(planes) > 2 * n:
        raise RadiometricError(f"radiometric frame: more than {2 * n} bytes of planes, {rows}x{cols} "
                               f"needs {2 * n}")
    if len(planes) < 2 * n:
        raise RadiometricError(f"radiometric frame: {len(planes)} bytes of planes, {rows}x{cols} "
                               f"needs {2 * n}")
    if not inflater.eof:
        raise RadiometricError("radiometric frame: its zlib stream is cut short")
    b = np.frombuffer(planes, np.uint8)
    z = b[:n].astype(np.uint16)
    z |= b[n:].astype(np.uint16) << 8
    z -= OFFSET
    values = np.cumsum(z, dtype=np.uint16).reshape(rows, cols)  # (wraps modulo 2^16, as sent)
    if step > 1:
        values = np.minimum(values.astype(np.uint32) * step, 0xFFFF).astype(np.uint16)
    return values
