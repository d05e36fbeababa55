"""The server's monitoring, wired up: every thermal frame from the hub into the Monitor (readings,
alarms, history, MQTT, webhooks, alarm snapshots), the region list the encoder reports, the camera's
identity for Home Assistant, and what viewers are told about all that.

    watch = Watch(cfg, hub, health)  # hub.measurement_listeners / status_listeners now feed it
    watch.start()                    # MQTT connects in paho's thread
    watch.state(), watch.gauges(), watch.mqtt_status()   # /api/state, /metrics, /healthz
    await watch.stop()
"""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any, Optional

import flirstream
from flirstream import config as configuration
from flirstream.regions import SENSORS, Region, region_from_dict
from flirstream.state import default_dir
from flirstream.wire import Frame

from . import protocol
from .alarm_files import AlarmSnapshots
from .discovery import Device
from .health import Health
from .hub import Hub
from .monitor import PICTURE_MATCH_S, Monitor
from .webhook import Webhooks

log = logging.getLogger("monitor")

WEBHOOK_FLUSH_S = 2.0
LATE_PICTURE_WAIT_S = 3.0  # an alarm while nobody watches: wait this long for the picture
DEFAULT_MODEL = "FLIR Lepton"


def viewer_url(srv: Any) -> str:
    """The viewer's address as other machines reach it (configuration_url in Home Assistant)."""
    scheme = "https" if srv.tls_cert else "http"
    host = srv.host
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn() or socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{srv.port}/"


def device_of(camera: Optional[dict], url: Optional[str]) -> Device:
    """Home Assistant's device from capture's `camera` status dict (model, serial, firmware) where
    it has one, else a plain "FLIR Lepton"."""
    camera = camera if isinstance(camera, dict) else {}

    def field(key: str) -> str:
        value = camera.get(key)
        return value.strip() if isinstance(value, str) else ""

    return Device(name=f"flir-stream {socket.gethostname()}", model=field("model") or DEFAULT_MODEL,
                  serial=field("serial"), sw_version=field("firmware") or flirstream.__version__,
                  configuration_url=url)


class Watch:
    def __init__(self, cfg: configuration.Config, hub: Hub, health: Health) -> None:
        self.cfg = cfg
        self.hub = hub
        self.health = health
        self.sensor = SENSORS[cfg.capture.sensor]
        self.configured: dict[str, Region] = dict(getattr(cfg, "regions", {}))
        rules = dict(getattr(cfg, "alarms", {}))
        self.url = viewer_url(cfg.server)
        self.camera: Optional[dict] = None
        self.mqtt = None
        if cfg.mqtt.host:
            from .mqtt import MqttPublisher, MqttSettings  # paho-mqtt is needed only then
            self.mqtt = MqttPublisher(MqttSettings.from_values(cfg.mqtt.as_dict()),
                                      device_of(None, self.url), self.configured.values(),
                                      rules.values())
        directory = cfg.monitor.alarm_dir or str(Path(cfg.state.dir or default_dir()) / "alarms")
        keeper = AlarmSnapshots(directory, cfg.monitor.alarm_max_count,
                                int(cfg.monitor.alarm_max_mb * 1024 * 1024)) if rules else None
        self.webhooks = Webhooks()
        self.keeper = keeper
        self.monitor = Monitor(self.configured, rules, mqtt=self.mqtt, webhooks=self.webhooks,
                               keeper=keeper)
        self._tasks: set[asyncio.Task] = set()
        self.regions: list[dict] = [{**r.as_dict(), "source": "config"}
                                    for r in self.configured.values()]
        hub.measurement_listeners.append(self.on_thermal)
        hub.status_listeners.append(self.on_status)
        log.info("monitoring: regions %s; alarms %s%s; MQTT %s", ", ".join(self.configured) or "none",
                 ", ".join(rules) or "none", f" (snapshots in {directory})" if rules else "",
                 f"to {cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.host else "off")

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()  # ConfigError if the TLS files cannot be used

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.mqtt is not None:
            self.mqtt.stop()
        await self.webhooks.flush(WEBHOOK_FLUSH_S)
        await self.webhooks.close()

    # ------------------------------------------------------------ from the hub

    def on_thermal(self, frame: Frame) -> None:
        changes = self.monitor.on_thermal(frame, pictured=self.hub.picture_frame)
        sample = self.monitor.sample
        if sample is not None:
            self.tell(protocol.sample_message(sample))
        if changes:
            self.tell(protocol.alarms_message(self.monitor.alarm_states()))
            pictured = self.hub.picture_frame
            if self.keeper is not None and (pictured is None
                                            or abs(pictured.t - frame.t) > PICTURE_MATCH_S):
                self._wait_for_picture(frame, [c.name for c in changes])

    def _wait_for_picture(self, frame: Frame, alarms: list[str]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in the server's loop (plain calls, as in unit tests)
            log.info("alarm %s: no event loop to wait for a picture in: the snapshot is the TIFF "
                     "alone", ", ".join(alarms))
            return
        task = loop.create_task(self._late_picture(frame, alarms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _late_picture(self, frame: Frame, alarms: list[str]) -> None:
        """The picture was paused (nobody watched): wake the encoder as a snapshot request does and
        add the first picture that comes to the alarm's snapshot."""
        pictured = await self.hub.fresh_image(LATE_PICTURE_WAIT_S,
                                              newer_than=frame.t - PICTURE_MATCH_S)
        if pictured is None:
            log.info("alarm %s: no picture came within %g s: its snapshot is the TIFF alone",
                     ", ".join(alarms), LATE_PICTURE_WAIT_S)
            return
        for name in alarms:
            try:
                self.keeper.add_picture(frame, name, pictured.picture.jpeg)
            except OSError as exc:
                log.error("alarm %s: cannot save its picture in %s: %s", name, self.keeper.directory,
                          exc)

    def tell(self, text: str) -> None:
        """To the viewers that asked for monitoring (the "monitor" op)."""
        for client in self.hub.websockets():
            if getattr(client, "monitoring", False):
                client.send_text(text)

    def on_status(self, message: dict) -> None:
        stage = message.get("stage")
        if stage == "encoder" and isinstance(message.get("regions"), list):
            self.set_regions(message["regions"])
        elif stage == "capture" and isinstance(message.get("camera"), dict):
            camera = message["camera"]
            if self.mqtt is not None and device_of(camera, self.url) != self.mqtt.device:
                self.mqtt.device = device_of(camera, self.url)
                self.mqtt.set_layout(*self.monitor.layout())
            self.camera = camera

    def set_regions(self, listed: list) -> bool:
        """The encoder's region list (server.conf's and drawn ones), as its status (or a reply)
        reports it; True if it changed (monitoring viewers are told)."""
        regions: dict[str, Region] = {}
        shown = []
        for item in listed:
            try:
                region = region_from_dict({k: v for k, v in item.items() if k in ("name", "spot", "box")}
                                          if isinstance(item, dict) else item, self.sensor,
                                          where="encoder status")
            except configuration.ConfigError as exc:
                log.warning("%s: region ignored", exc)
                continue
            regions[region.name] = region
            shown.append({**region.as_dict(),
                          "source": "viewer" if item.get("source") == "viewer" else "config"})
        if shown == self.regions:
            return False
        self.regions = shown
        # server.conf's regions stay measured (here, from the pixels) even if an encoder run with
        # another file does not know them: alarms name them
        self.monitor.measure({**self.configured, **regions})
        if self.mqtt is not None:
            self.mqtt.set_layout(*self.monitor.layout())
        self.tell(protocol.regions_message(shown))
        return True

    # ------------------------------------------------------------ for handlers and viewers

    def state(self) -> dict:
        """GET /api/state: the newest readings, every region and alarm, camera and MQTT status."""
        return {**self.monitor.state(),
                "camera": {**(self.camera or {}), "state": self.health.camera()},
                "mqtt": self.mqtt_status()}

    def mqtt_status(self) -> dict:
        if self.mqtt is None:
            return {"state": "off", "detail": "no [mqtt] host set"}
        return self.mqtt.status()

    def gauges(self) -> list:
        return self.monitor.gauges()

    def greeting(self) -> list[str]:
        """What a new viewer is sent: the regions, the alarms' states, the history."""
        return [protocol.regions_message(self.regions),
                protocol.alarms_message(self.monitor.alarm_states()),
                protocol.history_message(self.monitor.history_snapshot())]
