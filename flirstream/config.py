"""server.conf: one INI file configures every stage.

The schema below is the single list of sections and keys. Every value is parsed and checked when the
file is loaded; a bad one raises ConfigError with one line naming file, section, key, value and what
was expected (the CLI prints it and exits with status 2). The same parsers check settings changed at
run time (the encoder's control channel), so a value is valid in exactly the same cases everywhere.
"""
from __future__ import annotations

import configparser
import ipaddress
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import urlsplit

from .wire import KELVIN_AT_0C

log = logging.getLogger("config")

PACKAGED_CONFIG = Path(__file__).resolve().parent / "server.conf"


class ConfigError(Exception):
    """A configuration value is wrong; str() is the one-line message for the user."""


class BadValue(ValueError):
    """Raised by a parser; its text says what was expected."""


# ---------------------------------------------------------------- value parsers
# Each parser takes the raw string and returns the typed value or raises BadValue("expected ...").

Parser = Callable[[str], Any]


def integer(lo: int, hi: int) -> Parser:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise BadValue(f"expected an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise BadValue(f"expected an integer from {lo} to {hi}")
        return value
    return parse


def number(lo: float, hi: float, what: str = "a number") -> Parser:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise BadValue(f"expected {what} from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:  # also refuses nan
            raise BadValue(f"expected {what} from {lo:g} to {hi:g}")
        return value
    return parse


def choice(*options: str) -> Parser:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise BadValue("expected one of " + ", ".join(options))
        return value
    return parse


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadValue("expected yes or no")


def tri_state(text: str) -> Optional[bool]:
    """yes / no, or auto (None: decided at run time)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return boolean(text)
    except BadValue:
        raise BadValue("expected auto, yes or no") from None


def i2c_device(text: str) -> str:
    """auto, off or /dev/i2c-N."""
    value = text.strip()
    if value.lower() in ("auto", "off"):
        return value.lower()
    if re.fullmatch(r"/dev/i2c-\d{1,3}", value):
        return value
    raise BadValue("expected auto, off or a device such as /dev/i2c-1")


def text(text: str) -> str:
    return text.strip()


def optional_path(text: str) -> Optional[str]:
    """An empty value means 'not set'."""
    return text.strip() or None


def number_pair(lo: float, hi: float, ordered: bool = True) -> Parser:
    """Two numbers 'a, b' with a < b (e.g. a temperature range or percentiles)."""
    def parse(text: str) -> tuple[float, float]:
        expected = f"expected two numbers 'low, high' from {lo:g} to {hi:g}" + (
            " with low < high" if ordered else "")
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        if len(parts) != 2:
            raise BadValue(expected)
        try:
            a, b = float(parts[0]), float(parts[1])
        except ValueError:
            raise BadValue(expected) from None
        if not (lo <= a <= hi and lo <= b <= hi) or (ordered and not a < b):
            raise BadValue(expected)
        return a, b
    return parse


def size(text: str) -> Optional[tuple[int, int]]:
    """'640x480' -> (640, 480); 'auto' -> None (4x the sensor)."""
    value = text.strip().lower()
    if value in ("auto", ""):
        return None
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", value)
    if not m:
        raise BadValue("expected WIDTHxHEIGHT (e.g. 640x480) or auto")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 3840 and 16 <= h <= 3840):
        raise BadValue("expected WIDTHxHEIGHT with each side from 16 to 3840, or auto")
    return w, h


ISOTHERM_MODES = ("above", "below", "between")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"


def isotherm(text: str) -> Optional[tuple[str, float, Optional[float]]]:
    """'off' -> None; 'above 40' / 'below 10' -> (mode, threshold, None); 'between 30 40' ->
    ("between", 30.0, 40.0). Thresholds in the frame's unit (degrees C on TLinear frames)."""
    value = text.strip().lower()
    if value in ("off", "", "none"):
        return None
    expected = "expected off, above T, below T or between LOW HIGH (degrees C, LOW < HIGH)"
    m = re.fullmatch(rf"(above|below)[\s,]+({_NUM})|between[\s,]+({_NUM})[\s,]+({_NUM})", value)
    if not m:
        raise BadValue(expected)
    if m.group(1):
        a, b = float(m.group(2)), None
        numbers = [a]
    else:
        a, b = float(m.group(3)), float(m.group(4))
        numbers = [a, b]
        if not a < b:
            raise BadValue(expected)
    if not all(-KELVIN_AT_0C <= v <= 65535 for v in numbers):
        raise BadValue(expected)
    return (m.group(1) or "between", a, b)


def colour(text: str) -> tuple[int, int, int]:
    """'00ff00' (or '#00ff00', though in server.conf ' #' starts a comment) -> (0, 255, 0)."""
    value = text.strip().lower().lstrip("#")
    if not re.fullmatch(r"[0-9a-f]{6}", value):
        raise BadValue("expected a colour RRGGBB in hex, e.g. 00ff00 for green")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def port(text: str) -> int:
    return integer(1, 65535)(text)


def optional_port(text: str) -> Optional[int]:
    return port(text) if text.strip() else None


def host(text: str) -> str:
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if not value:
        raise BadValue("expected an interface address such as 127.0.0.1, 0.0.0.0, ::1 or ::")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]+", value):
            raise BadValue("expected an interface address such as 127.0.0.1, 0.0.0.0, ::1 or ::") from None
    return value


_ENDPOINT = re.compile(r"(tcp://(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}|ipc://\S+|inproc://\S+)")


def endpoint(text: str) -> str:
    value = text.strip()
    if not _ENDPOINT.fullmatch(value):
        raise BadValue("expected a ZeroMQ address: tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if value.startswith("tcp://"):
        p = int(value.rsplit(":", 1)[1])
        if not 1 <= p <= 65535:
            raise BadValue("expected a ZeroMQ address with a port from 1 to 65535")
    return value


def optional_endpoint(text: str) -> str:
    """An endpoint, or '' for the instance's own ipc:// socket (see instance_endpoint)."""
    return endpoint(text) if text.strip() else ""


def runtime_dir() -> Path:
    """Where the ipc:// sockets of endpoints left empty live: $FLIRSTREAM_RUNTIME_DIR, else
    $XDG_RUNTIME_DIR/flir-stream, else <temp dir>/flir-stream-<uid> (made 0700 by the binding stage)."""
    explicit = os.environ.get("FLIRSTREAM_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "flir-stream"
    import tempfile
    return Path(tempfile.gettempdir()) / f"flir-stream-{os.getuid()}"


def instance_endpoint(key: str, http_port: int) -> str:
    """The endpoint `key` of the instance serving on `http_port`: one directory per instance, so a
    second instance needs only another [server] port."""
    return f"ipc://{runtime_dir() / str(http_port) / key}"


def source(text: str) -> str:
    value = text.strip()
    if value in ("auto", "sim"):
        return value
    kind, sep, rest = value.partition(":")
    if sep and kind in ("spi", "vospi-file", "image") and rest:
        return value
    raise BadValue("expected auto, sim, spi:/dev/spidevB.D, vospi-file:PATH or image:PATH")


def cpu_list(text: str) -> Optional[tuple[int, ...]]:
    """'' -> None (any CPU); '1' or '2, 3' -> CPU numbers."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        return None
    if not all(p.isdigit() and int(p) < 1024 for p in parts):
        raise BadValue("expected CPU numbers such as 1 or 2, 3 (empty: any CPU)")
    return tuple(sorted({int(p) for p in parts}))


def origins(text: str) -> tuple[str, ...]:
    items = tuple(p for p in re.split(r"[,\s]+", text.strip()) if p)
    for item in items:
        if item != "*" and not re.fullmatch(r"https?://[^/\s]+", item):
            raise BadValue("expected origins like http://host:port separated by commas, or *")
    return items


def host_names(text: str) -> tuple[str, ...]:
    items = tuple(p.lower().rstrip(".") for p in re.split(r"[,\s]+", text.strip()) if p)
    for item in items:
        if item != "*" and not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|[0-9a-f:.]+", item):
            raise BadValue("expected host names (no scheme or port) separated by commas, or *")
    return items


def broker_host(text: str) -> str:
    value = text.strip()
    if value and not re.fullmatch(r"[A-Za-z0-9.:_-]+|\[[0-9A-Fa-f:.]+\]", value):
        raise BadValue("expected a broker host name or address, or empty for no MQTT")
    return value.strip("[]")


def mqtt_topic(text: str) -> str:
    value = text.strip().strip("/")
    if value and (not re.fullmatch(r"[^\s#+]+", value) or "//" in value or len(value) > 200):
        raise BadValue("expected an MQTT topic without spaces, + or # (e.g. flir-stream/garage)")
    return value


# ---------------------------------------------------------------- the schema

@dataclass(frozen=True)
class Key:
    parse: Parser
    default: str
    help: str = ""


AGCS = ("linear", "histogram", "fixed")
PALETTES = ("ironbow", "rainbow", "white-hot", "black-hot", "jet", "inferno", "turbo", "contrast")

SCHEMA: dict[str, dict[str, Key]] = {
    "endpoints": {
        # Empty: ipc:// in this instance's runtime directory, keyed by [server] port.
        "frames": Key(optional_endpoint, "", "capture publishes raw frames here (binds)"),
        "images": Key(optional_endpoint, "", "encoder publishes JPEG frames here (binds)"),
        "control": Key(optional_endpoint, "", "encoder takes settings here (binds)"),
        "camera": Key(optional_endpoint, "", "capture takes camera commands here (binds)"),
        "allow_public": Key(boolean, "no", "allow binding the endpoints to a non-loopback interface"),
        "curve_key": Key(optional_path, "", "secret key file: CURVE-encrypt the links between stages"),
    },
    "capture": {
        "source": Key(source, "auto", "auto, sim, spi:/dev/spidevB.D, vospi-file:PATH or image:PATH"),
        "sensor": Key(choice("lepton3", "lepton2"), "lepton3", "lepton3 (160x120) or lepton2 (80x60)"),
        "telemetry": Key(choice("auto", "off", "header", "footer"), "auto",
                         "telemetry lines in the stream (auto: footer on the simulator and on a "
                         "camera with CCI, else off)"),
        "tlinear": Key(tri_state, "auto", "pixels are TLinear kelvin values: auto (as the camera "
                       "says), yes or no"),
        "tlinear_resolution": Key(choice("auto", "0.01", "0.1"), "auto",
                                  "kelvin per TLinear count: auto (as the camera says), 0.01 or 0.1"),
        "i2c": Key(i2c_device, "auto", "camera control (CCI): auto (/dev/i2c-1 if it exists), "
                   "/dev/i2c-N or off"),
        "spi_speed_hz": Key(integer(1_000_000, 32_000_000), "16000000", "SPI clock"),
        "dedupe": Key(boolean, "yes", "publish consecutive identical frames once"),
        "replay": Key(choice("realtime", "fast"), "realtime", "vospi-file replay speed"),
        "loop": Key(boolean, "yes", "vospi-file: start again at the end"),
        "sim_unique_every": Key(integer(1, 10), "3", "sim: each scene frame is sent this many times"),
        "sim_fps": Key(number(0.5, 200.0), "26.5", "sim: VoSPI frames per second"),
        "record": Key(optional_path, "", "also write the raw VoSPI bytes read to this file"),
        "realtime": Key(choice("off", "fifo"), "off", "fifo: read the camera with SCHED_FIFO "
                        "real-time priority where permitted"),
        "priority": Key(integer(1, 99), "10", "realtime = fifo: the SCHED_FIFO priority"),
        "nice": Key(integer(-20, 19), "0", "nice value of the capture process"),
        "cpu": Key(cpu_list, "", "pin the frame loop thread to these CPUs (e.g. 3); empty: any"),
    },
    "encoder": {
        "palette": Key(choice(*PALETTES), "ironbow", "colour map"),
        "agc": Key(choice(*AGCS), "linear", "how values become 0..255"),
        "clip_percent": Key(number_pair(0.0, 100.0), "1, 99", "linear AGC: percentiles used as range"),
        "smoothing": Key(number(0.0, 0.99), "0.8", "linear AGC: weight of the previous range (0 = none)"),
        "range_c": Key(number_pair(-KELVIN_AT_0C, 1000.0), "20, 40", "fixed AGC: range in degrees C"),
        "size": Key(size, "auto", "output WIDTHxHEIGHT, or auto (4x the sensor)"),
        "interpolation": Key(choice("nearest", "linear", "cubic", "area", "lanczos"), "nearest", "scaling"),
        "rotate": Key(lambda t: int(choice("0", "90", "180", "270")(t)), "0", "degrees clockwise"),
        "flip": Key(choice("none", "horizontal", "vertical", "both"), "none", "mirror the image"),
        "isotherm": Key(isotherm, "off", "highlight off, above T, below T or between LOW HIGH (°C)"),
        "isotherm_colour": Key(colour, "00ff00", "the isotherm's highlight colour, RRGGBB in hex"),
        "quality": Key(integer(1, 100), "80", "JPEG quality"),
        "pause_when_unwatched": Key(boolean, "yes", "stop encoding while nobody watches"),
    },
    "server": {
        "host": Key(host, "127.0.0.1", "interface to listen on (0.0.0.0 or :: for every interface)"),
        "port": Key(port, "8080", "HTTP port (viewer, /ws, MJPEG, snapshots)"),
        "websocket_port": Key(optional_port, "", "also serve /ws on this port (the seed's Websocket_Port)"),
        "backlog": Key(integer(1, 65535), "128", "listen backlog"),
        "max_clients": Key(integer(1, 100_000), "200", "websocket + MJPEG clients at most"),
        "token": Key(text, "", "if set, every request needs ?token= or basic auth with it"),
        "control_token": Key(text, "", "if set, palette/AGC changes need this token"),
        "allowed_origins": Key(origins, "", "websocket origins allowed besides the page's own"),
        "allowed_hosts": Key(host_names, "", "Host header names allowed besides IP addresses, "
                                            "localhost, host and this machine's name"),
        "tls_cert": Key(optional_path, "", "certificate file: serve https:// and wss://"),
        "tls_key": Key(optional_path, "", "private key file for tls_cert"),
        "stale_after_s": Key(number(0.1, 3600.0), "2.0", "/healthz says 503 when the newest frame is older"),
        "static_dir": Key(optional_path, "", "serve the viewer from here instead of the packaged web/"),
    },
    "state": {
        "dir": Key(optional_path, "", "where settings changed at run time are kept (empty: systemd's "
                   "StateDirectory, else ~/.local/state/flir-stream)"),
    },
    "monitor": {
        "alarm_dir": Key(optional_path, "", "alarm snapshots (JPEG + TIFF) go here (empty: "
                         "alarms/ in the state directory)"),
        "alarm_max_count": Key(integer(1, 100_000), "200", "alarm snapshots kept at most"),
        "alarm_max_mb": Key(number(0.1, 100_000.0), "100", "megabytes of alarm snapshots kept at most"),
    },
    "mqtt": {
        "host": Key(broker_host, "", "broker host name or address; empty = no MQTT"),
        "port": Key(port, "1883", "broker port (8883 is the usual one for tls)"),
        "username": Key(text, "", "login name (empty = none)"),
        "password": Key(text, "", "password for username"),
        "tls": Key(boolean, "no", "connect with TLS"),
        "ca_file": Key(optional_path, "", "CA certificate file for tls (empty: the system's CAs)"),
        "topic": Key(mqtt_topic, "", "base topic; empty = flir-stream/<hostname>"),
        "interval_s": Key(number(0.5, 86400.0), "5", "publish the state this often (and at once "
                                                      "on an alarm change)"),
        "discovery": Key(boolean, "yes", "publish Home Assistant MQTT discovery"),
        "discovery_prefix": Key(mqtt_topic, "homeassistant", "Home Assistant's discovery prefix"),
        "image_interval_s": Key(number(0.0, 86400.0), "0", "publish the JPEG on <topic>/image this "
                                                           "often (0 = never)"),
    },
}

# The seed project's section: key -> (section, key) it now sets, or None with the reason it is ignored.
SEED_SECTION = "Server-Configurations"
SEED_KEYS: dict[str, Any] = {
    "http_interface": ("server", "host"),
    "http_port": ("server", "port"),
    "http_listen": ("server", "backlog"),
    "http_recieve": "the server reads requests with Tornado, which sizes its own buffers",
    "websocket_interface": "the websocket is served on HTTP_Interface",
    "websocket_port": ("server", "websocket_port"),
    "image": ("capture", "source"),
}


# ---------------------------------------------------------------- loading

class Section(SimpleNamespace):
    """Typed values of one section, as attributes."""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Config(SimpleNamespace):
    """All sections; `config.encoder.palette` etc. `path` is the file it came from (or None)."""

    path: Optional[str]

    def section(self, name: str) -> Section:
        return getattr(self, name)


def parse_value(section: str, key: str, raw: str, where: str = "setting") -> Any:
    """Parse one value against the schema, raising ConfigError with the one-line message."""
    spec = SCHEMA.get(section, {}).get(key)
    if spec is None:
        raise ConfigError(f"{where}: [{section}] {key}: unknown key")
    try:
        return spec.parse(raw)
    except BadValue as exc:
        raise ConfigError(f"{where}: [{section}] {key} = {raw.strip()!r}: {exc}") from None


def default_path() -> Path:
    """./server.conf if it exists, else the packaged default."""
    local = Path("server.conf")
    return local if local.is_file() else PACKAGED_CONFIG


def load(path: Optional[os.PathLike | str] = None,
         overrides: Iterable[str] = ()) -> Config:
    """Read and check a server.conf; `overrides` are 'section.key=value' strings applied on top."""
    path = Path(path) if path is not None else default_path()
    parser = _parser()
    try:
        # utf-8-sig: a file saved by an editor that writes a byte-order mark reads the same
        with open(path, encoding="utf-8-sig") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {_ini_error(exc)}") from None
    return from_parser(parser, str(path), overrides)


def loads(content: str, overrides: Iterable[str] = (), name: str = "<string>") -> Config:
    parser = _parser()
    try:
        parser.read_string(content.removeprefix("\ufeff"), source=name)
    except configparser.Error as exc:
        raise ConfigError(f"{name}: {_ini_error(exc)}") from None
    return from_parser(parser, name, overrides)


def _parser() -> configparser.ConfigParser:
    # No inline comments: a value runs to the end of its line, so `token = pass #word` is the token
    # "pass #word", not "pass" (comments are whole lines starting with # or ;).
    return configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None,
                                     empty_lines_in_values=False)


def _ini_error(exc: configparser.Error) -> str:
    """'line N: what is wrong' for configparser's errors (its own text spans several lines and
    repeats the line, which may hold a secret)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: not a valid INI file: expected a [section] header first"
    if isinstance(exc, configparser.ParsingError):
        lineno = exc.errors[0][0] if exc.errors else "?"
        return f"line {lineno}: not a valid INI file: expected 'key = value', a [section] or a comment"
    if isinstance(exc, configparser.DuplicateOptionError):
        return (f"line {exc.lineno}: not a valid INI file: [{exc.section}] {exc.option} is set "
                f"twice")
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: not a valid INI file: [{exc.section}] appears twice"
    return f"not a valid INI file: {str(exc).splitlines()[0]}"


def from_parser(parser: configparser.ConfigParser, where: str,
                overrides: Iterable[str] = ()) -> Config:
    raw: dict[str, dict[str, str]] = {s: {k: v.default for k, v in keys.items()}
                                      for s, keys in SCHEMA.items()}
    given: dict[tuple[str, str], str] = {}  # where each explicitly set value came from

    from . import regions as roi  # regions.py uses this module's parsers

    for section in parser.sections():
        if section == SEED_SECTION or roi.is_region_section(section):
            continue
        if section not in SCHEMA:
            raise ConfigError(f"{where}: [{section}]: unknown section "
                              f"(expected {', '.join('[%s]' % s for s in SCHEMA)}, "
                              f"[roi:NAME] or [alarm:NAME])")
        for key, value in parser.items(section):
            if key not in SCHEMA[section]:  # its value is not shown: it may be a misspelt secret
                raise ConfigError(f"{where}: [{section}] {key}: unknown key "
                                  f"(expected one of {', '.join(SCHEMA[section])})")
            raw[section][key] = value
            given[(section, key)] = where

    if parser.has_section(SEED_SECTION):
        _apply_seed(parser, where, raw, given)

    for item in overrides:
        name, sep, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f"--set {name.strip()}=...: unknown key [{section}] {key}")
        raw[section][key] = value
        given[(section, key)] = "--set"

    values: dict[str, Section] = {}
    for section, keys in SCHEMA.items():
        parsed = {}
        for key in keys:
            parsed[key] = parse_value(section, key, raw[section][key],
                                      given.get((section, key), where))
        values[section] = Section(**parsed)
    for key in ("frames", "images", "control", "camera"):
        if not getattr(values["endpoints"], key):
            setattr(values["endpoints"], key, instance_endpoint(key, values["server"].port))
    config = Config(path=where, **values)
    _check_whole(config, where)
    # [roi:NAME] / [alarm:NAME]: {name: regions.Region}, {name: regions.AlarmRule}, in file order
    config.regions, config.alarms = roi.from_parser(parser, where, config.capture.sensor)
    return config


def _apply_seed(parser: configparser.ConfigParser, where: str,
                raw: dict[str, dict[str, str]], given: dict[tuple[str, str], str]) -> None:
    for key, value in parser.items(SEED_SECTION):
        target = SEED_KEYS.get(key.lower())
        if target is None:
            raise ConfigError(f"{where}: [{SEED_SECTION}] {key}: unknown key "
                              f"(the seed's keys are HTTP_Interface, HTTP_Port, HTTP_Listen, "
                              f"HTTP_Recieve, Websocket_Interface, Websocket_Port, Image)")
        if isinstance(target, str):
            log.warning("%s: [%s] %s no longer does anything: %s", where, SEED_SECTION, key, target)
            continue
        section, new_key = target
        if (section, new_key) in given:
            log.warning("%s: [%s] %s ignored: [%s] %s is set", where, SEED_SECTION, key, section, new_key)
            continue
        if key.lower() == "image":
            value = "image:" + value.strip()
        raw[section][new_key] = value
        given[(section, new_key)] = f"{where}: [{SEED_SECTION}] {key}"
        log.info("%s: [%s] %s = %s is read as [%s] %s", where, SEED_SECTION, key, value.strip(),
                 section, new_key)


def _tcp_port(address: str) -> Optional[tuple[str, int]]:
    if not address.startswith("tcp://"):
        return None
    parts = urlsplit(address)
    return (parts.hostname or "*"), int(address.rsplit(":", 1)[1])


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_whole(config: Config, where: str) -> None:
    """Checks that involve more than one key: port clashes, public endpoints, TLS pairs."""
    used: dict[int, str] = {}

    def claim(p: int, name: str, value: Any) -> None:
        if p in used:
            raise ConfigError(f"{where}: {name} = {value}: port {p} is already used by {used[p]}")
        used[p] = name

    srv = config.server
    claim(srv.port, "[server] port", srv.port)
    if srv.websocket_port is not None and srv.websocket_port != srv.port:
        claim(srv.websocket_port, "[server] websocket_port", srv.websocket_port)
    for key in ("frames", "images", "control", "camera"):
        address = getattr(config.endpoints, key)
        tcp = _tcp_port(address)
        if tcp is None:
            continue
        claim(tcp[1], f"[endpoints] {key}", address)
        if not config.endpoints.allow_public and not is_loopback(tcp[0]):
            raise ConfigError(
                f"{where}: [endpoints] {key} = {address}: binds beyond this machine; expected a "
                f"loopback or ipc:// address, or set [endpoints] allow_public = yes")
    curve_key = config.endpoints.curve_key
    if curve_key and not os.path.isfile(curve_key):
        raise ConfigError(f"{where}: [endpoints] curve_key = {curve_key!r}: expected an existing "
                          f"file (the .key_secret file, see docs/SECURITY.md)")
    if bool(srv.tls_cert) != bool(srv.tls_key):
        raise ConfigError(f"{where}: [server] tls_cert / tls_key: expected both or neither")
    for key in ("tls_cert", "tls_key"):
        value = getattr(srv, key)
        if value and not os.path.isfile(value):
            raise ConfigError(f"{where}: [server] {key} = {value!r}: expected an existing file")
    mqtt = config.mqtt
    if mqtt.ca_file and not os.path.isfile(mqtt.ca_file):
        raise ConfigError(f"{where}: [mqtt] ca_file = {mqtt.ca_file!r}: expected an existing file")
    if mqtt.password and not mqtt.username:
        raise ConfigError(f"{where}: [mqtt] password: expected username as well")


def describe(config: Config, section: str) -> str:
    """'key=value key=value' of one section, for the one start-up log line of a stage."""
    values: Mapping[str, Any] = config.section(section).as_dict()
    hidden = {"token", "control_token", "password"}
    return " ".join(f"{k}={'***' if k in hidden and v else v}" for k, v in values.items())
