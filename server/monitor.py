"""Watching, frame by frame: readings -> alarm states -> history, MQTT, webhooks and alarm snapshots.
The one object the server (or encoder) feeds; it never waits on the network (MQTT runs in paho's
thread, webhooks are background tasks).

    monitor = Monitor(regions, rules, mqtt=publisher, webhooks=Webhooks(), keeper=AlarmSnapshots(d))
    changes = monitor.on_frame(frame, rotate=0, flip="none")   # an ImageFrame (display orientation)
    monitor.state()                                            # for GET /api/state

Regions are in sensor coordinates; the ImageFrame's pixels are already rotated / flipped, so each
region is turned the same way before measuring and positions (max_xy) come out in the picture's
coordinates, which is what the viewer draws on.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, Optional

from flirstream.regions import AlarmRule, Region, celsius, measure, to_display
from flirstream.wire import ImageFrame

from .alarm_files import AlarmSnapshots
from .alarms import Alarms, Change
from .discovery import state_message
from .history import History
from .webhook import Webhooks

if TYPE_CHECKING:  # paho-mqtt is optional: server.mqtt is imported only when [mqtt] host is set
    from .mqtt import MqttPublisher

log = logging.getLogger("monitor")


def sensor_size(shape: tuple[int, int], rotate: int) -> tuple[int, int]:
    """(columns, rows) of the sensor, from a frame of `shape` (rows, cols) rotated by `rotate`."""
    rows, cols = shape
    return (rows, cols) if rotate in (90, 270) else (cols, rows)


class Monitor:
    def __init__(self, regions: Mapping[str, Region], rules: Mapping[str, AlarmRule],
                 mqtt: Optional["MqttPublisher"] = None, webhooks: Optional[Webhooks] = None,
                 keeper: Optional[AlarmSnapshots] = None, history: Optional[History] = None,
                 alarms: Optional[Alarms] = None) -> None:
        self.regions = dict(regions)
        self.alarms = alarms or Alarms(rules)
        self.mqtt, self.webhooks, self.keeper = mqtt, webhooks, keeper
        self.history = history or History()
        self.reading: Optional[dict] = None  # the newest frame's, °C, display coordinates
        self.seq: Optional[int] = None
        self.t: Optional[float] = None
        self._oriented: tuple = ()
        self._display: list[Region] = []

    def on_frame(self, frame: ImageFrame, rotate: int = 0, flip: str = "none") -> list[Change]:
        """Measure one frame and act on alarm changes (log line, MQTT at once, webhook, snapshot).
        Frames that are not temperatures (tlinear off) are not measured: °C thresholds mean
        nothing for them."""
        if not frame.tlinear:
            self.reading = None
            if self.mqtt is not None:
                self.mqtt.offer(None, frame.jpeg)
            return []
        reading = measure(frame.pixels, self._regions_for(frame.pixels.shape, rotate, flip),
                          celsius(frame.kelvin_per_count))
        self.reading, self.seq, self.t = reading, frame.seq, frame.t
        changes = self.alarms.update(reading)
        self.history.add(frame.t, reading)
        for change in changes:
            log.log(logging.WARNING if change.state == "alarm" else logging.INFO, "%s",
                    change.describe())
            if self.webhooks is not None and change.rule.webhook:
                self.webhooks.send(change.rule.webhook, change.as_dict())
            if self.keeper is not None:
                try:
                    self.keeper.save(frame, change.name)
                except OSError as exc:
                    log.error("alarm %s: cannot save its snapshot in %s: %s", change.name,
                              self.keeper.directory, exc)
        if self.mqtt is not None:
            self.mqtt.offer(state_message(frame.t, frame.seq, reading, self.alarms.as_dict()),
                            frame.jpeg, urgent=bool(changes))
        return changes

    def _regions_for(self, shape: tuple[int, int], rotate: int, flip: str) -> list[Region]:
        key = (shape, rotate, flip, tuple(self.regions.values()))
        if key != self._oriented:  # turned once per change of orientation or regions
            sensor = sensor_size(shape, rotate)
            self._display = [to_display(r, sensor, rotate, flip) for r in self.regions.values()]
            self._oriented = key
        return self._display

    def gauges(self) -> list[tuple[str, str, str, list[tuple[dict, float]]]]:
        """(name, type, help, samples) for /metrics (metrics.Exposition.metric takes them as they are)."""
        out = [("flirstream_alarm_active", "gauge", "1 while the alarm is in state alarm",
                [({"alarm": name}, int(on)) for name, on in self.alarms.active().items()])]
        temps = []
        if self.reading is not None:
            temps += [({"region": "frame", "stat": k}, v) for k, v in self.reading["frame"].items()]
            for name, values in self.reading["regions"].items():
                temps += [({"region": name, "stat": k}, values[k]) for k in ("min", "max", "mean")]
        out.append(("flirstream_temperature_celsius", "gauge",
                    "newest frame's readings, per region and stat", temps))
        if self.mqtt is not None and self.mqtt.settings.enabled:
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
