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
    def __init__(self, sock: zmq.Socket, camera: Camera, stop: threading.Event):
        super().__init__(name="camera-control", daemon=True)
        self.sock = sock
        self.camera = camera
        self.stop = stop

    def run(self) -> None:
        camera = self.camera  # started (identified, set up) before the frame loop began
        polled = time.monotonic()
        while not self.stop.is_set():
            if self.sock.poll(100):
                self._serve()
            now = time.monotonic()
            if now - polled >= POLL_EVERY_S:
                polled = now
                if not camera.reapply_if_needed():
                    camera.poll()
        self.sock.close(linger=0)

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
