"""server.monitor: thermal frames -> readings, alarm changes -> log line, webhook (real Tornado
server), alarm snapshot files, history, /metrics gauges; frames that are not temperatures give none."""
from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import tornado.httpserver
import tornado.netutil
import tornado.web

from encoder.measure import Meter
from flirstream import radiometric, wire
from flirstream.regions import AlarmRule, Region, celsius, measure
from flirstream.testing import free_port, parse_metrics
from flirstream.wire import Frame
from flirstream.testing import tlinear_counts
from server import snapshots
from server.alarm_files import AlarmSnapshots
from server.metrics import Exposition
from server.monitor import Monitor, reading_of
from server.webhook import Webhooks
from server_support import image_frame

REGIONS = {"hob": Region("hob", 100, 10, 140, 40), "tap": Region("tap", 5, 100, 5, 100)}


def sensor_frame(hob_c: float) -> np.ndarray:
    celsius_frame = np.full((120, 160), 21.0)
    celsius_frame[25, 130] = hob_c
    celsius_frame[100, 5] = 12.5
    return tlinear_counts(celsius_frame)


def thermal(seq: int, hob_c: float, t: float, tlinear: bool = True):
    """What the encoder sends for every camera frame (its Meter, no regions of its own)."""
    frame = Frame(seq=seq, t=t, sensor="lepton3", pixels=sensor_frame(hob_c), tlinear=tlinear)
    frame.measurement = Meter().measure(frame)
    return frame


def test_readings_are_the_encoders_where_it_sent_them_and_measured_here_otherwise():
    frame = thermal(1, 80.0, 1000.0)
    plain = measure(frame.pixels, REGIONS.values(), celsius(0.01))
    assert reading_of(frame, REGIONS.values()) == plain  # frame stats agree with measure() too
    frame.measurement.regions = {"hob": {"min": 1.0, "max": 2.0, "mean": 1.5, "max_xy": [0, 0]}}
    got = reading_of(frame, list(REGIONS.values()) + [Region("outside", 0, 0, 0, 0)])
    assert got["regions"]["hob"] == frame.measurement.regions["hob"]  # the encoder's, as sent
    assert got["regions"]["tap"] == plain["regions"]["tap"]
    assert reading_of(frame, [])["regions"] == {}  # only the regions the monitor knows


def test_a_frame_that_came_without_its_pixels_reads_and_saves_as_one_that_came_with_them():
    sent = thermal(1, 80.0, 1000.0)
    sent.measurement.radiometric = radiometric.encode(sent.pixels)  # lossless: it stands for them
    parts = [bytes(p) for p in wire.pack_thermal(sent)]
    assert parts[2] == b""  # (no pixel part on the wire)
    got = wire.unpack_thermal(parts)
    assert reading_of(got, REGIONS.values()) == reading_of(sent, REGIONS.values())  # measured here
    assert snapshots.tiff(got) == snapshots.tiff(sent)  # an alarm's TIFF: the very same values


def test_an_alarm_change_logs_posts_saves_and_is_in_the_state_and_metrics(tmp_path, caplog):
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
        assert monitor.on_thermal(thermal(1, 50.0, 1000.0)) == []
        picture = image_frame(2)
        picture.t = 1001.2  # the picture of (nearly) the same moment
        (change,) = monitor.on_thermal(thermal(2, 75.0, 1001.0), pictured=picture)
        assert change.state == "alarm" and change.value == 75.0
        await asyncio.wait_for(got.wait(), 10)
        await hooks.flush(10)  # the answer is in
        assert posted == [{"name": "hob-hot", "state": "alarm", "value": 75.0, "threshold": 60.0,
                           "time": round(change.time, 3)}]
        (stem, files, _), = keeper.snapshots()
        assert [f.suffix for f in files] == [".jpg", ".tiff"] and stem.endswith("seq2.hob-hot")
        assert files[0].read_bytes() == picture.picture.jpeg
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

        # clearing with an old picture (paused viewer): the TIFF alone is kept
        (cleared,) = monitor.on_thermal(thermal(3, 54.0, 1002.0), pictured=image_frame(1, t=900.0))
        assert cleared.state == "ok"
        newest = keeper.snapshots()[-1]
        assert newest[0].endswith("seq3.hob-hot") and [f.suffix for f in newest[1]] == [".tiff"]
        server.stop()

    with caplog.at_level(logging.INFO, logger="monitor"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.name == "monitor"] == [
        "alarm hob-hot fired: region hob max 75 °C is above 60 °C",
        "alarm hob-hot cleared: region hob max 54 °C"]


def test_frames_that_are_not_temperatures_give_no_readings():
    monitor = Monitor(REGIONS, {"a": AlarmRule("a", None, "above", -100.0)})
    assert monitor.on_thermal(thermal(1, 80.0, 1.0, tlinear=False)) == [] and monitor.reading is None
    assert monitor.state()["frame"] is None and monitor.state()["alarms"]["a"]["state"] == "ok"
