"""Frame fan-out to every viewer, newest frame wins.

Each new frame is offered to every client once. A client whose previous write has not finished
(slow network, tab in the background, a peer that stopped reading) is skipped; when its write
finishes it gets the newest frame at once. So a client holds at most one frame in flight and the
server's memory per client stays constant however slow it is. The payloads are built once per frame
and shared (bytes are immutable), never copied per client.
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

    def payload(self, outgoing: Any) -> bytes:
        """This client's message for a frame, picked from the shared Outgoing bundle."""

    def send_frame(self, payload: bytes) -> Any:
        """Start writing one frame; return a future that is done when it is written (or None).
        Raise if the connection is closed."""


@dataclass
class _State:
    pending: Optional[Any] = None  # future of the write in flight
    index: int = 0  # publish index of the frame last sent


class Fanout:
    def __init__(self, metrics: Metrics, on_change: Callable[[], None] = lambda: None,
                 as_sent: Callable[[Any], Any] = lambda outgoing: outgoing) -> None:
        self.metrics = metrics
        self.on_change = on_change
        self.as_sent = as_sent  # the newest frame as it goes out now (e.g. marked stale)
        self.clients: dict[Sink, _State] = {}
        self.latest: Optional[Any] = None  # the newest frame's shared payloads
        self.published = 0  # index of self.latest

    def count(self, transport: Optional[str] = None) -> int:
        if transport is None:
            return len(self.clients)
        return sum(1 for c in self.clients if c.transport == transport)

    def add(self, sink: Sink) -> None:
        """Register a viewer and send it the newest frame at once."""
        self.clients[sink] = _State(index=self.published - 1 if self.latest else self.published)
        self.on_change()
        self._offer(sink)

    def remove(self, sink: Sink) -> None:
        if self.clients.pop(sink, None) is not None:
            self.on_change()

    def publish(self, outgoing: Any) -> None:
        self.latest = outgoing
        self.published += 1
        for sink, state in list(self.clients.items()):
            if state.index < self.published - 1:  # it never got the frame this one replaces
                self.metrics.skipped[sink.transport] += 1
            self._offer(sink)

    def resend(self, sink: Sink) -> None:
        """Send the newest frame again (e.g. after the client enabled raw pixels)."""
        state = self.clients.get(sink)
        if state is not None:
            state.index = min(state.index, self.published - 1)
            self._offer(sink)

    def _offer(self, sink: Sink) -> None:
        state = self.clients.get(sink)
        if state is None or self.latest is None or state.index >= self.published:
            return
        if state.pending is not None and not state.pending.done():
            return  # still writing: the newest frame goes out when that write is done
        payload = sink.payload(self.as_sent(self.latest))
        try:
            future = sink.send_frame(payload)
        except Exception as exc:  # closed between frames: its handler will remove it too
            log.debug("dropping a %s client: %s", sink.transport, exc)
            self.remove(sink)
            return
        self.metrics.sent[sink.transport] += 1
        self.metrics.bytes_sent[sink.transport] += len(payload)
        state.index = self.published
        state.pending = future
        if future is not None:
            future.add_done_callback(lambda f, s=sink: self._written(s, f))

    def _written(self, sink: Sink, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:  # also marks it retrieved
            self.remove(sink)
            return
        self._offer(sink)
