"""server/feed.py on real ZeroMQ sockets and a real event loop: the SUB socket's ZMQ_FD is
edge-triggered, so what queued before the loop watched it, what comes one frame at a time, and a
burst longer than one wake-up's reading must all get through - and the newest frame wins."""
from __future__ import annotations

import asyncio
import time

import pytest
import zmq
import zmq.asyncio

from flirstream import wire
from flirstream.testing import free_port
from server import feed as feed_module
from server.feed import Feed
from server.health import Health
from server.hub import Hub
from server.metrics import Metrics
from server_support import thermal_frame

TIMEOUT_S = 10.0


class Publisher:
    """The encoder's side: an XPUB, so the test knows when the feed's subscriptions are in place
    (a PUB drops what it sends before that)."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.SNDHWM, 0)  # the test's bursts are all delivered
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.endpoint)

    def wait_subscribed(self, topics: int = 3) -> None:
        seen = set()
        deadline = time.monotonic() + TIMEOUT_S
        while len(seen) < topics:
            assert self.sock.poll(max(1, int((deadline - time.monotonic()) * 1000))), \
                f"only {len(seen)} subscriptions within {TIMEOUT_S} s"
            seen.add(self.sock.recv())

    def thermal(self, seq: int) -> None:
        self.sock.send_multipart(wire.pack_thermal(thermal_frame(seq)))

    def status(self, stage: str, state: str) -> None:
        self.sock.send_multipart(wire.pack_status(stage, state, t=time.time()))


class Seen:
    """What reached the hub: the thermal frames' seqs and the status messages, in order."""

    def __init__(self, hub: Hub) -> None:
        self.seqs: list[int] = []
        self.statuses: list[tuple[str, str]] = []
        hub.measurement_listeners.append(lambda frame: self.seqs.append(frame.seq))
        hub.status_listeners.append(lambda m: self.statuses.append((m["stage"], m["state"])))

    async def until(self, condition, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            assert time.monotonic() < deadline, f"{what}: not within {TIMEOUT_S} s (seen {self.seqs}" \
                                                f", {self.statuses})"
            await asyncio.sleep(0.005)


def _setup():
    ctx = zmq.asyncio.Context()  # the server's, as app.py makes it
    publisher = Publisher(zmq.Context())
    hub = Hub(Metrics(), Health(5.0))
    seen = Seen(hub)
    feed = Feed(ctx, publisher.endpoint, hub, Metrics())
    publisher.wait_subscribed()
    return ctx, publisher, feed, seen


def _teardown(ctx, publisher, feed) -> None:
    feed.close()
    publisher.sock.close(0)
    publisher.sock.context.term()
    ctx.term()


def test_what_queued_before_the_feed_ran_and_every_frame_after_it_get_through():
    ctx, publisher, feed, seen = _setup()

    async def scenario() -> None:
        publisher.status("capture", "streaming")
        for seq in range(1, 6):
            publisher.thermal(seq)
        publisher.status("encoder", "encoding")
        # Wait until something is queued: asking the socket takes the FD's edge for it, so the
        # feed must read on its own at start, not wait for a signal that never comes.
        assert feed.sock.poll(int(TIMEOUT_S * 1000))
        task = asyncio.get_running_loop().create_task(feed.run())
        await seen.until(lambda: seen.seqs[-1:] == [5] and len(seen.statuses) == 2, "the burst")
        assert seen.statuses == [("capture", "streaming"), ("encoder", "encoding")]
        assert seen.seqs == sorted(set(seen.seqs))  # newest wins: skipped ones never come late
        # one at a time: each must wake the feed again (a missed edge would stall here)
        for seq in range(6, 31):
            publisher.thermal(seq)
            await seen.until(lambda: seen.seqs[-1] == seq, f"frame {seq}")
        assert seen.seqs[-25:] == list(range(6, 31))
        feed.close()  # the run ends: the loop stops watching a socket that is gone
        await asyncio.wait_for(task, TIMEOUT_S)

    try:
        asyncio.run(scenario())
    finally:
        _teardown(ctx, publisher, feed)


def test_a_burst_longer_than_one_wake_up_reads_is_read_to_its_end(monkeypatch):
    monkeypatch.setattr(feed_module, "DRAIN_LIMIT", 3)  # so a short burst outlasts one reading
    ctx, publisher, feed, seen = _setup()

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(feed.run())
        for seq in range(1, 21):
            publisher.thermal(seq)
            if seq % 5 == 0:
                publisher.status("encoder", f"state{seq}")
        await seen.until(lambda: seen.seqs[-1:] == [20] and len(seen.statuses) == 4, "the burst")
        assert seen.statuses == [("encoder", f"state{n}") for n in (5, 10, 15, 20)]
        assert seen.seqs == sorted(set(seen.seqs))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(scenario())
    finally:
        _teardown(ctx, publisher, feed)


def test_a_bad_message_costs_itself_only(caplog):
    ctx, publisher, feed, seen = _setup()

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(feed.run())
        publisher.sock.send_multipart([wire.THERMAL_TOPIC, b"{not json", b""])
        await seen.until(lambda: "bad thermal message" in caplog.text, "the complaint")
        publisher.thermal(1)
        await seen.until(lambda: seen.seqs == [1], "the good frame after it")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        _teardown(ctx, publisher, feed)
