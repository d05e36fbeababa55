"""[endpoints] curve_key: the links between the stages encrypted and closed to outsiders with ZeroMQ
CURVE, checked with real processes and real sockets:

- a real capture process with the key publishes; a subscriber holding the key file gets frames,
  while a plain subscriber and one using another key pair get nothing;
- the whole pipeline (`flir-stream run`) with the key streams frames to a websocket viewer, while
  outsiders get nothing from the images link and no answer on the control link;
- a missing or wrong key file stops a stage with one line and exit status 2.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from conftest import write_config
from flirstream import config as configuration, links, testing, wire


def _keys(directory: Path, name: str = "flir-stream") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    return Path(secret)


def _raw_frames(sock: zmq.Socket, seconds: float) -> int:
    """Raw frames received on sock within `seconds`."""
    return len(testing.raw_frames(sock, seconds))


@pytest.fixture
def plain_links():
    yield
    links._curve, links._curve_endpoints = None, frozenset()  # back to plain for other tests


def test_only_holders_of_the_key_file_receive_frames(tmp_path: Path, stages, plain_links):
    key = _keys(tmp_path / "keys")
    other = _keys(tmp_path / "other", "intruder")
    path = write_config(tmp_path, endpoints={"curve_key": str(key)})
    capture = stages("capture", path)
    cfg = configuration.load(path)
    endpoint = cfg.endpoints.frames

    ctx = zmq.Context()
    try:
        # Outsiders first (ZeroMQ subscribers may connect before the publisher binds).
        plain = ctx.socket(zmq.SUB)
        plain.setsockopt(zmq.SUBSCRIBE, b"")
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(endpoint)
        wrong = ctx.socket(zmq.SUB)  # CURVE, but another installation's keys
        other_public, other_secret = zmq.auth.load_certificate(str(other))
        wrong.curve_publickey, wrong.curve_secretkey = other_public, other_secret
        wrong.curve_serverkey = other_public
        wrong.setsockopt(zmq.SUBSCRIBE, b"")
        wrong.setsockopt(zmq.LINGER, 0)
        wrong.connect(endpoint)

        links.configure(cfg)
        insider = links.subscriber(ctx, endpoint, wire.RAW_TOPIC)
        got = _raw_frames(insider, 8.0)
        assert got > 0, capture.log()[-2000:]
        assert _raw_frames(plain, 1.0) == 0
        assert _raw_frames(wrong, 1.0) == 0
        assert capture.proc.poll() is None
    finally:
        ctx.destroy(linger=0)  # closes every socket, even after a failed assertion


def test_pipeline_streams_over_curve_links(tmp_path: Path):
    key = _keys(tmp_path / "keys")
    path = write_config(tmp_path, endpoints={"curve_key": str(key)})
    pipe = testing.Pipeline(path, tmp_path / "run.log")
    try:
        pipe.wait_stages(30)
        pipe.wait_healthy(30)

        async def watch() -> int:
            client = testing.FrameClient(pipe.ws_url, max_reconnects=3)
            await client.run(until=time.monotonic() + 4.0)
            return client.got.frames
        frames = asyncio.run(watch())
        # meanwhile outsiders get nothing from the images and control links either
        cfg = configuration.load(path)
        ctx = zmq.Context()
        try:
            images = ctx.socket(zmq.SUB)
            images.setsockopt(zmq.SUBSCRIBE, b"")
            images.setsockopt(zmq.LINGER, 0)
            images.connect(cfg.endpoints.images)
            control = ctx.socket(zmq.DEALER)
            control.setsockopt(zmq.LINGER, 0)
            control.connect(cfg.endpoints.control)
            control.send(wire.pack_control({"op": "get", "id": 1}), zmq.NOBLOCK)
            camera = ctx.socket(zmq.DEALER)  # capture's camera control, CURVE too
            camera.setsockopt(zmq.LINGER, 0)
            camera.connect(cfg.endpoints.camera)
            camera.send(wire.pack_control({"op": "camera", "id": 1}), zmq.NOBLOCK)
            outsider_images = images.poll(2000)
            outsider_reply = control.poll(1000)
            outsider_camera = camera.poll(1000)
        finally:
            ctx.destroy(linger=0)
        # the server itself (a CURVE client) gets capture's answer
        api = testing.http_get(f"http://127.0.0.1:{cfg.server.port}/api/camera", timeout=15.0)
    finally:
        code, leftovers = pipe.stop()
    assert api[0] == 200 and b'"model": "Lepton 3.5"' in api[1], api
    assert not outsider_camera
    # frames reached the viewer: images (encoder -> server) and control (the viewer count that
    # makes the encoder encode) both worked over CURVE
    assert frames > 5, pipe.log()[-3000:]
    assert not outsider_images and not outsider_reply
    assert code == 0 and leftovers == []


@pytest.mark.parametrize("problem", ["missing", "public_only", "not_a_key"])
def test_a_bad_key_file_is_one_line_and_status_2(tmp_path: Path, problem: str):
    key = _keys(tmp_path / "keys")
    bad = {"missing": tmp_path / "nope.key_secret",
           "public_only": key.with_suffix(".key"),
           "not_a_key": tmp_path / "setup.cfg"}[problem]
    if problem == "not_a_key":
        bad.write_text("[metadata]\nname = x\n")
    path = write_config(tmp_path, endpoints={"curve_key": str(bad)})
    proc = subprocess.run([sys.executable, "-m", "flirstream", "capture", "--config", str(path)],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "curve_key" in error[0] and "expected" in error[0], proc.stderr
