"""scripts/bench_encoder.py --quick runs, prints its table and writes complete JSON (no speed
assertions here: the figures depend on the machine and its load)."""
from __future__ import annotations

import json

from conftest import run_script


def test_bench_encoder_quick_writes_its_figures(tmp_path):
    out = tmp_path / "encoder.json"
    proc = run_script("bench_encoder.py", "--quick", "--json", out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "render / bare JPEG" in proc.stdout and str(out) in proc.stdout
    data = json.loads(out.read_text())
    for key in ("render_fps", "bare_jpeg_fps", "vs_bare_jpeg", "seed_speedup"):
        assert isinstance(data[key], float) and data[key] > 0, key
    assert set(data["steps_us"]) == {"orient", "agc", "lut", "resize", "jpeg", "stats"}
    assert data["slowest_step"] in data["steps_us"]
    assert data["setup"]["jpeg_bytes"] > 1000 and data["setup"]["quick"] is True
