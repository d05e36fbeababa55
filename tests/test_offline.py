"""The camera is missing or misbehaving, end to end through real capture, encoder and server processes.

1. Unplugged / absent: capture's source is an SPI device that does not exist (and on this machine the
   spidev module may be missing too). Capture must keep running and retrying, say "offline" with the
   reason, /healthz must answer 503 with that reason, and viewers must get
   {"type": "status", "camera": "offline", ...}.
2. Sync loss: a VoSPI byte stream full of CRC errors, lost packets, invalid segments and garbage
   (produced by the simulated Lepton's fault injection, replayed through the real `vospi-file:` source)
   keeps frames flowing, the capture counters in /metrics show the errors and resyncs, and no damaged
   frame reaches a viewer: every radiometric frame received is bit-identical to a frame that was sent
   intact.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import websockets

from conftest import write_config
from flirstream import testing


LIMIT_S = 20.0  # generous bound for each "eventually" on a busy machine


def _healthz(port: int) -> tuple[int, dict]:
    status, body = testing.http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    try:
        return status, json.loads(body) if body else {}
    except ValueError:
        return status, {"raw": body[:300]}


def _wait_listening(port: int, server) -> None:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline and server.proc.poll() is None:
        if _healthz(port)[0]:
            return
        time.sleep(0.1)
    raise AssertionError(f"server not answering on {port}\n{server.log()[-2000:]}")


async def _status_messages(url: str, until, seconds: float) -> list:
    """Text messages from /ws until `until(messages)` is true or `seconds` pass."""
    messages: list = []
    deadline = time.monotonic() + seconds
    async with websockets.connect(url, max_size=None, open_timeout=5, ping_interval=None) as ws:
        while time.monotonic() < deadline and not until(messages):
            try:
                message = await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if isinstance(message, str):
                messages.append(json.loads(message))
    return messages


@pytest.mark.parametrize("device, spidev_module", [
    ("/dev/spidev-missing", "as-is"),   # a device name that is not there (spidev as installed here)
    ("/dev/spidev9.9", "as-is"),        # a well-formed name with nothing behind it
    ("/dev/spidev9.9", "missing"),      # and the Python module spidev not installed either
])
def test_camera_unplugged_is_offline_with_a_reason_and_capture_keeps_retrying(
        tmp_path: Path, stages, monkeypatch, device: str, spidev_module: str):
    config = write_config(tmp_path, capture={"source": f"spi:{device}"})
    port = testing.server_port(config)
    if spidev_module == "missing":
        # A real capture process on a machine without spidev: `import spidev` fails in it.
        shim = tmp_path / "no-spidev"
        shim.mkdir()
        (shim / "spidev.py").write_text("raise ImportError(\"No module named 'spidev'\")\n")
        monkeypatch.setenv("PYTHONPATH", str(shim))
    capture = stages("capture", config)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    stages("encoder", config)
    stages("server", config)

    # /healthz: 503, camera offline, and the reason names the device (capture said it, not merely
    # "no status from capture").
    deadline = time.monotonic() + LIMIT_S
    status, body = 0, {}
    while time.monotonic() < deadline:
        status, body = _healthz(port)
        if status == 503 and body.get("capture", {}).get("state") == "offline":
            break
        time.sleep(0.2)
    detail = f"healthz {status} {body}\ncapture exit {capture.proc.poll()}\n{capture.log()[-2000:]}"
    assert capture.proc.poll() is None, "capture exited instead of reporting offline: " + detail
    assert status == 503, detail
    assert body["healthy"] is False and body["camera"] == "offline", detail
    assert body["capture"]["state"] == "offline", detail
    assert device in body["capture"]["detail"], detail
    assert "offline" in body["reason"] and device in body["reason"], detail

    # The websocket says so too, in the hello and in a status message.
    def offline_status(messages):
        return any(m.get("type") == "status" and m.get("camera") == "offline"
                   and m.get("capture", {}).get("state") == "offline" for m in messages)
    messages = asyncio.run(_status_messages(f"ws://127.0.0.1:{port}/ws", offline_status, LIMIT_S))
    assert offline_status(messages), messages
    hello = [m for m in messages if m.get("type") == "hello"]
    assert hello and hello[0]["camera"] == "offline", messages
    status_msg = [m for m in messages if m.get("type") == "status"][-1]
    assert device in status_msg["capture"]["detail"], status_msg

    # Capture keeps running and keeps reporting (its status stays fresh, not "silent"), retrying.
    time.sleep(6.0)
    assert capture.proc.poll() is None, capture.log()[-2000:]
    status, body = _healthz(port)
    assert status == 503 and body["capture"]["state"] == "offline", body
    log = capture.log()
    assert "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------- sync loss, end to end

def _faulty_recording(path: Path, periods: int) -> tuple[set, set, dict]:
    """Write `periods` VoSPI frame periods with faults; return the hashes of the images sent intact,
    of those sent damaged, and how many periods had each kind of damage."""
    from capture.sim import Faults, SimulatedLepton

    sim = SimulatedLepton("lepton3", unique_every=1, seed=7,
                          faults=Faults(crc=0.002, lost=0.001, invalid_segments=0.15, garbage=0.15,
                                        garbage_bytes=3000))
    intact, damaged = set(), set()
    with open(path, "wb") as fh:
        for _ in range(periods):
            fh.write(sim.next_period())
            digest = hashlib.sha1(np.ascontiguousarray(sim.last_image, dtype="<u2").tobytes()
                                  ).hexdigest()
            (intact if sim.last_intact else damaged).add(digest)
    return intact, damaged - intact, {"intact": len(intact), "damaged": len(damaged - intact)}


async def _watch_raw(url: str, seconds: float) -> list:
    """Receive frames with their radiometric pixels for `seconds`; return the pixel hashes."""
    hashes = []
    deadline = time.monotonic() + seconds
    async with websockets.connect(url, max_size=None, open_timeout=5, ping_interval=None) as ws:
        await ws.send(json.dumps({"op": "raw", "enable": True}))
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if isinstance(message, bytes):
                header = testing.frame_header(message)
                if header.get("raw_bytes"):
                    hashes.append((header["seq"], hashlib.sha1(message[-header["raw_bytes"]:])
                                   .hexdigest()))
    return hashes


def test_sync_loss_recovers_and_no_damaged_frame_is_published(tmp_path: Path, stages):
    recording = tmp_path / "faulty.vospi"
    intact, damaged, kinds = _faulty_recording(recording, 160)
    assert kinds["damaged"] > 20 and kinds["intact"] > 40, kinds  # the recording really is faulty
    config = write_config(tmp_path, capture={"source": f"vospi-file:{recording}",
                                             "replay": "realtime", "loop": "yes"})
    port = testing.server_port(config)
    capture = stages("capture", config)
    stages("encoder", config)
    server = stages("server", config)
    _wait_listening(port, server)

    # Wait until the server has frames (the first viewer starts the encoder), then watch.
    received = asyncio.run(_watch_raw(f"ws://127.0.0.1:{port}/ws", 10.0))
    metrics = testing.parse_metrics(testing.http_get(f"http://127.0.0.1:{port}/metrics")[1].decode())
    counters = {k.split('event="')[1].rstrip('"}'): v for k, v in metrics.items()
                if k.startswith("flirstream_stage_events_total") and 'stage="capture"' in k}
    print(f"\nsync loss: {len(received)} frames received in 10 s from a recording of "
          f"{kinds['intact']} intact and {kinds['damaged']} damaged frames; capture counters "
          f"{counters}")

    assert capture.proc.poll() is None, capture.log()[-2000:]
    assert len(received) >= 20, (received, capture.log()[-2000:])
    bad = [(seq, h) for seq, h in received if h not in intact]
    assert not bad, f"{len(bad)} received frames were never sent intact (seqs {[s for s, _ in bad]}); " \
                    f"{sum(h in damaged for _, h in bad)} of them were sent damaged"
    assert len({h for _, h in received}) > 10  # distinct pictures: the stream moved on
    assert counters.get("crc_errors", 0) > 0, counters
    assert counters.get("dropped_frames", 0) + counters.get("dropped_segments", 0) > 0, counters
    assert counters.get("realigns", 0) + counters.get("resyncs", 0) > 0, counters
