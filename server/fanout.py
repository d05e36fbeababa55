"""Frame fan-out to every viewer, newest frame wins.

Each new frame is offered to every client once. A client whose previous write has not finished
(slow network, tab in the background, a peer that stopped reading) is skipped; when its write
finishes it gets the newest frame at once. So a client holds at most one frame in flight and the
server's memory per client stays constant however slow it is. The payloads are built once per frame
and shared (bytes are immutable), never copied per client.

Clients take one of two feeds: "image" (the encoder's JPEG frames: MJPEG and mode=jpeg websockets)
or "thermal" (the measured radiometric frames: mode=thermal websockets). Each feed has its own
newest frame; a client is only ever offered its own feed's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from .metrics import Metrics

log = logging.getLogger("fanout")


class Sink(Protocol):
    """A viewer connection: a websocket or an MJPEG response."""

    transport: str  # "websocket" or "mjpeg"
    wants_raw: bool
    feed: str  # "image" or "thermal" (absent: "image")

    def payload(self, outgoing: Any) -> bytes:
        """This client's message for a frame, picked from the shared Outgoing bundle."""

    def send_frame(self, payload: bytes) -> Any:
        """Start writing one frame; return a future that is done when it is written (or None).
        Raise if the connection is closed."""


FEEDS = ("image", "thermal")


def feed_of(sink: Any) -> str:
    return getattr(sink, "feed", "image")


@dataclass
class _Delivery:
    """Where one client is in the fan-out: its write in flight and the last frame it got."""

    pending: Optional[Any] = None  # future of the write in flight
    index: int = 0  # publish index (in its feed) of the frame last sent
    feed: str = "image"


class Fanout:
    def __init__(self, metrics: Metrics, on_change: Callable[[], None] = lambda: None,
                 as_sent: Callable[[Any], Any] = lambda outgoing: outgoing) -> None:
        self.metrics = metrics
        self.on_change = on_change
        self.as_sent = as_sent  # the newest frame as it goes out now (e.g. marked stale)
        self.clients: dict[Sink, _Delivery] = {}
        self.latest: dict[str, Any] = {}  # feed -> the newest frame's shared payloads
        self.published = {feed: 0 for feed in FEEDS}  # feed -> index of its latest

    def count(self, transport: Optional[str] = None, feed: Optional[str] = None) -> int:
        return sum(1 for c in self.clients
                   if (transport is None or c.transport == transport)
                   and (feed is None or feed_of(c) == feed))

    def sinks(self, transport: str) -> list[Sink]:
        return [c for c in self.clients if c.transport == transport]

    def has_latest(self, feed: str) -> bool:
        return feed in self.latest

    def forget(self, feed: str) -> None:
        """Drop the feed's newest frame (stale by the next client's arrival: built afresh then)."""
        self.latest.pop(feed, None)

    def add(self, sink: Sink) -> None:
        """Register a viewer and send it the newest frame (of its feed) at once."""
        feed = feed_of(sink)
        published = self.published[feed]
        self.clients[sink] = _Delivery(index=published - 1 if feed in self.latest else published,
                                       feed=feed)
        self.on_change()
        self._offer(sink)

    def remove(self, sink: Sink) -> None:
        if self.clients.pop(sink, None) is not None:
            self.on_change()

    def publish(self, outgoing: Any, feed: str = "image") -> None:
        self.latest[feed] = outgoing
        self.published[feed] += 1
        published = self.published[feed]
        for sink, state in list(self.clients.items()):
            if state.feed != feed:
                continue
            if state.index < published - 1:  # it never got the frame this one replaces
                self.metrics.skipped_for(sink.transport)
            self._offer(sink)

    def resend(self, sink: Sink) -> None:
        """Send the newest frame again (e.g. after the client enabled raw pixels)."""
        state = self.clients.get(sink)
        if state is not None:
            state.index = min(state.index, self.published[state.feed] - 1)
            self._offer(sink)

    def _offer(self, sink: Sink) -> None:
        state = self.clients.get(sink)
        if state is None:
            return
        latest = self.latest.get(state.feed)
        if latest is None or state.index >= self.published[state.feed]:
            return
        if state.pending is not None and not state.pending.done():
            return  # still writing: the newest frame goes out when that write is done
        # (as_sent marks a cached image frame stale; thermal messages are marked when built)
        payload = sink.payload(self.as_sent(latest) if state.feed == "image" else latest)
        try:
            future = sink.send_frame(payload)
        except Exception as exc:  # closed between frames: its handler will remove it too
            log.debug("dropping a %s client: %s", sink.transport, exc)
            self.remove(sink)
            return
        self.metrics.sent_to(sink.transport, len(payload))
        state.index = self.published[state.feed]
        state.pending = future
        if future is not None:
            future.add_done_callback(lambda f, s=sink: self._written(s, f))

    def _written(self, sink: Sink, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:  # also marks it retrieved
            self.remove(sink)
            return
        self._offer(sink)
