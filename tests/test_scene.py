"""capture/scene.py: the simulated sensor is as rough as a real Lepton 3 recording.

The targets are the real recording's figures (../shared/realdata/cacophony-v2.cptv, raw counts,
measured by scripts/scene_stats.py): neighbours differ by 3 counts (median); frame to frame 26 % of
the pixels change, 17 % by one count; a pixel's values spread by ~2.3 counts (sigma). Real TLinear
frames (tCam, 0.01 K a count) have neighbour differences of 15-22 counts (median)."""
from __future__ import annotations

import numpy as np
import pytest

from capture.scene import RAW_COUNT_K, Roughness, SensorNoise
from capture.sim import SimulatedLepton

FPS = 26.5 / 3


def raw_noise(frames: int, seed: int = 5) -> np.ndarray:
    noise = SensorNoise(120, 160, seed)
    return np.stack([np.rint(noise.counts(i / FPS)) for i in range(frames)])


def test_noise_has_the_real_recordings_statistics():
    a = raw_noise(120)
    d = np.abs(np.diff(a, axis=0))
    assert 0.18 < (d > 0).mean() < 0.35  # real: 0.26
    assert 0.12 < (d == 1).mean() < 0.23  # real: 0.17
    assert (d > 3).mean() < 0.03  # real: 0.02 (the animal included)
    assert 1.5 < np.median(a.std(axis=0)) < 3.2  # real: 2.3
    neighbours = np.abs(np.concatenate((np.diff(a[0], axis=1).ravel(), np.diff(a[0], axis=0).ravel())))
    assert 2 <= np.median(neighbours) <= 4  # real: 3


def test_kelvin_is_raw_counts_at_50_mk():
    one, two = SensorNoise(60, 80, 2), SensorNoise(60, 80, 2)
    np.testing.assert_allclose(one.kelvin(0.0), two.counts(0.0) * RAW_COUNT_K)
    assert RAW_COUNT_K == pytest.approx(0.05)


def test_no_roughness_is_no_noise():
    noise = SensorNoise(60, 80, 1, Roughness.none())
    assert not noise.kelvin(0.0).any() and not noise.kelvin(1.0).any()


def test_the_simulator_is_rough_in_tlinear_like_real_frames_and_a_seed_repeats_it():
    one, two = SimulatedLepton(seed=3), SimulatedLepton(seed=3)
    frames = [one.scene(i) for i in range(3)]
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, two.scene(i))
    neighbours = np.median(np.abs(np.diff(frames[0].astype(int), axis=1)))
    assert 10 <= neighbours <= 25  # real TLinear frames: 15-22
    assert 0.1 < (frames[1] != frames[0]).mean() < 0.9  # rough, yet not white noise
