"""The capture stage's scripts: the VoSPI benchmark (--quick smoke run) and a short fuzz run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def test_bench_vospi_quick_prints_and_writes_json(tmp_path):
    out = tmp_path / "vospi.json"
    done = run("scripts/bench_vospi.py", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "Lepton 3 frame (240 packets) parsed + CRC-checked:" in done.stdout
    report = json.loads(out.read_text())
    assert report["benchmark"] == "vospi" and report["quick"] is True
    for name in ("lepton3_frame", "lepton2_frame", "lepton3_crc_only",
                 "lepton3_per_packet_python_loop"):
        assert report["results"][name]["best_ms"] > 0


def test_fuzz_vospi_short_run_passes():
    done = run("scripts/fuzz_vospi.py", "--packets", "30000", "--seed", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("passed")
    assert sum(line.startswith("ok ") for line in lines) == 6
    assert "false=0" in done.stdout


def test_record_sim_writes_a_replayable_faulty_recording(tmp_path):
    from capture.vospi import FrameAssembler

    path = tmp_path / "faulty.vospi"
    done = run("scripts/record_sim.py", str(path), "--frames", "60", "--unique-every", "1",
               "--faults", "crc=0.003,garbage=0.2")
    assert done.returncode == 0, done.stderr
    intact = int(done.stdout.split(" intact")[0].rsplit(" ", 1)[1])
    assert 0 < intact < 60
    frames = FrameAssembler("lepton3").feed(path.read_bytes())
    assert len(frames) >= intact
    bad = run("scripts/record_sim.py", str(path), "--faults", "cosmic=1")
    assert bad.returncode == 2 and "unknown fault 'cosmic'" in bad.stderr


def test_record_sim_with_a_camera_records_what_its_telemetry_says(tmp_path):
    from capture import telemetry as tm
    from capture.vospi import FrameAssembler

    path = tmp_path / "agc.vospi"
    done = run("scripts/record_sim.py", str(path), "--frames", "6", "--telemetry", "header",
               "--camera", "agc=1,gain_mode=1")
    assert done.returncode == 0, done.stderr
    frames = FrameAssembler("lepton3", "header").feed(path.read_bytes())
    t = tm.parse(frames[-1].telemetry_rows.reshape(-1))
    assert tm.pixel_meaning(t) == tm.AGC_8BIT and t.gain_mode == "low"
    assert int(frames[-1].image.max()) <= 255
    bad = run("scripts/record_sim.py", str(path), "--camera", "shutter=1")
    assert bad.returncode == 2 and "camera setting 'shutter'" in bad.stderr


def test_bench_camera_control_prints_and_writes_json(tmp_path):
    out = tmp_path / "camera_control.json"
    done = run("scripts/bench_camera_control.py", "--seconds", "1.5", "--json", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["idle"]["frames"] > 5 and report["with_commands"]["frames"] > 5
    assert report["with_commands"]["commands_ok"] > 0
    assert "with_commands:" in done.stdout
