"""server.mqtt with a real Mosquitto broker and a real paho subscriber: discovery, state values,
alarms at once, last will, broker restart, refused login."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys

import jinja2
import numpy as np
import pytest

from conftest import ROOT
from flirstream.config import ConfigError
from flirstream.regions import AlarmRule, Region, celsius, measure
from flirstream.testing import tlinear_counts
from mqtt_support import Broker, Subscriber, certificates
from server.alarms import Alarms
from server.discovery import Device, Topics, sensor_ids, state_message
from server.mqtt import MqttPublisher, MqttSettings

DEVICE = Device("Garage camera", "Lepton 3.5", "0123456789", "1.2.3", "http://cam.local:8080/")
REGIONS = {"bed": Region("bed", 10, 60, 149, 119), "nozzle": Region("nozzle", 100, 20, 100, 20)}
RULES = {"nozzle-hot": AlarmRule("nozzle-hot", "nozzle", "above", 200.0, for_s=2.0, hysteresis=5.0),
         "frost": AlarmRule("frost", None, "below", 5.0)}
FAST_RECONNECT = (0.1, 0.5)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker):
    s = Subscriber(broker.port)
    yield s
    s.close()


@pytest.fixture
def publishers():
    made: list[MqttPublisher] = []

    def make(port: int, regions=REGIONS, rules=RULES, clock=None, **settings
             ) -> tuple[MqttPublisher, queue.Queue]:
        values = dict(host="127.0.0.1", port=port, topic="flir-stream/test", interval_s=3600.0)
        values.update(settings)
        pub = MqttPublisher(MqttSettings(**values), DEVICE, regions.values(), rules.values(),
                            reconnect_delay_s=FAST_RECONNECT, **({"clock": clock} if clock else {}))
        states: queue.Queue = queue.Queue()
        pub.on_state = states.put
        made.append(pub)
        pub.start()
        return pub, states

    yield make
    for pub in made:
        pub.stop()


def wait_state(states: queue.Queue, wanted: str, timeout: float = 20.0) -> None:
    seen = []
    while True:
        try:
            state = states.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"publisher never became {wanted}; states seen: {seen}") from None
        seen.append(state)
        if state == wanted:
            return


def frame(nozzle_c: float = 180.0, cold_c: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng(int(nozzle_c * 10))
    celsius_frame = 22.0 + rng.normal(0, 0.5, (120, 160))
    celsius_frame[20, 100] = nozzle_c
    celsius_frame[90, 30] = 48.25  # the bed's hottest point
    celsius_frame[5, 5] = cold_c
    return tlinear_counts(celsius_frame)


def render(template: str, state: dict) -> str:
    """A value_template evaluated as Home Assistant does it (Jinja2, the state JSON as value_json)."""
    return jinja2.Environment().from_string(template).render(value_json=state)


def collect_discovery(subscriber: Subscriber, prefix: str = "homeassistant",
                      expected: int = 3 + 3 + 1 + 2) -> dict[str, dict]:
    found: dict[str, dict] = {}

    def take(message) -> bool:
        if message.topic.startswith(prefix + "/") and message.topic.endswith("/config"):
            found[message.topic] = json.loads(message.payload) if message.payload else {}
        return len(found) >= expected
    subscriber.wait_for(take)
    return found


def test_discovery_describes_every_stat_and_the_state_carries_the_measured_values(
        broker, subscriber, publishers):
    pub, states = publishers(broker.port)
    wait_state(states, "connected")
    assert subscriber.wait_topic("flir-stream/test/status").payload == b"online"
    found = collect_discovery(subscriber)
    sensors = {t: p for t, p in found.items() if "/sensor/" in t}
    binary = {t: p for t, p in found.items() if "/binary_sensor/" in t}
    node = Topics("flir-stream/test").node
    assert sorted(sensors) == sorted(f"homeassistant/sensor/{node}/{i}/config"
                                     for i in sensor_ids(REGIONS.values()))
    assert len(sensors) == 7 and len(binary) == 2
    unique = {p["unique_id"] for p in found.values()}
    assert len(unique) == len(found)
    for payload in sensors.values():
        assert (payload["device_class"], payload["unit_of_measurement"], payload["state_class"]) == (
            "temperature", "°C", "measurement")
        assert payload["state_topic"] == "flir-stream/test/state"
        assert payload["availability_topic"] == "flir-stream/test/status"
        assert payload["device"] == {"identifiers": [node], "name": "Garage camera",
                                     "manufacturer": "FLIR (flir-stream)", "model": "Lepton 3.5",
                                     "serial_number": "0123456789", "sw_version": "1.2.3",
                                     "configuration_url": "http://cam.local:8080/"}
    entity_ids = {p["default_entity_id"] for p in found.values()}
    assert "sensor.flir_stream_test_roi_bed_max" in entity_ids and len(entity_ids) == len(found)
    assert "binary_sensor.flir_stream_test_alarm_nozzle_hot" in entity_ids
    classes = {p["name"]: p["device_class"] for p in binary.values()}
    assert classes == {"Alarm nozzle-hot": "heat", "Alarm frost": "cold"}

    # one frame measured, alarms updated, state offered: every entity reads its value from it
    pixels = frame(nozzle_c=180.0)
    reading = measure(pixels, REGIONS.values(), celsius(0.01))
    alarms = Alarms(RULES)
    alarms.update(reading)
    pub.offer(state_message(1_700_000_000.5, 42, reading, alarms.as_dict()))
    state = subscriber.wait_json("flir-stream/test/state")
    assert state["seq"] == 42 and state["regions"] == reading["regions"]
    values = {p["unique_id"].removeprefix(node + "_"): render(p["value_template"], state)
              for p in sensors.values()}
    assert values == {
        "frame_min": str(reading["frame"]["min"]), "frame_max": str(reading["frame"]["max"]),
        "frame_centre": str(reading["frame"]["centre"]),
        "roi_bed_min": str(reading["regions"]["bed"]["min"]),
        "roi_bed_max": "48.25", "roi_bed_mean": str(reading["regions"]["bed"]["mean"]),
        "roi_nozzle_value": "180.0"}
    assert {p["name"]: render(p["value_template"], state) for p in binary.values()} == {
        "Alarm nozzle-hot": "OFF", "Alarm frost": "OFF"}
    assert pub.status()["state"] == "connected" and pub.status()["published"] >= 11


def test_alarm_changes_are_published_at_once_between_intervals(broker, subscriber, publishers):
    pub, states = publishers(broker.port, interval_s=3600.0)
    wait_state(states, "connected")
    clock = [100.0]
    alarms = Alarms(RULES, clock=lambda: clock[0])
    render_alarm = collect_discovery(subscriber)
    template = next(p["value_template"] for p in render_alarm.values()
                    if p["name"] == "Alarm nozzle-hot")

    def feed(nozzle_c: float) -> bool:
        reading = measure(frame(nozzle_c), REGIONS.values(), celsius(0.01))
        changes = alarms.update(reading)
        pub.offer(state_message(clock[0], int(clock[0]), reading, alarms.as_dict()),
                  urgent=bool(changes))
        return bool(changes)

    assert not feed(180.0)  # the first state goes out at once
    first = subscriber.wait_json("flir-stream/test/state")
    assert render(template, first) == "OFF"
    clock[0] += 1
    assert not feed(210.0)  # above, but for_s = 2 has not passed; interval not due: not published
    clock[0] += 1.5
    assert not feed(215.0)
    clock[0] += 0.6
    assert feed(212.0)  # held for 2.1 s: fires, published now
    fired = subscriber.wait_json("flir-stream/test/state")
    assert fired["seq"] == 103 and render(template, fired) == "ON"  # nothing in between was sent
    assert fired["alarms"]["nozzle-hot"]["value"] == 212.0
    clock[0] += 1
    assert not feed(196.0)  # inside the 5 °C hysteresis band: still on, nothing sent
    clock[0] += 1
    assert feed(194.99)
    cleared = subscriber.wait_json("flir-stream/test/state")
    assert cleared["seq"] == 105 and render(template, cleared) == "OFF"
    assert cleared["alarms"]["nozzle-hot"]["state"] == "ok"


def test_frames_that_are_not_temperatures_publish_nothing(broker, subscriber, publishers):
    pub, states = publishers(broker.port, interval_s=0.5)
    wait_state(states, "connected")
    subscriber.wait_topic("flir-stream/test/status", b"online")
    before = pub.status()["published"]
    pub.offer(None, jpeg=b"\xff\xd8 not wanted \xff\xd9")  # image_interval_s = 0: no image either
    assert pub.status()["published"] == before
    pub.offer(state_message(1.0, 1, measure(frame(), (), celsius(0.01)), {}))
    assert subscriber.wait_json("flir-stream/test/state")["seq"] == 1
    subscriber.drain()  # (wait_json took the messages before the state; `latest` kept them all)
    assert "flir-stream/test/image" not in subscriber.latest, sorted(subscriber.latest)


def test_image_is_published_and_discovered_when_asked_for(broker, subscriber, publishers):
    pub, states = publishers(broker.port, regions={}, rules={}, image_interval_s=3600.0)
    wait_state(states, "connected")
    found = collect_discovery(subscriber, expected=4)
    image = next(p for t, p in found.items() if "/image/" in t)
    assert image["image_topic"] == "flir-stream/test/image" and image["content_type"] == "image/jpeg"
    pub.offer(None, jpeg=b"\xff\xd8first\xff\xd9")
    pub.offer(None, jpeg=b"\xff\xd8second\xff\xd9")  # within image_interval_s: skipped
    assert subscriber.wait_topic("flir-stream/test/image").payload == b"\xff\xd8first\xff\xd9"


def test_new_layout_removes_the_entities_that_are_gone(broker, subscriber, publishers):
    pub, states = publishers(broker.port)
    wait_state(states, "connected")
    collect_discovery(subscriber)
    node = Topics("flir-stream/test").node
    pub.set_layout([REGIONS["nozzle"]], [])
    gone = [f"homeassistant/sensor/{node}/roi_bed_{s}/config" for s in ("min", "max", "mean")]
    gone += [f"homeassistant/binary_sensor/{node}/alarm_{a}/config" for a in RULES]
    latest = subscriber.wait_latest(lambda latest: all(latest.get(t) == b"" for t in gone))
    kept = f"homeassistant/sensor/{node}/roi_nozzle_value/config"
    assert json.loads(latest[kept])["unique_id"] == f"{node}_roi_nozzle_value"
    # an empty retained payload is how discovery removes an entity: nothing is left retained
    late = Subscriber(broker.port, ("homeassistant/#",))
    try:
        remaining = late.wait_latest(lambda latest: kept in latest)
        assert not set(gone) & set(remaining)
    finally:
        late.close()


CHILD = r"""
import sys, threading
from server.discovery import Device
from server.mqtt import MqttPublisher, MqttSettings
connected = threading.Event()
pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=int(sys.argv[1]), topic="flir-stream/child"),
                    Device("child", "Lepton 3.5", "1", "0"), reconnect_delay_s=(0.1, 0.5))
pub.on_state = lambda state: connected.set() if state == "connected" else None
pub.start()
print("connected" if connected.wait(10) else "not connected", flush=True)
sys.stdin.readline()
"""


def test_last_will_says_offline_when_the_publisher_is_killed(broker, subscriber):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(broker.port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        assert child.stdout.readline().strip() == "connected"
        assert subscriber.wait_topic("flir-stream/child/status").payload == b"online"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        offline = subscriber.wait_topic("flir-stream/child/status", b"offline")
        assert offline.payload == b"offline"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    # retained: a client that subscribes later still learns the camera is offline
    late = Subscriber(broker.port, ("flir-stream/child/status",))
    try:
        assert late.wait_topic("flir-stream/child/status").payload == b"offline"
    finally:
        late.close()


def test_clean_stop_says_offline_too(broker, subscriber, publishers):
    pub, states = publishers(broker.port)
    wait_state(states, "connected")
    subscriber.wait_topic("flir-stream/test/status", b"online")
    pub.stop()
    subscriber.wait_topic("flir-stream/test/status", b"offline")
    assert pub.status()["state"] == "stopped"


def test_broker_restart_mid_run_reconnects_and_publishes_discovery_again(
        broker, subscriber, publishers):
    pub, states = publishers(broker.port, interval_s=0.5)
    wait_state(states, "connected")
    collect_discovery(subscriber)
    subscriber.latest.clear()
    broker.stop()  # no persistence: the retained discovery and status are gone with it
    wait_state(states, "disconnected")
    assert pub.status()["state"] == "disconnected" and not pub.status()["connected"]
    pub.offer(state_message(2.0, 2, measure(frame(), REGIONS.values(), celsius(0.01)), {}))
    assert pub.status()["skipped"] >= 1  # no broker: nothing handed to paho, nothing blocked
    broker.start()
    wait_state(states, "connected")
    # the broker kept nothing, so everything seen now was published again after the reconnect
    node = Topics("flir-stream/test").node
    configs = [f"homeassistant/sensor/{node}/{i}/config" for i in sensor_ids(REGIONS.values())]
    configs += [f"homeassistant/binary_sensor/{node}/alarm_{a}/config" for a in RULES]
    latest = subscriber.wait_latest(lambda latest: all(t in latest for t in configs)
                                    and latest.get("flir-stream/test/status") == b"online"
                                    and b'"seq":2,' in latest.get("flir-stream/test/state", b""))
    # the newest state (offered while the broker was down) went out on reconnect
    assert json.loads(latest["flir-stream/test/state"])["seq"] == 2
    status = pub.status()
    assert status["connects"] == 2 and status["disconnects"] == 1


def test_a_hung_broker_fills_no_queue_and_gets_the_newest_state_when_it_wakes(broker, publishers):
    watcher = Subscriber(broker.port, ("flir-stream/test/state",))
    try:
        ticks = iter(range(10**6))  # each offer is a second later: every one is due
        pub, states = publishers(broker.port, interval_s=1.0, image_interval_s=1.0,
                                 clock=lambda: float(next(ticks)))
        wait_state(states, "connected")
        picture = np.random.default_rng(1).bytes(256 * 1024)  # an incompressible "JPEG"
        reading = measure(frame(), REGIONS.values(), celsius(0.01))
        os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker stops reading: a hung broker
        try:
            offered = 400  # 100 MB of pictures if paho were handed them all
            for seq in range(1, offered + 1):
                pub.offer(state_message(float(seq), seq, reading, {}), picture)
            # the kernel's socket buffers take a few MB; beyond them paho holds at most MAX_PENDING
            # periodic messages and the rest are skipped, not queued
            status = pub.status()
            assert status["skipped"] >= 2 * offered - 100, status
            assert status["state"] == "connected"
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        last = offered + 1
        pub.offer(state_message(float(last), last, reading, {}), urgent=True)
        assert watcher.wait_json("flir-stream/test/state", lambda s: s["seq"] == last, timeout=20)
    finally:
        watcher.close()


def test_refused_login_is_a_status_and_never_blocks(tmp_path, publishers):
    secured = Broker(tmp_path, users={"camera": "right horse battery"}).start()
    try:
        pub, states = publishers(secured.port, username="camera", password="wrong")
        wait_state(states, "refused")
        status = pub.status()
        assert status["state"] == "refused" and "refused" in status["detail"]
        assert "authori" in status["detail"].lower()
        pub.offer(state_message(1.0, 1, measure(frame(), (), celsius(0.01)), {}), urgent=True)
        assert pub.status()["skipped"] >= 1 and pub.status()["published"] == 0
        good, good_states = publishers(secured.port, username="camera",
                                       password="right horse battery", topic="flir-stream/good")
        wait_state(good_states, "connected")
    finally:
        secured.stop()


def test_tls_with_a_ca_file_connects_and_an_unknown_ca_is_refused(tmp_path, publishers):
    ca, cert, key = certificates(tmp_path)
    secured = Broker(tmp_path, tls=(ca, cert, key)).start()
    try:
        pub, states = publishers(secured.port, tls=True, ca_file=str(ca))
        wait_state(states, "connected")
        # the system's CAs do not know the test CA: the handshake fails, reported, retried
        other, other_states = publishers(secured.port, tls=True, topic="flir-stream/untrusted")
        wait_state(other_states, "disconnected")
        assert "cannot connect" in other.status()["detail"]
    finally:
        secured.stop()


def test_broker_that_is_not_there_is_a_status(tmp_path, publishers):
    from flirstream.testing import free_port
    pub, states = publishers(free_port())
    wait_state(states, "disconnected")
    assert "cannot connect" in pub.status()["detail"]


def test_without_paho_an_mqtt_host_is_a_clear_config_error(monkeypatch):
    monkeypatch.setattr("server.mqtt.paho", None)
    pub = MqttPublisher(MqttSettings(host="broker.lan"), DEVICE)
    with pytest.raises(ConfigError, match=r"^\[mqtt\] host = 'broker.lan': MQTT needs paho-mqtt"):
        pub.start()
    MqttPublisher(MqttSettings(), DEVICE).start()  # no host: MQTT off, nothing needed
    assert MqttPublisher(MqttSettings(), DEVICE).status()["state"] == "off"


def test_settings_from_the_mqtt_section():
    s = MqttSettings.parse({"host": "broker.lan", "topic": "/cams/garage/", "interval_s": "2"}, "x.conf")
    assert (s.host, s.port, s.topic, s.interval_s, s.discovery, s.discovery_prefix,
            s.image_interval_s, s.tls) == ("broker.lan", 1883, "cams/garage", 2.0, True,
                                           "homeassistant", 0.0, False)
    assert not MqttSettings.parse({}).enabled
    assert MqttSettings().base_topic.startswith("flir-stream/")
    for raw, expected in [({"port": "0"}, "x.conf: [mqtt] port = '0': expected an integer"),
                          ({"topic": "a/+/b"}, "x.conf: [mqtt] topic = 'a/+/b': expected an MQTT"),
                          ({"interval_s": "0"}, "x.conf: [mqtt] interval_s = '0': expected a number"),
                          ({"tls": "maybe"}, "x.conf: [mqtt] tls = 'maybe': expected yes or no"),
                          ({"host": "a b"}, "x.conf: [mqtt] host = 'a b': expected a broker"),
                          ({"ca_file": "/nonexistent.pem"}, "x.conf: [mqtt] ca_file = "),
                          ({"password": "x"}, "x.conf: [mqtt] password: expected username"),
                          ({"hots": "x"}, "x.conf: [mqtt] hots: unknown key"),
                          ({"pasword": "Secret"}, "x.conf: [mqtt] pasword: unknown key")]:
        with pytest.raises(ConfigError) as info:
            MqttSettings.parse(raw, "x.conf")
        assert str(info.value).startswith(expected) and "\n" not in str(info.value)
