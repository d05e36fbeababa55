"""server.monitor: readings of a turned frame, alarm changes -> log line, webhook (real Tornado
server), alarm snapshot files, history; frames that are not temperatures are not measured."""
from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import tornado.httpserver
import tornado.netutil
import tornado.web

from encoder.render import orient
from flirstream.regions import AlarmRule, Region, celsius, measure, point_to_display
from flirstream.testing import free_port
from server.alarm_files import AlarmSnapshots
from server.monitor import Monitor, sensor_size
from server.webhook import Webhooks
from server.metrics import Exposition
from server_support import image_frame, parse_metrics

REGIONS = {"hob": Region("hob", 100, 10, 140, 40), "tap": Region("tap", 5, 100, 5, 100)}


def sensor_frame(hob_c: float) -> np.ndarray:
    celsius_frame = np.full((120, 160), 21.0)
    celsius_frame[25, 130] = hob_c
    celsius_frame[100, 5] = 12.5
    return np.rint((celsius_frame + 273.15) * 100).astype(np.uint16)


def shown(seq: int, hob_c: float, rotate: int, flip: str, t: float):
    frame = image_frame(seq)
    frame.t = t
    frame.pixels = orient(sensor_frame(hob_c), rotate, flip)  # as the encoder forwards it
    return frame


def test_readings_of_a_turned_frame_are_those_of_the_sensor_frame():
    monitor = Monitor(REGIONS, {})
    for rotate, flip in [(0, "none"), (90, "horizontal"), (270, "both"), (180, "vertical")]:
        monitor.on_frame(shown(1, 80.0, rotate, flip, 1000.0), rotate, flip)
        plain = measure(sensor_frame(80.0), REGIONS.values(), celsius(0.01))
        got = monitor.reading["regions"]
        for name in REGIONS:
            assert {k: got[name][k] for k in ("min", "max", "mean")} == \
                {k: plain["regions"][name][k] for k in ("min", "max", "mean")}
            assert got[name]["max_xy"] == list(point_to_display(*plain["regions"][name]["max_xy"],
                                                                (160, 120), rotate, flip))
        assert monitor.reading["frame"] == plain["frame"]
    assert sensor_size((160, 120), 90) == (160, 120) and sensor_size((120, 160), 0) == (160, 120)


def test_an_alarm_change_logs_posts_saves_and_is_in_the_state(tmp_path, caplog):
    posted: list[dict] = []

    async def scenario() -> None:
        got = asyncio.Event()

        class Hook(tornado.web.RequestHandler):
            def post(self) -> None:
                posted.append(json.loads(self.request.body))
                got.set()

        port = free_port()
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/hook", Hook)]))
        server.add_sockets(tornado.netutil.bind_sockets(port, "127.0.0.1"))
        rules = {"hob-hot": AlarmRule("hob-hot", "hob", "above", 60.0, hysteresis=5.0,
                                      webhook=f"http://127.0.0.1:{port}/hook")}
        keeper = AlarmSnapshots(tmp_path / "alarms")
        hooks = Webhooks()
        monitor = Monitor(REGIONS, rules, webhooks=hooks, keeper=keeper)
        assert monitor.on_frame(shown(1, 50.0, 0, "none", 1000.0)) == []
        (change,) = monitor.on_frame(shown(2, 75.0, 0, "none", 1001.0))
        assert change.state == "alarm" and change.value == 75.0
        await asyncio.wait_for(got.wait(), 10)
        await hooks.flush(10)  # the answer is in
        assert hooks.pending() == 0
        assert posted == [{"name": "hob-hot", "state": "alarm", "value": 75.0, "threshold": 60.0,
                           "time": round(change.time, 3)}]
        assert [p.name.endswith(".hob-hot.jpg") for p in keeper.snapshots()[0][1]] == [True, False]
        state = monitor.state()
        assert state["seq"] == 2 and state["regions"]["hob"]["max"] == 75.0
        assert state["alarms"]["hob-hot"]["state"] == "alarm"
        assert state["region_shapes"]["tap"] == {"name": "tap", "kind": "spot", "spot": [5, 100]}
        json.dumps(state)
        assert monitor.history.snapshot()["regions"]["hob"]["max"] == [50.0, 75.0]
        out = Exposition()
        for gauge in monitor.gauges():
            out.metric(*gauge)
        metrics = parse_metrics(out.text())
        assert metrics['flirstream_alarm_active{alarm="hob-hot"}'] == 1
        assert metrics['flirstream_temperature_celsius{region="hob",stat="max"}'] == 75.0
        assert metrics['flirstream_temperature_celsius{region="frame",stat="centre"}'] == 21.0
        assert metrics['flirstream_webhooks_total{result="sent"}'] == 1
        server.stop()

    with caplog.at_level(logging.INFO, logger="monitor"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.name == "monitor"] == [
        "alarm hob-hot fired: region hob max 75 °C is above 60 °C"]


def test_frames_that_are_not_temperatures_are_not_measured():
    monitor = Monitor(REGIONS, {"a": AlarmRule("a", None, "above", -100.0)})
    frame = image_frame(1, tlinear=False)
    assert monitor.on_frame(frame) == [] and monitor.reading is None
    assert monitor.state()["frame"] is None and monitor.state()["alarms"]["a"]["state"] == "ok"
