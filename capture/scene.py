"""A real Lepton's roughness for the simulated scene: fixed pattern, texture, slow noise, drift.

    noise = SensorNoise(120, 160, seed=0)
    celsius = smooth_scene + noise.kelvin(t)     # one unique frame; call once per frame, in order

The simulator's scene (capture/sim.py) is a smooth function of time; a real sensor's picture is
not. The figures below were measured on a real Lepton 3 recording of raw counts
(../shared/realdata/cacophony-v2.cptv; scripts/scene_stats.py prints them for it and for the
simulator) and are given in raw counts, turned into kelvin at RAW_COUNT_K (~50 mK a count in high
gain, as sim.py's RAW_COUNTS_PER_K). So the simulator's raw-count output has the recording's
statistics, and its TLinear output (0.01 K a count) is as rough as real TLinear frames: tCam's
Lepton 3.5 images (../shared/realdata/*.tjsn) have neighbour differences of 13-22 counts (median),
the simulator ~17.
- fixed: neighbouring pixels differ by ~3 raw counts (median) and it does not move: fine scene
  texture plus pixel fixed-pattern noise and row / column offsets (the readout's stripes);
- temporal: only ~1/4 of the pixels change from one frame to the next, by 1-3 counts, yet a pixel
  wanders by ~2.4 counts (sigma) over a second or two: the noise is smooth, and a pixel's output
  moves only once the noise is a count away from it (which keeps the other 3/4 still);
- drift: the whole frame's level moves by a few counts over seconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

RAW_COUNT_K = 0.05  # kelvin per raw 14-bit count of a Lepton in high gain (sim.py: 20 counts a K)


@dataclass(frozen=True)
class Roughness:
    """How rough the picture is, in raw counts (fitted as the module docstring says)."""
    pixel_fpn: float = 1.6        # white fixed pattern, sigma
    row_fpn: float = 1.4          # per-row offsets, sigma
    col_fpn: float = 0.7          # per-column offsets, sigma
    texture: float = 1.5          # static texture correlated over ~1.5 pixels, sigma
    wander: float = 2.4           # per-pixel slow noise, stationary sigma
    wander_frames: float = 5.0    # its correlation time, in unique frames
    flicker: float = 0.4          # per-frame noise (Laplace: heavy tails), sigma
    hysteresis: float = 1.0       # a pixel's output moves when the noise is this far from it
    drift: float = 2.5            # whole-frame level, amplitude of the slow wave

    @classmethod
    def none(cls) -> "Roughness":
        """No roughness at all: the smooth scene."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0)


class SensorNoise:
    """See the module docstring. Each kelvin() call is the next frame: the slow noise carries on."""

    def __init__(self, rows: int, cols: int, seed: Optional[int] = 0,
                 roughness: Roughness = Roughness(), count_k: float = RAW_COUNT_K):
        self.roughness = r = roughness
        self.count_k = count_k
        self.rng = rng = np.random.default_rng(None if seed is None else [seed, 15])
        shape = (rows, cols)
        texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, shape), (0, 0), 1.5)
        texture *= r.texture / max(texture.std(), 1e-9)
        self._fixed = (rng.normal(0.0, r.pixel_fpn, shape) + texture
                       + rng.normal(0.0, r.row_fpn, (rows, 1)) + rng.normal(0.0, r.col_fpn, (1, cols)))
        self._keep = math.exp(-1.0 / r.wander_frames) if r.wander_frames > 0 else 0.0
        self._slow = rng.standard_normal(shape)
        self._wander = rng.standard_normal(shape)
        self._out = np.zeros(shape)
        self._phase = rng.uniform(0.0, 2 * math.pi, 2)

    def counts(self, t: float) -> np.ndarray:
        """The next frame's roughness at `t` seconds, raw counts (rows, cols) float."""
        r, k, shape = self.roughness, self._keep, self._out.shape
        # Fitted to the real recording, where only ~1/4 of the pixels change per frame yet their
        # mean change is 0.42 counts, 2.1 after 10 frames: smooth noise (two AR(1) steps in a row)
        # and an output that only moves once the noise is `hysteresis` away from it.
        step = math.sqrt(1.0 - k * k)
        self._slow = k * self._slow + step * self.rng.standard_normal(shape)
        self._wander = k * self._wander + step * self._slow
        level = r.drift * (0.7 * math.sin(2 * math.pi * t / 23.0 + self._phase[0])
                           + 0.3 * math.sin(2 * math.pi * t / 7.0 + self._phase[1]))
        latent = (self._wander * (r.wander * math.sqrt((1.0 - k * k) / (1.0 + k * k))) + level
                  + r.flicker * self.rng.laplace(0.0, 1.0 / math.sqrt(2), shape))
        self._out = np.where(np.abs(latent - self._out) >= r.hysteresis, np.rint(latent), self._out)
        return self._fixed + self._out

    def kelvin(self, t: float) -> np.ndarray:
        """The next frame's roughness at `t` seconds, kelvin."""
        return self.counts(t) * self.count_k
