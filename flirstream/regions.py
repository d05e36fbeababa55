"""Regions of interest (spots and boxes) and the alarm rules on them: parsed from server.conf's
`[roi:NAME]` / `[alarm:NAME]` sections, measured on every frame. Plain code, no sockets.

    regions, alarms = from_parser(parser, "server.conf", sensor=(160, 120))
    reading = measure(pixels, regions.values(), celsius(0.01))
    reading["regions"]["kiln"]["max"], reading["frame"]["centre"]

Coordinates are sensor pixels (x = column, y = row, inclusive) as the camera delivers them, before
[encoder] rotate / flip, so a region stays on the same object when the picture is turned.
`to_display` maps a region to the turned picture (the orientation encoder.render.orient produces).
"""
from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import urlsplit

import numpy as np

from .config import BadValue, ConfigError, number
from .wire import KELVIN_AT_0C

SENSORS = {"lepton3": (160, 120), "lepton2": (80, 60)}  # (columns, rows)
ROI_PREFIX = "roi:"
ALARM_PREFIX = "alarm:"
ROI_KEYS = ("spot", "box")
ALARM_KEYS = ("roi", "above", "below", "for_s", "hysteresis", "webhook")
# Names end up in MQTT topics, Home Assistant unique_ids and Prometheus labels: keep them plain.
NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
FOR_S_MAX = 86_400.0
HYSTERESIS_MAX = 100.0
TEMPERATURE_RANGE = (-KELVIN_AT_0C, 1000.0)


@dataclass(frozen=True)
class Region:
    """A spot (x0 == x1 and y0 == y1) or a box, inclusive pixel coordinates."""

    name: str
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def kind(self) -> str:
        return "spot" if (self.x0, self.y0) == (self.x1, self.y1) else "box"

    @property
    def spot(self) -> bool:
        return self.kind == "spot"

    def as_dict(self) -> dict:
        """JSON form: {"name", "kind", "spot": [x, y]} or {"name", "kind", "box": [x0, y0, x1, y1]}."""
        if self.spot:
            return {"name": self.name, "kind": "spot", "spot": [self.x0, self.y0]}
        return {"name": self.name, "kind": "box", "box": [self.x0, self.y0, self.x1, self.y1]}


@dataclass(frozen=True)
class AlarmRule:
    """`[alarm:NAME]`: on a region's max (above) or min (below), or the whole frame's (roi None)."""

    name: str
    roi: Optional[str]
    direction: str  # "above" or "below"
    threshold: float  # °C
    for_s: float = 0.0
    hysteresis: float = 1.0
    webhook: Optional[str] = None

    @property
    def stat(self) -> str:
        """The reading compared: the hottest pixel for `above`, the coldest for `below`."""
        return "max" if self.direction == "above" else "min"

    def as_dict(self) -> dict:
        return {"name": self.name, "roi": self.roi, self.direction: self.threshold,
                "for_s": self.for_s, "hysteresis": self.hysteresis, "webhook": self.webhook}


# ---------------------------------------------------------------- parsing

def _integers(text: str, count: int) -> list[int]:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if len(parts) != count:
        raise BadValue("")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise BadValue("") from None


def parse_spot(text: str, sensor: tuple[int, int]) -> tuple[int, int, int, int]:
    cols, rows = sensor
    expected = f"expected 'X, Y' with X from 0 to {cols - 1} and Y from 0 to {rows - 1}"
    try:
        x, y = _integers(text, 2)
    except BadValue:
        raise BadValue(expected) from None
    if not (0 <= x < cols and 0 <= y < rows):
        raise BadValue(expected + f" (the {cols}x{rows} sensor)")
    return x, y, x, y


def parse_box(text: str, sensor: tuple[int, int]) -> tuple[int, int, int, int]:
    cols, rows = sensor
    expected = (f"expected 'X0, Y0, X1, Y1' with X0 <= X1 from 0 to {cols - 1} and Y0 <= Y1 from 0 "
                f"to {rows - 1}")
    try:
        x0, y0, x1, y1 = _integers(text, 4)
    except BadValue:
        raise BadValue(expected) from None
    if not (0 <= x0 <= x1 < cols and 0 <= y0 <= y1 < rows):
        raise BadValue(expected + f" (the {cols}x{rows} sensor)")
    return x0, y0, x1, y1


def parse_webhook(text: str) -> Optional[str]:
    value = text.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise BadValue("expected an http:// or https:// URL")
    return value


_temperature = number(*TEMPERATURE_RANGE, what="degrees C")


def region_from_section(name: str, values: Mapping[str, str], sensor: tuple[int, int],
                        where: str = "setting") -> Region:
    """One `[roi:NAME]` section (or the same keys from the viewer) -> Region; ConfigError names the
    file, section, key and value."""
    section = ROI_PREFIX + name
    _check_name(name, section, where)
    for key in values:
        if key not in ROI_KEYS:  # its value is not shown: it may be a misspelt secret
            raise ConfigError(f"{where}: [{section}] {key}: unknown key (expected spot or box)")
    given = [k for k in ROI_KEYS if k in values]
    if len(given) != 1:
        raise ConfigError(f"{where}: [{section}]: expected exactly one of spot = X, Y or "
                          f"box = X0, Y0, X1, Y1")
    key = given[0]
    raw = values[key]
    try:
        coords = (parse_spot if key == "spot" else parse_box)(raw, sensor)
    except BadValue as exc:
        raise ConfigError(f"{where}: [{section}] {key} = {raw.strip()!r}: {exc}") from None
    return Region(name, *coords)


def region_from_dict(data: Any, sensor: tuple[int, int], where: str = "region") -> Region:
    """The JSON form (Region.as_dict, e.g. drawn in the viewer) -> Region, checked exactly like a
    [roi:NAME] section."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{where}: expected {{\"name\": NAME, \"spot\": [X, Y]}} or "
                          f"{{\"name\": NAME, \"box\": [X0, Y0, X1, Y1]}}")
    values = {}
    for key in ROI_KEYS:
        if key in data:
            coords = data[key]
            if not (isinstance(coords, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                                     for c in coords)):
                raise ConfigError(f"{where}: [{ROI_PREFIX}{data['name']}] {key} = {coords!r}: "
                                  f"expected a list of whole numbers")
            values[key] = ", ".join(str(c) for c in coords)
    return region_from_section(data["name"], values, sensor, where)


def alarm_from_section(name: str, values: Mapping[str, str], regions: Mapping[str, Region],
                       where: str = "setting") -> AlarmRule:
    """One `[alarm:NAME]` section -> AlarmRule; `roi` must name one of `regions` (empty: the whole
    frame)."""
    section = ALARM_PREFIX + name
    _check_name(name, section, where)

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: [{section}] {key} = {values[key].strip()!r}: {why}")

    for key in values:
        if key not in ALARM_KEYS:  # its value is not shown: a misspelt `webhok =` holds a secret
            raise ConfigError(f"{where}: [{section}] {key}: unknown key "
                              f"(expected one of {', '.join(ALARM_KEYS)})")
    roi = values.get("roi", "").strip() or None
    if roi is not None and roi not in regions:
        known = ", ".join(sorted(regions)) or "none are defined"
        raise fail("roi", f"no such region (expected the NAME of a [roi:NAME] section: {known}; "
                          f"or empty for the whole frame)")
    given = [k for k in ("above", "below") if k in values]
    if len(given) != 1:
        raise ConfigError(f"{where}: [{section}]: expected exactly one of above = °C or below = °C")
    direction = given[0]
    parsed: dict[str, Any] = {}
    parsers: dict[str, Callable[[str], Any]] = {
        direction: _temperature, "for_s": number(0.0, FOR_S_MAX),
        "hysteresis": number(0.0, HYSTERESIS_MAX), "webhook": parse_webhook}
    for key, parse in parsers.items():
        if key in values:
            try:
                parsed[key] = parse(values[key])
            except BadValue as exc:
                raise fail(key, str(exc)) from None
    return AlarmRule(name=name, roi=roi, direction=direction, threshold=parsed[direction],
                     for_s=parsed.get("for_s", 0.0), hysteresis=parsed.get("hysteresis", 1.0),
                     webhook=parsed.get("webhook"))


def _check_name(name: str, section: str, where: str) -> None:
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: [{section}]: expected a NAME of 1 to 40 letters, digits, _ or -")


def is_region_section(section: str) -> bool:
    """True for the sections this module reads (config.py skips them in its schema check)."""
    return section.startswith(ROI_PREFIX) or section.startswith(ALARM_PREFIX)


def from_parser(parser: configparser.ConfigParser, where: str, sensor: tuple[int, int] | str
                ) -> tuple[dict[str, Region], dict[str, AlarmRule]]:
    """Every `[roi:NAME]` and `[alarm:NAME]` of a read server.conf, in file order. `sensor` is
    (columns, rows) or a [capture] sensor name."""
    if isinstance(sensor, str):
        sensor = SENSORS[sensor]
    regions: dict[str, Region] = {}
    alarms: dict[str, AlarmRule] = {}
    for section in parser.sections():
        if section.startswith(ROI_PREFIX):
            name = section[len(ROI_PREFIX):]
            regions[name] = region_from_section(name, dict(parser.items(section)), sensor, where)
    for section in parser.sections():
        if section.startswith(ALARM_PREFIX):
            name = section[len(ALARM_PREFIX):]
            alarms[name] = alarm_from_section(name, dict(parser.items(section)), regions, where)
    return regions, alarms


# ---------------------------------------------------------------- measuring

def celsius(kelvin_per_count: float) -> Callable[[float], float]:
    """TLinear counts -> °C (counts are kelvin / kelvin_per_count)."""
    return lambda counts: counts * kelvin_per_count - KELVIN_AT_0C


def counts(value: float) -> float:
    """For frames that are not temperatures: the raw value itself."""
    return float(value)


def _value(to_unit: Callable[[float], float], raw: float) -> float:
    return round(float(to_unit(float(raw))), 2)


def measure(pixels: np.ndarray, regions: Iterable[Region],
            to_celsius: Callable[[float], float]) -> dict:
    """Readings of one frame: {"frame": {min, max, centre}, "regions": {name: {min, max, mean,
    max_xy: [x, y]}}}, values through to_celsius (e.g. celsius(0.01), or counts) rounded to 0.01.
    Regions and max_xy are in the pixels' own coordinates; a region partly outside the frame is
    clipped to it, one wholly outside is left out."""
    rows, cols = pixels.shape
    centre = pixels[(rows - 1) // 2: rows // 2 + 1, (cols - 1) // 2: cols // 2 + 1]
    frame = {"min": _value(to_celsius, pixels.min()), "max": _value(to_celsius, pixels.max()),
             "centre": _value(to_celsius, centre.mean())}
    readings: dict[str, dict] = {}
    for region in regions:
        x0, y0 = max(region.x0, 0), max(region.y0, 0)
        x1, y1 = min(region.x1, cols - 1), min(region.y1, rows - 1)
        if x0 > x1 or y0 > y1:
            continue
        if x0 == x1 and y0 == y1:  # a spot: one pixel, one value
            value = _value(to_celsius, pixels[y0, x0])
            readings[region.name] = {"min": value, "max": value, "mean": value, "max_xy": [x0, y0]}
            continue
        box = pixels[y0:y1 + 1, x0:x1 + 1]
        at = int(box.argmax())
        width = x1 - x0 + 1
        readings[region.name] = {
            "min": _value(to_celsius, box.min()), "max": _value(to_celsius, box.flat[at]),
            "mean": _value(to_celsius, box.mean()), "max_xy": [x0 + at % width, y0 + at // width]}
    return {"frame": frame, "regions": readings}


# ---------------------------------------------------------------- orientation

def point_to_display(x: int, y: int, sensor: tuple[int, int], rotate: int, flip: str
                     ) -> tuple[int, int]:
    """Sensor pixel (x, y) -> the same pixel in the picture rotated clockwise by `rotate`, then
    mirrored by `flip` (as encoder.render.orient turns the frame). sensor = (columns, rows)."""
    cols, rows = sensor
    if rotate == 90:
        x, y, cols, rows = rows - 1 - y, x, rows, cols
    elif rotate == 180:
        x, y = cols - 1 - x, rows - 1 - y
    elif rotate == 270:
        x, y, cols, rows = y, cols - 1 - x, rows, cols
    elif rotate != 0:
        raise ValueError(f"rotate {rotate!r}: expected 0, 90, 180 or 270")
    if flip in ("horizontal", "both"):
        x = cols - 1 - x
    if flip in ("vertical", "both"):
        y = rows - 1 - y
    if flip not in ("none", "horizontal", "vertical", "both"):
        raise ValueError(f"flip {flip!r}: expected none, horizontal, vertical or both")
    return x, y


def to_display(region: Region, sensor: tuple[int, int], rotate: int, flip: str) -> Region:
    """The region in display orientation (its corners turned, then put back in order)."""
    ax, ay = point_to_display(region.x0, region.y0, sensor, rotate, flip)
    bx, by = point_to_display(region.x1, region.y1, sensor, rotate, flip)
    return Region(region.name, min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
