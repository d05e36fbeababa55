"""The encoder's core: one uint16 frame in, one coloured JPEG (plus statistics) out. No sockets.

    renderer = Renderer(palette="ironbow", agc="linear", size=(640, 480), quality=80)
    jpeg = renderer.render(pixels)           # bytes; renderer.last has stats, range, pixels...
    frame.picture = renderer.render_frame(frame)  # a wire.Picture of a wire.Frame
    renderer.update(palette="jet")           # checked like server.conf, all or nothing

Order of work, chosen for speed: orient the small uint16 frame (so statistics, the forwarded
radiometric frame and the picture all share display orientation), AGC and palette at sensor
resolution, then scale the small BGR image up, then JPEG.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import cv2
import numpy as np

from flirstream import config as configuration
from flirstream.config import ConfigError
from flirstream.wire import KELVIN_AT_0C, Frame, Picture

from . import agc as agcs
from . import palettes

log = logging.getLogger("encoder.render")

AUTO_SCALE = 4  # size = auto: 4x the sensor (640x480 for a Lepton 3)
AUTO_MAX_SIDE = 3840  # as in server.conf's size check

# The [encoder] keys a Renderer owns (pause_when_unwatched belongs to the process around it).
SETTINGS = tuple(k for k in configuration.SCHEMA["encoder"] if k != "pause_when_unwatched")

_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
_FLIP = {"horizontal": 1, "vertical": 0, "both": -1}


def as_text(key: str, value: Any) -> str:
    """A setting value as server.conf would write it (JSON numbers, booleans and lists accepted)."""
    if isinstance(value, str):
        return value
    if key in ("isotherm", "isotherm_colour") and (value is None or isinstance(value, tuple)):
        return _canonical(key, value)  # typed, as cfg.encoder holds it
    if value is None:
        return "auto" if key == "size" else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"{value[0]}x{value[1]}" if key == "size" else f"{value[0]!r}, {value[1]!r}"
    raise ConfigError(f"setting: [encoder] {key} = {value!r}: expected a string as in server.conf, "
                      f"a number or a [low, high] pair")


def _canonical(key: str, value: Any) -> str:
    """A checked value back in server.conf form (what `get` answers)."""
    if key == "isotherm":
        if value is None:
            return "off"
        mode, lo, hi = value
        return f"{mode} {lo:g}" if hi is None else f"{mode} {lo:g} {hi:g}"
    if key == "isotherm_colour":
        return "%02x%02x%02x" % tuple(value)
    if key == "size":
        return "auto" if value is None else f"{value[0]}x{value[1]}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return f"{value[0]:g}, {value[1]:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Parse renderer settings (text or JSON values) through the server.conf schema; ConfigError names
    the first bad one."""
    parsed = {}
    for key, value in settings.items():
        if key not in SETTINGS:
            if key in configuration.SCHEMA["encoder"]:
                raise ConfigError(f"setting: [encoder] {key}: not a rendering setting")
            raise ConfigError(f"setting: [encoder] {key}: unknown key "
                              f"(expected one of {', '.join(configuration.SCHEMA['encoder'])})")
        parsed[key] = configuration.parse_value("encoder", key, as_text(key, value))
    return parsed


@dataclass(frozen=True)
class _Setup:
    """Checked settings plus everything derived from them, swapped in as one object."""

    settings: dict
    text: dict  # the settings as server.conf writes them (every status and control reply has them)
    linear: agcs.LinearAGC
    histogram: agcs.HistogramAGC
    jpeg_params: tuple


class Renderer:
    """Turns uint16 Lepton frames into palette-coloured JPEGs with statistics."""

    def __init__(self, palette: str = "ironbow", agc: str = "linear",
                 clip_percent: tuple = (1.0, 99.0), smoothing: float = 0.8,
                 range_c: tuple = (20.0, 40.0), size: Optional[tuple] = None,
                 interpolation: str = "nearest", rotate: int = 0, flip: str = "none",
                 quality: int = 80, isotherm: Any = "off", isotherm_colour: Any = "00ff00",
                 clock: Callable[[], float] = time.time):
        given = dict(palette=palette, agc=agc, clip_percent=clip_percent, smoothing=smoothing,
                     range_c=range_c, size=size, interpolation=interpolation, rotate=rotate,
                     flip=flip, quality=quality, isotherm=isotherm, isotherm_colour=isotherm_colour)
        self._state = self._build(check(given))
        self._warned_fixed = False
        self.clock = clock  # Picture.t_encoded
        self.last: Optional[Picture] = None

    @classmethod
    def from_settings(cls, section: Any) -> "Renderer":
        """From cfg.encoder (a config Section) or any mapping with the [encoder] keys."""
        values = section.as_dict() if hasattr(section, "as_dict") else dict(section)
        return cls(**{k: v for k, v in values.items() if k in SETTINGS})

    # ------------------------------------------------------------ settings

    @property
    def settings(self) -> dict[str, Any]:
        """The typed settings in use."""
        return dict(self._state.settings)

    def settings_text(self) -> dict[str, str]:
        """The settings in use, as server.conf writes them (what can be sent back to `update`)."""
        return dict(self._state.text)

    def update(self, **settings: Any) -> dict[str, Any]:
        """Change settings, all or nothing: ConfigError (naming the bad value) leaves them as they
        were. Returns the typed settings in use afterwards."""
        merged = {**self._state.settings, **check(settings)}
        state = self._build(merged, previous=self._state)
        self._state = state
        return dict(state.settings)

    def restart(self) -> None:
        """Forget the smoothed AGC range (after a pause, the scene may be a different one)."""
        self._state.linear.reset()

    @staticmethod
    def _build(settings: dict, previous: Optional[_Setup] = None) -> _Setup:
        linear = agcs.LinearAGC(settings["clip_percent"], settings["smoothing"])
        if previous is not None:
            # keep the smoothed range across e.g. a palette change so the picture does not jump
            linear.continue_from(previous.linear)
        return _Setup(settings=dict(settings),
                      text={k: _canonical(k, v) for k, v in settings.items()},
                      linear=linear, histogram=agcs.HistogramAGC(),
                      jpeg_params=(cv2.IMWRITE_JPEG_QUALITY, settings["quality"]))

    # ------------------------------------------------------------ rendering

    def render(self, image: np.ndarray, tlinear: bool = True, kelvin_per_count: float = 0.01) -> bytes:
        """One uint16 frame -> JPEG bytes (details of it in self.last)."""
        return self.render_pixels(image, tlinear, kelvin_per_count).jpeg

    def render_frame(self, frame: Frame) -> Picture:
        """The frame's picture (what goes on the wire as frame.picture)."""
        return self.render_pixels(frame.pixels, frame.tlinear, frame.kelvin_per_count)

    def render_pixels(self, image: np.ndarray, tlinear: bool = True,
                      kelvin_per_count: float = 0.01) -> Picture:
        state = self._state  # one consistent set of settings for the whole frame
        s = state.settings
        if not (isinstance(kelvin_per_count, (int, float)) and 0 < kelvin_per_count < 1000):
            raise ValueError(f"kelvin_per_count {kelvin_per_count!r}: expected a number > 0 "
                             f"(0.01 or 0.1 on a Lepton)")
        pixels = orient(_checked(image), s["rotate"], s["flip"])
        mode, (gray, lo, hi) = self._agc(state, pixels, tlinear, kelvin_per_count)
        size = output_size(pixels.shape, s["size"])
        marked = isotherm_mask(pixels, s["isotherm"], tlinear, kelvin_per_count)
        if marked is None:
            bgr = paint(gray, s["palette"], size, s["interpolation"])
        else:  # colour at sensor resolution, mark the isotherm's pixels, then scale
            small = palettes.colorize(gray, palettes.lut(s["palette"]))
            small[marked] = s["isotherm_colour"][::-1]  # (r, g, b) -> BGR
            bgr = scale(small, size, s["interpolation"])
        ok, encoded = cv2.imencode(".jpg", bgr, state.jpeg_params)
        if not ok:  # pragma: no cover - OpenCV only fails here on impossible images
            raise RuntimeError("OpenCV could not encode the JPEG")
        unit = Units(tlinear, kelvin_per_count)
        if mode == "fixed":
            rng = (float(s["range_c"][0]), float(s["range_c"][1]))
        else:
            rng = (unit.value(lo), unit.value(hi))
        result = Picture(t_encoded=self.clock(), jpeg=encoded.tobytes(), pixels=pixels,
                         width=bgr.shape[1], height=bgr.shape[0], palette=s["palette"], agc=mode,
                         unit=unit.name, range=rng, stats=statistics(pixels, unit), bgr=bgr)
        self.last = result
        return result


    def _agc(self, state: _Setup, pixels: np.ndarray, tlinear: bool,
             kelvin_per_count: float) -> tuple[str, tuple[np.ndarray, float, float]]:
        """(the AGC used, (8-bit image, lo, hi in counts))."""
        mode = state.settings["agc"]
        if mode == "fixed" and not tlinear:
            if not self._warned_fixed:
                log.warning("agc=fixed needs TLinear (radiometric) frames; these are raw counts, "
                            "so linear AGC is used for them")
                self._warned_fixed = True
            mode = "linear"
        if mode == "linear":
            return mode, state.linear(pixels)
        if mode == "histogram":
            return mode, state.histogram(pixels)
        lo_c, hi_c = state.settings["range_c"]
        return mode, agcs.FixedAGC((lo_c + KELVIN_AT_0C) / kelvin_per_count,
                                   (hi_c + KELVIN_AT_0C) / kelvin_per_count)(pixels)


# ---------------------------------------------------------------- steps (also used by the benchmark)

def _checked(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a 2-D uint16 numpy frame, got {type(image).__name__}")
    if image.dtype != np.uint16 or image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a 2-D uint16 frame, got {image.dtype} of shape {image.shape}")
    return image


def orient(pixels: np.ndarray, rotate: int, flip: str) -> np.ndarray:
    """Rotate clockwise, then mirror: the frame as it will be shown."""
    if rotate:
        pixels = cv2.rotate(pixels, _ROTATE[rotate])
    if flip != "none":
        pixels = cv2.flip(pixels, _FLIP[flip])
    return pixels


def isotherm_mask(pixels: np.ndarray, isotherm: Optional[tuple], tlinear: bool,
                  kelvin_per_count: float) -> Optional[np.ndarray]:
    """The pixels an isotherm ("above" T, "below" T, "between" LOW HIGH, degrees C) marks, or None
    when there is none. Only TLinear frames carry temperatures; on raw counts it marks nothing.
    The same float64 arithmetic as web/thermal.js (count * kelvin_per_count - KELVIN_AT_0C, then
    >= / <=), so the browser and the encoder mark the same pixels."""
    if isotherm is None or not tlinear:
        return None
    mode, lo, hi = isotherm
    celsius = pixels.astype(np.float64) * kelvin_per_count - KELVIN_AT_0C
    if mode == "above":
        return celsius >= lo
    if mode == "below":
        return celsius <= lo
    return (celsius >= lo) & (celsius <= hi)


def output_size(shape: tuple, size: Optional[tuple]) -> tuple[int, int]:
    """(width, height) of the picture: the configured size, or 4x the (oriented) frame - less for
    a frame so large that 4x would pass the largest size server.conf allows."""
    if size is not None:
        return int(size[0]), int(size[1])
    factor = max(1, min(AUTO_SCALE, AUTO_MAX_SIDE // max(shape)))
    return shape[1] * factor, shape[0] * factor


def paint(gray: np.ndarray, palette: str, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """8-bit AGC output -> the coloured picture at (width, height)."""
    rows, cols = gray.shape
    width, height = size
    if (interpolation == "nearest" and width % cols == 0 and height % rows == 0
            and width // cols in palettes.WIDE_FACTORS):
        # the usual case (4x, nearest): colour and widen in one LUT call, then repeat whole rows
        wide = palettes.colorize_wide(gray, palettes.wide_table(palette, width // cols))
        return wide if height == rows else np.repeat(wide, height // rows, axis=0)
    return scale(palettes.colorize(gray, palettes.lut(palette)), size, interpolation)


def scale(bgr: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize the coloured image to (width, height)."""
    rows, cols = bgr.shape[:2]
    width, height = size
    if (width, height) == (cols, rows):
        return bgr
    if interpolation == "nearest" and width % cols == 0 and height % rows == 0:
        # Whole-number nearest scaling: OpenCV widens the rows, then numpy repeats whole rows
        # (a plain copy). Same pixels as cv2.resize(INTER_NEAREST), about 3x faster.
        wide = cv2.resize(bgr, (width, rows), interpolation=cv2.INTER_NEAREST)
        return wide if height == rows else np.repeat(wide, height // rows, axis=0)
    return cv2.resize(bgr, (width, height), interpolation=_INTERPOLATION[interpolation])


@dataclass(frozen=True)
class Units:
    """Sensor values -> °C (TLinear) or plain counts."""

    tlinear: bool
    kelvin_per_count: float

    @property
    def name(self) -> str:
        return "C" if self.tlinear else "counts"

    def value(self, counts: float) -> float:
        if self.tlinear:
            return round(counts * self.kelvin_per_count - KELVIN_AT_0C, 2)
        return round(float(counts), 2)


def statistics(pixels: np.ndarray, unit: Units) -> dict:
    """min, max, mean, centre (mean of the middle 1-2 x 1-2 pixels) in unit; min_xy/max_xy as
    (x, y) in pixels, i.e. in display orientation."""
    lo, hi, lo_xy, hi_xy = cv2.minMaxLoc(pixels)  # one call: both extremes and where they are
    mean = cv2.mean(pixels)[0]
    rows, cols = pixels.shape
    # The middle 1-2 x 1-2 pixels read one by one (a slice and a second cv2.mean cost more on the
    # caches a frame's wait leaves cold). With an odd side the same pixel is read twice, and the
    # sum of four uint16 over 4 is exact, so this is the mean of those 1, 2 or 4 pixels exactly.
    item, r0, r1, c0, c1 = pixels.item, (rows - 1) // 2, rows // 2, (cols - 1) // 2, cols // 2
    centre = (item(r0, c0) + item(r0, c1) + item(r1, c0) + item(r1, c1)) / 4
    value = unit.value
    return {"min": value(lo), "max": value(hi), "mean": value(mean), "centre": value(centre),
            "min_xy": [lo_xy[0], lo_xy[1]], "max_xy": [hi_xy[0], hi_xy[1]]}
