"""A short run of scripts/soak.py: the whole pipeline under 12 websocket clients (normal, slow ones that
never read, reconnecting ones) for 10 s. The full soak is `python scripts/soak.py` (60 s, 50 clients)."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_script

DURATION = 10
CLIENTS = 12


def test_short_soak(tmp_path: Path):
    out = tmp_path / "soak.json"
    proc = run_script("soak.py", "--duration", DURATION, "--clients", CLIENTS, "--json", out,
                      "--workdir", tmp_path / "work", timeout=120)
    print(proc.stdout)
    log = (tmp_path / "work" / "run.log")
    detail = proc.stdout[-3000:] + proc.stderr[-3000:] + (
        log.read_text(errors="replace")[-3000:] if log.exists() else "")
    assert proc.returncode == 0, detail
    result = json.loads(out.read_text())

    assert result["problems"] == []
    assert result["died"] == [], detail
    assert result["leftover_processes"] == []
    assert result["run_exit"] == 0
    normal = result["normal"]
    assert len(normal) == CLIENTS - result["slow"] - len(result["reconnecting"]) >= 1
    for row in normal:
        assert row["frames"] > 0, row
        assert row["seq_last"] > row["seq_first"], row
    # the reconnecting clients did reconnect, and got frames on the way
    assert sum(r["connects"] for r in result["reconnecting"]) > len(result["reconnecting"])
    assert sum(r["frames"] for r in result["reconnecting"]) > 0
    assert result["slow"] >= 1
    assert result["healthz_end"] == 200

    # every client's socket was closed again once it left
    assert result["fds_after"]["server"] <= result["fds_before"]["server"] + 5, result
    samples = result["rss_mb"]
    assert len(samples) >= DURATION // 2
    first, last = samples[0], samples[-1]
    for stage in ("capture", "encoder", "server", "run"):
        assert stage in first and stage in last, (first, last)
        assert last[stage] <= 2 * first[stage] + 60, (stage, first[stage], last[stage])
