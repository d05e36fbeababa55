"""Camera control end to end with real processes: capture (simulated Lepton + its CCI device),
encoder and server; /api/camera and the websocket "camera" op; settings that survive a capture
restart; and a recording whose telemetry says TLinear off, which never yields a temperature."""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from websockets.sync.client import connect

from capture.sim import SimulatedLepton
from conftest import write_config
from flirstream import config as configuration
from server.protocol import split_frame
from server_support import http_get, wait_http
from stage_support import Watcher, tlinear_off  # noqa: F401  (fixture)

WAIT_S = 20.0


def port_of(config: Path) -> int:
    return configuration.load(config).server.port


def post(port: int, body, headers: dict | None = None, path: str = "/api/camera"):
    """(status, JSON reply) of a POST; body is JSON-encoded unless it is bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def camera(port: int) -> tuple[int, dict]:
    status, _, body = http_get(port, "/api/camera")
    return status, json.loads(body)


def until(condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def camera_ready(port: int):
    status, reply = camera(port)
    return reply if status == 200 and reply["camera"].get("gain_mode") else None


def test_api_commands_errors_and_settings_that_survive_a_capture_restart(tmp_path, stages):
    # Telemetry off: what the camera dict says about gain and emissivity is read over CCI.
    config = write_config(tmp_path, capture={"source": "sim", "telemetry": "off"},
                          server={"control_token": "steer"})
    port = port_of(config)
    capture = stages("capture", config)
    stages("encoder", config)
    stages("server", config)
    wait_http(port)
    info = until(lambda: camera_ready(port), "the camera's info")["camera"]
    assert info["model"] == "Lepton 3.5" and info["serial"] == "0123456789ABCDEF"
    assert info["control"] == "available" and info["meaning"] == "kelvin_x100"
    assert info["meaning_from"] == "cci" and info["gain_mode"] == "high"

    token = {"X-Control-Token": "steer"}
    assert post(port, {"op": "ffc"}) == (403, {"ok": False,
                                               "error": "camera commands need the control token"})
    status, reply = post(port, b"op=ffc", {**token, "Content-Type": "text/plain"})
    assert status == 415 and "application/json" in reply["error"]
    status, reply = post(port, b"{not json", token)
    assert status == 400 and reply["error"].startswith("the body is refused: not JSON"), reply
    status, reply = post(port, b"[" * 3000, token)  # json.loads: RecursionError, a 500
    assert status == 400 and "nested more than" in reply["error"], reply
    status, reply = post(port, {"op": "gain", "mode": "medium"}, token)
    assert status == 400 and "mode 'medium'" in reply["error"]
    status, reply = post(port, {"op": "emissivity", "emissivity": 0}, token)
    assert status == 400 and "emissivity 0: expected a number from 0.01 to 1" in reply["error"]

    status, reply = post(port, {"op": "gain", "mode": "low", "token": "steer"})
    assert status == 200 and reply["camera"]["gain_mode"] == "low"
    assert reply["camera"]["meaning"] == "kelvin_x10"  # low gain: 0.1 K per count
    status, reply = post(port, {"op": "emissivity", "emissivity": 0.95, "background_c": 30},
                         token)
    assert status == 200 and reply["camera"]["emissivity"] == 0.95
    assert reply["camera"]["background_c"] == 30.0
    saved = json.loads((tmp_path / "state" / "capture.json").read_text())["camera"]
    assert saved == {"gain_mode": "low", "emissivity": 0.95, "background_k": 303.15}

    # A new capture process has a new simulated camera at its power-on settings: it applies the
    # saved ones, and the camera's CCI state says so.
    assert capture.stop() == 0
    status, reply = camera(port)
    assert status == 503 and "capture" in reply["error"]
    stages("capture", config)
    info = until(lambda: camera_ready(port), "the restarted camera")["camera"]
    assert info["gain_mode"] == "low" and info["emissivity"] == 0.95
    assert info["background_c"] == 30.0 and info["meaning"] == "kelvin_x10"
    assert info["meaning_from"] == "cci"
    # A reboot forgets every setting; capture sets the camera up again at once.
    status, reply = post(port, {"op": "reboot"}, token)
    assert status == 200 and reply["camera"]["gain_mode"] == "low", reply
    assert reply["camera"]["emissivity"] == 0.95 and reply["camera"]["uptime_s"] < 5

    # The websocket op, with the token the page was opened with.
    with connect(f"ws://127.0.0.1:{port}/ws?token=steer", open_timeout=10) as ws:
        ws.send(json.dumps({"op": "camera", "request": {"op": "gain", "mode": "high"}}))
        ws.send(json.dumps({"op": "camera", "request": {"op": "warp"}}))
        seen = {}
        deadline = time.monotonic() + WAIT_S
        while not ("error" in seen and seen.get("gain") == "high"):
            assert time.monotonic() < deadline, seen
            message = ws.recv(timeout=WAIT_S)
            if isinstance(message, str):
                m = json.loads(message)
                if m["type"] == "error":
                    seen["error"] = m["error"]
                elif m["type"] == "camera":
                    seen["gain"] = m["camera"]["gain_mode"]
        assert "unknown camera op 'warp'" in seen["error"]


def test_camera_control_unavailable_says_why(tmp_path, stages):
    recording = tmp_path / "rec.vospi"
    sim = SimulatedLepton("lepton3", "off", seed=1)
    recording.write_bytes(b"".join(sim.next_period() for _ in range(30)))
    config = write_config(tmp_path, capture={"source": f"vospi-file:{recording}"})
    port = port_of(config)
    stages("capture", config)
    stages("encoder", config)
    stages("server", config)
    wait_http(port)
    status, reply = until(lambda: (lambda r: r if r[0] == 200 else None)(camera(port)),
                          "the camera dict")
    why = "no camera control: the source is a recording (vospi-file:)"
    assert reply["camera"]["control"] == why
    status, reply = post(port, {"op": "ffc"})
    assert status == 503 and reply["error"] == why
    assert reply["reason"] == "unavailable"


def test_tlinear_off_recording_never_yields_a_temperature(tlinear_off):
    config, port = tlinear_off
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"op": "raw", "enable": True}))
        headers = []
        deadline = time.monotonic() + WAIT_S
        while len(headers) < 5:
            assert time.monotonic() < deadline, headers
            message = ws.recv(timeout=WAIT_S)
            if isinstance(message, bytes):
                header, _, pixels = split_frame(message)
                headers.append(header)
    assert all(h["unit"] == "counts" and h["tlinear"] is False for h in headers), headers[-1]
    assert all(h["meaning"] == "raw_counts" for h in headers)
    assert all(h["telemetry"]["tlinear_enabled"] is False for h in headers)
    stats = headers[-1]["stats"]
    assert stats["max"] < 16384 and stats["min"] > 1000  # 14-bit counts, not degrees
    status, headers_, body = http_get(port, "/snapshot.csv")
    lines = body.decode().splitlines()
    assert status == 409 and len(lines) == 1
    assert lines[0] == ("no temperatures: the camera sends raw 14-bit counts (relative values), "
                        "not TLinear kelvin; /snapshot.tiff has the raw values")
    status, headers_, body = http_get(port, "/snapshot.tiff")
    assert status == 200 and headers_["x-pixel-meaning"] == "raw_counts"
    assert "-raw-counts.tiff" in headers_["content-disposition"]
    from PIL import Image  # the TIFF's own ImageDescription (JSON) says what its values are
    import io
    about = json.loads(Image.open(io.BytesIO(body)).tag_v2[270])
    assert about["pixels"] == "raw_counts" and about["unit"] == "counts"
    assert about["meaning"].startswith("raw 14-bit counts (relative values): not temperatures")
    values = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert values.dtype == np.uint16 and 1000 < int(values.min()) <= int(values.max()) < 16384
    status, _, body = http_get(port, "/metrics")  # no temperature gauges from such frames
    assert status == 200 and b"celsius" not in body


@pytest.mark.parametrize("i2c, why", [
    ("/dev/i2c-97", "camera control unavailable: no /dev/i2c-97: enable I2C"),
    ("off", "camera control is off ([capture] i2c = off)")])
def test_a_real_camera_without_i2c_streams_on_and_its_status_says_why(tmp_path, stages, i2c, why):

    config = write_config(tmp_path, capture={"source": "spi:/dev/spidev-none", "i2c": i2c})
    watcher = Watcher(configuration.load(config).endpoints.frames)
    try:
        stage = stages("capture", config)
        watcher.until(lambda: any(s.get("camera") for s in watcher.status), stage=stage)
        status = [s for s in watcher.status if s.get("camera")][-1]
        assert status["camera"]["control"].startswith(why), status["camera"]
        assert status["camera"]["meaning_from"] == "assumed"
        assert status["state"] == "offline"  # no SPI device either: still running, saying so
    finally:
        watcher.close()
