"""Through the whole pipeline: real capture (simulated camera) -> real encoder -> real server
processes, watched by a real websocket client, an MJPEG reader and snapshot requests."""
from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from conftest import write_config
from flirstream import config as configuration
from flirstream.testing import parse_metrics
from flirstream.wire import KELVIN_AT_0C
from server.protocol import split_frame
from server_support import frames, http_get, json_messages, read_mjpeg_parts, wait_http
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(120)


def test_pipeline_streams_to_a_viewer(tmp_path, stages):
    conf = write_config(tmp_path, capture={"source": "sim", "sim_fps": "26.5"})
    cfg = configuration.load(conf)
    port = cfg.server.port
    started = [stages(name, conf) for name in ("capture", "encoder", "server")]
    try:
        # nobody watches yet: the encoder pauses, which is healthy while capture streams
        wait_http(port, want=200, timeout=30)
        deadline = time.monotonic() + 20
        while True:  # the encoder has paused: a snapshot wakes it (the server counts it a viewer)
            report = json.loads(http_get(port, "/healthz")[2])
            if report["encoder"]["state"] == "paused":
                break
            assert time.monotonic() < deadline, report
            time.sleep(0.2)
        status, _, body = http_get(port, "/snapshot.jpg")
        assert status == 200, body
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5, max_size=2 ** 24) as ws:
            hello = json_messages(ws, 1)[0]
            assert hello["type"] == "hello" and hello["camera"] == "online"
            got = frames(ws, 10, timeout=30)  # the encoder resumes for this viewer
            seqs = [h["seq"] for h, _, _ in got]
            assert seqs == sorted(set(seqs))
            header, jpeg, _ = got[-1]
            picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (header["height"], header["width"], 3) == (480, 640, 3)
            assert header["sensor"] == "lepton3" and header["shape"] == [120, 160]
            assert header["t"] <= header["t_encoded"] <= header["t_sent"]

            ws.send(json.dumps({"op": "raw", "enable": True}))
            ws.send(json.dumps({"op": "set", "settings": {"palette": "jet"}}))
            deadline = time.monotonic() + 20
            raw = jet = None
            while raw is None or jet is None:
                assert time.monotonic() < deadline, (raw, jet)
                message = ws.recv(timeout=10)
                if isinstance(message, str):
                    reply = json.loads(message)
                    assert reply["type"] != "error", reply
                    continue
                header, _, pixels = split_frame(message)
                if header["raw_bytes"]:
                    raw = (header, pixels)
                if header["palette"] == "jet":
                    jet = header
            header, pixels = raw
            values = np.frombuffer(pixels, "<u2").reshape(header["shape"])
            if header["tlinear"]:
                celsius = values * header["kelvin_per_count"] - KELVIN_AT_0C
                assert -40 < celsius.min() <= celsius.max() < 400
                assert abs(header["stats"]["max"] - celsius.max()) < 1.0

            _, parts = read_mjpeg_parts(port, 3, timeout=20)
            assert all(cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) is not None
                       for p in parts)
            status, _, body = http_get(port, "/snapshot.csv")
            assert status == 200 and len(body.decode().splitlines()) == 120
            status, _, body = http_get(port, "/healthz")
            report = json.loads(body)
            assert status == 200 and report["capture"]["state"] == "streaming", report
            samples = parse_metrics(http_get(port, "/metrics")[2].decode())
            assert samples['flirstream_frames_sent_total{transport="websocket"}'] >= 10
            assert any(k.startswith('flirstream_stage_events_total{stage="capture"') for k in samples)
    finally:
        codes = {s.command: s.stop() for s in reversed(started)}
    assert codes == {"capture": 0, "encoder": 0, "server": 0}, \
        "\n".join(s.log_path.read_text()[-2000:] for s in started if s.proc.returncode)
