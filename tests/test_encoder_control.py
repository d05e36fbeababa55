"""The encoder's control logic without sockets: who watches, and answers to control requests."""
from __future__ import annotations

import json

from encoder.control import VIEWERS_TTL_S, Controller, Watchers
from encoder.render import Renderer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_watched_needs_an_image_subscription_and_recent_viewers():
    clock = Clock()
    w = Watchers(pause_when_unwatched=True, clock=clock)
    assert not w.watched and "nobody subscribes" in w.why_paused()
    w.subscription(b"\x01status")
    assert not w.watched  # statuses only: nobody looks at pictures
    w.subscription(b"\x01image")
    assert w.watched  # no viewer count yet: someone subscribes, so encode
    w.viewers(0)
    assert not w.watched and "0 viewers" in w.why_paused()
    clock.now += VIEWERS_TTL_S - 0.1
    assert not w.watched
    clock.now += 0.2  # the count is stale (the server may be gone): subscriptions decide again
    assert w.watched and w.viewer_count is None
    w.viewers(2)
    w.subscription(b"\x00image")
    assert not w.watched
    w.subscription(b"\x01")  # everything, images included
    assert w.watched
    w.subscription(b"\x00")
    w.subscription(b"\x00")  # an extra leave does not go below zero
    w.subscription(b"")  # not a subscription message: ignored
    w.subscription(b"\x01im")
    assert w.watched
    w.pause_when_unwatched = False
    w.subscription(b"\x00im")
    assert w.watched


def ask(controller: Controller, request) -> dict:
    raw = request if isinstance(request, bytes) else json.dumps({"v": 1, **request}).encode()
    return json.loads(controller.handle(raw))


def test_controller_answers_and_refuses_with_reasons():
    refusals: list[str] = []
    renderer = Renderer()
    watchers = Watchers(clock=Clock())
    c = Controller(renderer, watchers, on_refusal=refusals.append)

    got = ask(c, {"op": "get", "id": 7})
    assert got["ok"] and got["id"] == 7 and got["settings"]["palette"] == "ironbow"
    assert got["settings"]["pause_when_unwatched"] == "yes"

    reply = ask(c, {"op": "set", "settings": {"palette": "turbo", "range_c": [0, 50],
                                              "pause_when_unwatched": False}})
    assert reply["ok"] and reply["settings"]["range_c"] == "0, 50"
    assert renderer.settings["palette"] == "turbo" and watchers.pause_when_unwatched is False

    reply = ask(c, {"op": "set", "settings": {"palette": "jet", "pause_when_unwatched": "maybe"}})
    assert not reply["ok"] and "pause_when_unwatched" in reply["error"]
    assert renderer.settings["palette"] == "turbo" and watchers.pause_when_unwatched is False
    reply = ask(c, {"op": "set", "settings": {"pause_when_unwatched": "yes", "rotate": "45"}})
    assert not reply["ok"] and "rotate" in reply["error"]
    assert watchers.pause_when_unwatched is False  # nothing applied

    assert ask(c, {"op": "set", "settings": {"pause_when_unwatched": "yes"}})["ok"]
    watchers.subscription(b"\x01image")
    assert ask(c, {"op": "viewers", "count": 0})["watched"] is False
    assert ask(c, {"op": "viewers", "count": 3})["watched"] is True

    assert "not JSON" in ask(c, b"\x80garbage")["error"]
    assert "unknown op" in ask(c, {"op": "reboot", "id": "r"})["error"]
    assert ask(c, {"op": "reboot", "id": "r"})["id"] == "r"
    assert len(refusals) == 5 and all(r.startswith("control request refused") for r in refusals)
