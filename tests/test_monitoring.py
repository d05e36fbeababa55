"""Monitoring end to end with real processes: regions and alarms from server.conf measured by a real
encoder, alarms firing and clearing with hysteresis (/api/state, /metrics, the webhook on a real
Tornado server, alarm snapshots), all while nobody watches (the picture paused); and a real pipeline
(simulated camera, encoder, server) publishing to a real Mosquitto broker."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from conftest import write_config
from flirstream.testing import StandInCapture, free_port, parse_metrics, tlinear_counts
from mqtt_support import Broker, Subscriber
from server_support import http_get, wait_http
from viewer_support import HOT, scene, setting, start_server

WAIT_S = 30.0


def wait_until(check, timeout: float = WAIT_S, what: str = "condition"):
    """Poll check() until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def api_state(port: int, token: str = "") -> dict:
    status, _, body = http_get(port, "/api/state" + (f"?token={token}" if token else ""))
    assert status == 200, body
    return json.loads(body)


def metric(port: int, name: str) -> float:
    status, _, body = http_get(port, "/metrics")
    assert status == 200
    return parse_metrics(body.decode())[name]


class Receiver:
    """A webhook's far end: a real Tornado server on its own thread and event loop."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.port = free_port()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        receiver = self

        class Hook(tornado.web.RequestHandler):
            def post(self) -> None:
                assert self.request.headers["Content-Type"] == "application/json"
                receiver.bodies.append(json.loads(self.request.body))
                self.finish()

        async def main() -> None:
            server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/hook", Hook)]))
            server.add_sockets(tornado.netutil.bind_sockets(self.port, "127.0.0.1"))
            self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
            self.ready.set()
            await self.stopping.wait()
            server.stop()

        asyncio.run(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class HotSquare:
    """test_viewer's scene with the hot square at `hot_c` °C (changed while the test runs)."""

    def __init__(self, hot_c: float) -> None:
        self.hot_c = hot_c

    def __call__(self, seq: int):
        pixels = scene(seq)
        x0, y0, x1, y1 = HOT
        pixels[y0:y1, x0:x1] = tlinear_counts(self.hot_c)
        return pixels


@pytest.fixture
def square_alarm(tmp_path, stages):
    """start(extra=, webhook=) -> (camera, port, server Stage): a stand-in capture of HotSquare at
    35 °C (camera.hot_c), a real encoder and server; the square is [roi:square] (after it, `extra`
    config), alarm square-hot above 40 °C with hysteresis 2 and alarm pictures in tmp_path/alarms."""
    cameras = []

    def start(extra: str = "", webhook: str = ""):
        x0, y0, x1, y1 = HOT
        text = (f"[roi:square]\nbox = {x0}, {y0}, {x1 - 1}, {y1 - 1}\n{extra}"
                f"[alarm:square-hot]\nroi = square\nabove = 40\nhysteresis = 2\n"
                + (f"webhook = {webhook}\n" if webhook else ""))
        config = write_config(tmp_path, text, state={"dir": tmp_path / "state"},
                              monitor={"alarm_dir": tmp_path / "alarms"})
        camera = HotSquare(35.0)
        cameras.append(StandInCapture(setting(config, "endpoints", "frames"), camera))
        port = setting(config, "server", "port")
        stages("encoder", config)
        return camera, port, start_server(stages, config, f"http://127.0.0.1:{port}/")

    yield start
    for capture in cameras:
        capture.stop()


def test_an_alarm_fires_and_clears_with_hysteresis_while_nobody_watches(tmp_path, square_alarm,
                                                                       receiver):
    x0, y0, x1, y1 = HOT
    camera, port, server = square_alarm("[roi:corner]\nspot = 0, 0\n", webhook=receiver.url)
    state = wait_until(lambda: (s := api_state(port))["regions"].get("square") and s,
                       what="square's readings")
    assert state["alarms"]["square-hot"]["state"] == "ok"
    assert state["regions"]["corner"]["max"] == 24.0  # the background (test_viewer's scene)
    assert state["unit"] == "°C" and state["frame"]["min"] == 24.0
    assert metric(port, 'flirstream_alarm_active{alarm="square-hot"}') == 0
    # nobody watches: the encoder paused the picture, the measurements go on
    wait_until(lambda: json.loads(http_get(port, "/healthz")[2])["encoder"]["state"] == "paused",
               what="encoder paused")

    camera.hot_c = 45.0
    state = wait_until(lambda: (s := api_state(port))["alarms"]["square-hot"]["state"] == "alarm"
                       and s, what="alarm fired")
    assert state["alarms"]["square-hot"]["value"] == 45.0
    assert state["regions"]["square"]["max"] == 45.0
    assert state["regions"]["square"]["max_xy"][0] in range(x0, x1)
    assert metric(port, 'flirstream_alarm_active{alarm="square-hot"}') == 1
    assert metric(port, 'flirstream_temperature_celsius{region="square",stat="max"}') == 45.0
    body = wait_until(lambda: receiver.bodies and receiver.bodies[0], what="webhook POST")
    assert {k: body[k] for k in ("name", "state", "value", "threshold")} == \
        {"name": "square-hot", "state": "alarm", "value": 45.0, "threshold": 40.0}
    # the frame is kept: its radiometric TIFF, and the picture, which the server woke the paused
    # encoder for (the first one after the frame), under the same name
    tiff = wait_until(lambda: list((tmp_path / "alarms").glob("*square-hot.tiff")),
                      what="alarm snapshot")[0]
    jpeg = wait_until(lambda: tiff.with_suffix(".jpg").is_file() and tiff.with_suffix(".jpg"),
                      what="alarm picture")
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"

    camera.hot_c = 39.0  # below the threshold, not by the hysteresis: still in alarm
    wait_until(lambda: api_state(port)["regions"]["square"]["max"] == 39.0, what="39 °C")
    seq = api_state(port)["seq"]
    wait_until(lambda: api_state(port)["seq"] > seq + 5, what="more frames")
    assert api_state(port)["alarms"]["square-hot"]["state"] == "alarm"
    assert len(receiver.bodies) == 1

    camera.hot_c = 37.5
    state = wait_until(lambda: (s := api_state(port))["alarms"]["square-hot"]["state"] == "ok"
                       and s, what="alarm cleared")
    assert state["alarms"]["square-hot"]["value"] == 37.5
    assert metric(port, 'flirstream_alarm_active{alarm="square-hot"}') == 0
    wait_until(lambda: len(receiver.bodies) == 2, what="second webhook POST")
    assert receiver.bodies[1]["state"] == "ok"
    log = server.log()
    assert len(re.findall(r"alarm square-hot fired", log)) == 1
    assert len(re.findall(r"alarm square-hot cleared", log)) == 1


def test_a_real_pipeline_publishes_discovery_and_the_readings_to_mqtt(tmp_path, stages):
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port)
    extra = "[roi:kiln]\nbox = 30, 10, 130, 75\n[roi:door]\nspot = 10, 100\n" \
            "[alarm:kiln-hot]\nroi = kiln\nabove = 500\n"
    config = write_config(tmp_path, extra, state={"dir": tmp_path / "state"},
                          mqtt={"host": "127.0.0.1", "port": broker.port, "topic": "flir-stream/test",
                                "interval_s": 0.5})
    port = setting(config, "server", "port")
    try:
        capture = stages("capture", config)
        stages("encoder", config)
        start_server(stages, config, f"http://127.0.0.1:{port}/")
        node = "flir-stream_test"
        # the device is the camera capture identifies (the simulated Lepton 3.5): discovery says so
        # once capture's status has come, re-publishing what it sent before if it was earlier
        discovery = subscriber.wait_json(f"homeassistant/sensor/{node}/roi_kiln_max/config",
                                         lambda d: d["device"]["model"] == "Lepton 3.5")
        assert discovery["device_class"] == "temperature" and discovery["unit_of_measurement"] == "°C"
        assert discovery["device"]["configuration_url"] == f"http://127.0.0.1:{port}/"
        assert discovery["device"]["serial_number"] == "0123456789ABCDEF"  # the simulated camera's
        assert discovery["state_topic"] == "flir-stream/test/state"
        subscriber.wait_topic(f"homeassistant/sensor/{node}/roi_door_value/config")
        subscriber.wait_topic(f"homeassistant/binary_sensor/{node}/alarm_kiln-hot/config")
        first = subscriber.wait_json("flir-stream/test/state", lambda s: "kiln" in s["regions"])
        later = subscriber.wait_json("flir-stream/test/state", lambda s: s["seq"] > first["seq"])
        assert later["regions"]["kiln"]["max"] > 50  # the simulator's hot spot (60-80 °C) is in it
        # nobody watches: the picture is paused, the readings keep coming
        wait_until(lambda: json.loads(http_get(port, "/healthz")[2])["encoder"]["state"] == "paused",
                   what="the picture paused (nobody watches)")
        health = json.loads(http_get(port, "/healthz")[2])
        assert health["mqtt"]["state"] == "connected" and health["mqtt"]["connected"] is True
        assert metric(port, "flirstream_mqtt_connected") == 1

        # The same frame both ways: stop the camera, so the newest frame stays the newest, and
        # restart the broker: on reconnect the publisher sends the newest state at once.
        capture.proc.send_signal(signal.SIGSTOP)
        try:
            def settled():
                a = api_state(port)
                time.sleep(1.0)
                b = api_state(port)
                return a["seq"] == b["seq"] and b
            state = wait_until(settled, what="no new frames")
            broker.stop()
            wait_until(lambda: api_state(port)["mqtt"]["state"] == "disconnected",
                       what="MQTT disconnected")
            broker.start()
            published = subscriber.wait_json("flir-stream/test/state",
                                             lambda s: s["seq"] == state["seq"])
        finally:
            capture.proc.send_signal(signal.SIGCONT)
        assert published["regions"] == {k: {s: v[s] for s in ("min", "max", "mean", "max_xy")}
                                        for k, v in state["regions"].items()}
        assert published["frame"] == state["frame"]
        assert published["alarms"]["kiln-hot"]["state"] == state["alarms"]["kiln-hot"]["state"] == "ok"
        assert api_state(port)["mqtt"]["connects"] == 2
    finally:
        subscriber.close()
        broker.stop()


# ---------------------------------------------------------------- in the browser

from viewer_support import COLS, ROWS, WAIT_MS, page, wait_for_frames  # noqa: E402,F401


def region_at(page, name: str) -> str:
    return f"#stage svg.regions g.region[data-name='{name}']"


def drag(page, start: tuple, end: tuple) -> None:
    """Mouse from raw pixel `start` to `end` (centres), in a few steps, as a hand would."""
    box = page.locator("#view").bounding_box()

    def at(p):
        return (box["x"] + (p[0] + 0.5) / COLS * box["width"],
                box["y"] + (p[1] + 0.5) / ROWS * box["height"])
    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(end), steps=8)
    page.mouse.up()


def test_a_newcomer_draws_a_box_over_the_hot_spot_and_it_survives_a_restart(tmp_path, stages, page):
    config = write_config(tmp_path, state={"dir": tmp_path / "state"})
    port = setting(config, "server", "port")
    url = f"http://127.0.0.1:{port}/"
    stages("capture", config)
    encoder = stages("encoder", config)
    server = start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page)
    # The simulator's hot spot (60-80 °C) circles inside x 40..120, y 18..66.
    page.click("#region-box")
    drag(page, (30, 10), (130, 75))
    page.wait_for_function(
        f"(() => {{ const g = document.querySelector(\"{region_at(page, 'box1')}\");"
        f" return g && Number(g.dataset.max) > 50; }})()", timeout=WAIT_MS)
    label = page.text_content(region_at(page, "box1") + " text")
    assert label.startswith("box1 max ") and label.endswith("°C")
    state = api_state(port)
    assert state["region_shapes"]["box1"] == {"name": "box1", "kind": "box", "box": [30, 10, 130, 75]}
    assert state["regions"]["box1"]["max"] > 50
    # ... and in the chart, kept across a reload from the server's history
    box1_values = ("(window.flirstream.monitoring.chart.series().find(s => s.label === 'box1 max') "
                   "|| {values: []}).values.filter(v => v !== null)")
    page.wait_for_function(f"{box1_values}.length >= 3", timeout=WAIT_MS)
    page.reload()
    page.wait_for_function(f"{box1_values}.length >= 3 && "
                           "document.getElementById('history').dataset.series.includes('box1 max')",
                           timeout=WAIT_MS)  # at once: from the server's history
    series = page.evaluate(box1_values)
    assert len(series) >= 3 and min(series) > 50

    # Restart the encoder and the server: the region is in the encoder's state file.
    encoder.stop()
    server.stop()
    stages("encoder", config)
    start_server(stages, config, url)
    page.reload()
    wait_for_frames(page)
    page.wait_for_selector(region_at(page, "box1"), timeout=WAIT_MS)
    assert wait_until(lambda: api_state(port)["region_shapes"].get("box1"))["box"] == [30, 10, 130, 75]

    # Move it by dragging (10 pixels right, 5 down), then delete it.
    drag(page, (35, 15), (45, 20))
    wait_until(lambda: api_state(port)["region_shapes"]["box1"]["box"] == [40, 15, 140, 80],
               what="box moved")
    page.click(region_at(page, "box1") + " rect", position={"x": 3, "y": 3})
    page.click("#region-delete")
    wait_until(lambda: "box1" not in api_state(port)["region_shapes"], what="box deleted")
    page.wait_for_selector(region_at(page, "box1"), state="detached", timeout=WAIT_MS)


def test_a_spot_with_a_finger_and_regions_turned_with_the_picture(tmp_path, stages, browser):
    config = write_config(tmp_path, encoder={"rotate": 90, "flip": "horizontal"},
                          state={"dir": tmp_path / "state"}, extra="[roi:door]\nbox = 10, 20, 29, 39\n")
    port = setting(config, "server", "port")
    url = f"http://127.0.0.1:{port}/"
    stages("capture", config)
    stages("encoder", config)
    start_server(stages, config, url)
    context = browser.new_context(viewport={"width": 400, "height": 800}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(url)
        wait_for_frames(page)
        # The same turn as flirstream.regions.point_to_display, for every rotate and flip.
        from flirstream.regions import point_to_display
        cases = [(x, y, r, f) for (x, y) in [(0, 0), (159, 0), (3, 117), (80, 60)]
                 for r in (0, 90, 180, 270) for f in ("none", "horizontal", "vertical", "both")]
        got = page.evaluate("""async (cases) => {
            const m = await import('./regions.js');
            return cases.map(([x, y, r, f]) => {
              const d = m.toDisplay(x, y, [160, 120], r, f);
              return [...d, ...m.toSensor(d[0], d[1], [160, 120], r, f)];
            }); }""", cases)
        for (x, y, r, f), (dx, dy, sx, sy) in zip(cases, got):
            assert (dx, dy) == point_to_display(x, y, (160, 120), r, f), (x, y, r, f)
            assert (sx, sy) == (x, y)
        # server.conf's box, drawn where the turned picture shows it: rotate 90 then mirror
        page.wait_for_selector("#stage svg.regions g.region[data-name='door']", timeout=WAIT_MS)
        rect = page.eval_on_selector("#stage svg.regions g.region[data-name='door'] rect",
                                     "r => ['x', 'y', 'width', 'height'].map(k => Number(r.getAttribute(k)))")
        (ax, ay), (bx, by) = point_to_display(10, 20, (160, 120), 90, "horizontal"), \
            point_to_display(29, 39, (160, 120), 90, "horizontal")
        assert rect == [min(ax, bx), min(ay, by), abs(ax - bx) + 1, abs(ay - by) + 1]
        # a spot put with a finger lands on the sensor pixel under it
        page.tap("#region-spot")  # the buttons are below the picture on a phone
        page.locator("#view").scroll_into_view_if_needed()
        box = page.locator("#view").bounding_box()  # portrait now: 120 wide, 160 high
        page.touchscreen.tap(box["x"] + 30.5 / 120 * box["width"], box["y"] + 100.5 / 160 * box["height"])
        want = list(sensor_of_display(30, 100))
        shape = wait_until(lambda: api_state(port)["region_shapes"].get("spot1"), what="spot put")
        assert shape == {"name": "spot1", "kind": "spot", "spot": want}
        assert wait_until(lambda: api_state(port)["regions"].get("spot1"))["max"] > 0
    finally:
        context.close()


def sensor_of_display(x: int, y: int) -> tuple[int, int]:
    """The sensor pixel shown at display (x, y) with rotate 90 and a horizontal mirror."""
    from flirstream.regions import point_to_display
    for sx in range(160):
        for sy in range(120):
            if point_to_display(sx, sy, (160, 120), 90, "horizontal") == (x, y):
                return sx, sy
    raise AssertionError((x, y))


def test_the_alarm_banner_and_the_red_region_come_and_go(tmp_path, square_alarm, page):
    camera, port, _ = square_alarm()
    page.goto(f"http://127.0.0.1:{port}/")
    wait_for_frames(page)
    square = region_at(page, "square")
    page.wait_for_function(f"document.querySelector(\"{square}\")?.dataset.max === '35'",
                           timeout=WAIT_MS)
    assert page.is_hidden("#alarm-banner")
    camera.hot_c = 45.0
    page.wait_for_selector("#alarm-banner", state="visible", timeout=WAIT_MS)
    assert page.inner_text("#alarm-banner").startswith("⚠ square-hot: square max 45.0")
    assert "alarm" in page.get_attribute(square, "class")
    # the picture of the frame that fired is kept now that someone watches
    assert wait_until(lambda: list((tmp_path / "alarms").glob("*square-hot.jpg")),
                      what="alarm JPEG")
    camera.hot_c = 39.0  # within the hysteresis: still on
    page.wait_for_function(f"document.querySelector(\"{square}\")?.dataset.max === '39'",
                           timeout=WAIT_MS)
    assert page.is_visible("#alarm-banner")
    camera.hot_c = 37.0
    page.wait_for_selector("#alarm-banner", state="hidden", timeout=WAIT_MS)
    assert "alarm" not in page.get_attribute(square, "class").split()


def reply_of(ws, kinds: tuple) -> dict:
    """The next text message of one of these types (others are skipped)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = ws.recv(timeout=WAIT_S)
        if isinstance(message, str) and json.loads(message)["type"] in kinds:
            return json.loads(message)
    raise AssertionError(f"no {' or '.join(kinds)} message")


def test_region_changes_over_the_websocket_need_the_control_token_and_no_broker(tmp_path, stages):
    from websockets.sync.client import connect
    # and a broker that is not there: it never holds up frames, samples or replies
    config = write_config(tmp_path, "[roi:door]\nspot = 1, 1\n",
                          server={"control_token": "ctl", "token": "view"},
                          state={"dir": tmp_path / "state"},
                          mqtt={"host": "127.0.0.1", "port": free_port()})
    camera = StandInCapture(setting(config, "endpoints", "frames"), HotSquare(35.0))
    port = setting(config, "server", "port")
    try:
        stages("encoder", config)
        start_server(stages, config, f"http://127.0.0.1:{port}/")
        wait_http(port, "/healthz?token=view")
        # /api/state is guarded by the view token like every other endpoint
        assert http_get(port, "/api/state")[0] == 401
        with connect(f"ws://127.0.0.1:{port}/ws?token=view", open_timeout=10) as ws:
            def reply(kind: str) -> dict:
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline:
                    message = ws.recv(timeout=WAIT_S)
                    if isinstance(message, str) and json.loads(message)["type"] == kind:
                        return json.loads(message)
                raise AssertionError(f"no {kind} message")

            ws.send(json.dumps({"op": "monitor"}))
            regions = wait_until(lambda: reply("regions")["regions"], what="door in regions")
            assert regions == [{"name": "door", "kind": "spot", "spot": [1, 1], "source": "config"}]
            assert set(reply("history")["history"]) == {"seconds", "t", "frame", "regions"}
            put = {"op": "region", "put": {"name": "bed", "box": [0, 0, 9, 9]}}
            ws.send(json.dumps(put))
            assert reply("error")["error"] == "changing regions needs the control token"
            deadline = time.monotonic() + WAIT_S
            while True:  # until the server's control link to the encoder is connected
                ws.send(json.dumps({**put, "token": "ctl"}))
                answer = reply_of(ws, ("regions", "error"))
                if answer["type"] == "regions" or "not reachable" not in answer["error"]:
                    break
                assert time.monotonic() < deadline, answer
                time.sleep(0.1)
            assert answer["type"] == "regions", answer
            assert answer["regions"][1] == {"name": "bed", "kind": "box", "box": [0, 0, 9, 9],
                                            "source": "viewer"}
            sample = reply("sample")["sample"]
            assert sample["regions"]["bed"]["max"] == 24.0 and "door" in sample["regions"]
            for bad, needle in [({"put": {"name": "x", "box": [0, 0, 200, 9]}}, "from 0 to 159"),
                                ({"delete": "door"}, "[roi:door] in server.conf"),
                                ({"put": "bed"}, "region put must be an object")]:
                ws.send(json.dumps({"op": "region", **bad, "token": "ctl"}))
                assert needle in reply("error")["error"]
        assert api_state(port, "view")["region_shapes"]["bed"]["box"] == [0, 0, 9, 9]
        mqtt = json.loads(http_get(port, "/healthz?token=view")[2])["mqtt"]
        assert mqtt["state"] == "disconnected" and "cannot connect" in mqtt["detail"]
        assert mqtt["connect_failures"] >= 1
    finally:
        camera.stop()
