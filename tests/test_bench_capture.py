"""Smoke test of scripts/bench_capture.py: a couple of seconds per run against the timing-faithful
simulated Lepton, with the CPU hog. Only that it runs and reports every figure as a number is
checked, never the figures (speed is measured by running the benchmark itself)."""
from __future__ import annotations

import json

from conftest import run_script


def test_capture_bench_reports_the_captured_fraction_per_run(tmp_path):
    out = tmp_path / "capture.json"
    proc = run_script("bench_capture.py", "--seconds", "1.5", "--modes", "before,after", "--json", out,
                      cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [run["mode"] for run in report["runs"]] == ["before", "after"]
    for run in report["runs"]:
        assert run["frames_produced"] > 0 and 0 < run["frames_published"] <= run["frames_produced"]
        assert 0 < run["captured_fraction"] <= 1
        assert isinstance(run["camera"]["segments_lost"], int)
        assert run["scheduling"]
        assert f"{run['mode']}: " in proc.stdout and "% of" not in run["scheduling"]
    assert "normal scheduling" in report["runs"][0]["scheduling"]
    assert "gc frozen" in report["runs"][1]["scheduling"]
