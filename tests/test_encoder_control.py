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


def test_changes_at_says_when_the_viewer_count_stops_counting():
    clock = Clock()
    w = Watchers(clock=clock)
    w.subscription(b"\x01image")
    assert w.changes_at() is None  # no count: nothing changes by itself
    w.viewers(0)
    assert w.changes_at() == clock.now + VIEWERS_TTL_S
    assert not w.watched
    clock.now = w.changes_at() + 0.001  # the loop wakes just after it
    assert w.watched


def test_rad1_is_made_while_a_recent_count_has_thermal_viewers():
    clock = Clock()
    w = Watchers(clock=clock)
    assert not w.radiometric  # no count yet: nobody said there are any
    w.viewers(0, thermal=1)
    assert w.radiometric
    clock.now += VIEWERS_TTL_S + 0.1  # the count is stale (the server may be gone)
    assert not w.radiometric
    w.viewers(3)  # a server that does not say: none
    assert not w.radiometric


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


def test_only_the_wire_formats_topics_are_tracked():
    w = Watchers(clock=Clock())
    for i in range(5000):  # a flood of distinct topics is refused and leaves nothing behind
        assert w.subscription(b"\x01" + b"junk%d" % i) is False
    assert w.subscription(b"\x01" + b"i" * 1024) is False
    assert not w.subscribed and len(w._topics) == 0
    assert w.subscription(b"\x01image") and w.subscription(b"\x01stat") and w.subscription(b"\x01")
    assert w.subscribed and len(w._topics) == 3


def test_unknown_settings_are_refused_with_a_reason_and_change_nothing():
    refusals: list[str] = []
    renderer = Renderer()
    c = Controller(renderer, Watchers(clock=Clock()), on_refusal=refusals.append)
    before = c.settings()
    for settings in ({"self": "x"}, {"palette": "jet", "kwargs": 1}, {"__class__": 1}):
        got = ask(c, {"op": "set", "settings": settings})
        assert got["ok"] is False and "unknown key" in got["error"], got
    assert c.settings() == before and len(refusals) == 3


# ---------------------------------------------------------------- the status schema (wire.py)

def test_status_messages_follow_one_schema_for_senders_and_receivers():
    import math

    import pytest

    from flirstream import wire

    good = wire.pack_status("encoder", "encoding", "fine", t=1.5, counters={"frames": 3,
                            "paused": False}, settings={"palette": "jet"}, last_error="")
    assert wire.unpack_status(good)["settings"] == {"palette": "jet"}
    bad_fields = [
        {"settings": {"palette": math.nan}}, {"settings": {"palette": 3}},
        {"counters": {"frames": math.inf}}, {"counters": {"frames": "3"}},
        {"counters": {str(i): i for i in range(100)}}, {"detail": "x" * 5000},
        {"stage": "server"}, {"state": 7}, {"t": -1}, {"colour": "red"},
    ]
    for extra in bad_fields:
        header = {"stage": "encoder", "state": "encoding", "detail": "", "t": 1.0, **extra}
        with pytest.raises(wire.WireError):  # the sender's constructor refuses it...
            wire.pack_status(**header)
        raw = json.dumps({"v": 1, **header}).encode()  # ...and so does every receiver
        with pytest.raises(wire.WireError):
            wire.unpack_status([b"status", raw])
    nan = b'{"v":1,"t":1,"stage":"encoder","state":"x","detail":"","settings":{"palette":NaN}}'
    with pytest.raises(wire.WireError, match="NaN"):
        wire.unpack_status([b"status", nan])
    with pytest.raises(wire.WireError, match="nested"):
        wire.unpack_status([b"status", b"[" * 5000])
