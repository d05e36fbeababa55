"""Smoke test of the benchmark harness: `scripts/bench.py --quick` runs every section against the
real stages (simulated camera, loopback) and writes a JSON with every figure as a number.

Only the presence and type of the figures are checked, never their values: speed is measured by
running the benchmark itself (docs/PERFORMANCE.md), not by the test suite."""
from __future__ import annotations

import json
import math

from conftest import run_script
from scripts.benchlib.report import GOALS, SUMMARY_KEYS


def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script("bench.py", "--quick", "--json", out, cwd=str(tmp_path), timeout=150)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    summary = result["summary"]
    missing = [k for k in SUMMARY_KEYS
               if not (isinstance(summary.get(k), (int, float)) and not isinstance(summary[k], bool)
                       and math.isfinite(summary[k]))]
    assert not missing, f"figures without a numeric value: {missing}\n{proc.stderr[-4000:]}"
    # every goal's figure is in the printed table
    for _key, label, _goal, _check in GOALS:
        assert label in proc.stdout
    # the detail behind the figures is there too
    assert {r["unique_every"] for r in result["fanout"]} == {1, 3}
    for run in result["fanout"]:
        assert run["groups"][0]["clients"] == 5 and run["published"] > 0
    assert set(result["pipeline"]["cpu_percent"]) == {"capture", "encoder", "server"}
    assert result["slow"]["slow_ready"]["connected"] == 5
