"""A short run of scripts/soak.py: the whole pipeline under 12 websocket clients (normal, slow ones that
never read, reconnecting ones; half of those that read in thermal mode, the browser viewer's) for
10 s. The full soak is `python scripts/soak.py` (60 s, 50 clients)."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_script
from flirstream import radiometric
from flirstream.testing import FrameClient
from scripts.soak import seq_gaps
from server import protocol
from server_support import image_frame, thermal_frame

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
        assert row["bad_frames"] == 0, row
    # both /ws modes were read, each frame checked against its header (thermal: payload decoded)
    assert {row["mode"] for row in normal} == {"thermal", "jpeg"}
    assert {row["mode"] for row in result["reconnecting"]} == {"thermal", "jpeg"}
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


def test_frame_client_checks_both_modes_and_reports_a_bad_frame_without_dropping_the_connection():
    """What the soak's clients do with each binary message: both modes' headers are read, a
    thermal payload is decoded against its header, and a broken message is counted as bad."""
    frame = thermal_frame(7)
    thermal = protocol.thermal_payload(frame, t_sent=1.0, defaults=0)
    jpeg = protocol.frame_payloads(image_frame(8), t_sent=1.0).plain
    client = FrameClient("ws://127.0.0.1:1/ws?mode=thermal", check_every=1)
    client._take(thermal)
    client._take(jpeg)
    assert client.got.frames == 2 and client.got.errors == []
    assert [s[1] for s in client.got.seqs] == [7, 8]

    header, payload = protocol.split_thermal(thermal)
    rows, cols, _ = radiometric.read_header(payload)
    # the same header and length, but the payload's header claims other dimensions
    lying = thermal[:len(thermal) - len(payload)] + radiometric.HEADER.pack(
        radiometric.MAGIC, cols, rows, 1) + payload[radiometric.HEADER.size:]
    client._take(lying)
    client._take(thermal[:-5])  # cut short: does not match rad_bytes
    assert client.got.frames == 2 and len(client.got.errors) == 2, client.got.errors
    assert "bad frame message" in client.got.errors[0]
    # checking every frame is the caller's choice: with check_every=0 the payload is not decoded
    quick = FrameClient("ws://127.0.0.1:1/ws?mode=thermal")
    quick._take(lying)
    assert quick.got.frames == 1 and quick.got.errors == []


def test_seq_gaps_count_frames_lost_between_live_frames_not_after_the_stale_one_sent_on_connect():
    """A viewer that connects after a pause gets the newest frame the server held, marked stale;
    the frames between it and the next live one were never made, so they are no gap."""
    client = FrameClient("ws://127.0.0.1:1/ws")
    client._take(protocol.frame_payloads(image_frame(5), t_sent=1.0, stale=True).plain)
    for seq in (40, 41, 43, 44):  # live: 42 lost
        client._take(protocol.frame_payloads(image_frame(seq), t_sent=2.0).plain)
    assert [(s[1], s[3]) for s in client.got.seqs] == [
        (5, True), (40, False), (41, False), (43, False), (44, False)]
    assert seq_gaps(client.got.seqs) == 1
    # the same frames all live: the 34 between 5 and 40 count too
    live = [(t, seq, c, False) for t, seq, c, _ in client.got.seqs]
    assert seq_gaps(live) == 35
