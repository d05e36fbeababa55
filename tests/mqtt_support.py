"""A real Mosquitto broker on a free loopback port, and a real paho subscriber, for the MQTT tests."""
from __future__ import annotations

import getpass
import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from flirstream.testing import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0


class Broker:
    """mosquitto -c <generated config>; start() returns once it listens (read from its log)."""

    def __init__(self, directory: Path, users: Optional[dict[str, str]] = None,
                 tls: Optional[tuple[Path, Path, Path]] = None) -> None:
        if not Path(MOSQUITTO).is_file():
            raise RuntimeError(f"the MQTT tests need Debian's mosquitto ({MOSQUITTO} is missing): "
                               f"apt-get install mosquitto, or run scripts/test")
        self.directory = Path(directory)
        self.port = free_port()
        self.config = self.directory / f"mosquitto-{self.port}.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr",
                 "log_type error",
                 # mosquitto started as root drops to user mosquitto, which cannot read pytest's
                 # private tmp directory (no effect when not root)
                 f"user {getpass.getuser()}", "log_type warning", "log_type notice", "log_type information"]
        if users:
            passwords = self.directory / f"passwd-{self.port}"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run([MOSQUITTO_PASSWD, "-b"] + (["-c"] if i == 0 else []) +
                               [str(passwords), user, password], check=True, timeout=10,
                               capture_output=True)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: Optional[subprocess.Popen] = None
        self.log: list[str] = []

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        listening = threading.Event()

        def read(proc: subprocess.Popen) -> None:
            for line in proc.stdout:
                self.log.append(line.rstrip())
                if "listen socket on port" in line:
                    listening.set()
        threading.Thread(target=read, args=(self.proc,), daemon=True).start()
        if not listening.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("mosquitto did not start listening: " + " | ".join(self.log))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Subscriber:
    """A paho client subscribed to `topics` (again after every reconnect); every message goes to a
    queue, and the newest payload per topic is kept."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",)) -> None:
        self.messages: "queue.Queue[paho.MQTTMessage]" = queue.Queue()
        self.latest: dict[str, bytes] = {}
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}-{id(self)}")
        self.client.reconnect_delay_set(0.1, 0.5)

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                for topic in topics:
                    client.subscribe(topic, qos=1)
                self.connected.set()

        def on_message(client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
            self.messages.put(message)

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "test subscriber could not connect"

    def wait_for(self, match: Callable[[paho.MQTTMessage], bool], timeout: float = 20.0
                 ) -> paho.MQTTMessage:
        """The first message (from now on) that `match`es; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching MQTT message within {timeout} s; newest per "
                                     f"topic: {sorted(self.latest)}")
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            self.latest[message.topic] = message.payload
            if match(message):
                return message

    def wait_latest(self, check: Callable[[dict[str, bytes]], bool], timeout: float = 20.0) -> dict:
        """Take messages until check(newest payload per topic) holds; returns that dict."""
        if not check(self.latest):
            self.wait_for(lambda m: check(self.latest), timeout)
        return dict(self.latest)

    def wait_topic(self, topic: str, payload: Optional[bytes] = None, timeout: float = 20.0
                   ) -> paho.MQTTMessage:
        return self.wait_for(lambda m: m.topic == topic and (payload is None or m.payload == payload),
                             timeout)

    def wait_json(self, topic: str, check: Callable[[dict], bool] = lambda d: True,
                  timeout: float = 20.0) -> dict:
        message = self.wait_for(lambda m: m.topic == topic and bool(m.payload)
                                and check(json.loads(m.payload)), timeout)
        return json.loads(message.payload)

    def drain(self) -> list[paho.MQTTMessage]:
        """Messages already received and not yet looked at."""
        out = []
        while True:
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                return out
            self.latest[message.topic] = message.payload
            out.append(message)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate it signed for 127.0.0.1: (ca.pem, server.pem,
    server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flir-stream test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths
