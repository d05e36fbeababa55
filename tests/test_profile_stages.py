"""scripts/profile_stages.py: each stage's per-frame functions timed in the running pipeline
(benchlib/stage_profile.py wraps them in the stage's own process)."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from capture import vospi
from conftest import ROOT, run_script
from scripts.benchlib import stage_profile


def recording(path: Path, frames: int = 40) -> Path:
    """A VoSPI recording of `frames` different Lepton 3 frames (raw counts with noise)."""
    rng = np.random.default_rng(5)
    scene = rng.integers(2400, 2900, (120, 160))
    path.write_bytes(b"".join(
        vospi.encode_frame((scene + rng.integers(-3, 4, scene.shape)).astype(np.uint16), "lepton3")
        for _ in range(frames)))
    return path


def test_each_stage_reports_its_per_frame_functions(tmp_path: Path):
    out = tmp_path / "profile.json"
    proc = run_script("profile_stages.py", "--replay", recording(tmp_path / "r.vospi"),
                      "--duration", "3", "--json", out, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "thermal" and result["frames"] >= 3 * 26.5 * 0.5, result["frames"]
    stages = result["stages"]
    assert set(stages) == {"capture", "encoder", "server"}
    # Every frame the viewer got passed through each stage's per-frame path, once: at least one
    # call per frame (the server counts its frames inside the stages' windows), and no more than
    # the replay's 26.5 frames a second (a loaded machine may skip frames after capture, so a
    # ratio to the server's frames could exceed 1 without anything called twice).
    once = {"capture": "capture.vospi:FrameAssembler.feed",
            "encoder": "flirstream.radiometric:encode_frame",  # a thermal-mode viewer: RAD2
            "server": "flirstream.wire:unpack_thermal"}
    for stage, function in once.items():
        f = stages[stage]["functions"][function]
        calls_per_s = f["calls_per_frame"] * result["frames"] / result["duration_s"]
        assert f["calls_per_frame"] >= 0.9 and calls_per_s < 26.5 * 1.5, (stage, f, calls_per_s)
        assert 0 < f["us_per_call"] < stages[stage]["main_thread_us_per_frame"], (stage, f)
    # nobody watches JPEGs: the encoder renders none
    assert stages["encoder"]["functions"]["encoder.app:Encoder._publish"]["calls_per_frame"] == 0
    assert "capture.vospi:FrameAssembler.feed" in proc.stdout and "us/frame" in proc.stdout


def test_a_stage_or_function_that_does_not_exist_is_named(tmp_path: Path):
    proc = run_script("profile_stages.py", "--replay", recording(tmp_path / "r.vospi", 2),
                      "--functions", "nowhere=capture.vospi:feed", timeout=60)
    assert proc.returncode == 2 and "nowhere=capture.vospi:feed" in proc.stderr, proc.stderr
    # the wrapper refuses a function it cannot find before the stage starts
    proc = subprocess.run([sys.executable, "-m", "scripts.benchlib.stage_profile",
                           str(tmp_path / "p.json"), "capture.vospi:FrameAssembler.nope", "--",
                           sys.executable, "-m", "flirstream", "capture", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "capture.vospi:FrameAssembler.nope" in proc.stderr
    assert not (tmp_path / "p.json").exists()


class Sample:
    @staticmethod
    def double(x):
        return 2 * x

    @classmethod
    def named(cls, x):
        return f"{cls.__name__} {x}"

    def busy(self, n):
        return sum(i * i for i in range(n))


def test_timed_functions_keep_their_kind_and_count_calls_and_cpu_in_a_window(tmp_path: Path):
    counts = stage_profile.install([f"{__name__}:Sample.double", f"{__name__}:Sample.named",
                                    f"{__name__}:Sample.busy"])
    try:
        assert Sample.double(2) == Sample().double(2) == 4
        assert Sample.named(1) == Sample().named(1) == "Sample 1"
        window = stage_profile.Window(str(tmp_path / "w.json"), ["capture"], counts)
        window.start()  # what came before the window does not count
        assert all(c == {"ns": 0, "calls": 0} for c in counts.values())
        for _ in range(3):
            Sample().busy(20_000)
        window.end()
    finally:
        for name in ("double", "named", "busy"):  # unwrap
            static = inspect.getattr_static(Sample, name)
            inner = getattr(static, "__func__", static)
            original = inner.__wrapped__
            setattr(Sample, name, type(static)(original) if isinstance(static, (staticmethod, classmethod))
                    else original)
    got = json.loads((tmp_path / "w.json").read_text())
    busy = got["functions"][f"{__name__}:Sample.busy"]
    assert busy["calls"] == 3 and 0 < busy["ns"] <= got["thread_cpu_ns"]
    assert got["functions"][f"{__name__}:Sample.double"]["calls"] == 0
    assert got["argv"] == ["capture"]
