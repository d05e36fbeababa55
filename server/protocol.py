"""Every byte the server sends a browser or an HTTP client, and every message it parses from one:
the /ws messages and their websocket framing, and the /stream.mjpg multipart parts.

Server -> client, one BINARY message per frame:
    uint32 big-endian N | N bytes UTF-8 JSON header | JPEG (header.jpeg_bytes long)
    | radiometric pixels (header.raw_bytes long; 0 unless the client enabled raw)
  header = these fields of the encoder's frame and its picture (not its whole wire header: see
           _header): seq, t (capture time, Unix s), t_encoded, sensor,
           shape [rows, cols] (of the pixels), width, height (of the JPEG), palette, agc,
           unit ("C" or "counts"), range [lo, hi] (in unit), stats {min, max, mean, centre, min_xy,
           max_xy}, tlinear, kelvin_per_count, meaning ("kelvin_x100", "kelvin_x10", "raw_counts",
           "agc_8bit": only the kelvin ones are temperatures), telemetry
           + t_sent (server clock when the server put the frame out to its viewers; all
           viewers get the same value), jpeg_bytes, raw_bytes. All times are Unix seconds.
  The pixels are uint16 little-endian, rows*cols of them, row-major, in display orientation (pixel
  (x, y) lies under the same point of the JPEG, scaled by width/cols). With tlinear a pixel is
  kelvin / kelvin_per_count, so degrees C = value * kelvin_per_count - 273.15.
  A client that cannot keep up skips frames: it always gets the newest one, never a backlog.
  The newest frame is sent at once on connect. A frame the server received more than stale_after_s
  before it sends it (the cached one a viewer gets on connect after a pause or a stall) carries
  "stale": true: it is not live, so no latency may be computed from it (t_sent is then the time it
  was sent again).

Thermal mode (/ws?mode=thermal; the default mode=jpeg is the above): instead of the JPEG, one
BINARY message per frame with the radiometric frame itself, so each viewer paints its own view
(palette, AGC, range, isotherm, rotation: web/thermal.js) and the server's cost does not depend on
how many views there are. It flows whether or not the encoder makes JPEGs (it does only while some
client needs them: MJPEG, mode=jpeg, snapshots).
    uint32 big-endian N | N bytes UTF-8 JSON header | radiometric payload (header.rad_bytes long)
  header = {"mode": "thermal", seq, t (capture time), t_measured (encoder), t_sent (as above),
            sensor, shape [rows, cols], unit ("C" or "counts"), meaning (what the pixels are, as
            the thermal frame says), tlinear, kelvin_per_count,
            stats {min, max, mean, centre, min_xy, max_xy}, regions {NAME: {...}} (the encoder's
            region readings, passed on as they come), telemetry {fpa_temp_c, fpa_temp_k,
            housing_temp_c, ffc_state, ffc_desired, frame_counter, uptime_ms, time_at_ffc_ms:
            those present, else null},
            defaults (a number that changes whenever the server's default view settings change,
            see "settings" below), rad_bytes, and "stale": true on a frame older than
            stale_after_s (as above)}
  It is exactly the encoder's measured frame (wire.Frame and its Measurement), a documented
  projection of it:
  pixels, stats and positions are in SENSOR orientation (before rotate/flip; the viewer orients
  them for its own view). The payload is flirstream/radiometric.py's RAD2 format: b"RAD2", rows,
  cols, step, then a zlib stream (web/thermal.js decode() undoes it); lossless (step 1) except on
  TLinear frames at 0.01 K, which go in steps of 3 counts (every value within 0.01 K; see
  radiometric.step_for). The encoder makes the payload once per frame while the server tells it
  of thermal-mode viewers; the server makes it only for a frame that came without. A thermal-mode
  client gets the same text messages as any other; "raw" does nothing for it (it has the pixels).
  Unknown mode: the handshake is refused with 400 naming the modes.

Server -> client, TEXT JSON:
    {"type": "hello", "settings": {...encoder settings, as in server.conf} | null,
     "palettes": [...], "agcs": [...], "control": "open" | "token",
     "camera": "online" | "offline" | "starting" | "unknown"}        first message on connect
    {"type": "settings", "settings": {...}}                          to everyone, after a change
    {"type": "status", "capture": {"state", "detail"}, "encoder": {"state", "detail"},
     "camera": "online" | "offline" | "starting" | "unknown",
     "fault": null | {"stage": "encoder" | "capture" | "camera", "detail"}}
                                                                     on connect and on every change
        camera: "starting" before any status came (frames arriving mean "online" even then),
        "unknown" while a stage is silent. fault names the part that is silent or failing: the
        encoder (capture's status reaches the server through it), capture, or the camera
        (capture reports it offline); server/health.py decides.
    {"type": "camera", "camera": {...}}   capture's camera dict (flirstream/wire.py: model, serial,
     firmware, fpa_temp_c, ffc_state, since_ffc_s, ffc_desired, gain_mode, emissivity, meaning,
     control, ...): on connect, on every change (about once a second) and after a camera command
    {"type": "pong", "t": <the client's t>, "server": <server time, Unix s>}
    {"type": "error", "error": "<a sentence>"}
  Monitoring, only to a client that sent {"op": "monitor"} (regions, alarms, history; temperatures
  in °C, coordinates in sensor pixels as the camera delivers them, before [encoder] rotate / flip:
  turn them like the picture):
    {"type": "regions", "regions": [{"name", "kind": "spot" | "box", "spot": [x, y] |
     "box": [x0, y0, x1, y1], "source": "config" | "viewer"}]}     on "monitor" and on every change
    {"type": "alarms", "alarms": {NAME: {"state": "ok" | "alarm", "since" (Unix s), "value",
     "threshold", "direction": "above" | "below", "roi": NAME | null}}}
                                                                     on "monitor" and on every change
    {"type": "history", "history": {"seconds": 600, "t": [...], "frame": {"max" | "min" | "centre":
     [...]}, "regions": {NAME: {"max" | "min" | "mean": [...]}}}}    on "monitor": the last 10 minutes,
        one sample a second, as columns (null where a region did not exist yet)
    {"type": "sample", "sample": {"t", "frame": {"max", "min", "centre"}, "regions": {NAME: {"max",
     "min", "mean"}}}}                                              about once a second
        (measured whether or not the picture is paused)

Client -> server, TEXT JSON (at most 4 KiB, at most ~20 per second):
    {"op": "set", "settings": {"palette": "jet", ...}, "token": "..."}
        change encoder settings (keys and values as in server.conf's [encoder]; numbers, booleans
        and [lo, hi] lists are accepted too). "token" is needed when control says "token"
        (server.conf control_token); the token the page was opened with also counts.
        Answer: "settings" to everyone, or "error" to the sender.
        These are the server's DEFAULT view: what MJPEG, snapshots and mode=jpeg clients show, and
        what a thermal-mode viewer starts from (web/ keeps each viewer's own choices in the browser
        and sends "set" only for the owner's "make this the default for everyone").
    {"op": "camera", "request": {"op": "ffc"}, "token": "..."}
        a camera command (flirstream/wire.py "camera control": ffc, ffc_mode, gain, emissivity,
        reboot, camera), with the same token rule as "set". Answer: "camera" to the sender (and
        to everyone as it changes), or "error".
    {"op": "raw", "enable": true | false}    also send the radiometric pixels with each frame
    {"op": "ping", "t": <client time>}       answered by "pong" (for clock offset and latency)
    {"op": "monitor"}                        send regions, alarms and the history now, and from now
                                             on every sample and change (answered as above)
    {"op": "region", "put": {"name": NAME, "box": [x0, y0, x1, y1]} | {"name", "spot": [x, y]},
     "token": "..."}                         add a region, or move one (same name); sensor pixels
    {"op": "region", "delete": NAME, "token": "..."}   delete a region drawn in the viewer
        Same token rule as "set". Relayed to the encoder, which checks the region (NAME: 1 to 40
        letters, digits, _ or -; inside the sensor; not one of server.conf's [roi:NAME]) and keeps
        it in its state file. Answer: "regions" to everyone, or "error" to the sender.
  Anything else gets {"type": "error"}. A binary message closes the connection with 1003, a message
  over 4 KiB with 1009, a flood of messages with 1008.
"""
from __future__ import annotations

import collections
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Optional

from flirstream import config as configuration
from flirstream import radiometric, wire
from flirstream.wire import Frame

MAX_CLIENT_MESSAGE = 4096
MODES = ("jpeg", "thermal")  # /ws?mode=...; jpeg when absent
# Telemetry a viewer shows (FPA temperature, FFC state); the rest stays on /metrics and snapshots.
# (uptime_ms and time_at_ffc_ms give the time since the last FFC in the camera panel.)
THERMAL_TELEMETRY = ("fpa_temp_c", "fpa_temp_k", "housing_temp_c", "ffc_state", "ffc_desired",
                     "frame_counter", "uptime_ms", "time_at_ffc_ms")
_LENGTH = struct.Struct(">I")


ERROR_TEXT_MAX = 300  # characters of a refusal's text: it quotes the client, and is logged


class ProtocolError(ValueError):
    """A client message that does not follow the protocol; str() is the reply's text, cut to
    ERROR_TEXT_MAX (a 4 KiB `"op"` quoted whole, 20 times a second, would fill the log)."""

    def __init__(self, text: str) -> None:
        if len(text) > ERROR_TEXT_MAX:
            text = text[:ERROR_TEXT_MAX - 1] + "…"
        super().__init__(text)


# ---------------------------------------------------------------- frames

@dataclass(frozen=True)
class FramePayloads:
    """One frame's binary messages, built once and shared by every client."""

    seq: int
    t: float
    plain: bytes  # header + JPEG
    raw: bytes  # header + JPEG + pixels

    def for_client(self, wants_raw: bool) -> bytes:
        return self.raw if wants_raw else self.plain


def _capture_view(frame: Frame) -> dict:
    """The capture fields both modes' headers show: an explicit projection of the frame, so a field
    added between the stages (the wire header) reaches browsers only when it is added here (and
    documented above). Left out: the wire format's version and the stages' counters (/metrics has
    them); telemetry differs by mode."""
    return {"seq": frame.seq, "t": frame.t, "sensor": frame.sensor, "tlinear": frame.tlinear,
            "kelvin_per_count": frame.kelvin_per_count, "meaning": frame.meaning}


def _header(frame: Frame, t_sent: float, raw_bytes: int, stale: bool) -> dict:
    """The browser's frame header (mode=jpeg): the capture view and the picture's fields."""
    picture = frame.picture
    header = {**_capture_view(frame), "t_encoded": picture.t_encoded,
              "shape": list(picture.pixels.shape), "width": picture.width,
              "height": picture.height, "palette": picture.palette, "agc": picture.agc,
              "unit": picture.unit, "range": list(picture.range), "stats": picture.stats,
              "telemetry": frame.telemetry,
              "t_sent": t_sent, "jpeg_bytes": len(picture.jpeg), "raw_bytes": raw_bytes}
    if stale:
        header["stale"] = True
    return header


# One encoder for every message: json.dumps with options builds a JSONEncoder per call, which
# after the loop's ~37 ms sleep between frames costs more than encoding a frame header.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# ...and its C core made once too: JSONEncoder.encode makes one (json.encoder.c_make_encoder) on
# every call, through two Python-level calls, ~30 of the ~140 us a frame header costs cold. Same
# bytes, the same errors for NaN and for what JSON cannot hold; with no check for circular
# references (None for markers), which a header built here never has.
_JSON_CORE = (json.encoder.c_make_encoder(None, _JSON.default, json.encoder.encode_basestring_ascii,
                                          None, ":", ",", False, False, False)
              if json.encoder.c_make_encoder is not None else None)  # (None: no _json module)


def _json(value: Any) -> str:
    """`value` as compact JSON text, NaN refused (ValueError)."""
    if _JSON_CORE is None:
        return _JSON.encode(value)
    return "".join(_JSON_CORE(value, 0))


def _message(header: dict, *parts: bytes) -> bytes:
    head = _json(header).encode()
    return b"".join((_LENGTH.pack(len(head)), head, *parts))


def frame_payloads(frame: Frame, t_sent: float, stale: bool = False) -> FramePayloads:
    """Both binary messages (with and without pixels) of a frame's picture; `stale` marks a frame
    that is not live any more."""
    jpeg = frame.picture.jpeg
    pixels = frame.picture.pixels.astype("<u2", copy=False).tobytes()
    return FramePayloads(
        seq=frame.seq, t=frame.t,
        plain=_message(_header(frame, t_sent, 0, stale), jpeg),
        raw=_message(_header(frame, t_sent, len(pixels), stale), jpeg, pixels))


def split_frame(message: bytes) -> tuple[dict, bytes, bytes]:
    """(header, jpeg, pixels) of a binary frame message (what a client does; used by tests)."""
    if len(message) < 4:
        raise ProtocolError("frame message shorter than its length prefix")
    (n,) = _LENGTH.unpack_from(message)
    header = json.loads(message[4:4 + n])
    start = 4 + n
    jpeg = message[start:start + header["jpeg_bytes"]]
    pixels = message[start + header["jpeg_bytes"]:]
    if len(jpeg) != header["jpeg_bytes"] or len(pixels) != header["raw_bytes"]:
        raise ProtocolError("frame message length does not match its header")
    return header, jpeg, pixels


def mode(query_value: Optional[str]) -> str:
    """The mode a client asked for in /ws?mode=...; ProtocolError naming the modes otherwise."""
    if query_value is None or query_value == "":
        return "jpeg"
    if query_value not in MODES:
        raise ProtocolError(f"mode {query_value[:40]!r}: expected one of {', '.join(MODES)}")
    return query_value


def _thermal_header(frame: Frame, t_sent: float, defaults: int, rad_bytes: int,
                    stale: bool) -> dict:
    telemetry = frame.telemetry
    shown = None
    if isinstance(telemetry, dict):
        shown = {k: telemetry[k] for k in THERMAL_TELEMETRY if k in telemetry}
    measured = frame.measurement
    return {"mode": "thermal", **_capture_view(frame), "t_measured": measured.t_measured,
            "t_sent": t_sent, "shape": list(frame.shape),
            "unit": measured.unit, "stats": measured.stats,
            "regions": measured.regions, "telemetry": shown, "defaults": defaults,
            "rad_bytes": rad_bytes, **({"stale": True} if stale else {})}


def thermal_payload(frame: Frame, t_sent: float, defaults: int,
                    stale: bool = False) -> bytes:
    """The one thermal-mode message of a frame (shared by every thermal-mode client); `stale`
    marks a frame older than stale_after_s (as frame_payloads does)."""
    payload = frame.measurement.radiometric
    if payload is None:  # the encoder made none (it had not yet heard of thermal-mode viewers)
        payload = radiometric.encode_frame(frame.pixels, frame.tlinear, frame.kelvin_per_count)
    return _message(_thermal_header(frame, t_sent, defaults, len(payload), stale), payload)


def split_thermal(message: bytes) -> tuple[dict, bytes]:
    """(header, RAD2 payload) of a thermal-mode message (what a client does; used by tests)."""
    if len(message) < 4:
        raise ProtocolError("frame message shorter than its length prefix")
    (n,) = _LENGTH.unpack_from(message)
    header = json.loads(message[4:4 + n])
    payload = message[4 + n:]
    if header.get("mode") != "thermal" or len(payload) != header.get("rad_bytes"):
        raise ProtocolError("thermal message does not match its header")
    return header, payload


# ---------------------------------------------------------------- framing: websocket and MJPEG

def ws_frame_header(length: int) -> bytes:
    """RFC 6455 header of one final, unmasked binary frame (server to client)."""
    if length < 126:
        return struct.pack("!BB", 0x82, length)
    if length <= 0xFFFF:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


_FRAMED: "collections.OrderedDict[int, tuple[bytes, bytes]]" = collections.OrderedDict()


def ws_framed(payload: bytes) -> bytes:
    """payload as one whole websocket frame (header + payload), built once per payload and shared
    by every viewer: one write and one send() per viewer, and no per-viewer copy. (Header and
    payload written apart cost two send()s and two TCP segments per viewer and frame, which the
    bench measured at about twice the server CPU per frame sent; docs/PERFORMANCE.md.)"""
    hit = _FRAMED.get(id(payload))
    if hit is not None and hit[0] is payload:
        return hit[1]
    frame = ws_frame_header(len(payload)) + payload
    _FRAMED[id(payload)] = (payload, frame)
    while len(_FRAMED) > 6:  # the newest frame's three messages (JPEG with and without pixels,
        _FRAMED.popitem(last=False)  # thermal), and the previous frame's
    return frame


MJPEG_BOUNDARY = "frame"  # of the /stream.mjpg multipart stream
MJPEG_CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}"


def mjpeg_part(jpeg: bytes) -> bytes:
    """One JPEG as one part of the /stream.mjpg multipart stream."""
    head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"


# ---------------------------------------------------------------- server -> client text

def _text(message: dict) -> str:
    return _json(message)


def hello(settings: Optional[dict], control_needs_token: bool, camera: str) -> str:
    return _text({"type": "hello", "settings": settings,
                  "palettes": list(configuration.PALETTES), "agcs": list(configuration.AGCS),
                  "control": "token" if control_needs_token else "open", "camera": camera})


def settings_message(settings: dict) -> str:
    return _text({"type": "settings", "settings": settings})


def status_message(status: dict) -> str:
    """status = {"capture": {state, detail}, "encoder": {state, detail}, "camera", "fault"}."""
    return _text({"type": "status", **status})


def camera_message(camera: dict) -> str:
    return _text({"type": "camera", "camera": camera})


def pong(client_t: Any, server_t: float) -> str:
    return _text({"type": "pong", "t": client_t, "server": server_t})


def error(text: str) -> str:
    return _text({"type": "error", "error": text})


def regions_message(regions: list) -> str:
    return _text({"type": "regions", "regions": regions})


def alarms_message(alarms: dict) -> str:
    return _text({"type": "alarms", "alarms": alarms})


def history_message(history: dict) -> str:
    return _text({"type": "history", "history": history})


def sample_message(sample: dict) -> str:
    return _text({"type": "sample", "sample": sample})


# ---------------------------------------------------------------- client -> server

@dataclass(frozen=True)
class SetSettings:
    settings: dict[str, str]  # key -> value as written in server.conf, already checked
    token: Optional[str]


@dataclass(frozen=True)
class CameraCommand:
    request: dict  # checked by wire.check_camera_request
    token: Optional[str]


@dataclass(frozen=True)
class EnableRaw:
    enable: bool


@dataclass(frozen=True)
class Ping:
    t: Any


@dataclass(frozen=True)
class Monitor:
    """The client wants the monitoring messages (regions, alarms, history, samples)."""


@dataclass(frozen=True)
class ChangeRegion:
    """Put (add or move) one region, or delete one by name; the encoder checks the region."""

    put: Optional[dict]
    delete: Optional[str]
    token: Optional[str]


def _as_conf_text(value: Any) -> str:
    """A JSON value as server.conf would spell it (so parse_value checks it)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                       for v in value):
        return ", ".join(str(v) for v in value)
    raise ProtocolError(f"setting value {value!r} is not a string, number, boolean or list")


def parse_client(text: str) -> SetSettings | EnableRaw | Ping | Monitor | ChangeRegion | CameraCommand:
    """Parse and check one text message from a browser; raises ProtocolError."""
    try:
        # the stages' bounded reader: size, depth (3,000 "[" was a RecursionError), and no
        # NaN / Infinity / 1e999 (a pong with one of them could not be written back)
        message = wire.load_json(text.encode("utf-8", "surrogatepass"))
    except wire.WireError as exc:
        raise ProtocolError(f"message refused: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    op = message.get("op")
    if op == "ping":
        t = message.get("t")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
            raise ProtocolError("ping needs a finite number t")
        return Ping(t)
    if op == "raw":
        enable = message.get("enable")
        if not isinstance(enable, bool):
            raise ProtocolError("raw needs enable: true or false")
        return EnableRaw(enable)
    if op == "set":
        settings = message.get("settings")
        if not isinstance(settings, dict) or not settings:
            raise ProtocolError("set needs a settings object, e.g. {\"palette\": \"jet\"}")
        checked = {}
        for key, value in settings.items():
            raw = _as_conf_text(value)
            try:
                configuration.parse_value("encoder", key, raw)
            except configuration.ConfigError as exc:
                raise ProtocolError(str(exc)) from None
            checked[key] = raw.strip()
        token = message.get("token")
        if token is not None and not isinstance(token, str):
            raise ProtocolError("token must be a string")
        return SetSettings(checked, token)
    if op == "monitor":
        return Monitor()
    if op == "region":
        put, delete, token = message.get("put"), message.get("delete"), message.get("token")
        if (put is None) == (delete is None):
            raise ProtocolError("region needs put: {\"name\": NAME, \"box\": [X0, Y0, X1, Y1]} "
                                "(or \"spot\": [X, Y]), or delete: NAME")
        if put is not None and not (isinstance(put, dict) and isinstance(put.get("name"), str)):
            raise ProtocolError("region put must be an object with a name and a box or spot")
        if delete is not None and not isinstance(delete, str):
            raise ProtocolError("region delete must be a region name")
        if token is not None and not isinstance(token, str):
            raise ProtocolError("token must be a string")
        if put is not None:
            put = {k: v for k, v in put.items() if k in ("name", "spot", "box")}
        return ChangeRegion(put, delete, token)
    if op == "camera":
        token = message.get("token")
        if token is not None and not isinstance(token, str):
            raise ProtocolError("token must be a string")
        try:
            request = wire.check_camera_request(message.get("request"))
        except wire.WireError as exc:
            raise ProtocolError(f"camera: {exc}") from None
        return CameraCommand(request, token)
    raise ProtocolError(f"unknown op {op!r} (expected set, raw, ping, monitor, region or camera)")
