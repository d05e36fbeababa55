"""Frames and status from the encoder: a ZeroMQ SUB socket read on Tornado's event loop.

Each time the socket is readable it is drained: every status message is handled (they are rare and
each may change a state), but of the frames only the newest is - older ones are counted and dropped,
so a busy server never falls behind the camera.

The socket's ZMQ_FD is watched by the event loop itself (loop.add_reader), not through zmq.asyncio:
its poll() costs a future, a timer and four or five trips round the loop per frame, more CPU than
the rest of a frame's work but the RAD2 encode. ZMQ_FD is edge-triggered: it signals that the
socket's state may have changed, not that a message waits, and not again for messages that queued
before the socket was last read. So each wake-up reads while ZMQ_EVENTS says POLLIN, and goes again
(next time round the loop) if a flood outlasts DRAIN_LIMIT. It asks ZMQ_EVENTS rather than reading
until EAGAIN: pyzmq's Again exception, once a frame, costs a strerror() and enum look-ups. Once
ZMQ_EVENTS said "nothing", the next message to come (also one that comes while this wake-up's
messages are handled) makes the FD fire again, so nothing is asked after the handling.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

import zmq

from flirstream import links, wire

from .hub import Hub
from .metrics import Metrics

log = logging.getLogger("feed")

DRAIN_LIMIT = 1024  # messages read per wake-up, so a flood cannot starve writes and requests


class Feed:
    def __init__(self, ctx: zmq.Context, endpoint: str, hub: Hub, metrics: Metrics) -> None:
        self.endpoint = endpoint
        self.hub = hub
        self.metrics = metrics  # counts the frames refused here
        # A plain (blocking-API) socket even from a zmq.asyncio context: it is only ever read
        # with NOBLOCK, when the event loop says its FD is readable.
        self._ctx = zmq.Context.shadow(ctx.underlying)
        self.sock = links.subscriber(self._ctx, endpoint, wire.IMAGE_TOPIC)
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.STATUS_TOPIC)
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.THERMAL_TOPIC)
        self._last_complaint: dict[str, float] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._fd = -1
        self._stopped: Optional[asyncio.Future] = None  # run() ends with it
        self._again: Optional[asyncio.Handle] = None  # a drain scheduled for the next loop trip

    async def run(self) -> None:
        """Handle messages as they come, until the socket is closed (returns) or the task is
        cancelled."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        try:
            self._fd = self.sock.getsockopt(zmq.FD)
        except zmq.ZMQError as exc:  # closed before it started
            log.debug("feed stopped: %s", exc)
            return
        loop.add_reader(self._fd, self._readable)
        try:
            self._readable()  # whatever queued before the loop watched the FD: no edge for it
            await self._stopped
        finally:
            self._unwatch()

    def _readable(self) -> None:
        self._again = None
        try:
            newest, statuses, skipped, more = links.drain_by_topic(self.sock, DRAIN_LIMIT)
            for parts in statuses:
                self._one("bad status message", self._status, parts)
            thermal = newest.get(wire.THERMAL_TOPIC)
            if thermal is not None:
                self._one("bad thermal message", self._thermal, thermal)
            image = newest.get(wire.IMAGE_TOPIC)
            if image is not None:
                self._one("bad frame message", self._image, image, skipped.get(wire.IMAGE_TOPIC, 0))
        except zmq.ZMQError as exc:  # socket closed on shutdown
            log.debug("feed stopped: %s", exc)
            self._stop()
            return
        if more:  # after writes and requests had their turn
            self._again = self._loop.call_soon(self._readable)

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

    def _unwatch(self) -> None:
        if self._again is not None:
            self._again.cancel()
            self._again = None
        if self._fd != -1 and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._fd = -1

    def _stop(self) -> None:
        self._unwatch()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def close(self) -> None:
        self._stop()  # the loop must stop watching the FD before ZeroMQ closes it
        self.sock.close(0)
