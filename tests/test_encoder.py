"""The encoder as a real process between real ZeroMQ sockets: the test publishes raw frames the way
capture does, subscribes to the images, and talks to the control socket like the server."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from conftest import write_config
from encoder import palettes
from flirstream import config, links, radiometric, wire
from flirstream.testing import StandInCapture, thread_policies, tlinear_counts, wait_until

ROWS, COLS = 120, 160
WAIT_S = 15.0  # bound on every wait for the process (start-up on a busy 2-core machine included)


def noisy(seq: int) -> np.ndarray:
    """A frame of noise (heavy to JPEG-encode), different every time."""
    return np.random.default_rng(seq).integers(29000, 31000, (ROWS, COLS)).astype(np.uint16)


def two_halves(seq: int) -> np.ndarray:
    """Left half 20 °C, right half 30 °C, and the seq in the first pixel so frames differ."""
    frame = np.full((ROWS, COLS), tlinear_counts(20), np.uint16)
    frame[:, COLS // 2:] = tlinear_counts(30)
    frame[0, 0] = tlinear_counts(20) + seq % 50
    return frame


class Client:
    """The server's side: a SUB on the images and a DEALER on the control endpoint."""

    def __init__(self, cfg_path: Path, topics=(b"",), rcvhwm: int = 1000, rcvbuf: int = -1):
        self.cfg = config.load(cfg_path)
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sub.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sub.setsockopt(zmq.RCVBUF, rcvbuf)  # -1: the kernel's (autotuned, megabytes)
        for topic in topics:
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(self.cfg.endpoints.images)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(self.cfg.endpoints.control)

    def close(self) -> None:
        self.ctx.destroy(0)

    def next(self, want: Callable[[str, object], bool] = lambda kind, m: kind == "image",
             timeout: float = WAIT_S):
        """The first message (kind "image" -> Frame with its picture, "thermal" -> with its
        measurement, "status" ->
        dict) that `want` accepts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            parts = self.sub.recv_multipart()
            topic = wire.topic_of(parts)
            if topic == wire.IMAGE_TOPIC:
                kind, message = "image", wire.unpack_image(parts)
            elif topic == wire.THERMAL_TOPIC:
                kind, message = "thermal", wire.unpack_thermal(parts)
            else:
                kind, message = "status", wire.unpack_status(parts)
            if want(kind, message):
                return message
        raise AssertionError(f"no wanted message within {timeout} s")

    def status(self, stage: str, state: Optional[str] = None, timeout: float = WAIT_S) -> dict:
        return self.next(lambda kind, m: kind == "status" and m["stage"] == stage
                         and (state is None or m["state"] == state), timeout)

    def ask(self, request, timeout: float = WAIT_S) -> dict:
        """Send one control request (dict, or raw bytes/parts as they are) and return the reply."""
        if isinstance(request, dict):
            self.dealer.send(wire.pack_control(request))
        elif isinstance(request, list):
            self.dealer.send_multipart(request)
        else:
            self.dealer.send(request)
        assert self.dealer.poll(int(timeout * 1000)), f"no reply to {request!r}"
        return json.loads(self.dealer.recv())

    def drain(self) -> None:
        while self.sub.poll(0):
            self.sub.recv_multipart()


@pytest.fixture
def rig(tmp_path, stages):
    """start(encoder={...}) -> (config path, StandInCapture, Client, encoder Stage)."""
    made: list = []

    def start(fps: float = 30.0, rcvhwm: int = 1000, rcvbuf: int = -1, topics=(b"",),
              make: Callable[[int], np.ndarray] = two_halves, **sections):
        path = write_config(tmp_path, **sections)
        cfg = config.load(path)
        capture = StandInCapture(cfg.endpoints.frames, make, fps, detail="simulated")
        made.append(capture)
        client = Client(path, topics=topics, rcvhwm=rcvhwm, rcvbuf=rcvbuf)
        made.append(client)
        encoder = stages("encoder", path)
        return path, capture, client, encoder

    yield start
    for thing in reversed(made):
        (thing.stop if isinstance(thing, StandInCapture) else thing.close)()


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "JPEG does not decode"
    return image


def halves_colours(image: wire.Frame) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour deep inside the left (cold) and right (hot) halves of the picture."""
    picture = decode(image.picture.jpeg).astype(int)
    h, w = picture.shape[:2]
    left = picture[h // 4: 3 * h // 4, w // 8: 3 * w // 8].reshape(-1, 3).mean(axis=0)
    right = picture[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8].reshape(-1, 3).mean(axis=0)
    return left, right


def looks_like(colour: np.ndarray, palette: str, index: int, tolerance: float = 12) -> bool:
    return float(np.abs(colour - palettes.lut(palette)[index, 0]).max()) <= tolerance


LINEAR_NOW = {"agc": "linear", "clip_percent": "0, 100", "smoothing": "0"}


# ---------------------------------------------------------------- frames in, JPEGs out

def test_raw_frames_in_jpegs_with_stats_out(rig):
    _, capture, client, encoder = rig(encoder=LINEAR_NOW)
    image = client.next()
    assert (image.picture.width, image.picture.height) == (640, 480)
    assert decode(image.picture.jpeg).shape == (480, 640, 3)
    assert image.picture.palette == "ironbow" and image.picture.agc == "linear" and image.picture.unit == "C"
    assert np.array_equal(image.picture.pixels, two_halves(image.seq))  # the radiometric frame rides along
    assert image.picture.stats["min"] == 20.0 and image.picture.stats["max"] == 30.0
    assert image.picture.stats["max_xy"] == [COLS // 2, 0]
    assert image.picture.range == (20.0, 30.0)
    # the stages' counters travel in their statuses (frames carry none): capture's forwarded
    assert client.status("capture")["counters"]["frames"] >= 1
    assert client.status("encoder")["counters"]["frames"] >= 1
    left, right = halves_colours(image)
    assert looks_like(left, "ironbow", 0) and looks_like(right, "ironbow", 255)

    # capture's status is forwarded as it is, and the encoder says what it does
    assert client.status("capture")["detail"] == "simulated"
    mine = client.status("encoder", "encoding")
    assert mine["counters"]["frames"] >= 1 and mine["settings"]["palette"] == "ironbow"
    assert "ironbow" in encoder.log() and "tcp://127.0.0.1" in encoder.log()  # start-up lines


def noise(seq: int) -> np.ndarray:
    """A different frame of noise each time: JPEGs far bigger than a smooth scene's."""
    return np.random.default_rng(seq).integers(tlinear_counts(0), tlinear_counts(100), (ROWS, COLS),
                                               dtype=np.uint16)


def test_big_jpegs_are_copied_into_zeromq_not_sent_zero_copy(rig):
    """pyzmq sends a part over its copy_threshold (64 KB) zero-copy unless told to copy, and then
    runs a garbage-collector thread with a ZeroMQ context of its own, woken for every such frame."""
    _, capture, client, encoder = rig(make=noise, encoder={"quality": 95})
    sizes = [len(client.next().picture.jpeg) for _ in range(10)]
    assert min(sizes) > zmq.COPY_THRESHOLD, sizes  # (the case in question: a real scene is ~70 KB)
    tasks = Path(f"/proc/{encoder.pid}/task")
    names = [(task / "comm").read_text().strip() for task in tasks.iterdir()]
    assert names.count("ZMQbg/IO/0") == 1, names  # the encoder's own context, and no other


def test_zeromqs_threads_wait_for_the_encoders_loop_instead_of_preempting_it(rig):
    _, capture, client, encoder = rig()
    client.next()
    policies = thread_policies(encoder.pid)
    assert policies["ZMQbg/IO/0"] == {os.SCHED_BATCH}, policies  # links.yielding_io_threads
    assert policies["python"] == {os.SCHED_OTHER}, policies  # the loop itself as it was


def test_bad_raw_frames_are_counted_and_skipped(rig, tmp_path):
    path, capture, client, encoder = rig()
    client.next()
    cfg = config.load(path)
    capture.stop()  # replace it by one that sends junk between good frames
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(cfg.endpoints.frames)
    try:
        good = wire.pack_raw(wire.Frame(seq=999, t=0.0, sensor="lepton3", pixels=two_halves(1)))
        deadline = time.monotonic() + WAIT_S
        got = None
        while time.monotonic() < deadline and got is None:
            pub.send_multipart([b"raw", b"{not json", b"xx"])
            pub.send_multipart([b"raw", good[1], b"short"])
            block = wire.FRAME_BLOCKS[wire.RAW_TOPIC]
            nan = block.pack(*block.unpack(good[1])[:-1], float("nan"))  # kelvin_per_count
            pub.send_multipart([b"raw", nan, good[2]])
            assert nan != good[1]
            time.sleep(0.05)  # so the junk is not skipped as stale: it must be read and refused
            pub.send_multipart(good)
            if client.sub.poll(100):
                parts = client.sub.recv_multipart()
                if wire.topic_of(parts) == wire.IMAGE_TOPIC:
                    got = wire.unpack_image(parts)
        assert got is not None and got.seq == 999
        for _ in range(3):  # now that frames surely get through, junk as the newest message
            pub.send_multipart([b"raw", b"{not json", b"xx"])
            time.sleep(0.1)
            pub.send_multipart([b"raw", nan, good[2]])
            time.sleep(0.1)
        status = client.next(lambda kind, m: kind == "status" and m["stage"] == "encoder"
                             and m["counters"]["errors"] >= 6, timeout=5)
        assert "raw header holds nan" in status["last_error"]  # refused where it is read
        assert encoder.proc.poll() is None
        assert encoder.proc.poll() is None
    finally:
        ctx.destroy(0)
    # one rate-limited line per kind of problem (at most every 5 s): whichever came first is named
    assert "dropped a frame" in encoder.log()


# ---------------------------------------------------------------- newest frame only

def test_slow_encoder_skips_frames_instead_of_queueing(rig):
    # a huge lanczos picture of noise takes far longer (~0.1 s) than the 100 fps input's 10 ms
    _, capture, client, encoder = rig(
        fps=100, make=noisy,
        encoder={"size": "2560x1920", "interpolation": "lanczos", "quality": "100"})
    first = client.next(timeout=WAIT_S)
    # ~2 s of input (on a slow machine the stand-in publishes later, not fewer)
    assert wait_until(lambda: capture.seq >= first.seq + 200, WAIT_S), "capture stalled"
    capture.stop()
    last = capture.seq
    seqs = [first.seq]
    final = client.next(lambda kind, m: kind == "image" and (seqs.append(m.seq) or m.seq == last),
                        timeout=10)
    assert final.seq == last  # the newest frame is encoded in the end, none older after it
    assert seqs == sorted(seqs) and len(seqs) < (last - first.seq) / 2  # most were skipped
    status = client.status("encoder")
    assert status["counters"]["skipped"] > 0


def test_slow_subscriber_finds_a_short_backlog_not_a_queue(rig):
    # ZeroMQ drops new messages for a subscriber whose queue is full, so what waits for a slow
    # subscriber is bounded by the encoder's high-water mark and its small kernel send buffer
    # (without that buffer limit ~77 old messages, 38 frames, would wait here: 3 MB on loopback).
    # This subscriber's own receive buffer is pinned: autotuned, the kernel grows it as far as
    # tcp_rmem allows (32 MB on some hosts), which is the subscriber's backlog, not the encoder's.
    receive_buffer, receive_hwm = 64 * 1024, 2
    _, capture, client, encoder = rig(fps=30, rcvhwm=receive_hwm, rcvbuf=receive_buffer)
    started = client.next().seq
    # a backlog's worth of frames made while this subscriber does not read (~3 s at 30 fps)
    assert wait_until(lambda: capture.seq >= started + 90, WAIT_S), "capture stalled"
    produced_by = capture.seq
    # What waited is what was made by now: frames made while this subscriber catches up come
    # meanwhile (more of them on a slower machine) and are not counted; nor are statuses, which
    # only take room frames would have had.
    waited, newest_seq, smallest = 0, 0, sys.maxsize
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and newest_seq < produced_by:
        if not client.sub.poll(200):
            continue
        parts = client.sub.recv_multipart()
        topic = wire.topic_of(parts)
        if topic not in (wire.IMAGE_TOPIC, wire.THERMAL_TOPIC):
            continue
        frame = (wire.unpack_image if topic == wire.IMAGE_TOPIC else wire.unpack_thermal)(parts)
        smallest = min(smallest, sum(len(part) for part in parts))
        waited += frame.seq <= produced_by
        if topic == wire.IMAGE_TOPIC:
            newest_seq = max(newest_seq, frame.seq)
    assert newest_seq >= produced_by, "never caught up with the newest"
    # The bound, from the configuration: Linux doubles SO_SNDBUF / SO_RCVBUF for its bookkeeping
    # and lets each buffer go one segment (64 KB on loopback) over; the encoder's XPUB queues
    # 2 * FRAME_HWM messages, this SUB receive_hwm, and a message may be cut at each of the four
    # boundaries between these queues and buffers.
    segment = 64 * 1024
    in_kernel = 2 * links.SUBSCRIBER_SEND_BUFFER_BYTES + 2 * receive_buffer + 2 * segment
    bound = in_kernel // smallest + 4 + 2 * links.FRAME_HWM + receive_hwm
    assert waited <= bound, f"{waited} frame messages were waiting (bound {bound})"
    # The encoder itself kept going at full rate: its counters, in the next status read now that
    # this subscriber keeps up (before, a status could be dropped again and again at its full queue)
    assert client.status("encoder")["counters"]["frames"] > 60


# ---------------------------------------------------------------- control

def test_control_changes_the_palette_and_refuses_bad_settings(rig):
    _, capture, client, encoder = rig(encoder=LINEAR_NOW)
    image = client.next()
    left, right = halves_colours(image)
    assert looks_like(left, "ironbow", 0) and not looks_like(left, "jet", 0)

    reply = client.ask({"op": "set", "settings": {"palette": "jet"}, "id": 41})
    assert reply == {"v": 1, "ok": True, "id": 41, "settings": reply["settings"]}
    assert reply["settings"]["palette"] == "jet" and reply["settings"]["agc"] == "linear"
    image = client.next(lambda kind, m: kind == "image" and m.picture.palette == "jet")
    left, right = halves_colours(image)
    assert looks_like(left, "jet", 0) and looks_like(right, "jet", 255)

    reply = client.ask({"op": "set", "settings": {"palette": "purple"}, "id": "x"})
    assert reply["ok"] is False and reply["id"] == "x"
    assert "palette" in reply["error"] and "expected one of" in reply["error"]
    reply = client.ask({"op": "set", "settings": {"palette": "turbo", "quality": 500}})
    assert reply["ok"] is False and "quality" in reply["error"]  # all or nothing
    assert "control request refused" in encoder.log() and "purple" in encoder.log()
    assert client.ask({"op": "get"})["settings"]["palette"] == "jet"
    client.drain()
    for _ in range(3):
        image = client.next()
        assert image.picture.palette == "jet"
        assert looks_like(halves_colours(image)[0], "jet", 0)

    # JSON numbers and lists are taken too, and the picture follows
    reply = client.ask({"op": "set", "settings": {"size": [320, 240], "rotate": 180}})
    assert reply["ok"] and reply["settings"]["size"] == "320x240"
    image = client.next(lambda kind, m: kind == "image" and m.picture.width == 320)
    assert decode(image.picture.jpeg).shape == (240, 320, 3)
    left, right = halves_colours(image)  # turned round: hot on the left now
    assert looks_like(left, "jet", 255) and looks_like(right, "jet", 0)
    assert "settings changed" in encoder.log()


@pytest.mark.parametrize("request_parts,error", [
    (b"\xff\x00 not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"v": 2, "op": "get"}', "version 2"),
    (b'{"v": 1}', "neither 'op' nor 'ok'"),
    (b'{"v": 1, "op": "dance"}', "unknown op 'dance'"),
    (b'{"v": 1, "op": "set", "settings": "jet"}', "must be an object"),
    (b'{"v": 1, "op": "set", "settings": {"palette": ["a", "b"]}}', "palette"),
    (b'{"v": 1, "op": "set", "settings": {"colour": "red"}}', "unknown key"),
    # these two used to stop the encoder (RecursionError, TypeError in Renderer.update)
    (b"[" * 5000, "nested more than"),
    (b'{"v": 1, "op": "set", "settings": {"self": "x"}}', "unknown key"),
    (b'{"v": 1, "op": "set", "settings": {"palette": "jet", "kwargs": 1}}', "unknown key"),
    (b'{"v": 1, "op": "get", "id": 1e999}', "out of range"),
    (b'{"v": 1, "op": "viewers", "count": -1}', "count"),
    (b'{"v": 1, "op": "viewers", "count": "3"}', "count"),
    (b'{"v": 1, "op": "viewers", "count": 1, "thermal": -2}', "thermal"),
])
def test_bad_control_messages_get_a_reason(rig, request_parts, error):
    _, capture, client, encoder = rig()
    reply = client.ask(request_parts)
    assert reply["ok"] is False and error in reply["error"], reply
    assert client.ask({"op": "get", "id": [1]}) == {"v": 1, "ok": True, "id": [1],
                                                    "settings": client.ask({"op": "get"})["settings"]}
    assert encoder.proc.poll() is None


def test_odd_control_traffic_does_not_stop_the_encoder(rig):
    _, capture, client, encoder = rig()
    client.next()
    client.dealer.send_multipart([b"one", b"two", b'{"v": 1, "op": "get"}'])  # extra parts
    assert client.dealer.poll(WAIT_S * 1000)
    assert json.loads(client.dealer.recv_multipart()[-1])["ok"] is True
    client.dealer.send(b"")  # empty
    assert json.loads(client.dealer.recv())["ok"] is False
    # a REQ client (with its empty delimiter frame) is answered too
    req = client.ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(client.cfg.endpoints.control)
    req.send(wire.pack_control({"op": "get"}))
    assert req.poll(WAIT_S * 1000) and json.loads(req.recv())["ok"] is True
    # an oversized message only costs that peer its connection
    big = client.ctx.socket(zmq.DEALER)
    big.setsockopt(zmq.LINGER, 0)
    dropped = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    big.connect(client.cfg.endpoints.control)
    big.send(b"{" + b" " * 200_000 + b"}")
    assert dropped.poll(WAIT_S * 1000), "the peer of an oversized message kept its connection"
    assert recv_monitor_message(dropped)["event"] == zmq.EVENT_DISCONNECTED
    assert client.ask({"op": "get"})["ok"] is True
    client.drain()
    client.next()  # frames still flow
    assert encoder.proc.poll() is None


# ---------------------------------------------------------------- watching or not

def test_viewers_zero_pauses_and_one_resumes(rig):
    _, capture, client, encoder = rig()
    client.next()
    assert client.ask({"op": "viewers", "count": 0})["watched"] is False
    status = client.status("encoder", "paused", timeout=5)
    assert "0 viewers" in status["detail"]
    client.ask({"op": "viewers", "count": 0})  # the server's heartbeat: a count lasts 3 s
    # after the paused status no image comes, although frames keep arriving (statuses still do)
    deadline = time.monotonic() + 1.5
    statuses = measured = 0
    while time.monotonic() < deadline:
        if client.sub.poll(100):
            parts = client.sub.recv_multipart()
            assert wire.topic_of(parts) != wire.IMAGE_TOPIC, "an image while paused"
            statuses += wire.topic_of(parts) == wire.STATUS_TOPIC
            measured += wire.topic_of(parts) == wire.THERMAL_TOPIC
    assert statuses >= 1
    assert measured >= 5  # measurements never pause
    reply = client.ask({"op": "viewers", "count": 1})
    assert reply["ok"] and reply["watched"] is True
    client.next(timeout=5)
    counters = client.status("encoder", "encoding")["counters"]
    assert counters["unwatched"] > 0  # frames dropped unencoded while paused
    assert counters["paused"] is False


def test_nobody_subscribed_to_images_means_paused(rig):
    path, capture, client, encoder = rig(topics=(b"status",))
    status = client.status("encoder", "paused")
    assert "nobody subscribes" in status["detail"]
    watcher = Client(path, topics=(wire.IMAGE_TOPIC,))
    try:
        image = watcher.next()
        assert image.picture.width == 640
        client.next(lambda kind, m: kind == "status" and m["stage"] == "encoder"
                    and m["state"] == "encoding" and m["counters"]["frames"] >= 1)
    finally:
        watcher.close()
    assert client.status("encoder", "paused")["counters"]["paused"] is True  # it left again


def test_pause_when_unwatched_off_keeps_encoding(rig):
    _, capture, client, encoder = rig(encoder={"pause_when_unwatched": "no"})
    client.ask({"op": "viewers", "count": 0})
    client.drain()
    client.next(timeout=5)
    reply = client.ask({"op": "set", "settings": {"pause_when_unwatched": "yes"}})
    assert reply["ok"] and reply["settings"]["pause_when_unwatched"] == "yes"
    client.ask({"op": "viewers", "count": 0})
    assert client.status("encoder", "paused", timeout=5)["state"] == "paused"


# ---------------------------------------------------------------- restarts, signals, bind errors

def test_frames_flow_again_after_capture_restarts(rig):
    path, capture, client, encoder = rig()
    client.next()
    capture.stop()
    assert client.status("encoder", "waiting", timeout=10)["state"] == "waiting"
    restarted = StandInCapture(config.load(path).endpoints.frames, two_halves, 30.0,
                               detail="simulated", first_seq=5000)
    try:
        image = client.next(lambda kind, m: kind == "image" and m.seq >= 5000, timeout=10)
        assert decode(image.picture.jpeg).shape == (480, 640, 3)
    finally:
        restarted.stop()


def test_frames_flow_again_after_encoder_restarts(rig, stages):
    path, capture, client, encoder = rig()
    first = client.next()
    assert encoder.stop(signal.SIGINT) == 0
    assert "stopped:" in encoder.log_path.read_text()
    again = stages("encoder", path)
    client.drain()
    client.next(lambda kind, m: kind == "image" and m.seq > first.seq)  # frames flow again
    # a new encoder's count: of frames made since it started at most (the old one had counted
    # every frame since the first image it sent)
    assert client.status("encoder")["counters"]["frames"] <= capture.seq - first.seq
    assert again.stop(signal.SIGTERM) == 0


def test_endpoint_in_use_is_a_one_line_error(tmp_path):
    path = write_config(tmp_path)
    cfg = config.load(path)
    ctx = zmq.Context()
    taken = ctx.socket(zmq.PUB)
    taken.setsockopt(zmq.LINGER, 0)
    taken.bind(cfg.endpoints.images)
    try:
        proc = subprocess.run([sys.executable, "-m", "flirstream", "encoder", "--config", str(path)],
                              capture_output=True, text=True, timeout=30)
    finally:
        ctx.destroy(0)
    assert proc.returncode == 2
    error = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and f"[endpoints] images = {cfg.endpoints.images}: cannot bind" in error[0]


def test_every_frame_is_measured_in_sensor_orientation_watched_or_not(rig):
    _, capture, client, encoder = rig(encoder={"rotate": "90", "flip": "horizontal"})
    client.next()  # encoding
    thermal = client.next(lambda kind, m: kind == "thermal")  # measured before it is rendered
    image = client.next(lambda kind, m: kind == "image" and m.seq == thermal.seq)
    assert thermal.pixels.shape == (120, 160)  # as the camera delivered it, not rotated
    assert image.picture.pixels.shape == (160, 120)
    assert np.array_equal(np.sort(thermal.pixels, axis=None), np.sort(image.picture.pixels, axis=None))
    assert thermal.measurement.unit == "C" and thermal.measurement.stats["max"] == image.picture.stats["max"]
    x, y = thermal.measurement.stats["max_xy"]
    assert thermal.pixels[y, x] == thermal.pixels.max()
    client.ask({"op": "viewers", "count": 0})
    client.status("encoder", "paused", timeout=5)
    client.drain()
    paused_seq = client.next(lambda kind, m: kind == "thermal").seq
    assert client.next(lambda kind, m: kind == "thermal" and m.seq > paused_seq + 3)


def test_thermal_frames_carry_rad1_while_the_server_reports_thermal_viewers(rig):
    _, capture, client, encoder = rig()
    assert client.next(lambda kind, m: kind == "thermal").measurement.radiometric is None
    client.ask({"op": "viewers", "count": 0, "thermal": 2})
    frame = client.next(lambda kind, m: kind == "thermal" and m.measurement.radiometric is not None)
    payload = frame.measurement.radiometric  # TLinear 0.01 K frames: step 3, as the server did
    assert payload == radiometric.encode_frame(frame.pixels, frame.tlinear, frame.kelvin_per_count)
    assert radiometric.HEADER.unpack_from(payload)[3] == 3
    client.ask({"op": "viewers", "count": 0, "thermal": 0})
    client.next(lambda kind, m: kind == "thermal" and m.measurement.radiometric is None)


# ---------------------------------------------------------------- hostile input on every socket

def _raw_json(value) -> bytes:
    return json.dumps(value).encode()


class JunkCapture:
    """A PUB on the frames endpoint that the test drives itself: good frames and junk."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 1000)
        self.pub.bind(endpoint)
        self.seq = 0

    def good(self) -> list:
        self.seq += 1
        return wire.pack_raw(wire.Frame(seq=self.seq, t=time.time(), sensor="lepton3",
                                        pixels=two_halves(self.seq)))

    def close(self) -> None:
        self.ctx.destroy(0)


def _serves_frames_and_replies(client: Client, capture: JunkCapture, encoder) -> None:
    """The encoder is alive, answers control and renders a good frame sent now."""
    assert encoder.proc.poll() is None, encoder.log()[-3000:]
    assert client.ask({"op": "get"})["ok"] is True
    deadline = time.monotonic() + WAIT_S
    while True:
        first = capture.seq + 1
        capture.pub.send_multipart(capture.good())
        try:
            client.next(lambda kind, m: kind == "image" and m.seq >= first, timeout=0.5)
            return
        except AssertionError:
            assert time.monotonic() < deadline, "no frame rendered after the hostile input"


@pytest.fixture
def junk_rig(tmp_path, stages):
    path = write_config(tmp_path)
    cfg = config.load(path)
    capture = JunkCapture(cfg.endpoints.frames)
    client = Client(path)
    encoder = stages("encoder", path)
    _serves_frames_and_replies(client, capture, encoder)
    yield capture, client, encoder
    client.close()
    capture.close()


GOOD_BLOCK = bytes(wire.pack_raw(wire.Frame(seq=1, t=1.0, sensor="lepton3",
                                             pixels=np.zeros((2, 2), np.uint16)))[1])


@pytest.mark.parametrize("parts,why", [
    ([b"raw", GOOD_BLOCK + b"[" * 5000, b""], "nested more than"),  # used to be a RecursionError
    ([b"raw", GOOD_BLOCK + b'{"telemetry": {"t": ' + b"1" * 400 + b"}}", b""], "out of range"),
    ([b"raw", b'{"v": 1, "seq": 1}', b""], "older flir-stream"),
    ([b"status", b'{"v": 1, "t": 1, "stage": "capture", "state": "x", "counters": {"a": NaN}}'],
     "NaN"),
    ([b"status", b"{" * 5000], "nested more than"),
])
def test_one_hostile_frames_message_is_dropped_with_a_reason(junk_rig, parts, why):
    capture, client, encoder = junk_rig
    deadline = time.monotonic() + WAIT_S
    while True:  # sent until the encoder reports it (a PUB may drop it while the SUB reconnects)
        capture.pub.send_multipart(parts)
        try:
            status = client.next(lambda kind, m: kind == "status" and m["stage"] == "encoder"
                                 and why in m["last_error"], timeout=1.0)
            break
        except AssertionError:
            assert encoder.proc.poll() is None, encoder.log()[-3000:]
            assert time.monotonic() < deadline, f"no error about {parts!r:.80}"
    assert status["counters"]["errors"] >= 1
    _serves_frames_and_replies(client, capture, encoder)


def test_fuzzed_control_requests_and_frames_messages_never_stop_the_encoder(junk_rig):
    from hypothesis import HealthCheck, given, settings, strategies as st
    from fuzz_support import frame_headers, json_values as _json_values

    capture, client, encoder = junk_rig
    keys = st.sampled_from([*config.SCHEMA["encoder"], "self", "kwargs", "", "__class__"])
    request = st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 1, 2, "1", None])},
        optional={"op": st.sampled_from(["set", "get", "viewers", "x"]) | _json_values(),
                  "settings": st.dictionaries(keys, _json_values(), max_size=3) | _json_values(),
                  "count": st.integers(-3, 10**30) | _json_values(),
                  "id": _json_values()})
    control = st.one_of(request.map(_raw_json), st.binary(max_size=300),
                        _json_values().map(_raw_json),
                        st.integers(1, 3000).map(lambda n: b"[" * n),
                        st.integers(1, 3000).map(lambda n: b'{"a":' * n))
    header = st.one_of(
        frame_headers(bytes(capture.good()[1]), wire.RAW_TOPIC), _json_values().map(_raw_json),
        st.dictionaries(st.sampled_from(["v", "t", "stage", "state", "detail", "counters",
                                         "settings", "source", "x"]), _json_values(), max_size=5)
        .map(lambda d: _raw_json({"v": 1, "t": 1.0, "stage": "capture", "state": "x", **d})))
    message = st.tuples(st.sampled_from([b"raw", b"status", b"image", b"r"]), header,
                        st.sampled_from([b"", b"\0" * (ROWS * COLS * 2), b"\0" * 7]),
                        st.integers(1, 4))

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(control, message)
    def one(request_part, parts):
        topic, head, data, count = parts
        capture.pub.send_multipart([topic, head, data][:count])
        client.dealer.send(request_part)
        assert client.dealer.poll(int(WAIT_S * 1000)), \
            f"no reply to {request_part!r:.100}:\n{encoder.log()[-2000:]}"
        reply = json.loads(client.dealer.recv())
        assert reply["v"] == 1 and isinstance(reply["ok"], bool)

    one()
    _serves_frames_and_replies(client, capture, encoder)
    client.ask({"op": "set", "settings": {"size": "auto"}})  # whatever the fuzz set stays sane


def _zmtp_subscriber(endpoint: str) -> socket.socket:
    """A bare TCP connection speaking ZMTP 3.0 as a SUB: what a hostile subscriber can send, without
    a ZeroMQ socket of ours keeping a copy of every subscription (an XSUB would)."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=5)
    greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" * 32
    ready = b"\x05READY" + b"\x0bSocket-Type" + (3).to_bytes(4, "big") + b"SUB"
    conn.sendall(greeting + bytes([0x04, len(ready)]) + ready)
    return conn


def _zmtp_message(body: bytes) -> bytes:
    if len(body) < 256:
        return bytes([0x00, len(body)]) + body
    return b"\x02" + len(body).to_bytes(8, "big") + body


def test_a_subscription_flood_keeps_the_encoder_small_and_viewers_served(junk_rig):
    # The audit: 70,000 distinct 1 KB subscriptions took the encoder from 65 MB to 3.4 GB.
    import fcntl
    import struct
    import termios

    import psutil

    capture, client, encoder = junk_rig
    cfg = client.cfg
    process = psutil.Process(encoder.pid)
    before = process.memory_info().rss
    # 320-byte subscriptions (the audit's were 1 KB; anything longer than a topic is the same case)
    long_flood = b"".join(_zmtp_message(b"\x01" + b"%08d" % i * 40) for i in range(20_000))
    conn = _zmtp_subscriber(cfg.endpoints.images)
    unsent = lambda: struct.unpack("i", fcntl.ioctl(conn, termios.TIOCOUTQ, b"\0" * 4))[0]
    try:
        conn.sendall(flood := long_flood)
        # until the encoder has read all it will read: nothing left unsent in our socket, or
        # the same amount for a second (a peer refused by libzmq is read no further)
        last, still_since, deadline = unsent(), time.monotonic(), time.monotonic() + WAIT_S
        while last and time.monotonic() < deadline and time.monotonic() - still_since < 1.0:
            time.sleep(0.05)
            if unsent() != last:
                last, still_since = unsent(), time.monotonic()
    except OSError:
        pass  # cut off by the encoder: that is the point
    _serves_frames_and_replies(client, capture, encoder)
    grown = (process.memory_info().rss - before) / 1e6
    conn.close()
    print(f"encoder RSS grew by {grown:.1f} MB after {len(flood) / 1e6:.1f} MB of long subscriptions")
    assert grown < 100, f"encoder grew by {grown:.0f} MB"

    # 20,000 distinct short ones reach the encoder, which refuses (and does not keep) each
    xsub = client.ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.LINGER, 0)
    xsub.setsockopt(zmq.SNDHWM, 0)  # an XSUB drops what does not fit; every one must go
    xsub.connect(cfg.endpoints.images)
    for i in range(20_000):
        xsub.send(b"\x01" + b"x%07d" % i * 5)
    client.drain()
    client.next(lambda kind, m: kind == "status" and m["stage"] == "encoder"
                and m["counters"]["refused_subscriptions"] >= 20_000, timeout=60)
    grown = (process.memory_info().rss - before) / 1e6
    print(f"encoder RSS grew by {grown:.1f} MB after 20,000 distinct 40-byte subscriptions")
    assert grown < 100, f"encoder grew by {grown:.0f} MB"
    viewer = Client(client.cfg.path)  # a viewer arriving after the floods is served
    try:
        _serves_frames_and_replies(viewer, capture, encoder)
    finally:
        viewer.close()
    assert encoder.log().count("ignored a subscription") <= 5  # ...and cost a line per 5 s
