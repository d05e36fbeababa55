"""server.webhook against a real Tornado HTTP server on a free loopback port: delivery, retries
with back-off, a server that never answers, a final failure logged once."""
from __future__ import annotations

import asyncio
import json
import logging

import tornado.httpserver
import tornado.netutil
import tornado.web

from flirstream.testing import free_port
from server.webhook import Webhooks, shown

BODY = {"name": "kiln-hot", "state": "alarm", "value": 251.3, "threshold": 250.0, "time": 1.5e9}


class Receiver:
    """The far end: /ok answers 200, /flaky 503 twice then 200, /gone 404, /hang never answers."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict]] = {"ok": [], "flaky": [], "gone": [], "hang": []}
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        receiver = self

        class Hook(tornado.web.RequestHandler):
            async def post(self, name: str) -> None:
                assert self.request.headers["Content-Type"] == "application/json"
                receiver.bodies[name].append(json.loads(self.request.body))
                receiver.arrived.set()
                if name == "flaky" and len(receiver.bodies[name]) <= 2:
                    self.set_status(503)
                elif name == "gone":
                    self.set_status(404)
                elif name == "hang":
                    await receiver.release.wait()
                self.finish()

        self.port = free_port()
        self.server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/(\w+)", Hook)]))
        self.server.add_sockets(tornado.netutil.bind_sockets(self.port, "127.0.0.1"))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}?secret=s3cr3t"

    async def close(self) -> None:
        self.release.set()
        self.server.stop()
        await self.server.close_all_connections()


def run(scenario) -> None:
    async def main() -> None:
        receiver = Receiver()
        try:
            await scenario(receiver)
        finally:
            await receiver.close()
    asyncio.run(main())


class Delays:
    """Records the back-off delays asked for instead of waiting them out."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def test_delivers_the_json_body_in_the_background():
    async def scenario(receiver: Receiver) -> None:
        hooks = Webhooks(timeout_s=5.0)
        task = hooks.send(receiver.url("ok"), BODY)
        assert not task.done() and hooks.pending() == 1  # send() never waits for the far end
        assert await asyncio.wait_for(task, 10) is True
        assert receiver.bodies["ok"] == [BODY]
        assert hooks.counters == {"sent": 1, "failed": 0, "retries": 0, "dropped": 0} and hooks.pending() == 0
    run(scenario)


def test_retries_with_back_off_until_the_far_end_answers():
    async def scenario(receiver: Receiver) -> None:
        delays = Delays()
        hooks = Webhooks(attempts=4, backoff_s=0.5, sleep=delays)
        assert await asyncio.wait_for(hooks.send(receiver.url("flaky"), BODY), 10) is True
        assert receiver.bodies["flaky"] == [BODY] * 3
        assert delays.asked == [0.5, 1.0]
        assert hooks.counters == {"sent": 1, "failed": 0, "retries": 2, "dropped": 0}
    run(scenario)


def test_a_far_end_that_never_answers_times_out_and_fails_with_one_line(caplog):
    async def scenario(receiver: Receiver) -> None:
        delays = Delays()
        hooks = Webhooks(timeout_s=0.3, attempts=3, backoff_s=1.0, sleep=delays)
        with caplog.at_level(logging.WARNING, logger="webhook"):
            assert await asyncio.wait_for(hooks.send(receiver.url("hang"), BODY), 10) is False
        assert len(receiver.bodies["hang"]) == 3 and delays.asked == [1.0, 2.0]
        assert hooks.counters == {"sent": 0, "failed": 1, "retries": 2, "dropped": 0}
    run(scenario)
    lines = [r.getMessage() for r in caplog.records if r.name == "webhook"]
    assert len(lines) == 1
    assert lines[0].startswith("webhook http://127.0.0.1:")
    assert "/hang for alarm kiln-hot (alarm) failed after 3 attempts: " in lines[0]
    assert "Timeout" in lines[0] and "s3cr3t" not in lines[0]


def test_refused_connections_are_retried_and_a_4xx_is_final(caplog):
    async def scenario(receiver: Receiver) -> None:
        delays = Delays()
        hooks = Webhooks(attempts=3, backoff_s=0.1, sleep=delays)
        nobody = f"http://127.0.0.1:{free_port()}/hook"
        with caplog.at_level(logging.WARNING, logger="webhook"):
            assert await hooks.send(nobody, BODY) is False
            assert delays.asked == [0.1, 0.2]
            assert await hooks.send(receiver.url("gone"), BODY) is False
        assert len(receiver.bodies["gone"]) == 1 and delays.asked == [0.1, 0.2]
        assert hooks.counters == {"sent": 0, "failed": 2, "retries": 2, "dropped": 0}
    run(scenario)
    lines = [r.getMessage() for r in caplog.records if r.name == "webhook"]
    assert len(lines) == 2
    assert "failed after 3 attempts" in lines[0] and "HTTP 404" in lines[1]
    assert "failed after 1 attempt:" in lines[1]


def test_close_cancels_posts_in_flight():
    async def scenario(receiver: Receiver) -> None:
        hooks = Webhooks(timeout_s=30.0)
        task = hooks.send(receiver.url("hang"), BODY)
        await asyncio.wait_for(receiver.arrived.wait(), 10)  # the far end has the request
        await hooks.close()
        assert task.cancelled() and hooks.pending() == 0
    run(scenario)


def test_posts_in_flight_are_bounded(caplog, monkeypatch):
    monkeypatch.setattr("server.webhook.MAX_IN_FLIGHT", 2)

    async def scenario(receiver: Receiver) -> None:
        hooks = Webhooks(timeout_s=30.0)
        first, second = hooks.send(receiver.url("hang"), BODY), hooks.send(receiver.url("hang"), BODY)
        with caplog.at_level(logging.WARNING, logger="webhook"):
            assert hooks.send(receiver.url("ok"), BODY) is None
        assert hooks.counters["dropped"] == 1 and hooks.pending() == 2
        receiver.release.set()  # the far end answers the two hanging posts
        assert await asyncio.wait_for(asyncio.gather(first, second), 10) == [True, True]
        assert await hooks.send(receiver.url("ok"), BODY) is True
    run(scenario)
    assert "2 webhook posts still under way" in caplog.text


def test_urls_in_logs_lose_query_and_credentials():
    assert shown("https://user:pw@example.org:8443/hooks/x?token=abc") == "https://example.org:8443/hooks/x"
