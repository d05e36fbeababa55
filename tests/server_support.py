"""Helpers for the server tests: a stand-in encoder on real ZeroMQ sockets, HTTP/websocket clients."""
from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import zmq

from conftest import Stage, write_config
from flirstream import config as configuration, radiometric, wire
from flirstream.testing import tlinear_counts
from server.protocol import split_frame
from websockets.sync.client import connect

def image_frame(seq: int, t: Optional[float] = None, rows: int = 120, cols: int = 160,
                tlinear: bool = True, palette: str = "ironbow", side: int = 2,
                noisy: bool = False) -> wire.Frame:
    """A valid frame with its picture: a warm spot moving with seq over 20 degrees C, and a real
    JPEG of it (no rotation: the picture's pixels are the frame's)."""
    y, x = np.mgrid[0:rows, 0:cols]
    cx, cy = (seq * 3) % cols, rows // 2
    celsius = 20.0 + 15.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 200.0)
    pixels = tlinear_counts(celsius) if tlinear \
        else np.round(celsius * 300).astype(np.uint16)
    grey = cv2.normalize(pixels, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    big = cv2.resize(grey, (cols * side, rows * side), interpolation=cv2.INTER_NEAREST)
    if noisy:
        big = np.random.default_rng(seq).integers(0, 256, big.shape, dtype=np.uint8)
    colour = cv2.applyColorMap(big, cv2.COLORMAP_JET)
    ok, jpeg = cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_QUALITY, 95 if noisy else 80])
    assert ok
    now = time.time() if t is None else t
    return wire.Frame(
        seq=seq, t=now - 0.03, sensor="lepton3", pixels=pixels, tlinear=tlinear,
        kelvin_per_count=0.01,
        picture=wire.Picture(
            t_encoded=now, jpeg=jpeg.tobytes(), pixels=pixels, width=cols * side,
            height=rows * side, palette=palette, agc="linear", unit="C" if tlinear else "counts",
            range=(20.0, 35.0),
            stats={"min": 20.0, "max": 35.0, "mean": 21.0, "centre": 20.5, "min_xy": [0, 0],
                   "max_xy": [int(cx), int(cy)]}))


def thermal_frame(seq: int, t: Optional[float] = None) -> wire.Frame:
    """The measured frame the encoder publishes next to image_frame(seq) (sensor orientation)."""
    image = image_frame(seq, t)
    return wire.Frame(
        seq=seq, t=image.t, sensor="lepton3", pixels=image.pixels,
        telemetry={"fpa_temp_c": 31.25, "ffc_state": "complete", "uptime_ms": 5},
        measurement=wire.Measurement(
            t_measured=image.picture.t_encoded, unit="C", stats=image.picture.stats,
            regions={"door": {"min": 20.0, "max": 30.5, "mean": 22.0, "max_xy": [3, 4]}}))


DEFAULT_SETTINGS = {k: v.default for k, v in configuration.SCHEMA["encoder"].items()}


@dataclass
class FakeEncoder:
    """The stand-in encoder: publishes frames and status like the encoder (real PUB) and answers
    control (real ROUTER; none if `control` is None). Subclasses (viewer_support.FramePublisher)
    publish other frames and statuses: _frames() and _status()."""

    images: str
    control: Optional[str]
    fps: float = 20.0
    status_every: float = 0.5  # seconds
    capture_state: str = "streaming"
    encoder_state: str = "encoding"
    pause_when_unwatched: bool = False  # like the encoder: frames only while viewers > 0
    jpeg_side: int = 2  # JPEG size = sensor size * this
    noisy: bool = False  # a noisy picture makes a big JPEG (memory tests)
    send_frames: bool = True
    send_thermal: bool = True  # thermal frames flow paused or not, as the encoder's do
    # Set: each thermal frame carries its RAD2 at this step, as the encoder's do while the server
    # reports thermal-mode viewers (None: without, as before the first such report).
    radiometric_step: Optional[int] = None
    answer_control: bool = True
    refuse: Optional[str] = None  # answer every "set" with this error
    settings: dict = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    requests: list = field(default_factory=list)
    seq: int = 0
    measured: int = 0  # thermal frames sent

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._injected: list = []
        self._ctx = zmq.Context()
        self._pub = self._publisher()
        self._router = None
        if self.control is not None:
            self._router = self._ctx.socket(zmq.ROUTER)
            self._router.setsockopt(zmq.LINGER, 0)
            self._router.bind(self.control)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _publisher(self) -> zmq.Socket:
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        # Room for a burst (two statuses, then injected messages): at 2, a busy I/O thread makes
        # ZeroMQ drop what a test injected right after a status, and the test waits in vain.
        pub.setsockopt(zmq.SNDHWM, 64)
        pub.bind(self.images)
        return pub

    def viewer_counts(self) -> list[int]:
        return [r["count"] for r in list(self.requests) if r.get("op") == "viewers"]

    def _status(self) -> None:
        encoder_state = "paused" if self.paused() else self.encoder_state
        for stage, state in (("capture", self.capture_state), ("encoder", encoder_state)):
            extra = {"settings": dict(self.settings)} if stage == "encoder" else {}
            counters = {"frames": self.seq, "errors": 0, **({"discards": 7} if stage == "capture"
                                                             else {})}
            self._pub.send_multipart(wire.pack_status(
                stage, state, f"{stage} is {state}", t=time.time(), source="sim",
                counters=counters, **extra))

    def paused(self) -> bool:
        counts = self.viewer_counts()
        return self.pause_when_unwatched and (not counts or counts[-1] == 0)

    def _answer(self) -> None:
        identity, *rest = self._router.recv_multipart()
        request = wire.check_control_request(wire.unpack_control(rest[-1]))
        self.requests.append(request)
        if not self.answer_control:
            return
        reply = wire.control_reply(settings=dict(self.settings))
        if request["op"] == "set" and self.refuse:
            reply = wire.control_reply(error=self.refuse)
        elif request["op"] == "set":
            try:
                for key, value in request["settings"].items():
                    configuration.parse_value("encoder", key, str(value))
            except configuration.ConfigError as exc:
                reply = wire.control_reply(error=str(exc))
            else:
                self.settings.update(request["settings"])
                reply["settings"] = dict(self.settings)
        elif request["op"] == "viewers":
            reply = wire.control_reply()
        if "id" in request:
            reply["id"] = request["id"]
        self._router.send_multipart([identity, wire.pack_control(reply)])

    def _frames(self) -> None:
        if self.send_frames and not self.paused():
            self.seq += 1
            frame = image_frame(self.seq, side=self.jpeg_side, noisy=self.noisy)
            self._pub.send_multipart(wire.pack_image(frame), copy=False)
        if self.send_frames and self.send_thermal:
            self.measured += 1
            frame, step = thermal_frame(self.measured), self.radiometric_step
            if step is not None:
                frame.measurement.radiometric = radiometric.encode(frame.pixels, step=step)
            self._pub.send_multipart(wire.pack_thermal(frame), copy=False)

    def _run(self) -> None:
        next_frame = next_status = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_status:
                self._status()
                next_status = now + self.status_every
            while self._injected:
                self._pub.send_multipart(self._injected.pop(0))
            if now >= next_frame:
                self._frames()
                next_frame = now + 1.0 / self.fps
            timeout = max(0.0, min(next_frame, next_status) - time.monotonic())
            if self._router is None:
                self._stop.wait(timeout)
            elif self._router.poll(int(timeout * 1000) + 1):
                self._answer()

    def inject(self, parts: list) -> None:
        """Publish arbitrary message parts (from the encoder's thread: sockets are not thread-safe)."""
        self._injected.append(parts)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        self._ctx.destroy(0)


# ---------------------------------------------------------------- clients

def http_get(port: int, path: str, host: str = "127.0.0.1", headers: Optional[dict] = None,
             timeout: float = 10.0, tls: Optional[ssl.SSLContext] = None
             ) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body)."""
    if tls is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def basic_auth(password: str, user: str = "viewer") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def wait_http(port: int, path: str = "/healthz", host: str = "127.0.0.1", timeout: float = 20.0,
              want: Optional[int] = None, tls: Optional[ssl.SSLContext] = None, **kw) -> int:
    """Wait until the server answers `path` (with status `want` if given); returns the status."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, _, _ = http_get(port, path, host=host, timeout=2.0, tls=tls, **kw)
            if want is None or status == want:
                return status
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{host}:{port}{path} did not answer {want or ''} within {timeout} s: {last}")


def raw_request(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send bytes as they are (no client-side URL normalisation) and read the whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def write_index(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.html").write_text("<!doctype html><title>test viewer</title><p>viewer")
    (directory / "sub").mkdir(exist_ok=True)
    (directory / "sub" / "x.js").write_text("// x")
    return directory


def json_messages(ws, count: int, timeout: float = 5.0) -> list[dict]:
    """The next `count` text messages of a websockets client, skipping binary frames."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {len(out)} of {count} text messages within {timeout} s: {out}")
        message = ws.recv(timeout=left)
        if isinstance(message, str):
            out.append(json.loads(message))
    return out


class Live:
    """A server process with a stand-in encoder, on free loopback ports."""

    def __init__(self, directory: Path, *args: str, encoder: Optional[dict] = None,
                 wait_for: Optional[int] = 200, wrap: tuple = (), **server: str) -> None:
        static = write_index(directory / "static")
        (static / "img.html").write_text('<!doctype html><img id="v" src="/stream.mjpg">')
        (directory / "secret.txt").write_text("TOP-SECRET-OUTSIDE-STATIC")
        self.conf = write_config(directory, server={"static_dir": str(static), **server})
        self.cfg = configuration.load(self.conf)
        self.port = self.cfg.server.port
        self.host = "::1" if self.cfg.server.host in ("::1", "::") else "127.0.0.1"
        self.encoder = FakeEncoder(self.cfg.endpoints.images, self.cfg.endpoints.control,
                                   **(encoder or {}))
        self.stage = Stage("server", self.conf, *args, wrap=wrap)
        if self.cfg.server.tls_cert:
            return  # the test waits with its own TLS client
        try:
            wait_http(self.port, host=self.host, want=wait_for, **self._auth())
        except AssertionError:
            self.close()
            raise

    def _auth(self) -> dict:
        token = self.cfg.server.token
        return {"headers": basic_auth(token)} if token else {}

    def ws(self, path: str = "/ws", **kw):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return connect(f"ws://{host}:{self.port}{path}", open_timeout=5, close_timeout=2, **kw)

    def close(self) -> int:
        status = self.stage.stop()
        self.encoder.close()
        return status


def frames(ws, count: int, timeout: float = 10.0, split=split_frame) -> list[tuple]:
    """The next `count` binary messages of a websockets client, split (server.protocol)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes):
            out.append(split(message))
    return out


def read_mjpeg_parts(port: int, count: int, timeout: float = 10.0) -> tuple[dict, list[bytes]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/stream.mjpg")
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        assert response.status == 200
        boundary = re.search(r"boundary=(\S+)", headers["content-type"]).group(1).encode()
        buffer, parts = b"", []
        part = re.compile(rb"--" + re.escape(boundary) + rb"\r\nContent-Type: image/jpeg\r\n"
                          rb"Content-Length: (\d+)\r\n\r\n")
        while len(parts) < count:
            buffer += response.read1(65536)
            m = part.match(buffer)
            while m and len(buffer) >= m.end() + int(m.group(1)) + 2:
                end = m.end() + int(m.group(1))
                parts.append(buffer[m.end():end])
                assert buffer[end:end + 2] == b"\r\n"
                buffer = buffer[end + 2:]
                m = part.match(buffer)
        return headers, parts
    finally:
        conn.close()
