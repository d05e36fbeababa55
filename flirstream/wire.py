"""The wire format between stages: the one place that knows how messages look on ZeroMQ.

Every message is multipart. Part 0 is the topic, part 1 a small UTF-8 JSON header that always carries
`"v": VERSION`; the bulk data follows as raw parts, sent without copies (a numpy buffer is handed to
ZeroMQ as it is).

capture -> encoder, topic b"raw" (RawFrame):
    [b"raw", header, pixels]
    header: v, seq, t (capture time, Unix seconds), sensor ("lepton2"/"lepton3"), shape [rows, cols],
            tlinear (pixels are kelvin / kelvin_per_count), kelvin_per_count (0.01 or 0.1),
            meaning (what the pixels are, as the camera says: "kelvin_x100", "kelvin_x10",
            "raw_counts" (14-bit, relative only) or "agc_8bit" (the camera's AGC output); tlinear is
            true exactly for the two kelvin meanings; a header without it means kelvin_x100 /
            kelvin_x10 by kelvin_per_count when tlinear, else raw_counts),
            telemetry (dict or null), counters (capture's own: frames, discards, crc_errors, ...)
    pixels: rows*cols uint16, little-endian, C order.
    Only kelvin frames are temperatures: stages show "C" for them and "counts" for everything else.

encoder -> server, topic b"image" (ImageFrame):
    [b"image", header, jpeg, pixels]
    header: v, seq, t, t_encoded, sensor, tlinear, kelvin_per_count, shape (of pixels), width, height
            (of the JPEG), palette, agc, unit ("C" when tlinear, else "counts"), range [lo, hi] in unit
            (the values mapped to the palette's ends), stats {min, max, mean, centre, min_xy, max_xy} in
            unit with (x, y) positions in `pixels`, meaning (as in the raw frame), telemetry,
            counters {"capture": {...}, "encoder": {...}}
    jpeg: the encoded image.
    pixels: the radiometric frame, rotated/flipped exactly like the JPEG (so pixel (x, y) of it lies
            under the same point of the picture), little-endian uint16.

encoder -> server, topic b"thermal" (ThermalFrame), for every frame, watched or not:
    [b"thermal", header, pixels]
    header: v, seq, t, t_measured, sensor, shape [rows, cols], tlinear, kelvin_per_count,
            unit ("C" when tlinear, else "counts"), stats {min, max, mean, centre, min_xy, max_xy} and
            regions {NAME: {min, max, mean, max_xy}} in unit with (x, y) positions in sensor
            orientation, meaning (as in the raw frame), telemetry,
            counters {"capture": {...}, "encoder": {...}}
    pixels: the radiometric frame as the camera delivered it (before rotate/flip), little-endian
            uint16. This is what measurements, alarms, MQTT and the history are made of; it keeps
            flowing while the picture is paused (nobody watching), so they never pause.

capture -> encoder and encoder -> server, topic b"status" (about once a second, and on every change):
    [b"status", header]
    header: v, t, stage ("capture" or "encoder"), state ("streaming", "offline", "paused", ...),
            detail (a sentence for people, e.g. "cannot open /dev/spidev0.0: no such file"), source,
            counters (the stage's counters). The encoder forwards capture's status as it is and also
            publishes its own, so the server knows both; the encoder's also carries settings (its
            [encoder] settings as in server.conf) and last_error ("" or the newest problem).

server -> encoder control (DEALER -> ROUTER), one JSON part each way:
    request  {"v": 1, "op": "set", "settings": {"palette": "jet", ...}}   (values as in server.conf)
             {"v": 1, "op": "get"}
             {"v": 1, "op": "viewers", "count": N}                     (N = 0 lets the encoder idle)
    reply    {"v": 1, "ok": true, "settings": {...}}  or  {"v": 1, "ok": false, "error": "reason"}
    A request may carry "id" (any JSON value); the reply echoes it, so replies can be matched.
    Every reply to a good request carries "settings" (all of [encoder], in server.conf's text form, so
    any of them can be sent back in "set"); a "viewers" reply also says "watched" (true: encoding).
    The server sends "viewers" on every change and at least once a second; the encoder encodes while
    someone subscribes to its images and the newest viewer count (if any came in the last 3 s) is > 0.

server -> capture camera control (DEALER -> ROUTER on [endpoints] camera), one JSON part each way:
    request  {"v": 1, "op": "camera"}                                   camera info and status
             {"v": 1, "op": "ffc"}                                      run a flat-field correction
             {"v": 1, "op": "ffc_mode", "mode": "auto" | "manual"}
             {"v": 1, "op": "gain", "mode": "high" | "low" | "auto"}
             {"v": 1, "op": "emissivity", "emissivity": 0.01..1,
              "background_c": -50..400 (optional: the reflected / background temperature, C)}
             {"v": 1, "op": "reboot"}
    reply    {"v": 1, "ok": true, "camera": {...}}
             {"v": 1, "ok": false, "error": "reason", "reason": "unavailable" | "bad_request" |
              "camera"}  (no camera control here / the request is wrong / the camera refused)
    Build requests with camera_request(op, ...); check them with check_camera_request (WireError).
    The "camera" dict (also in capture's status): control ("available" or why not), model,
    part_number, serial, firmware, sensor, radiometric, fpa_temp_c, ffc_state, ffc_desired,
    since_ffc_s, ffc_mode, gain_mode, effective_gain, emissivity, background_c, meaning,
    meaning_from ("telemetry", "cci", "config" or "assumed"), kelvin_per_count, uptime_s; null
    where unknown. Settings changed here persist in capture's state file and are re-applied after
    the camera reboots or reconnects.

A peer that receives a message of another version, a malformed header or a part of the wrong size
raises WireError and drops that one message.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

VERSION = 1
RAW_TOPIC = b"raw"
IMAGE_TOPIC = b"image"
THERMAL_TOPIC = b"thermal"
STATUS_TOPIC = b"status"

Buffer = Union[bytes, memoryview, bytearray]
MAX_HEADER_BYTES = 64 * 1024
MAX_SIDE = 4096


class WireError(ValueError):
    """A message that does not follow this format."""


@dataclass
class RawFrame:
    seq: int
    t: float
    sensor: str
    pixels: np.ndarray  # (rows, cols) uint16
    tlinear: bool = True
    kelvin_per_count: float = 0.01
    telemetry: Optional[dict] = None
    counters: dict = field(default_factory=dict)
    meaning: str = ""  # "" = derived from tlinear / kelvin_per_count (see default_meaning)

    def __post_init__(self) -> None:
        self.meaning = self.meaning or default_meaning(self.tlinear, self.kelvin_per_count)


MEANINGS = ("kelvin_x100", "kelvin_x10", "raw_counts", "agc_8bit")


def default_meaning(tlinear: bool, kelvin_per_count: float) -> str:
    """The meaning of pixels whose header says only tlinear / kelvin_per_count."""
    if not tlinear:
        return "raw_counts"
    return "kelvin_x100" if kelvin_per_count < 0.05 else "kelvin_x10"


def _meaning(header: dict) -> str:
    value = header.get("meaning")
    if value is None:
        return ""
    if value not in MEANINGS:
        raise WireError(f"header field 'meaning' is {value!r}: expected one of {', '.join(MEANINGS)}")
    if (value in ("kelvin_x100", "kelvin_x10")) != bool(header.get("tlinear")):
        raise WireError(f"header field 'meaning' {value!r} contradicts tlinear "
                        f"{header.get('tlinear')!r}")
    return value


@dataclass
class ImageFrame:
    seq: int
    t: float
    t_encoded: float
    sensor: str
    jpeg: bytes
    pixels: np.ndarray  # radiometric frame in display orientation
    width: int
    height: int
    palette: str
    agc: str
    unit: str
    range: tuple
    stats: dict
    tlinear: bool = True
    kelvin_per_count: float = 0.01
    telemetry: Optional[dict] = None
    counters: dict = field(default_factory=dict)
    meaning: str = ""

    def __post_init__(self) -> None:
        self.meaning = self.meaning or default_meaning(self.tlinear, self.kelvin_per_count)

    def header(self) -> dict:
        """The JSON header as a dict (what the server forwards to viewers)."""
        return _image_header(self)


@dataclass
class ThermalFrame:
    """A frame as measured: sensor-orientation pixels with their statistics and region readings."""

    seq: int
    t: float
    t_measured: float
    sensor: str
    pixels: np.ndarray  # (rows, cols) uint16, before rotate/flip
    unit: str
    stats: dict
    regions: dict = field(default_factory=dict)
    tlinear: bool = True
    kelvin_per_count: float = 0.01
    telemetry: Optional[dict] = None
    counters: dict = field(default_factory=dict)
    meaning: str = ""

    def __post_init__(self) -> None:
        self.meaning = self.meaning or default_meaning(self.tlinear, self.kelvin_per_count)


def _le_u16(pixels: np.ndarray) -> np.ndarray:
    """C-contiguous little-endian uint16 without a copy when it already is one."""
    if pixels.dtype != np.dtype("<u2") or not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels, dtype="<u2")
    return pixels


def _dump(header: dict) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode()


def _load(part: Buffer) -> dict:
    if len(part) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(part)} bytes is larger than {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(part))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise WireError(f"wire format version {header.get('v')!r}, this program speaks {VERSION}")
    return header


def _pixels(header: dict, part: Buffer) -> np.ndarray:
    shape = header.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(n, int) and 0 < n <= MAX_SIDE for n in shape)):
        raise WireError(f"bad shape {shape!r}")
    expected = shape[0] * shape[1] * 2
    if len(part) != expected:
        raise WireError(f"pixel part is {len(part)} bytes, shape {shape} needs {expected}")
    pixels = np.frombuffer(part, dtype="<u2").reshape(shape)
    if sys.byteorder != "little":  # keep the native dtype for fast maths downstream
        pixels = pixels.astype(np.uint16)
    return pixels


def _field(header: dict, name: str, kind: Any) -> Any:
    value = header.get(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(f"header field {name!r} is {value!r}")
    return value


def _parts(parts: Sequence[Any], topic: bytes, count: int) -> list[Buffer]:
    buffers = [p.buffer if hasattr(p, "buffer") else p for p in parts]  # zmq.Frame or bytes
    if len(buffers) != count:
        raise WireError(f"{bytes(buffers[0][:16]) if buffers else b''!r} message has "
                        f"{len(buffers)} parts, expected {count}")
    if bytes(buffers[0]) != topic:
        raise WireError(f"topic {bytes(buffers[0][:16])!r}, expected {topic!r}")
    return buffers


# ---------------------------------------------------------------- capture -> encoder

def pack_raw(frame: RawFrame) -> list[Buffer]:
    pixels = _le_u16(frame.pixels)
    header = {"v": VERSION, "seq": frame.seq, "t": frame.t, "sensor": frame.sensor,
              "shape": list(pixels.shape), "tlinear": frame.tlinear,
              "kelvin_per_count": frame.kelvin_per_count, "meaning": frame.meaning,
              "telemetry": frame.telemetry, "counters": frame.counters}
    return [RAW_TOPIC, _dump(header), memoryview(pixels).cast("B")]


def unpack_raw(parts: Sequence[Any]) -> RawFrame:
    topic, head, data = _parts(parts, RAW_TOPIC, 3)
    header = _load(head)
    return RawFrame(seq=_field(header, "seq", int), t=_field(header, "t", float),
                    sensor=_field(header, "sensor", str), pixels=_pixels(header, data),
                    tlinear=_field(header, "tlinear", bool),
                    kelvin_per_count=_field(header, "kelvin_per_count", float),
                    telemetry=header.get("telemetry") if isinstance(header.get("telemetry"), dict)
                    else None,
                    counters=header.get("counters") if isinstance(header.get("counters"), dict)
                    else {}, meaning=_meaning(header))


# ---------------------------------------------------------------- encoder -> server

def _image_header(frame: ImageFrame) -> dict:
    return {"v": VERSION, "seq": frame.seq, "t": frame.t, "t_encoded": frame.t_encoded,
            "sensor": frame.sensor, "shape": list(frame.pixels.shape), "width": frame.width,
            "height": frame.height, "palette": frame.palette, "agc": frame.agc,
            "unit": frame.unit, "range": list(frame.range), "stats": frame.stats,
            "tlinear": frame.tlinear, "kelvin_per_count": frame.kelvin_per_count,
            "meaning": frame.meaning, "telemetry": frame.telemetry, "counters": frame.counters}


def pack_image(frame: ImageFrame) -> list[Buffer]:
    pixels = _le_u16(frame.pixels)
    frame.pixels = pixels
    return [IMAGE_TOPIC, _dump(_image_header(frame)), frame.jpeg, memoryview(pixels).cast("B")]


def unpack_image(parts: Sequence[Any]) -> ImageFrame:
    topic, head, jpeg, data = _parts(parts, IMAGE_TOPIC, 4)
    header = _load(head)
    rng = header.get("range")
    if not (isinstance(rng, list) and len(rng) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rng)):
        raise WireError(f"header field 'range' is {rng!r}")
    stats = header.get("stats")
    if not isinstance(stats, dict):
        raise WireError(f"header field 'stats' is {stats!r}")
    return ImageFrame(seq=_field(header, "seq", int), t=_field(header, "t", float),
                      t_encoded=_field(header, "t_encoded", float),
                      sensor=_field(header, "sensor", str), jpeg=bytes(jpeg),
                      pixels=_pixels(header, data), width=_field(header, "width", int),
                      height=_field(header, "height", int),
                      palette=_field(header, "palette", str), agc=_field(header, "agc", str),
                      unit=_field(header, "unit", str), range=(float(rng[0]), float(rng[1])),
                      stats=stats, tlinear=_field(header, "tlinear", bool),
                      kelvin_per_count=_field(header, "kelvin_per_count", float),
                      telemetry=header.get("telemetry") if isinstance(header.get("telemetry"), dict)
                      else None,
                      counters=header.get("counters") if isinstance(header.get("counters"), dict)
                      else {}, meaning=_meaning(header))


# ---------------------------------------------------------------- encoder -> server: measurements

def pack_thermal(frame: ThermalFrame) -> list[Buffer]:
    pixels = _le_u16(frame.pixels)
    header = {"v": VERSION, "seq": frame.seq, "t": frame.t, "t_measured": frame.t_measured,
              "sensor": frame.sensor, "shape": list(pixels.shape), "tlinear": frame.tlinear,
              "kelvin_per_count": frame.kelvin_per_count, "unit": frame.unit,
              "stats": frame.stats, "regions": frame.regions, "telemetry": frame.telemetry,
              "counters": frame.counters, "meaning": frame.meaning}
    return [THERMAL_TOPIC, _dump(header), memoryview(pixels).cast("B")]


def unpack_thermal(parts: Sequence[Any]) -> ThermalFrame:
    topic, head, data = _parts(parts, THERMAL_TOPIC, 3)
    header = _load(head)
    for name in ("stats", "regions"):
        if not isinstance(header.get(name), dict):
            raise WireError(f"header field {name!r} is {header.get(name)!r}")
    return ThermalFrame(seq=_field(header, "seq", int), t=_field(header, "t", float),
                        t_measured=_field(header, "t_measured", float),
                        sensor=_field(header, "sensor", str), pixels=_pixels(header, data),
                        unit=_field(header, "unit", str), stats=header["stats"],
                        regions=header["regions"], tlinear=_field(header, "tlinear", bool),
                        kelvin_per_count=_field(header, "kelvin_per_count", float),
                        telemetry=header.get("telemetry")
                        if isinstance(header.get("telemetry"), dict) else None,
                        counters=header.get("counters")
                        if isinstance(header.get("counters"), dict) else {},
                        meaning=_meaning(header))


# ---------------------------------------------------------------- control

def pack_control(message: dict) -> bytes:
    return _dump({"v": VERSION, **message})


def unpack_control(part: Buffer) -> dict:
    message = _load(part)
    if not isinstance(message.get("op", message.get("ok")), (str, bool)):
        raise WireError("control message has neither 'op' nor 'ok'")
    return message


# ---------------------------------------------------------------- status

def pack_status(stage: str, state: str, detail: str = "", t: float = 0.0,
                **extra: Any) -> list[Buffer]:
    header = {"v": VERSION, "t": t, "stage": stage, "state": state, "detail": detail, **extra}
    return [STATUS_TOPIC, _dump(header)]


def unpack_status(parts: Sequence[Any]) -> dict:
    topic, head = _parts(parts, STATUS_TOPIC, 2)
    header = _load(head)
    for name in ("stage", "state"):
        _field(header, name, str)
    return header


# ---------------------------------------------------------------- camera control

GAIN_MODES = ("high", "low", "auto")
FFC_MODES = ("auto", "manual")
EMISSIVITY_RANGE = (0.01, 1.0)     # LEPTON_RAD.h: sceneEmissivity 82..8192 (x 1/8192)
BACKGROUND_C_RANGE = (-50.0, 400.0)  # what a Lepton 3.5 sees at most in low gain


def _number(message: dict, name: str, lo: float, hi: float, required: bool = True) -> None:
    value = message.get(name)
    if value is None and not required:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise WireError(f"{message.get('op')}: {name} {value!r}: expected a number from "
                        f"{lo:g} to {hi:g}")


def _mode(choices: tuple) -> Any:
    def check(message: dict) -> None:
        if message.get("mode") not in choices:
            raise WireError(f"{message['op']}: mode {message.get('mode')!r}: expected "
                            f"{', '.join(choices)}")
    return check


def _emissivity(message: dict) -> None:
    _number(message, "emissivity", *EMISSIVITY_RANGE)
    _number(message, "background_c", *BACKGROUND_C_RANGE, required=False)


# op -> (the fields it takes, its validator)
CAMERA_OPS: dict[str, tuple[tuple, Any]] = {
    "camera": ((), lambda m: None),
    "ffc": ((), lambda m: None),
    "ffc_mode": (("mode",), _mode(FFC_MODES)),
    "gain": (("mode",), _mode(GAIN_MODES)),
    "emissivity": (("emissivity", "background_c"), _emissivity),
    "reboot": ((), lambda m: None),
}


def check_camera_request(message: Any) -> dict:
    """A camera control request as {"op", its fields} (also "id" if given); WireError saying what
    is wrong with it otherwise."""
    if not isinstance(message, dict):
        raise WireError("camera request is not a JSON object")
    op = message.get("op")
    if op not in CAMERA_OPS:
        raise WireError(f"unknown camera op {op!r} (expected {', '.join(CAMERA_OPS)})")
    allowed, validate = CAMERA_OPS[op]
    extra = set(message) - set(allowed) - {"op", "v", "id", "token"}
    if extra:
        raise WireError(f"{op}: unexpected field{'s' if len(extra) > 1 else ''} "
                        f"{', '.join(sorted(extra))} (it takes {', '.join(allowed) or 'none'})")
    validate(message)
    checked = {"op": op, **{k: message[k] for k in allowed if message.get(k) is not None}}
    if "id" in message:
        checked["id"] = message["id"]
    return checked


def camera_request(op: str, **fields: Any) -> dict:
    """A checked camera control request, e.g. camera_request("gain", mode="low")."""
    return check_camera_request({"op": op, **fields})


def camera_reply(camera: Optional[dict] = None, error: str = "", reason: str = "",
                 request_id: Any = None) -> bytes:
    """The capture stage's reply: ok with the camera dict, or the error and its reason; the
    request's "id" echoed."""
    echo = {} if request_id is None else {"id": request_id}
    if error:
        return pack_control({"ok": False, "error": error, "reason": reason or "camera", **echo})
    return pack_control({"ok": True, "camera": camera or {}, **echo})


def topic_of(parts: Sequence[Any]) -> bytes:
    """The topic of a received message (to tell raw/image frames from status)."""
    first = parts[0]
    return bytes(first.buffer if hasattr(first, "buffer") else first)
