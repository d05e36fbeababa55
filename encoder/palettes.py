"""Palettes: 256-entry BGR lookup tables, built once, applied with one OpenCV LUT call per frame.

The names are exactly flirstream.config.PALETTES. OpenCV's own colour maps are taken as OpenCV draws
them (applyColorMap on a 0..255 ramp; rainbow backwards, so that hot is red); the thermal classics are
built here from control points. In every palette with a warm and a cold end, the hot end is warm.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from flirstream.config import PALETTES

_OPENCV = {
    "jet": cv2.COLORMAP_JET,        # the seed's matplotlib "jet" look
    "inferno": cv2.COLORMAP_INFERNO,
    "turbo": cv2.COLORMAP_TURBO,
    "rainbow": cv2.COLORMAP_RAINBOW,
}
# OpenCV's rainbow runs red -> violet; on a thermal picture hot must be the warm end (red), as in
# jet and turbo, so it is taken backwards.
_REVERSED = frozenset({"rainbow"})

# Ironbow as thermal cameras draw it: black - blue - purple - red - orange - yellow - white.
# (position 0..1, R, G, B)
_IRONBOW = (
    (0.00, 0, 0, 0),
    (0.15, 30, 0, 120),
    (0.33, 130, 0, 155),
    (0.52, 210, 30, 80),
    (0.68, 245, 100, 10),
    (0.84, 255, 190, 0),
    (0.94, 255, 240, 110),
    (1.00, 255, 255, 255),
)

# Contrast: 16 bands of strongly different hues, each band dark-to-light, so equal temperatures
# show as clear contours (isotherm-like) and small differences across a band edge stand out.
_CONTRAST_HUES = (  # R, G, B at full brightness
    (40, 40, 255), (0, 200, 255), (0, 255, 90), (200, 255, 0),
    (255, 200, 0), (255, 90, 0), (255, 0, 60), (255, 0, 200),
)
_CONTRAST_BANDS = 16


def _from_points(points: Sequence[Sequence[float]]) -> np.ndarray:
    """(256, 1, 3) BGR table interpolated linearly between (position, R, G, B) control points."""
    pos = np.array([p[0] for p in points], dtype=np.float64) * 255.0
    ramp = np.arange(256, dtype=np.float64)
    rgb = np.stack([np.interp(ramp, pos, [p[c] for p in points]) for c in (1, 2, 3)], axis=1)
    return _table(rgb[:, ::-1])


def _table(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(np.rint(bgr), 0, 255).astype(np.uint8).reshape(256, 1, 3))


def _contrast() -> np.ndarray:
    width = 256 // _CONTRAST_BANDS
    rows = []
    for i in range(256):
        band, step = divmod(i, width)
        r, g, b = _CONTRAST_HUES[band % len(_CONTRAST_HUES)]
        # later bands are brighter overall; within a band 45% -> 100% brightness
        lift = 0.55 + 0.45 * band / (_CONTRAST_BANDS - 1)
        shade = (0.45 + 0.55 * step / (width - 1)) * lift
        rows.append((b * shade, g * shade, r * shade))
    return _table(np.array(rows))


def build(name: str) -> np.ndarray:
    """The (256, 1, 3) uint8 BGR lookup table of one palette (ValueError for an unknown name)."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    if name in _OPENCV:
        levels = 255 - ramp if name in _REVERSED else ramp
        return np.ascontiguousarray(cv2.applyColorMap(levels, _OPENCV[name]).reshape(256, 1, 3))
    if name == "ironbow":
        return _from_points(_IRONBOW)
    if name == "white-hot":
        return _table(np.repeat(ramp.astype(np.float64), 3, axis=1))
    if name == "black-hot":
        return _table(np.repeat(255.0 - ramp.astype(np.float64), 3, axis=1))
    if name == "contrast":
        return _contrast()
    raise ValueError(f"unknown palette {name!r} (expected one of {', '.join(PALETTES)})")


@lru_cache(maxsize=None)
def tables() -> dict[str, np.ndarray]:
    """Every palette's table, built once per process."""
    built = {name: build(name) for name in PALETTES}
    for table in built.values():
        table.setflags(write=False)  # shared: nobody may change a palette by accident
    return built


def lut(name: str) -> np.ndarray:
    try:
        return tables()[name]
    except KeyError:
        raise ValueError(f"unknown palette {name!r} (expected one of {', '.join(PALETTES)})") from None


# Element types whose size is a whole number of BGR pixels' worth of bytes divided by 3: a table of
# (256, 1, 3) such elements holds `factor` BGR pixels per grey level.
_WIDE_TYPES = {1: np.uint8, 2: np.uint16, 4: np.int32}
WIDE_FACTORS = tuple(_WIDE_TYPES)


@lru_cache(maxsize=64)
def wide_table(name: str, factor: int) -> np.ndarray:
    """A palette's table with each colour repeated `factor` times (1, 2 or 4), packed into wider
    elements: cv2.LUT then colours and widens the image `factor` times in one call."""
    if factor not in _WIDE_TYPES:
        raise ValueError(f"widening by {factor}: expected one of {', '.join(map(str, WIDE_FACTORS))}")
    repeated = np.ascontiguousarray(np.tile(lut(name).reshape(256, 3), (1, factor)))  # BGRBGR...
    table = repeated.view(_WIDE_TYPES[factor]).reshape(256, 1, 3)
    table.setflags(write=False)
    return table


def colorize_wide(gray: np.ndarray, table: np.ndarray) -> np.ndarray:
    """8-bit image -> BGR image `factor` times as wide (nearest), through a wide_table().

    The LUT copies each grey pixel's (factor x 3)-byte entry, which is the same colour `factor` times
    side by side: the horizontal half of a nearest-neighbour upscale for free (twice as fast as
    colouring and then cv2.resize)."""
    rows, cols = gray.shape
    factor = table.dtype.itemsize
    out = cv2.LUT(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), table)
    return out.view(np.uint8).reshape(rows, cols * factor, 3)


def colorize(gray: np.ndarray, table: np.ndarray) -> np.ndarray:
    """8-bit image -> BGR image through a (256, 1, 3) table.

    applyColorMap with a user table is OpenCV's gray->BGR + LUT in one call; measured here it is
    about twice as fast as cvtColor followed by cv2.LUT on the 3-channel image."""
    return cv2.applyColorMap(gray, table)
