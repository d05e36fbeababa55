"""Capture's camera control channel: a ROUTER on [endpoints] camera, served on its own thread.

The thread owns the socket and every CCI call (commands, and reading the camera's state once a
second), so I2C never holds up the frame loop reading SPI. Requests and replies are in wire.py
("camera control"); capture.camera does the work.
"""
from __future__ import annotations

import logging
import threading
import time

import zmq

from flirstream import links, wire

from .camera import POLL_EVERY_S, Camera, reply_for

log = logging.getLogger("capture.control")


def bind(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """The bound ROUTER (ConfigError naming [endpoints] camera if it cannot bind)."""
    return links.control_router(ctx, "camera", endpoint, hwm=64)


class ControlThread(threading.Thread):
    """Serves the ROUTER and reads the camera's state every POLL_EVERY_S. It sleeps in one poll
    until a request, the next camera read or wake() (after `stop` is set): no wake-ups while
    idle (a 100 ms poll timeout was ten wake-ups a second for nothing)."""

    def __init__(self, sock: zmq.Socket, camera: Camera, stop: threading.Event):
        super().__init__(name="camera-control", daemon=True)
        self.sock = sock
        self.camera = camera
        self.stop = stop
        endpoint = f"inproc://capture-control-wake-{id(self)}"
        self._wake_rx = sock.context.socket(zmq.PAIR)  # used by the thread only
        self._wake_rx.bind(endpoint)
        self._wake_tx = sock.context.socket(zmq.PAIR)  # used by the caller's thread only
        self._wake_tx.connect(endpoint)

    def wake(self) -> None:
        """Make the thread look at `stop` now (call from the thread that made this object)."""
        try:
            self._wake_tx.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # already woken (or the thread is gone): it sees `stop` anyway

    def run(self) -> None:
        camera = self.camera  # started (identified, set up) before the frame loop began
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        polled = time.monotonic()
        try:
            while not self.stop.is_set():
                # reapply_needed can also be set by the frame loop (observe): looked at when the
                # camera is read, at most POLL_EVERY_S later
                left = polled + POLL_EVERY_S - time.monotonic()
                ready = dict(poller.poll(max(0, int(left * 1000) + 1))) if left > 0 else {}
                if self.sock in ready:
                    self._serve()
                if self._wake_rx in ready:
                    return
                now = time.monotonic()
                if now - polled >= POLL_EVERY_S:
                    polled = now
                    if not camera.reapply_if_needed():
                        camera.poll()
        finally:
            self.sock.close(linger=0)
            self._wake_rx.close(linger=0)

    def _serve(self) -> None:
        try:
            parts = self.sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(parts) < 2:
            return
        identity, payload = parts[0], parts[-1]
        try:
            message = wire.unpack_control(payload)
        except wire.WireError as exc:
            # unpack_control insists on op or ok: a request without op is a bad request too
            reply = wire.camera_reply(error=str(exc), reason="bad_request")
        else:
            reply = reply_for(self.camera, message)
        try:
            self.sock.send_multipart([identity, *parts[1:-1], reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("camera control reply not sent: %s", exc)
