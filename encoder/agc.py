"""AGC: how 14/16-bit sensor values become 0..255 palette indices.

Each AGC takes a uint16 frame and returns (gray8, lo, hi): the 8-bit image and the sensor values
(counts) mapped to the palette's two ends. All work happens at sensor resolution (19 200 pixels for
a Lepton 3), so none of it needs to be clever, only free of full sorts and Python loops.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

# A flat scene (lens cap, shutter) would make lo == hi; spread it over at least this many counts so
# the picture is mid-palette instead of noise blown up to full contrast.
MIN_SPAN = 10.0


# OpenCV takes an array of four or fewer elements for a scalar, and then refuses "array - scalar";
# frames that small (any shape the wire format allows) go through numpy instead.
_TINY = 4


def subtract(pixels: np.ndarray, value: float) -> np.ndarray:
    """pixels - value, rounded and saturating at 0 (as cv2.subtract), for any frame size."""
    if pixels.size > _TINY:
        return cv2.subtract(pixels, value)
    return np.clip(np.rint(pixels.astype(np.float64) - value), 0, 65535).astype(pixels.dtype)


def histogram(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts of every value from the frame's minimum up: (counts, minimum)."""
    lo = int(cv2.minMaxLoc(pixels)[0])  # OpenCV calls: fewer Python layers than numpy's min
    return np.bincount(subtract(pixels, lo).ravel()), lo


def percentiles(pixels: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Nearest-rank percentiles of the frame, from a histogram (no sort)."""
    counts, base = histogram(pixels)
    cdf = np.cumsum(counts)
    n = int(cdf[-1])
    ranks = [round(low / 100.0 * (n - 1)), round(high / 100.0 * (n - 1))]
    lo, hi = np.searchsorted(cdf, ranks, side="right")
    return float(base + lo), float(base + hi)


def stretch(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map lo..hi linearly onto 0..255, clipping outside (two saturating OpenCV calls)."""
    shifted = subtract(pixels, float(lo))  # saturates at 0: below lo -> 0
    return cv2.convertScaleAbs(shifted, alpha=255.0 / (hi - lo))  # saturates at 255


def _widen(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo >= MIN_SPAN:
        return lo, hi
    mid = (lo + hi) / 2.0
    return mid - MIN_SPAN / 2.0, mid + MIN_SPAN / 2.0


class LinearAGC:
    """Frame range between two percentiles, smoothed over time so brightness does not flicker."""

    name = "linear"

    def __init__(self, clip_percent: tuple[float, float] = (1.0, 99.0), smoothing: float = 0.8):
        self.clip_percent = clip_percent
        self.smoothing = smoothing
        self._range: Optional[tuple[float, float]] = None
        self._shape: Optional[tuple[int, ...]] = None

    def reset(self) -> None:
        self._range = None

    def continue_from(self, other: "LinearAGC") -> None:
        """Start from another instance's smoothed range (after a settings change)."""
        self._range, self._shape = other._range, other._shape

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, float, float]:
        lo, hi = percentiles(pixels, *self.clip_percent)
        if self._range is not None and self._shape == pixels.shape:
            w = self.smoothing
            lo = w * self._range[0] + (1.0 - w) * lo
            hi = w * self._range[1] + (1.0 - w) * hi
        self._range, self._shape = (lo, hi), pixels.shape
        lo, hi = _widen(lo, hi)
        return stretch(pixels, lo, hi), lo, hi


class HistogramAGC:
    """Histogram equalisation on the full 16-bit values, like the Lepton's own HEQ."""

    name = "histogram"

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, float, float]:
        counts, base = histogram(pixels)
        cdf = np.cumsum(counts)
        first, n = int(cdf[0]), int(cdf[-1])  # cdf[0]: pixels at the minimum, which map to 0
        if n == first:  # flat frame: nothing to equalise
            return np.full(pixels.shape, 128, np.uint8), float(base), float(base)
        table = np.rint((cdf - first) * (255.0 / (n - first))).astype(np.uint8)
        gray = np.take(table, pixels - np.uint16(base))
        return gray, float(base), float(base + len(counts) - 1)


class FixedAGC:
    """A fixed range of sensor values (from a °C range on TLinear frames)."""

    name = "fixed"

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, hi

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, float, float]:
        return stretch(pixels, self.lo, self.hi), self.lo, self.hi
