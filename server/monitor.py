"""Watching, frame by frame: readings -> alarm states -> history, MQTT, webhooks and alarm snapshots.
The one object the server feeds with every thermal frame (a wire.Frame with its measurement: one
per camera frame, watched or not, so none of this pauses with the picture). It never waits on the
network: MQTT runs in paho's thread, webhooks are background tasks.

    monitor = Monitor(regions, rules, mqtt=publisher, webhooks=Webhooks(), keeper=AlarmSnapshots(d))
    changes = monitor.on_thermal(thermal, pictured=hub.picture_frame)  # the newest picture's
    monitor.state(), monitor.gauges()                        # GET /api/state, /metrics

Readings are in sensor coordinates (before rotate/flip), like the regions; regions.to_display /
point_to_display turn them for the picture.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable, Mapping, Optional

from flirstream.regions import AlarmRule, Region, celsius, measure
from flirstream.wire import Frame

from .alarm_files import AlarmSnapshots
from .alarms import Alarms, Change
from .discovery import state_message
from .history import History
from .webhook import Webhooks

if TYPE_CHECKING:  # paho-mqtt is optional: server.mqtt is imported only when [mqtt] host is set
    from .mqtt import MqttPublisher

log = logging.getLogger("monitor")

PICTURE_MATCH_S = 1.0  # a picture this close in capture time shows the same scene as the frame


def reading_of(frame: Frame, regions: Iterable[Region]) -> dict:
    """{"frame": {min, max, centre}, "regions": {...}} of a thermal frame (°C) for `regions`: the
    encoder's readings where it sent them, the others measured here from the frame's pixels."""
    regions = list(regions)
    measured_here = frame.measurement
    missing = [r for r in regions if r.name not in measured_here.regions]
    measured = measure(frame.pixels, missing, celsius(frame.kelvin_per_count))["regions"] \
        if missing else {}
    readings = {}
    for region in regions:
        value = measured_here.regions.get(region.name) or measured.get(region.name)
        if value is not None:  # None: the region lies outside this frame
            readings[region.name] = value
    return {"frame": {k: measured_here.stats[k] for k in ("min", "max", "centre")},
            "regions": readings}


class Monitor:
    def __init__(self, regions: Mapping[str, Region], rules: Mapping[str, AlarmRule],
                 mqtt: Optional["MqttPublisher"] = None, webhooks: Optional[Webhooks] = None,
                 keeper: Optional[AlarmSnapshots] = None, history: Optional[History] = None,
                 alarms: Optional[Alarms] = None) -> None:
        self.regions = dict(regions)
        self.alarms = alarms or Alarms(rules)
        self.mqtt, self.webhooks, self.keeper = mqtt, webhooks, keeper
        self.history = history or History()
        self.reading: Optional[dict] = None  # the newest frame's, °C, sensor coordinates
        self.seq: Optional[int] = None
        self.t: Optional[float] = None
        self.sample: Optional[dict] = None  # the history sample the newest frame added, if any

    def on_thermal(self, frame: Frame, pictured: Optional[Frame] = None) -> list[Change]:
        """Take one frame's readings and act on alarm changes (log line, MQTT at once, webhook,
        snapshot). Frames that are not temperatures (tlinear off) give no readings: °C thresholds
        mean nothing for them."""
        jpeg = None
        if pictured is not None and abs(pictured.t - frame.t) <= PICTURE_MATCH_S:
            jpeg = pictured.picture.jpeg  # the same scene
        self.sample = None
        if not frame.tlinear:
            self.reading = None
            if self.mqtt is not None:
                self.mqtt.offer(None, jpeg)
            return []
        reading = reading_of(frame, self.regions.values())
        self.reading, self.seq, self.t = reading, frame.seq, frame.t
        changes = self.alarms.update(reading)
        self.sample = self.history.add(frame.t, reading)
        for change in changes:
            log.log(logging.WARNING if change.state == "alarm" else logging.INFO, "%s",
                    change.describe())
            if self.webhooks is not None and change.rule.webhook:
                self.webhooks.send(change.rule.webhook, change.as_dict())
            if self.keeper is not None:
                try:
                    self.keeper.save(frame, change.name, jpeg)
                except OSError as exc:
                    log.error("alarm %s: cannot save its snapshot in %s: %s", change.name,
                              self.keeper.directory, exc)
        if self.mqtt is not None:
            self.mqtt.offer(state_message(frame.t, frame.seq, reading, self.alarms.as_dict()),
                            jpeg, urgent=bool(changes))
        return changes

    def measure(self, regions: Mapping[str, Region]) -> None:
        """Measure these regions from the next frame on."""
        self.regions = dict(regions)

    def layout(self) -> tuple[list[Region], list[AlarmRule]]:
        """The regions measured and the alarm rules (what MQTT discovery announces)."""
        return list(self.regions.values()), list(self.alarms.rules.values())

    def alarm_states(self) -> dict:
        return self.alarms.as_dict()

    def history_snapshot(self) -> dict:
        """The last 10 minutes of samples, as columns."""
        return self.history.snapshot()

    def gauges(self) -> list[tuple[str, str, str, list[tuple[dict, float]]]]:
        """(name, type, help, samples) for /metrics (metrics.Exposition.metric takes them as they are)."""
        out = [("flirstream_alarm_active", "gauge", "1 while the alarm is in state alarm",
                [({"alarm": name}, int(on)) for name, on in self.alarms.active().items()])]
        temps = []
        if self.reading is not None:
            temps += [({"region": "frame", "stat": k}, v) for k, v in self.reading["frame"].items()]
            for name, values in self.reading["regions"].items():
                temps += [({"region": name, "stat": k}, values[k]) for k in ("min", "max", "mean")]
        if temps:  # none while the frames are not temperatures (TLinear off): no °C at all
            out.append(("flirstream_temperature_celsius", "gauge",
                        "newest frame's readings, per region and stat", temps))
        if self.mqtt is not None and self.mqtt.enabled:
            status = self.mqtt.status()
            out.append(("flirstream_mqtt_connected", "gauge", "1 while connected to the MQTT broker",
                        [({}, int(status["connected"]))]))
            out.append(("flirstream_mqtt_messages_total", "counter", "MQTT messages, by result",
                        [({"result": k}, status[k]) for k in ("published", "skipped")]))
            out.append(("flirstream_mqtt_connects_total", "counter", "MQTT connection events",
                        [({"event": k}, status[k]) for k in
                         ("connects", "disconnects", "refused", "connect_failures")]))
        if self.webhooks is not None:
            out.append(("flirstream_webhooks_total", "counter", "alarm webhook posts, by result",
                        [({"result": k}, v) for k, v in self.webhooks.counters.items()]))
        return out

    def state(self) -> dict:
        """The newest readings and every alarm's state, JSON-able (GET /api/state)."""
        return {"t": self.t, "seq": self.seq, "unit": "°C",
                "frame": None if self.reading is None else self.reading["frame"],
                "regions": {} if self.reading is None else self.reading["regions"],
                "region_shapes": {name: r.as_dict() for name, r in self.regions.items()},
                "alarms": self.alarms.as_dict()}
