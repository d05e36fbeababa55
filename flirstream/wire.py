"""The wire format between stages: the one place that knows how messages look on ZeroMQ.

Every message is multipart. Part 0 is the topic, part 1 a small header; the bulk data follows as
raw parts (a numpy buffer is handed to ZeroMQ as it is). Status and control headers are UTF-8 JSON
that always carries `"v": VERSION`. Frame headers are binary (below): every stage reads or writes
one 26.5 times a second.

One frame type travels from capture to the server: Frame (capture's fields and pixels), which the
encoder annotates with a Measurement (every frame) and a Picture (while someone watches).

A frame header is a block of fixed-size numbers (FRAME_BLOCKS[topic], a struct.Struct,
little-endian, no padding), then a tail: a JSON object of the topic's fields that are texts or maps,
only those that have a value (no tail at all when none has). Each frame topic's block starts with
the same capture fields, written by _capture_values() and read by _capture_frame() (so a field
capture adds is written and read in one place), and goes on with its own:

    capture block (33 bytes):
        magic b"FH", version B (FRAME_VERSION; a JSON header, from a flir-stream of before the
        binary one, is refused with a reason that says so), seq q, t d (capture time, Unix
        seconds), sensor B (index into SENSORS: "lepton2", "lepton3"), rows H, cols H (of the
        pixel part, each 1..MAX_SIDE), meaning B (index into MEANINGS: what the pixels are, as the
        camera says: "kelvin_x100", "kelvin_x10", "raw_counts" (14-bit, relative only) or
        "agc_8bit" (the camera's AGC output); Frame.tlinear is true exactly for the two kelvin
        meanings: pixels are kelvin / kelvin_per_count), kelvin_per_count d (0.01 or 0.1)
    stats block (40 bytes): min, max, mean, centre d, then min_xy and max_xy as (x, y) H H
    every tail: telemetry (the camera's telemetry as a map, when it sends some)
    Only kelvin frames are temperatures: stages show "C" for them and "counts" for everything else.
    Every float is finite (NaN or infinity is refused on either side). A unit is B, an index into
    UNITS ("C" when tlinear, else "counts"). The stages' counters are not in frame headers: each
    stage's status carries its own, once a second.

capture -> encoder, topic b"raw" (pack_raw / unpack_raw: Frame):
    [b"raw", header, pixels]
    header: the capture block; tail: telemetry.
    pixels: rows*cols uint16, little-endian, C order.

encoder -> server, topic b"thermal" (pack_thermal / unpack_thermal: Frame with its measurement),
for every frame, watched or not:
    [b"thermal", header, pixels, radiometric]
    header: the capture block, t_measured d, unit B, the stats block (in unit, positions in sensor
            orientation); tail: telemetry, regions {NAME: {min, max, mean, max_xy}} (in unit, when
            there are regions)
    pixels: the radiometric frame as the camera delivered it (before rotate/flip), little-endian
            uint16. This is what measurements, alarms, MQTT and the history are made of; it keeps
            flowing while the picture is paused (nobody watching), so they never pause. Empty when
            the radiometric part is lossless (step 1): that part then stands for the pixels, and
            Frame.pixels decodes it when first asked for (most frames, nothing on the server asks:
            38,400 bytes a Lepton 3 frame less to copy through two processes, ~0.4 % of a core).
    radiometric: the same pixels as a RAD2 payload (flirstream/radiometric.py), what thermal-mode
            viewers get, while the server reports such viewers; else empty (the server then
            encodes it itself if it needs one). Its rows and cols are the header's.

encoder -> server, topic b"image" (pack_image / unpack_image: Frame with its picture):
    [b"image", header, jpeg, pixels]
    header: the capture block (rows, cols: of the picture's pixels), t_encoded d, width I,
            height I (of the JPEG), unit B, range lo d, hi d (in unit: the values mapped to the
            palette's ends), the stats block (in unit, positions in the picture's pixels); tail:
            telemetry, palette and agc (texts, always)
    jpeg: the encoded image.
    pixels: the radiometric frame, rotated/flipped exactly like the JPEG (so pixel (x, y) of it lies
            under the same point of the picture), little-endian uint16: Picture.pixels (a Frame
            read from this topic has no sensor-orientation pixels: Frame.pixels is None).

capture -> encoder and encoder -> server, topic b"status" (about once a second, and on every change):
    [b"status", header]
    header: v, t, stage ("capture" or "encoder"), state ("streaming", "offline", "paused", ...),
            detail (a sentence for people, e.g. "cannot open /dev/spidev0.0: no such file"), source,
            counters (the stage's counters); capture's also carries scheduling (one line: what it
            got of [capture] realtime / nice / cpu, e.g. "SCHED_FIFO priority 10, CPU 3; gc frozen
            ..." or what was refused and why). The encoder forwards capture's status as it is and also
            publishes its own, so the server knows both; the encoder's also carries settings (its
            [encoder] settings as in server.conf) and last_error ("" or the newest problem);
            capture's carries camera (the camera dict of "camera control" below: at most 64
            names of null, flags, numbers or texts of at most 500 characters).

server -> encoder control (DEALER -> ROUTER), one JSON part each way:
    request  {"v": 1, "op": "set", "settings": {"palette": "jet", ...}}   (values as in server.conf)
             {"v": 1, "op": "get"}
             {"v": 1, "op": "viewers", "count": N}                     (N = 0 lets the encoder idle)
             {"v": 1, "op": "viewers", "count": N, "thermal": T}  T > 0: thermal-mode viewers, for
                                                 whom the encoder adds RAD2 to each thermal frame
             {"v": 1, "op": "regions", "put": [region, ...], "delete": [NAME, ...]}  (either or both)
    reply    {"v": 1, "ok": true, "settings": {...}}  or  {"v": 1, "ok": false, "error": "reason"}
             ("regions" replies {"v": 1, "ok": true, "regions": [...]}, the list of the status)
    A request may carry "id" (any JSON value); the reply echoes it, so replies can be matched.
    Build requests with control_request(op, ...) and replies with control_reply(); check them with
    check_control_request / check_control_reply (WireError).
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
    Build requests with camera_request(op, ...) and replies with camera_reply(); check them with
    check_camera_request / check_camera_reply (WireError).
    The "camera" dict (also in capture's status): control ("available" or why not), model,
    part_number, serial, firmware, sensor, radiometric, fpa_temp_c, ffc_state, ffc_desired,
    since_ffc_s, ffc_mode, gain_mode, effective_gain, emissivity, background_c, meaning,
    meaning_from ("telemetry", "cci", "config" or "assumed"), kelvin_per_count, uptime_s; null
    where unknown. Settings changed here persist in capture's state file and are re-applied after
    the camera reboots or reconnects.

A peer that receives a message of another version, a malformed header or a part of the wrong size
raises WireError and drops that one message. Every JSON part (a frame header's tail too) is
refused (WireError) when nested more than MAX_DEPTH deep or when it holds NaN / Infinity (also
1e999): no JSON this program reads can make it recurse without bound or carry a number
json.dumps(allow_nan=False) would refuse later on.

A status header has a schema (status_header() builds one, check_status() checks one, and pack_status /
unpack_status use them, so sender and receiver agree): only the fields above, each of its type, texts
and maps bounded in size, numbers finite; "settings" maps names to texts.
"""
from __future__ import annotations

import json
import math
import re
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from flirstream import radiometric

VERSION = 1
RAW_TOPIC = b"raw"
IMAGE_TOPIC = b"image"
THERMAL_TOPIC = b"thermal"
STATUS_TOPIC = b"status"

Buffer = Union[bytes, memoryview, bytearray]
MAX_HEADER_BYTES = 64 * 1024
# TLinear pixels are kelvin / kelvin_per_count: degrees C = value * kelvin_per_count - KELVIN_AT_0C
KELVIN_AT_0C = 273.15
MAX_SIDE = 4096
MAX_DEPTH = 16  # nesting of objects/lists in any JSON part (the deepest this format uses is 3)


class WireError(ValueError):
    """A message that does not follow this format."""


@dataclass
class Measurement:
    """What the encoder measured of a frame, in sensor orientation (topic b"thermal")."""

    t_measured: float
    unit: str  # "C" when the frame is TLinear, else "counts"
    stats: dict  # {min, max, mean, centre, min_xy, max_xy}, positions in the frame's pixels
    regions: dict = field(default_factory=dict)  # {NAME: {min, max, mean, max_xy}}
    # The frame as RAD2 (flirstream/radiometric.py), made by the encoder once for every
    # thermal-mode viewer while there are some; None: not made.
    radiometric: Optional[bytes] = None


@dataclass
class Picture:
    """The encoder's picture of a frame (topic b"image"): the JPEG and the radiometric pixels
    turned exactly like it, with their statistics."""

    t_encoded: float
    jpeg: bytes
    pixels: np.ndarray  # (rows, cols) uint16 in display orientation (after rotate/flip)
    width: int  # of the JPEG
    height: int
    palette: str
    agc: str  # the AGC really used (fixed falls back to linear on non-TLinear frames)
    unit: str  # "C" or "counts"
    range: tuple  # (lo, hi) in unit: the values at the palette's two ends
    stats: dict  # as Measurement.stats, positions in display orientation
    # The coloured image before JPEG, at output size: kept by the renderer, never sent.
    bgr: Optional[np.ndarray] = field(default=None, repr=False, compare=False)


@dataclass
class Frame:
    """One camera frame from capture to the server: capture's fields and pixels, and what the
    encoder adds to it (measurement, picture). Each topic carries the capture fields and one part
    of the rest: b"raw" the pixels, b"thermal" the pixels and measurement, b"image" the picture
    (whose own pixels are the display-orientation ones; `pixels` is None on a frame read from it).
    A thermal frame that came without its pixel part decodes them from its RAD2 part when first
    asked for; `shape` does not need them."""

    seq: int
    t: float  # capture time, Unix seconds
    sensor: str
    pixels: Optional[np.ndarray]  # (rows, cols) uint16 as the camera delivered them
    tlinear: bool = True
    kelvin_per_count: float = 0.01
    telemetry: Optional[dict] = None
    meaning: str = ""  # "" = derived from tlinear / kelvin_per_count (see default_meaning)
    measurement: Optional[Measurement] = None
    picture: Optional[Picture] = None

    def __post_init__(self) -> None:
        self.meaning = self.meaning or default_meaning(self.tlinear, self.kelvin_per_count)

    @property
    def shape(self) -> Optional[tuple]:
        """(rows, cols) of the pixels, without decoding them; None if the frame has none."""
        encoded = self.__dict__.get("_encoded")
        if encoded is not None:
            return radiometric.read_header(encoded)[:2]
        pixels = self.__dict__["_pixels"]
        return None if pixels is None else pixels.shape

    def decode_later(self, payload: bytes) -> None:
        """Let a lossless RAD2 payload stand for the pixels until they are asked for."""
        self.__dict__["_pixels"], self.__dict__["_encoded"] = None, payload


def _get_pixels(frame: Frame) -> Optional[np.ndarray]:
    pixels = frame.__dict__["_pixels"]
    encoded = frame.__dict__.get("_encoded")
    if pixels is None and encoded is not None:
        try:
            pixels = radiometric.decode(encoded)
        except radiometric.RadiometricError as exc:
            raise WireError(f"radiometric part: {exc}") from None
        frame.__dict__["_pixels"], frame.__dict__["_encoded"] = pixels, None
    return pixels


def _set_pixels(frame: Frame, pixels: Optional[np.ndarray]) -> None:
    frame.__dict__["_pixels"], frame.__dict__["_encoded"] = pixels, None


# Frame.pixels as a property (set after @dataclass, which made `pixels` a field of __init__, repr
# and ==, all of which go through it): a thermal frame read without its pixel part decodes its
# RAD2 payload only when something asks for the pixels (WireError if that payload is bad).
Frame.pixels = property(_get_pixels, _set_pixels,  # type: ignore[assignment]
                        doc="(rows, cols) uint16 as the camera delivered them, or None")


MEANINGS = ("kelvin_x100", "kelvin_x10", "raw_counts", "agc_8bit")


def default_meaning(tlinear: bool, kelvin_per_count: float) -> str:
    """The meaning of pixels whose header says only tlinear / kelvin_per_count."""
    if not tlinear:
        return "raw_counts"
    return "kelvin_x100" if kelvin_per_count < 0.05 else "kelvin_x10"


_LE_U16 = np.dtype("<u2")


def _le_u16(pixels: np.ndarray) -> np.ndarray:
    """C-contiguous little-endian uint16 without a copy when it already is one."""
    if pixels.dtype != _LE_U16 or not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels, dtype=_LE_U16)
    return pixels


# One encoder and one decoder for every message: json.dumps / json.loads with options build a new
# one per call (the same bytes; a frame message is dumped and loaded 26.5 times a second).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _dump(header: dict) -> bytes:
    return _ENCODER.encode(header).encode()


def _refuse_constant(name: str) -> Any:
    raise WireError(f"{name} is not a number this format carries")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


MAX_INTEGER = 10 ** 20  # beyond 64 bits; float() of a larger int would overflow later on
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Where a number json.loads reads could be out of range: an exponent (1e999 is inf) or 20 digits in a
# row (no float without an exponent reaches inf with fewer than 309). Strings may match too (then the
# tree is walked): the search only decides that no number needs looking at.
_LARGE_NUMBER = re.compile(rb"[0-9][eE]|[0-9]{20}")


def _check_tree(value: Any) -> None:
    """WireError if `value` nests deeper than MAX_DEPTH or holds a number this format does not carry
    (inf from 1e999, an integer of more than 20 digits); checked in one walk, without recursion."""
    stack = [([value], 0)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is float:
                if not math.isfinite(child):
                    raise WireError(f"number {child!r} is out of range")
            elif kind is int:
                if not -MAX_INTEGER < child < MAX_INTEGER:
                    raise WireError(f"integer {str(child)[:20]}... is out of range")
            elif kind is dict or kind is list:
                if depth + 1 > MAX_DEPTH:
                    raise WireError(f"JSON nested more than {MAX_DEPTH} deep")
                stack.append((child, depth + 1))


def load_json(part: Buffer) -> Any:
    """One JSON part as this format reads every one: bounded size and depth, finite numbers."""
    if len(part) > MAX_HEADER_BYTES:
        raise WireError(f"JSON part of {len(part)} bytes is larger than {MAX_HEADER_BYTES}")
    data = bytes(part)
    # Refused before parsing: the C parser recurses once per level (5,000 "[" = RecursionError).
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _opens_too_deep(data):
        raise WireError(f"JSON nested more than {MAX_DEPTH} deep")
    try:
        # No parse_float / parse_int hooks: they would call Python for every number of every
        # header; _check_tree checks the numbers afterwards when any could be out of range.
        if data[:1] == b"{" and data[1:2] != b"\0":  # json.loads would read it as UTF-8
            value = _DECODER.decode(data.decode("utf-8", "surrogatepass"))
        else:
            value = json.loads(data, parse_constant=_refuse_constant)
    except WireError:
        raise
    except RecursionError:
        raise WireError(f"JSON nested more than {MAX_DEPTH} deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    except Exception as exc:  # nothing a peer sends may escape as another kind of error
        raise WireError(f"not JSON: {exc!r}") from None
    # (the depth was checked above: more than MAX_DEPTH brackets, in strings or not, are counted)
    if _LARGE_NUMBER.search(data):
        _check_tree(value)
    return value


def _opens_too_deep(data: bytes) -> bool:
    """Whether brackets outside strings open more than MAX_DEPTH levels (strings and everything
    but brackets are dropped in C first, so the loop only sees the brackets)."""
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_A_BRACKET):
        depth += 1 if byte in (0x5B, 0x7B) else -1
        if depth > MAX_DEPTH:
            return True
    return False


def _load(part: Buffer) -> dict:
    header = load_json(part)
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise WireError(f"wire format version {header.get('v')!r}, this program speaks {VERSION}")
    return header


# ---------------------------------------------------------------- frames: the three topics
#
# Why a binary block and not JSON: each stage reads or writes a frame header 26.5 times a second,
# each time just after a frame period's sleep, when the caches are cold. There json.dumps or
# json.loads of a header costs 40-70 us (~10 us warm), struct a few. The four functions that pack
# and unpack a frame's headers took 436 us a frame with JSON and take 206 with this, 0.6 % of a core
# less (docs/PERFORMANCE.md, fifth pass).

FRAME_MAGIC = b"FH"
FRAME_VERSION = 3  # 1: the JSON headers of before December 2026; 2: thermal with RAD1
SENSORS = ("lepton2", "lepton3")
UNITS = ("C", "counts")
_CAPTURE_BLOCK = "2sBqdBHHBd"  # magic, version, seq, t, sensor, rows, cols, meaning, kelvin_per_count
_STATS_BLOCK = "4d4H"  # min, max, mean, centre, min_xy (x, y), max_xy (x, y)
FRAME_BLOCKS = {RAW_TOPIC: struct.Struct("<" + _CAPTURE_BLOCK),
                THERMAL_TOPIC: struct.Struct("<" + _CAPTURE_BLOCK + "dB" + _STATS_BLOCK),
                IMAGE_TOPIC: struct.Struct("<" + _CAPTURE_BLOCK + "dIIBdd" + _STATS_BLOCK)}
# values of the capture block (a topic's own follow them)
_CAPTURE_VALUES = len(FRAME_BLOCKS[RAW_TOPIC].unpack(bytes(FRAME_BLOCKS[RAW_TOPIC].size)))
_SENSOR_CODES = {name: code for code, name in enumerate(SENSORS)}
_MEANING_CODES = {name: code for code, name in enumerate(MEANINGS)}
_UNIT_CODES = {name: code for code, name in enumerate(UNITS)}
_KELVIN = (_MEANING_CODES["kelvin_x100"], _MEANING_CODES["kelvin_x10"])


def _code(codes: dict, name: str, value: Any, seq: int) -> int:
    code = codes.get(value)
    if code is None:
        raise ValueError(f"frame {seq}: {name} {value!r} is not one of {', '.join(codes)}")
    return code


def _capture_values(frame: Frame, shape: Sequence[int]) -> tuple:
    """The capture block's values of a frame (`shape` of the pixel part): the one place a field
    added at capture goes on the wire."""
    meaning = _code(_MEANING_CODES, "meaning", frame.meaning, frame.seq)
    if (meaning in _KELVIN) != bool(frame.tlinear):
        raise ValueError(f"frame {frame.seq}: meaning {frame.meaning!r} contradicts tlinear "
                         f"{frame.tlinear!r}")
    return (FRAME_MAGIC, FRAME_VERSION, frame.seq, frame.t,
            _code(_SENSOR_CODES, "sensor", frame.sensor, frame.seq), shape[0], shape[1], meaning,
            frame.kelvin_per_count)


def _stats_values(stats: dict, seq: int) -> tuple:
    try:
        return (stats["min"], stats["max"], stats["mean"], stats["centre"], *stats["min_xy"],
                *stats["max_xy"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"frame {seq}: stats {stats!r:.200} lack {exc}") from None


def _header(topic: bytes, values: tuple, tail: dict) -> bytes:
    """A frame header: the topic's block, then the JSON tail of the fields that have a value."""
    for value in values:  # (numpy's floats too: a range or a statistic may be one)
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            raise ValueError(f"frame {values[2]}: {value!r} in its header is not a number the "
                             f"wire format carries")
    try:
        block = FRAME_BLOCKS[topic].pack(*values)
    except struct.error as exc:  # e.g. a position that is negative or a seq beyond 64 bits
        raise ValueError(f"frame {values[2]}: cannot pack its header: {exc}") from None
    present = {name: value for name, value in tail.items() if value is not None}
    return block + _dump(present) if present else block


def _read_header(head: Buffer, topic: bytes) -> tuple[tuple, dict]:
    """A frame header's block values and its JSON tail ({} if none), else WireError."""
    block = FRAME_BLOCKS[topic]
    if len(head) < block.size or head[:2] != FRAME_MAGIC or head[2] != FRAME_VERSION:
        raise WireError(_not_a_header(bytes(head[:16]), len(head), topic, block.size))
    values = block.unpack_from(head)
    for value in values:  # NaN and infinity: a peer's bytes may hold any float
        if type(value) is float and not math.isfinite(value):
            raise WireError(f"{topic.decode()} header holds {value!r}, not a number the wire "
                            f"format carries")
    tail: Any = {}
    if len(head) > block.size:
        tail = load_json(head[block.size:])
        if type(tail) is not dict:
            raise WireError(f"{topic.decode()} header's tail is not a JSON object")
    return values, tail


def _not_a_header(start: bytes, size: int, topic: bytes, block: int) -> str:
    name = topic.decode()
    if start[:1] == b"{":
        return (f"{name} header is JSON: sent by a stage of an older flir-stream (this one reads "
                f"binary frame headers, version {FRAME_VERSION}); run one version in every stage")
    if start[:2] != FRAME_MAGIC:
        return f"{name} header starts with {start[:2]!r}, expected {FRAME_MAGIC!r}"
    if size < 3 or start[2] != FRAME_VERSION:
        return (f"{name} header of frame format version {start[2] if size > 2 else None}, this "
                f"program reads {FRAME_VERSION}; run one version in every stage")
    return f"{name} header is {size} bytes, its block alone is {block}"


def _capture_frame(values: tuple, tail: dict, pixels: Optional[np.ndarray]) -> Frame:
    """The capture block's values and the tail's telemetry as a Frame (WireError naming a bad
    value)."""
    _, _, seq, t, sensor, _, _, meaning, kelvin_per_count = values[:_CAPTURE_VALUES]
    telemetry = tail.get("telemetry")
    return Frame(seq=seq, t=t, sensor=_name(SENSORS, "sensor", sensor), pixels=pixels,
                 tlinear=meaning in _KELVIN, kelvin_per_count=kelvin_per_count,
                 telemetry=telemetry if type(telemetry) is dict else None,
                 meaning=_name(MEANINGS, "meaning", meaning))


def _shape(values: tuple) -> tuple[int, int]:
    rows, cols = values[5], values[6]
    if not (0 < rows <= MAX_SIDE and 0 < cols <= MAX_SIDE):
        raise WireError(f"bad shape [{rows}, {cols}]")
    return rows, cols


def _pixels(values: tuple, part: Buffer) -> np.ndarray:
    rows, cols = _shape(values)
    expected = rows * cols * 2
    if len(part) != expected:
        raise WireError(f"pixel part is {len(part)} bytes, shape [{rows}, {cols}] needs {expected}")
    pixels = np.ndarray((rows, cols), _LE_U16, part)  # a view of the part, like np.frombuffer
    if sys.byteorder != "little":  # keep the native dtype for fast maths downstream
        pixels = pixels.astype(np.uint16)
    return pixels


def _name(names: tuple, what: str, code: int) -> str:
    """The name a header's code stands for (SENSORS, MEANINGS, UNITS), else WireError."""
    if code >= len(names):
        raise WireError(f"header's {what} code {code} is not one of 0-{len(names) - 1}")
    return names[code]


def _stats(values: tuple, at: int) -> dict:
    lo, hi, mean, centre, lo_x, lo_y, hi_x, hi_y = values[at:at + 8]
    return {"min": lo, "max": hi, "mean": mean, "centre": centre, "min_xy": [lo_x, lo_y],
            "max_xy": [hi_x, hi_y]}


def _text(tail: dict, name: str) -> str:
    value = tail.get(name)
    if type(value) is not str:
        raise WireError(f"header field {name!r} is {value!r:.80}")
    return value


def _parts(parts: Sequence[Any], topic: bytes, count: int) -> list[Buffer]:
    buffers = [p.buffer if hasattr(p, "buffer") else p for p in parts]  # zmq.Frame or bytes
    if len(buffers) != count:
        raise WireError(f"{bytes(buffers[0][:16]) if buffers else b''!r} message has "
                        f"{len(buffers)} parts, expected {count}")
    if buffers[0] != topic and bytes(buffers[0]) != topic:  # (a memoryview equals its bytes)
        raise WireError(f"topic {bytes(buffers[0][:16])!r}, expected {topic!r}")
    return buffers


def _part(pixels: np.ndarray) -> memoryview:
    return memoryview(pixels).cast("B")


def _annotation(frame: Frame, name: str) -> Any:
    value = getattr(frame, name)
    if value is None:
        raise ValueError(f"frame {frame.seq} has no {name} to send")
    return value


def pack_raw(frame: Frame) -> list[Buffer]:
    """capture -> encoder (ValueError if a field cannot be sent)."""
    pixels = _le_u16(frame.pixels)
    header = _header(RAW_TOPIC, _capture_values(frame, pixels.shape),
                     {"telemetry": frame.telemetry})
    return [RAW_TOPIC, header, _part(pixels)]


def unpack_raw(parts: Sequence[Any]) -> Frame:
    topic, head, data = _parts(parts, RAW_TOPIC, 3)
    values, tail = _read_header(head, RAW_TOPIC)
    return _capture_frame(values, tail, _pixels(values, data))


def pack_thermal(frame: Frame) -> list[Buffer]:
    """encoder -> server: the frame with its measurement (ValueError if it has none); the pixel
    part is empty when the radiometric part is lossless."""
    measured = _annotation(frame, "measurement")
    encoded = measured.radiometric or b""
    shape = frame.shape
    if shape is None:
        raise ValueError(f"frame {frame.seq} has no pixels to send")
    rows, cols, step = radiometric.read_header(encoded) if encoded else (*shape, 0)
    if (rows, cols) != tuple(shape):
        raise ValueError(f"frame {frame.seq}: its radiometric part is not of its pixels' shape")
    lossless = step == 1
    values = (*_capture_values(frame, shape), measured.t_measured,
              _code(_UNIT_CODES, "unit", measured.unit, frame.seq),
              *_stats_values(measured.stats, frame.seq))
    header = _header(THERMAL_TOPIC, values, {"telemetry": frame.telemetry,
                                             "regions": measured.regions or None})
    pixels = b"" if lossless else _part(_le_u16(frame.pixels))
    return [THERMAL_TOPIC, header, pixels, encoded]


def unpack_thermal(parts: Sequence[Any]) -> Frame:
    topic, head, data, rad = _parts(parts, THERMAL_TOPIC, 4)
    values, tail = _read_header(head, THERMAL_TOPIC)
    encoded, step = _radiometric(rad, _shape(values))
    alone = not len(data) and encoded is not None
    if alone and step != 1:
        raise WireError("thermal message without pixels, and its radiometric part is not lossless")
    frame = _capture_frame(values, tail, None if alone else _pixels(values, data))
    if alone:
        frame.decode_later(encoded)
    regions = tail.get("regions", {})
    if type(regions) is not dict:
        raise WireError(f"header field 'regions' is {regions!r:.80}")
    at = _CAPTURE_VALUES
    frame.measurement = Measurement(t_measured=values[at],
                                    unit=_name(UNITS, "unit", values[at + 1]),
                                    stats=_stats(values, at + 2), regions=regions,
                                    radiometric=encoded)
    return frame


def _radiometric(part: Buffer, shape: tuple) -> tuple[Optional[bytes], int]:
    """The thermal topic's RAD2 part and its step: (None, 0) if empty, else its bytes if its header
    fits the frame."""
    payload = bytes(part)
    if not payload:
        return None, 0
    try:
        rows, cols, step = radiometric.read_header(payload)
    except radiometric.RadiometricError as exc:
        raise WireError(f"radiometric part: {exc}") from None
    if (rows, cols) != tuple(shape):
        raise WireError(f"radiometric part is a {rows}x{cols} frame, the pixels {shape[0]}x{shape[1]}")
    return payload, step


def pack_image(frame: Frame) -> list[Buffer]:
    """encoder -> server: the frame's picture (ValueError if it has none)."""
    picture = _annotation(frame, "picture")
    picture.pixels = pixels = _le_u16(picture.pixels)
    lo, hi = picture.range
    values = (*_capture_values(frame, pixels.shape), picture.t_encoded, picture.width,
              picture.height, _code(_UNIT_CODES, "unit", picture.unit, frame.seq), lo, hi,
              *_stats_values(picture.stats, frame.seq))
    header = _header(IMAGE_TOPIC, values, {"telemetry": frame.telemetry,
                                           "palette": picture.palette, "agc": picture.agc})
    return [IMAGE_TOPIC, header, picture.jpeg, _part(pixels)]


def unpack_image(parts: Sequence[Any]) -> Frame:
    topic, head, jpeg, data = _parts(parts, IMAGE_TOPIC, 4)
    values, tail = _read_header(head, IMAGE_TOPIC)
    frame = _capture_frame(values, tail, None)
    at = _CAPTURE_VALUES
    t_encoded, width, height, unit, lo, hi = values[at:at + 6]
    frame.picture = Picture(t_encoded=t_encoded, jpeg=bytes(jpeg), pixels=_pixels(values, data),
                            width=width, height=height, palette=_text(tail, "palette"),
                            agc=_text(tail, "agc"), unit=_name(UNITS, "unit", unit),
                            range=(lo, hi), stats=_stats(values, at + 6))
    return frame


# ---------------------------------------------------------------- control

def pack_control(message: dict) -> bytes:
    return _dump({"v": VERSION, **message})


def unpack_control(part: Buffer) -> dict:
    """The envelope of any control message (a request has "op", a reply "ok"); what it says is
    checked by check_control_request / check_control_reply or their camera twins."""
    message = _load(part)
    if not isinstance(message.get("op", message.get("ok")), (str, bool)):
        raise WireError("control message has neither 'op' nor 'ok'")
    return message


CONTROL_OPS = ("set", "get", "viewers", "regions")


def _viewer_count(request: dict) -> None:
    for key in ("count", "thermal"):
        count = request.get(key, 0)  # (a server before "thermal" sends none: no such viewers)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise WireError(f"viewers: {key!r} is {count!r}, expected a whole number >= 0")


def _settings_change(request: dict) -> None:
    # the values are checked by the encoder against [encoder]'s schema (flirstream.config)
    if not isinstance(request.get("settings"), dict) or not request["settings"]:
        raise WireError("set: 'settings' must be an object like {\"palette\": \"jet\"}")


def _regions_change(request: dict) -> None:
    # each region is checked by flirstream.regions when the encoder applies the change
    put, delete = request.get("put", []), request.get("delete", [])
    if not isinstance(put, list) or not isinstance(delete, list) or not (put or delete):
        raise WireError("regions: expected \"put\": [{\"name\": NAME, \"box\": [X0, Y0, X1, Y1]} "
                        "or {..., \"spot\": [X, Y]}, ...] and/or \"delete\": [NAME, ...]")


# op -> its validator (a field an op does not know is ignored, as it always was)
_CONTROL_CHECKS: dict[str, Any] = {
    "set": _settings_change,
    "get": lambda m: None,
    "viewers": _viewer_count,
    "regions": _regions_change,
}


def check_control_request(message: Any) -> dict:
    """An encoder control request if it follows the schema above, else WireError naming the
    problem."""
    if not isinstance(message, dict):
        raise WireError("control request is not a JSON object")
    op = message.get("op")
    if op not in _CONTROL_CHECKS:
        raise WireError(f"unknown op {op!r} (expected {', '.join(CONTROL_OPS)})")
    _CONTROL_CHECKS[op](message)
    return message


def control_request(op: str, **fields: Any) -> dict:
    """A checked encoder control request, e.g. control_request("viewers", count=2)."""
    return check_control_request({"op": op, **fields})


def control_reply(error: str = "", **fields: Any) -> dict:
    """The encoder's reply: {"ok": true, fields...} or {"ok": false, "error": ...} (the encoder
    adds the request's "id" and packs it with pack_control)."""
    return {"ok": False, "error": error} if error else {"ok": True, **fields}


def check_control_reply(reply: dict) -> dict:
    """An encoder's reply (as unpack_control gave it) if it follows the schema, else WireError."""
    if not isinstance(reply.get("ok"), bool):
        raise WireError(f"control reply 'ok' is {reply.get('ok')!r:.40}, expected true or false")
    if reply["ok"] is False and not isinstance(reply.get("error"), str):
        raise WireError("control reply refuses without an 'error' text")
    if reply.get("settings") is not None:
        check_settings(reply["settings"])
    if reply.get("watched") is not None and not isinstance(reply["watched"], bool):
        raise WireError(f"control reply 'watched' is {reply['watched']!r:.40}, expected a flag")
    if reply.get("regions") is not None:
        check_regions(reply["regions"])
    return reply


# ---------------------------------------------------------------- status

STATUS_STAGES = ("capture", "encoder")
# field -> longest text allowed (None: the field is not text)
_STATUS_TEXTS = {"state": 32, "detail": 2000, "source": 1000, "sensor": 32, "last_error": 2000,
                 "scheduling": 500}
_STATUS_FIELDS = {"v", "t", "stage", "counters", "settings", "regions", "camera", *_STATUS_TEXTS}
MAX_MAP_ITEMS = 64  # counters / settings
MAX_NAME_CHARS = 64
MAX_SETTING_CHARS = 200


def _status_map(header: dict, name: str, scalar: Any, what: str) -> None:
    value = header.get(name)
    if value is None:
        return
    if not isinstance(value, dict) or len(value) > MAX_MAP_ITEMS:
        raise WireError(f"status field {name!r} is not an object of at most {MAX_MAP_ITEMS} items")
    for key, item in value.items():
        if len(key) > MAX_NAME_CHARS or not scalar(item):
            raise WireError(f"status field {name!r}: {key[:MAX_NAME_CHARS]!r} is {item!r:.60}, "
                            f"expected {what}")


def _counter(value: Any) -> bool:
    return isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value))


def _setting(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_SETTING_CHARS


MAX_REGIONS = 64  # the encoder's regions (server.conf's and drawn ones) in its status
_REGION_KEYS = {"name": str, "kind": str, "source": str, "spot": list, "box": list}


def check_regions(regions: Any) -> list:
    """The encoder's region list (in its status): [{"name", "kind", "spot" | "box", "source"}]
    with short texts and at most four whole-number coordinates; flirstream.regions checks more."""
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise WireError(f"status field 'regions' is not a list of at most {MAX_REGIONS} regions")
    for region in regions:
        if not isinstance(region, dict) or not isinstance(region.get("name"), str) or any(
                key not in _REGION_KEYS or not isinstance(value, _REGION_KEYS[key])
                or (isinstance(value, str) and len(value) > MAX_NAME_CHARS)
                or (isinstance(value, list) and (len(value) > 4 or not all(
                    isinstance(c, int) and not isinstance(c, bool) for c in value)))
                for key, value in region.items()):
            raise WireError(f"status field 'regions': {region!r:.80} is not a region")
    return regions


def _camera_value(value: Any) -> bool:
    """A value of the camera dict: null, a flag, a finite number or a short text."""
    return value is None or _counter(value) or (isinstance(value, str) and len(value) <= 500)


def check_settings(settings: Any) -> dict:
    """The encoder's settings (in a status or a control reply): a small map of names to texts."""
    _status_map({"settings": settings}, "settings", _setting,
                f"text of at most {MAX_SETTING_CHARS} characters")
    return settings


def check_status(header: dict) -> dict:
    """The status header itself if it follows the schema, else WireError naming the field."""
    if header.get("v") != VERSION:
        raise WireError(f"wire format version {header.get('v')!r}, this program speaks {VERSION}")
    unknown = set(header) - _STATUS_FIELDS
    if unknown:
        raise WireError(f"status has unknown fields {sorted(unknown)[:5]}")
    if header.get("stage") not in STATUS_STAGES:
        raise WireError(f"status field 'stage' is {header.get('stage')!r:.40}, expected one of "
                        f"{', '.join(STATUS_STAGES)}")
    t = header.get("t")
    if not _counter(t) or isinstance(t, bool) or t < 0:
        raise WireError(f"status field 't' is {t!r:.40}, expected seconds since 1970")
    for name, most in _STATUS_TEXTS.items():
        value = header.get(name)
        if name == "state" or value is not None:
            if not isinstance(value, str) or len(value) > most:
                raise WireError(f"status field {name!r} is {value!r:.60}, expected text of at "
                                f"most {most} characters")
    _status_map(header, "counters", _counter, "a finite number")
    _status_map(header, "settings", _setting, f"text of at most {MAX_SETTING_CHARS} characters")
    if header.get("regions") is not None:
        check_regions(header["regions"])
    _status_map(header, "camera", _camera_value, "null, a flag, a number or a short text")
    return header


def status_header(stage: str, state: str, detail: str = "", t: float = 0.0,
                  **extra: Any) -> dict:
    """A checked status header (WireError if a field breaks the schema)."""
    return check_status({"v": VERSION, "t": t, "stage": stage, "state": state, "detail": detail,
                         **extra})


def pack_status(stage: str, state: str, detail: str = "", t: float = 0.0,
                **extra: Any) -> list[Buffer]:
    return [STATUS_TOPIC, _dump(status_header(stage, state, detail, t, **extra))]


def unpack_status(parts: Sequence[Any]) -> dict:
    topic, head = _parts(parts, STATUS_TOPIC, 2)
    return check_status(_load(head))


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


def check_camera_reply(reply: dict) -> dict:
    """Capture's reply (as unpack_control gave it) if it follows the schema, else WireError."""
    if not isinstance(reply.get("ok"), bool):
        raise WireError(f"camera reply 'ok' is {reply.get('ok')!r:.40}, expected true or false")
    if reply["ok"] and reply.get("camera") is not None:
        _status_map(reply, "camera", _camera_value, "null, a flag, a number or a short text")
    return reply


def topic_of(parts: Sequence[Any]) -> bytes:
    """The topic of a received message (to tell raw/image frames from status)."""
    first = parts[0]
    return bytes(first.buffer if hasattr(first, "buffer") else first)
