"""Frames and status from the encoder: a ZeroMQ SUB socket read on Tornado's event loop.

Each time the socket is readable it is drained: every status message is handled (they are rare and
each may change a state), but of the frames only the newest is - older ones are counted and dropped,
so a busy server never falls behind the camera.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

import zmq
import zmq.asyncio

from flirstream import links, wire

from .hub import Hub

log = logging.getLogger("feed")

# Messages ZeroMQ may queue for us. Not the usual 2: at 2, a moment of lag (hundreds of viewers
# to write to on a busy machine) makes ZeroMQ stop reading the TCP connection, the frames then wait
# in the kernel's buffers - megabytes, seconds of video - where draining cannot skip them. With room
# for a few dozen, ZeroMQ's I/O thread keeps the kernel buffers empty and the drain below throws the
# old frames away (at most ~FEED_HWM frames of memory, ~2 MB).
FEED_HWM = 32


def drain(sock: zmq.Socket) -> tuple[Optional[list], list[list], int]:
    """Read all queued messages: (newest frame's parts or None, status messages' parts, frames
    skipped)."""
    newest = None
    statuses: list[list] = []
    skipped = 0
    while True:
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return newest, statuses, skipped
        if wire.topic_of(parts) == wire.STATUS_TOPIC:
            statuses.append(parts)
            continue
        if newest is not None:
            skipped += 1
        newest = parts


class Feed:
    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, hub: Hub) -> None:
        self.endpoint = endpoint
        self.hub = hub
        self.sock = links.subscriber(ctx, endpoint, wire.IMAGE_TOPIC, hwm=FEED_HWM)
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.STATUS_TOPIC)
        self._sync = zmq.Socket.shadow(self.sock.underlying)  # for the non-blocking drain
        self._last_complaint = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.sock.poll(1000, zmq.POLLIN)
                image, statuses, skipped = drain(self._sync)
            except zmq.ZMQError as exc:  # socket closed on shutdown
                log.debug("feed stopped: %s", exc)
                return
            for parts in statuses:
                try:
                    self.hub.on_status(wire.unpack_status(parts))
                except wire.WireError as exc:
                    self._complain(f"bad status message: {exc}")
            if image is not None:
                try:
                    frame = wire.unpack_image(image)
                except wire.WireError as exc:
                    self.hub.metrics.frames_bad += 1
                    self._complain(f"bad frame message: {exc}")
                    continue
                self.hub.on_image(frame, skipped)
            await asyncio.sleep(0)  # let writes and requests run between bursts

    def _complain(self, text: str) -> None:
        """Log bad input at most every 5 s, so a broken publisher cannot flood the log."""
        now = time.monotonic()
        if now - self._last_complaint >= 5.0:
            self._last_complaint = now
            log.warning("%s (from %s; such messages are dropped)", text, self.endpoint)

    def close(self) -> None:
        self.sock.close(0)
