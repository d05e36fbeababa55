"""server.watch without processes: Home Assistant's device from capture's camera dict, the region
list from the encoder's status, what monitoring viewers are told, and /metrics names promtool
accepts."""
from __future__ import annotations

import json
import subprocess

import numpy as np

from flirstream import config
from flirstream.wire import Frame
from flirstream.testing import tlinear_counts
from encoder.measure import Meter
from server.health import Health
from server.hub import Hub
from server.metrics import Exposition, Metrics
from server.watch import DEFAULT_MODEL, Watch, device_of, viewer_url

CONF = """[server]\nport = 8099\n[roi:bed]\nbox = 10, 10, 40, 30\n
[alarm:bed-hot]\nroi = bed\nabove = 30\n[mqtt]\nhost = 127.0.0.1\nport = 1\n"""


class Client:
    transport = "websocket"

    def __init__(self, monitoring: bool) -> None:
        self.monitoring = monitoring
        self.texts: list[dict] = []

    def send_text(self, text: str) -> None:
        message = json.loads(text)
        if message["type"] != "status":  # the hub's own, to every viewer
            self.texts.append(message)


def make(tmp_path, text: str = CONF) -> tuple[Watch, Hub]:
    cfg = config.loads(text + f"[state]\ndir = {tmp_path}\n")
    health = Health(2.0)
    hub = Hub(Metrics(), health)
    return Watch(cfg, hub, health), hub


def frame(seq: int, bed_c: float):
    pixels = np.full((120, 160), 29315, dtype=np.uint16)
    pixels[20, 20] = tlinear_counts(bed_c)
    measured = Frame(seq=seq, t=1000.0 + seq, sensor="lepton3", pixels=pixels)
    measured.measurement = Meter().measure(measured)
    return measured


def test_device_comes_from_the_cameras_identity_when_capture_knows_it():
    d = device_of({"model": "Lepton 3.5", "serial": "0123ABCD", "firmware": "3.3.26", "part_number": "x"},
                  "http://pi:8080/")
    assert (d.model, d.serial, d.sw_version, d.configuration_url) == \
        ("Lepton 3.5", "0123ABCD", "3.3.26", "http://pi:8080/")
    plain = device_of(None, None)
    assert plain.model == DEFAULT_MODEL == "FLIR Lepton" and plain.serial == ""
    assert device_of({"model": None, "serial": 7}, None).model == "FLIR Lepton"  # junk ignored
    srv = config.loads("[server]\nhost = ::1\nport = 8123\n").server
    assert viewer_url(srv) == "http://[::1]:8123/"


def test_regions_from_the_encoder_status_reach_the_monitor_mqtt_and_monitoring_viewers(tmp_path):
    watch, hub = make(tmp_path)
    watching, other = Client(True), Client(False)
    for client in (watching, other):  # only hub.websockets() looks at them here
        hub.fanout.clients[client] = None
    listed = [{"name": "bed", "kind": "box", "box": [10, 10, 40, 30], "source": "config"},
              {"name": "cup", "kind": "spot", "spot": [20, 20], "source": "viewer"},
              {"name": "bad", "spot": [999, 0]}]  # a broken entry is left out, not fatal
    hub.on_status({"stage": "encoder", "state": "encoding", "detail": "", "regions": listed})
    assert list(watch.monitor.regions) == ["bed", "cup"]
    assert [r.name for r in watch.mqtt.regions] == ["bed", "cup"]  # discovery follows
    assert watching.texts[-1] == {"type": "regions", "regions": listed[:2]}
    assert other.texts == []  # only viewers that asked ({"op": "monitor"})
    hub.on_status({"stage": "encoder", "state": "encoding", "detail": "", "regions": listed})
    assert len(watching.texts) == 1  # unchanged: not told again
    hub.on_status({"stage": "capture", "state": "streaming", "detail": "",
                   "camera": {"model": "Lepton 3.5", "serial": "42", "firmware": "9"}})
    assert watch.mqtt.device.model == "Lepton 3.5" and watch.state()["camera"]["serial"] == "42"
    # every thermal frame: a sample (one a second) and alarm changes to monitoring viewers
    hub.on_thermal(frame(1, 25.0))
    hub.on_thermal(frame(2, 35.0))
    kinds = [t["type"] for t in watching.texts[1:] if t["type"] != "camera"]  # (capture's news)
    assert kinds == ["sample", "sample", "alarms"]
    assert watching.texts[-1]["alarms"]["bed-hot"]["state"] == "alarm"
    state = watch.state()
    assert state["regions"]["cup"]["max"] == 35.0 and state["alarms"]["bed-hot"]["state"] == "alarm"
    assert state["mqtt"]["state"] == "connecting"  # never started here: no broker needed
    greeting = [json.loads(t)["type"] for t in watch.greeting()]
    assert greeting == ["regions", "alarms", "history"]


def test_monitoring_metrics_pass_promtool(tmp_path):
    watch, hub = make(tmp_path)
    hub.on_thermal(frame(1, 35.0))
    out = Exposition()
    for metric in watch.gauges():
        out.metric(*metric)
    text = out.text()
    assert 'flirstream_alarm_active{alarm="bed-hot"} 1' in text
    assert 'flirstream_temperature_celsius{region="bed",stat="max"} 35.0' in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
