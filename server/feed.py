"""Frames and status from the encoder: a ZeroMQ SUB socket read on Tornado's event loop.

Each time the socket is readable it is drained: every status message is handled (they are rare and
each may change a state), but of the frames only the newest is - older ones are counted and dropped,
so a busy server never falls behind the camera.
"""
from __future__ import annotations

import asyncio
import logging
import time

import zmq
import zmq.asyncio

from flirstream import links, wire

from .hub import Hub
from .metrics import Metrics

log = logging.getLogger("feed")


class Feed:
    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, hub: Hub, metrics: Metrics) -> None:
        self.endpoint = endpoint
        self.hub = hub
        self.metrics = metrics  # counts the frames refused here
        self.sock = links.subscriber(ctx, endpoint, wire.IMAGE_TOPIC)
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.STATUS_TOPIC)
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.THERMAL_TOPIC)
        self._sync = zmq.Socket.shadow(self.sock.underlying)  # for the non-blocking drain
        self._last_complaint: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.sock.poll(1000, zmq.POLLIN)
                newest, statuses, skipped = links.drain_by_topic(self._sync)
            except zmq.ZMQError as exc:  # socket closed on shutdown
                log.debug("feed stopped: %s", exc)
                return
            for parts in statuses:
                self._one("bad status message", self._status, parts)
            thermal = newest.get(wire.THERMAL_TOPIC)
            if thermal is not None:
                self._one("bad thermal message", self._thermal, thermal)
            image = newest.get(wire.IMAGE_TOPIC)
            if image is not None:
                self._one("bad frame message", self._image, image, skipped.get(wire.IMAGE_TOPIC, 0))
            await asyncio.sleep(0)  # let writes and requests run between bursts

    def _one(self, kind: str, handle, *args) -> None:
        """Handle one message; whatever is wrong with it costs that message only (and one line)."""
        try:
            handle(*args)
        except wire.WireError as exc:
            self._complain(kind, exc)
        except Exception as exc:  # a bug meeting odd input: the feed must outlive it
            self._complain(kind, exc)
            log.debug("feed failure", exc_info=True)

    def _status(self, parts: list) -> None:
        self.hub.on_status(wire.unpack_status(parts))

    def _thermal(self, parts: list) -> None:
        self.hub.on_thermal(wire.unpack_thermal(parts))

    def _image(self, parts: list, skipped: int) -> None:
        try:
            frame = wire.unpack_image(parts)
        except wire.WireError:
            self.metrics.frame_bad()
            raise
        self.hub.on_image(frame, skipped)

    def _complain(self, kind: str, exc: Exception) -> None:
        """Log bad input at most every 5 s per kind, so a broken publisher cannot flood the log and
        one kind of problem does not hide another."""
        now = time.monotonic()
        last = self._last_complaint.get(kind)
        if last is None or now - last >= 5.0:
            self._last_complaint[kind] = now
            log.warning("%s: %s (from %s; such messages are dropped)", kind, exc, self.endpoint)

    def close(self) -> None:
        self.sock.close(0)
