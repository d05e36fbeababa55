"""What flir-stream publishes over MQTT, as plain data: the topics, the state JSON and Home Assistant's
MQTT discovery messages (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery).

One device per camera; a temperature `sensor` for the frame's min / max / centre and each region's
stats (a spot has one value, a box min / max / mean), a `binary_sensor` per alarm, and an `image`
when the JPEG is published. Every entity reads the one state message through a value_template and
is available while `<topic>/status` says online (retained, with the MQTT last will saying offline).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from flirstream.regions import AlarmRule, Region

ONLINE, OFFLINE = "online", "offline"
FRAME_STATS = ("min", "max", "centre")
BOX_STATS = ("min", "max", "mean")


@dataclass(frozen=True)
class Device:
    """The camera as Home Assistant shows it."""

    name: str
    model: str  # e.g. "Lepton 3.5"
    serial: str
    sw_version: str
    configuration_url: Optional[str] = None  # the viewer

    def as_dict(self, identifier: str) -> dict:
        device = {"identifiers": [identifier], "name": self.name, "manufacturer": "FLIR (flir-stream)",
                  "model": self.model, "serial_number": self.serial, "sw_version": self.sw_version}
        if self.configuration_url:
            device["configuration_url"] = self.configuration_url
        return device


@dataclass(frozen=True)
class Topics:
    base: str
    discovery_prefix: str = "homeassistant"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def image(self) -> str:
        return f"{self.base}/image"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth message: discovery is sent again when it says online."""
        return f"{self.discovery_prefix}/status"

    @property
    def node(self) -> str:
        """The base topic as a discovery node_id / unique_id prefix ([a-zA-Z0-9_-] only)."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.base)

    def entity_id(self, component: str, object_id: str) -> str:
        """Home Assistant's suggested entity id, e.g. sensor.flir_stream_garage_roi_bed_max
        (default_entity_id: object_id in discovery is deprecated since Home Assistant 2025.10)."""
        return f"{component}." + re.sub(r"[^a-z0-9]+", "_", f"{self.node}_{object_id}".lower()).strip("_")

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node}/{object_id}/config"


def state_message(t: float, seq: int, reading: Mapping, alarms: Mapping[str, Mapping]) -> dict:
    """The JSON published on <topic>/state: reading is regions.measure()'s (°C), alarms
    server.alarms.Alarms.as_dict()'s."""
    return {"t": round(t, 3), "seq": seq, "unit": "°C", "frame": dict(reading["frame"]),
            "regions": {k: dict(v) for k, v in reading["regions"].items()},
            "alarms": {k: {"state": v["state"], "since": v["since"], "value": v.get("value"),
                           "threshold": v.get("threshold")} for k, v in alarms.items()}}


def _common(topics: Topics, device: Device) -> dict:
    return {"availability_topic": topics.status, "payload_available": ONLINE,
            "payload_not_available": OFFLINE, "device": device.as_dict(topics.node),
            "origin": {"name": "flir-stream", "sw_version": device.sw_version}}


def _temperature(topics: Topics, device: Device, object_id: str, name: str, template: str) -> tuple:
    payload = {"name": name, "unique_id": f"{topics.node}_{object_id}",
               "default_entity_id": topics.entity_id("sensor", object_id),
               "state_topic": topics.state, "value_template": template, "device_class": "temperature",
               "unit_of_measurement": "°C", "state_class": "measurement",
               "suggested_display_precision": 1, **_common(topics, device)}
    return topics.config("sensor", object_id), payload


def sensor_ids(regions: Iterable[Region]) -> list[str]:
    """object_ids of every temperature sensor, frame first. Box ids end in _min / _max / _mean and
    spot ids in _value, so no two regions' ids can be the same."""
    ids = [f"frame_{s}" for s in FRAME_STATS]
    for region in regions:
        ids += [f"roi_{region.name}_value"] if region.spot else [f"roi_{region.name}_{s}" for s in BOX_STATS]
    return ids


def discovery_messages(topics: Topics, device: Device, regions: Iterable[Region],
                       alarms: Iterable[AlarmRule], image: bool = False) -> list[tuple[str, dict]]:
    """(config topic, payload) of every entity, to publish retained."""
    out = [_temperature(topics, device, f"frame_{s}", f"Frame {s}",
                        f"{{{{ value_json.frame.{s} }}}}") for s in FRAME_STATS]
    for region in regions:
        key = json.dumps(region.name)  # names are [A-Za-z0-9_-]; quoted, '-' is not subtraction
        if region.spot:
            out.append(_temperature(topics, device, f"roi_{region.name}_value", region.name,
                                    f"{{{{ value_json.regions[{key}].max }}}}"))
            continue
        for s in BOX_STATS:
            out.append(_temperature(topics, device, f"roi_{region.name}_{s}", f"{region.name} {s}",
                                    f"{{{{ value_json.regions[{key}].{s} }}}}"))
    for rule in alarms:
        key = json.dumps(rule.name)
        object_id = f"alarm_{rule.name}"
        payload = {"name": f"Alarm {rule.name}", "unique_id": f"{topics.node}_{object_id}",
                   "default_entity_id": topics.entity_id("binary_sensor", object_id),
                   "state_topic": topics.state,
                   "value_template": f"{{{{ 'ON' if value_json.alarms[{key}].state == 'alarm' "
                                     f"else 'OFF' }}}}",
                   "payload_on": "ON", "payload_off": "OFF",
                   "device_class": "heat" if rule.direction == "above" else "cold",
                   **_common(topics, device)}
        out.append((topics.config("binary_sensor", object_id), payload))
    if image:
        out.append((topics.config("image", "image"),
                    {"name": "Thermal image", "unique_id": f"{topics.node}_image",
                     "default_entity_id": topics.entity_id("image", "image"),
                     "image_topic": topics.image,
                     "content_type": "image/jpeg", **_common(topics, device)}))
    return out
