"""Frames for the scripts: a recording file or the simulator, as one (n, rows, cols) uint16 array.

    frames = load("../shared/realdata/cacophony-v2.cptv")   # CPTV v2 (raw counts)
    frames = load("real.vospi")                             # a VoSPI recording (Lepton 3, no telemetry)
    frames = load("fox.tjsn")                               # a tCam JSON image (one frame)
    frames = load("sim")                                    # the simulated Lepton's scene (today's)
    frames = load("sim-raw")                                # the same in raw counts (TLinear off)
    frames = load("sim-smooth")                             # the scene before issue 15 (smooth, white noise)
    frames = load("sim-still")                              # sim-raw with only the noise moving
"""
from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture import cptv, vospi  # noqa: E402
from capture.scene import Roughness, SensorNoise  # noqa: E402
from capture.sim import RAW_COUNTS_PER_K, SimulatedLepton  # noqa: E402
from flirstream.wire import KELVIN_AT_0C  # noqa: E402

SIM_FPS = 26.5 / 3  # unique frames per second of the simulator (and of a real Lepton)


@dataclass
class Frames:
    pixels: np.ndarray  # (n, rows, cols) uint16
    fps: float          # unique frames per second
    tlinear: bool       # pixels are kelvin / 0.01 (else raw counts)
    label: str


def load(spec: str, count: int = 119, sensor: str = "lepton3") -> Frames:
    """See the module docstring; `count` frames from the simulator."""
    if spec in ("sim", "sim-raw", "sim-smooth", "sim-still"):
        sim = SimulatedLepton(sensor, seed=0)
        if spec == "sim":
            return Frames(np.stack([sim.scene(i) for i in range(count)]), SIM_FPS, True, spec)
        if spec == "sim-raw":  # as a Lepton in high gain with TLinear off (sim.py camera_output)
            raw = [np.rint(8192 + RAW_COUNTS_PER_K[0] * (sim.scene_celsius(i) - 25.0))
                   for i in range(count)]
            return Frames(np.stack(raw).astype(np.uint16), SIM_FPS, False, spec)
        noise = sim._noise
        sim._noise = SensorNoise(sim.rows, sim.cols, 0, Roughness.none())  # the smooth layout
        rng = np.random.default_rng(0)
        frames = []
        for i in range(count):
            if spec == "sim-smooth":  # main's scene before issue 15: smooth plus 50 mK white noise
                celsius = sim.scene_celsius(i) + rng.normal(0.0, 0.05, (sim.rows, sim.cols))
                frames.append(np.rint((celsius + KELVIN_AT_0C) / 0.01))
            else:  # sim-still: the layout of frame 0 and the sensor's noise moving on it, raw counts
                celsius = sim.scene_celsius(0) + noise.kelvin(i / SIM_FPS)
                frames.append(np.rint(8192 + RAW_COUNTS_PER_K[0] * (celsius - 25.0)))
        return Frames(np.stack(frames).astype(np.uint16), SIM_FPS, spec == "sim-smooth", spec)
    path = Path(spec)
    data = path.read_bytes()
    if path.suffix == ".tjsn":
        image = np.frombuffer(base64.b64decode(json.loads(data)["radiometric"]), "<u2")
        return Frames(image.reshape(1, 120, 160).astype(np.uint16), 1.0, True, path.name)
    if path.suffix == ".vospi":
        got = vospi.FrameAssembler(sensor, "off").feed(data)
        return Frames(np.stack([f.image for f in got]), 26.5, False, path.name)
    rec = cptv.parse(data)
    times = [f.time_ms for f in rec.frames if f.time_ms is not None]
    fps = (len(times) - 1) * 1000.0 / (times[-1] - times[0]) if len(times) > 1 else 8.7
    return Frames(np.stack([f.pixels for f in rec.frames]), fps, False, path.name)
