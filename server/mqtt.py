"""MQTT out: the readings and alarm states to a broker, with Home Assistant discovery. paho-mqtt does
the protocol and runs the network in its own thread (loop_start), so a broker that is down, slow or
refuses the login never holds up the Tornado loop or a frame: `offer` only hands paho a message.

    publisher = MqttPublisher(settings, device, regions, alarm_rules)
    publisher.start()                                  # returns at once; connects in the background
    publisher.offer(state, jpeg, urgent=changed)       # every frame; sends every interval_s or now
    publisher.status(), publisher.counters             # for /healthz and /metrics
    publisher.stop()

On every (re)connect: `<topic>/status` = online (retained; the last will says offline), discovery
(retained) and the newest state. Reconnects back off (paho's reconnect_delay_set), one log line per
change of state. At most MAX_PENDING periodic messages wait for the socket: a slow broker gets the
newest state when it catches up, the ones in between are skipped. The state is retained, so Home
Assistant has every value again at once when it (or the broker) restarts.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

try:  # the optional extra: pip install 'flir-stream[mqtt]'
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:  # pragma: no cover - the test extra installs it
    paho = None  # type: ignore[assignment]

from flirstream import config as configuration
from flirstream.config import BadValue, ConfigError, Key
from flirstream.regions import AlarmRule, Region

from .discovery import OFFLINE, ONLINE, Device, Topics, discovery_messages

log = logging.getLogger("mqtt")

MAX_PENDING = 8  # qos 0 messages handed to paho and not yet written to the socket
MAX_QUEUED = 1000  # qos 1 messages (discovery, alarm changes) not yet acknowledged
RECONNECT_DELAY_S = (1, 60)  # back-off from 1 s doubling to 60 s
KEEPALIVE_S = 30
STOP_WAIT_S = 2.0


_topic = configuration.mqtt_topic
# [mqtt] in server.conf: config.py's SCHEMA owns the keys, their parsers and defaults.
MQTT_KEYS: dict[str, Key] = configuration.SCHEMA["mqtt"]


@dataclass(frozen=True)
class MqttSettings:
    host: str = ""
    port: int = 1883
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: Optional[str] = None
    topic: str = ""
    interval_s: float = 5.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    image_interval_s: float = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def base_topic(self) -> str:
        return self.topic or f"flir-stream/{_topic(socket.gethostname()) or 'camera'}"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "MqttSettings":
        """From typed values (config.mqtt.as_dict())."""
        return cls(**{k: v for k, v in values.items() if k in MQTT_KEYS})

    @classmethod
    def parse(cls, raw: Mapping[str, str], where: str = "setting") -> "MqttSettings":
        """From an [mqtt] section's text values; ConfigError with the usual one line."""
        values: dict[str, Any] = {}
        for key in raw:
            if key not in MQTT_KEYS:  # its value is not shown: a misspelt `pasword =` is a secret
                raise ConfigError(f"{where}: [mqtt] {key}: unknown key "
                                  f"(expected one of {', '.join(MQTT_KEYS)})")
        for key, spec in MQTT_KEYS.items():
            value = raw.get(key, spec.default)
            try:
                values[key] = spec.parse(value)
            except BadValue as exc:
                raise ConfigError(f"{where}: [mqtt] {key} = {value.strip()!r}: {exc}") from None
        if values["ca_file"] and not os.path.isfile(values["ca_file"]):
            raise ConfigError(f"{where}: [mqtt] ca_file = {values['ca_file']!r}: expected an "
                              f"existing file")
        if values["password"] and not values["username"]:
            raise ConfigError(f"{where}: [mqtt] password: expected username as well")
        return cls(**values)


def _encode(message: Mapping) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


class MqttPublisher:
    """One broker connection; every method returns at once (paho's thread does the network)."""

    def __init__(self, settings: MqttSettings, device: Device, regions: Iterable[Region] = (),
                 alarms: Iterable[AlarmRule] = (), clock: Callable[[], float] = time.monotonic,
                 reconnect_delay_s: tuple[float, float] = RECONNECT_DELAY_S) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic, settings.discovery_prefix)
        self.device = device
        self.regions, self.alarms = list(regions), list(alarms)
        self.clock = clock
        self.reconnect_delay_s = reconnect_delay_s
        self.counters = {"published": 0, "skipped": 0, "connects": 0, "disconnects": 0,
                         "refused": 0, "connect_failures": 0}
        # Serialises discovery (paho's thread on connect, the server's on set_layout). Never taken
        # by a paho callback that paho calls holding its own locks (on_publish is not used: paho
        # calls it holding the lock publish() needs).
        self._lock = threading.RLock()
        self._pending_lock = threading.Lock()  # never held while calling paho
        self._pending: dict[int, Any] = {}  # qos 0 mid -> MQTTMessageInfo not yet written
        self._connected = False
        self._state = ("off", "no [mqtt] host set") if not settings.enabled else ("connecting", "")
        self._since = time.time()
        self._newest: Optional[Mapping] = None  # the newest state offered (encoded when sent)
        self._last_state: Optional[float] = None
        self._last_image: Optional[float] = None
        self._discovered: set[str] = set()
        self.client: Optional["paho.Client"] = None
        # called (from paho's thread) with the new state name on every change, e.g. for /metrics
        self.on_state: Optional[Callable[[str], None]] = None

    @property
    def enabled(self) -> bool:
        """A broker is configured ([mqtt] host)."""
        return self.settings.enabled

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Begin connecting in paho's thread. ConfigError if the TLS settings cannot be used."""
        if not self.settings.enabled or self.client is not None:
            return
        s = self.settings
        if paho is None:
            raise ConfigError(f"[mqtt] host = {s.host!r}: MQTT needs paho-mqtt, which is not "
                              f"installed: pip install 'flir-stream[mqtt]' (or apt-get install "
                              f"python3-paho-mqtt)")
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flir-stream-{self.topics.node}",
                             protocol=paho.MQTTv311)
        if log.isEnabledFor(logging.DEBUG):
            # paho's own lines only when debugging: it logs each failed retry, our one line per
            # change of state is what an operator needs
            client.enable_logger(logging.getLogger("mqtt.paho"))
        client.max_queued_messages_set(MAX_QUEUED)
        client.reconnect_delay_set(*self.reconnect_delay_s)
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"[mqtt] tls: cannot use the TLS settings: {exc}") from None
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        self._state = ("connecting", f"to {self.broker}")
        log.info("MQTT connecting to %s%s, publishing on %s/", self.broker, " (tls)" if s.tls else "",
                 self.topics.base)
        client.connect_async(s.host, s.port, keepalive=KEEPALIVE_S)
        client.loop_start()

    def stop(self) -> None:
        """Say offline (a clean disconnect sends no last will), disconnect, end paho's thread."""
        client, self.client = self.client, None
        if client is None:
            return
        if self._connected:
            info = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(STOP_WAIT_S)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()
        self._connected = False
        self._set_state("stopped", "")

    @property
    def broker(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # ------------------------------------------------------------ what the server calls

    def offer(self, state: Optional[Mapping], jpeg: Optional[bytes] = None, urgent: bool = False) -> None:
        """The newest state (discovery.state_message; None when frames are not temperatures) and
        JPEG. Publishes the state when interval_s has passed, or at once when urgent (an alarm
        changed), and the JPEG every image_interval_s."""
        now = self.clock()
        if state is not None:
            self._newest = state
            if urgent or self._last_state is None or now - self._last_state >= self.settings.interval_s:
                if self._publish(self.topics.state, _encode(state), qos=1 if urgent else 0,
                                 retain=True, urgent=urgent):
                    self._last_state = now
        if jpeg is not None and self.settings.image_interval_s > 0 and (
                self._last_image is None or now - self._last_image >= self.settings.image_interval_s):
            if self._publish(self.topics.image, jpeg, qos=0):
                self._last_image = now

    def set_layout(self, regions: Iterable[Region], alarms: Iterable[AlarmRule]) -> None:
        """New regions / alarms (e.g. drawn in the viewer): discovery again, stale entities removed."""
        self.regions, self.alarms = list(regions), list(alarms)
        if self._connected:
            self._publish_discovery()

    def status(self) -> dict:
        """For /healthz detail."""
        state, detail = self._state
        return {"state": state, "detail": detail, "broker": self.broker if self.settings.enabled else "",
                "topic": self.topics.base, "since": round(self._since, 3),
                "connected": self._connected, **self.counters}

    # ------------------------------------------------------------ paho's thread

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.counters["refused"] += 1
            self._set_state("refused", f"{self.broker} refused the connection: {reason} "
                                       f"(retrying with back-off)")
            return
        with self._pending_lock:
            self._pending.clear()
        self._connected = True
        self.counters["connects"] += 1
        self._set_state("connected", f"to {self.broker}, publishing on {self.topics.base}/")
        self._publish(self.topics.status, ONLINE.encode(), qos=1, retain=True, urgent=True)
        if self.settings.discovery:
            client.subscribe(self.topics.ha_status, qos=1)
            self._discovered.clear()  # a restarted broker without persistence forgot them
            self._publish_discovery()
        newest = self._newest
        if newest is not None:
            self._publish(self.topics.state, _encode(newest), qos=1, retain=True, urgent=True)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.counters["connect_failures"] += 1
        self._set_state("disconnected", f"cannot connect to {self.broker} (retrying with back-off)")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self._connected
        self._connected = False
        with self._pending_lock:
            self._pending.clear()  # paho drops unwritten qos 0 packets with the connection
        if was:
            self.counters["disconnects"] += 1
            if self.client is not None:
                self._set_state("disconnected", f"lost {self.broker}: {reason} (reconnecting)")

    def _on_message(self, client: paho.Client, userdata: Any, message: Any) -> None:
        if message.topic == self.topics.ha_status and message.payload == ONLINE.encode():
            log.info("Home Assistant is online: discovery sent again")
            self._discovered.clear()
            self._publish_discovery()

    # ------------------------------------------------------------ helpers

    def _publish_discovery(self) -> None:
        with self._lock:
            self._send_discovery()

    def _send_discovery(self) -> None:
        messages = discovery_messages(self.topics, self.device, self.regions, self.alarms,
                                      image=self.settings.image_interval_s > 0)
        topics = {topic for topic, _ in messages}
        for topic in sorted(self._discovered - topics):  # entities that are gone
            self._publish(topic, b"", qos=1, retain=True, urgent=True)
        for topic, payload in messages:
            self._publish(topic, _encode(payload), qos=1, retain=True, urgent=True)
        self._discovered = topics

    def _publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                 urgent: bool = False) -> bool:
        """Hand one message to paho unless disconnected or (not urgent) too much is waiting."""
        client = self.client
        if client is None or not self._connected:
            self.counters["skipped"] += 1
            return False
        if not urgent and self._waiting() >= MAX_PENDING:
            self.counters["skipped"] += 1
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self.counters["skipped"] += 1
            return False
        if qos == 0:
            with self._pending_lock:
                self._pending[info.mid] = info
        self.counters["published"] += 1
        return True

    def _waiting(self) -> int:
        """qos 0 messages handed to paho and not yet written to the socket."""
        with self._pending_lock:
            for mid in [mid for mid, info in self._pending.items() if info.is_published()]:
                del self._pending[mid]
            return len(self._pending)

    def _set_state(self, state: str, detail: str) -> None:
        if self._state[0] == state:
            self._state = (state, detail)
            return
        self._state = (state, detail)
        self._since = time.time()
        log_at = logging.WARNING if state in ("refused", "disconnected") else logging.INFO
        log.log(log_at, "MQTT %s%s", state, f": {detail}" if detail else "")
        if self.on_state is not None:
            self.on_state(state)
