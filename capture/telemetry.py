"""Lepton telemetry rows A, B and C: words -> Telemetry (parse) and Telemetry -> words (build).

Pure code. Layout from the Lepton engineering datasheet's telemetry tables (and
../shared/LEPTON_VOSPI.md, checked against the real rows in ../shared/realdata): 3 rows of 80
16-bit words; 32-bit values are two words, least significant word first. Row A 0 revision, 1-2
uptime ms, 3-4 status, 5-12 serial, 13-16 software revision, 20-21 frame counter, 22 frame mean,
23/24 FPA temperature counts / K x 100, 25/26 housing counts / K x 100, 29 FPA temperature at last
FFC, 30-31 uptime at last FFC, 32 housing temperature at last FFC. Row B 19..26 the radiometric
parameters (in a different order from the CCI flux struct: see ROW_B). Row C 5 gain mode, 6
effective gain mode, 7 gain-mode-desired flag, 48 TLinear enabled, 49 TLinear resolution, 50-53
spotmeter mean / max / min / population, 54-57 spotmeter ROI.

pixel_meaning() says from the telemetry what the frame's pixels are.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from flirstream.wire import KELVIN_AT_0C

ROW_WORDS = 80
ROWS = 3
FFC_STATES = ("never", "imminent", "in progress", "complete")  # status bits 5:4
GAIN_MODES = ("high", "low", "auto")                            # LEP_SYS_GAIN_MODE_E
SCALE = 8192  # emissivity / transmission / reflection: 8192 = 1.0 (LEPTON_RAD.h)

# Status bits (datasheet, telemetry row A words 3-4).
STATUS_FFC_DESIRED = 1 << 3
STATUS_FFC_STATE_SHIFT = 4
STATUS_AGC_ON = 1 << 12
STATUS_SHUTTER_LOCKOUT = 1 << 15
STATUS_OVERTEMP = 1 << 20

# Row B word (0..79) of each radiometric parameter; the datasheet's order, which is NOT the CCI
# flux struct's order (sceneEmissivity, TBkgK, tauWindow, TWindowK, tauAtm, TAtmK, tauReflWindow,
# TReflK in LEPTON_RAD.h).
ROW_B = {"emissivity": 19, "background_k": 20, "atmosphere_transmission": 21,
         "atmosphere_k": 22, "window_transmission": 23, "window_reflection": 24,
         "window_k": 25, "window_reflected_k": 26}
_RATIOS = ("emissivity", "atmosphere_transmission", "window_transmission", "window_reflection")

# Pixel meanings (what pixel_meaning() returns).
KELVIN_X100 = "kelvin_x100"
KELVIN_X10 = "kelvin_x10"
RAW_COUNTS = "raw_counts"
AGC_8BIT = "agc_8bit"
KELVIN_PER_COUNT = {KELVIN_X100: 0.01, KELVIN_X10: 0.1}


@dataclass
class Telemetry:
    """The fields of rows A, B and C people and capture use. Temperatures in kelvin."""
    revision: int = 14
    uptime_ms: int = 0
    status: int = 0
    serial: int = 0                 # words 5-12 (low word first); the first 64 bits
    software_revision: tuple = (0, 0, 0, 0)
    frame_counter: int = 0
    frame_mean: int = 0
    fpa_temp_k: float = 300.0
    housing_temp_k: float = 299.0
    fpa_temp_at_ffc_k: float = 0.0
    time_at_ffc_ms: int = 0
    housing_temp_at_ffc_k: float = 0.0
    emissivity: float = 1.0
    background_k: float = 300.0
    atmosphere_transmission: float = 1.0
    atmosphere_k: float = 300.0
    window_transmission: float = 1.0
    window_reflection: float = 0.0
    window_k: float = 300.0
    window_reflected_k: float = 300.0
    gain_mode: str = "high"
    effective_gain_mode: str = "high"
    gain_mode_desired: bool = False
    tlinear_enabled: bool = False
    tlinear_resolution: float = 0.01  # kelvin per count when TLinear is on
    spotmeter_mean: int = 0
    spotmeter_max: int = 0
    spotmeter_min: int = 0
    spotmeter_population: int = 0
    spotmeter_roi: tuple = (0, 0, 0, 0)  # start row, start col, end row, end col

    # -- status bits

    @property
    def ffc_state(self) -> str:
        return FFC_STATES[(self.status >> STATUS_FFC_STATE_SHIFT) & 0x3]

    @property
    def ffc_desired(self) -> bool:
        return bool(self.status & STATUS_FFC_DESIRED)

    @property
    def agc_on(self) -> bool:
        return bool(self.status & STATUS_AGC_ON)

    @property
    def shutter_lockout(self) -> bool:
        return bool(self.status & STATUS_SHUTTER_LOCKOUT)

    @property
    def overtemp_shutdown_imminent(self) -> bool:
        return bool(self.status & STATUS_OVERTEMP)

    def as_dict(self) -> dict:
        """Every field plus the decoded status bits, temperatures also in C (for JSON / people)."""
        d = asdict(self)
        d["software_revision"] = list(self.software_revision)
        d["spotmeter_roi"] = list(self.spotmeter_roi)
        d.update(ffc_state=self.ffc_state, ffc_desired=self.ffc_desired, agc_on=self.agc_on,
                 shutter_lockout=self.shutter_lockout,
                 overtemp_shutdown_imminent=self.overtemp_shutdown_imminent,
                 pixels=pixel_meaning(self))
        for key in ("fpa_temp_k", "housing_temp_k"):
            d[key.replace("_k", "_c")] = round(d[key] - KELVIN_AT_0C, 2)
        return d


def _u32(w: Sequence[int], i: int) -> int:
    return int(w[i]) | (int(w[i + 1]) << 16)


def _gain(value: int) -> str:
    return GAIN_MODES[value] if 0 <= value < len(GAIN_MODES) else f"unknown ({value})"


def parse(words: Sequence[int]) -> Telemetry:
    """Rows A, B and C (240 words, native integers) -> Telemetry. Raises ValueError if short."""
    w = np.asarray(words, dtype=np.uint16)
    if w.size < ROWS * ROW_WORDS:
        raise ValueError(f"telemetry holds {w.size} words: rows A, B and C are {ROWS * ROW_WORDS}")
    a = [int(x) for x in w[:ROW_WORDS]]
    b = [int(x) for x in w[ROW_WORDS:2 * ROW_WORDS]]
    c = [int(x) for x in w[2 * ROW_WORDS:3 * ROW_WORDS]]
    serial = 0
    for i in range(4):  # words 5..8 hold the 64-bit serial number, low word first
        serial |= a[5 + i] << (16 * i)
    radiometric = {name: (b[i] / SCALE if name in _RATIOS else b[i] / 100.0)
                   for name, i in ROW_B.items()}
    return Telemetry(
        revision=a[0], uptime_ms=_u32(a, 1), status=_u32(a, 3), serial=serial,
        software_revision=tuple(a[13:17]), frame_counter=_u32(a, 20), frame_mean=a[22],
        fpa_temp_k=a[24] / 100.0, housing_temp_k=a[26] / 100.0,
        fpa_temp_at_ffc_k=a[29] / 100.0, time_at_ffc_ms=_u32(a, 30),
        housing_temp_at_ffc_k=a[32] / 100.0,
        gain_mode=_gain(c[5]), effective_gain_mode=_gain(c[6]), gain_mode_desired=bool(c[7]),
        tlinear_enabled=bool(c[48]), tlinear_resolution=0.01 if c[49] == 1 else 0.1,
        spotmeter_mean=c[50], spotmeter_max=c[51], spotmeter_min=c[52],
        spotmeter_population=c[53], spotmeter_roi=tuple(c[54:58]), **radiometric)


def _k100(kelvin: float) -> int:
    return int(round(kelvin * 100)) & 0xFFFF


def build(t: Telemetry) -> np.ndarray:
    """Telemetry -> rows A, B and C as (3, 80) uint16 (the inverse of parse)."""
    rows = np.zeros((ROWS, ROW_WORDS), dtype=np.uint16)
    a, b, c = rows

    def put32(row: np.ndarray, i: int, value: int) -> None:
        row[i], row[i + 1] = value & 0xFFFF, (value >> 16) & 0xFFFF

    a[0] = t.revision
    put32(a, 1, t.uptime_ms)
    put32(a, 3, t.status)
    for i in range(4):
        a[5 + i] = (t.serial >> (16 * i)) & 0xFFFF
    a[13:17] = list(t.software_revision)
    put32(a, 20, t.frame_counter)
    a[22] = t.frame_mean
    a[24] = _k100(t.fpa_temp_k)
    a[26] = _k100(t.housing_temp_k)
    a[29] = _k100(t.fpa_temp_at_ffc_k)
    put32(a, 30, t.time_at_ffc_ms)
    a[32] = _k100(t.housing_temp_at_ffc_k)
    for name, i in ROW_B.items():
        value = getattr(t, name)
        b[i] = int(round(value * SCALE)) if name in _RATIOS else _k100(value)
    c[5] = GAIN_MODES.index(t.gain_mode)
    c[6] = GAIN_MODES.index(t.effective_gain_mode)
    c[7] = int(t.gain_mode_desired)
    c[48] = int(t.tlinear_enabled)
    c[49] = 1 if t.tlinear_resolution < 0.05 else 0
    c[50:54] = [t.spotmeter_mean, t.spotmeter_max, t.spotmeter_min, t.spotmeter_population]
    c[54:58] = list(t.spotmeter_roi)
    return rows


def status_word(ffc_state: str = "complete", ffc_desired: bool = False, agc_on: bool = False,
                shutter_lockout: bool = False, overtemp: bool = False) -> int:
    """The row A status bits for these flags (for building rows)."""
    return ((FFC_STATES.index(ffc_state) << STATUS_FFC_STATE_SHIFT)
            | (STATUS_FFC_DESIRED if ffc_desired else 0) | (STATUS_AGC_ON if agc_on else 0)
            | (STATUS_SHUTTER_LOCKOUT if shutter_lockout else 0)
            | (STATUS_OVERTEMP if overtemp else 0))


def pixel_meaning(t: Optional[Telemetry] = None, *, agc_on: Optional[bool] = None,
                  tlinear_enabled: Optional[bool] = None,
                  tlinear_resolution: Optional[float] = None) -> str:
    """What the pixels of a frame are, as the camera says: from its telemetry, or (telemetry
    off) from the same three facts read over CCI. AGC on wins (the AGC output replaces TLinear:
    8-bit values, as in the tCam agc_on sample); else TLinear on means kelvin x 100 or x 10 by
    the resolution; else raw 14-bit counts (also what a non-radiometric part sends: its row C
    TLinear word is 0)."""
    if t is not None:
        agc_on, tlinear_enabled, tlinear_resolution = (
            t.agc_on, t.tlinear_enabled, t.tlinear_resolution)
    if agc_on is None or tlinear_enabled is None:
        raise ValueError("pixel_meaning needs telemetry or agc_on and tlinear_enabled")
    if agc_on:
        return AGC_8BIT
    if tlinear_enabled:
        if tlinear_resolution is None:
            raise ValueError("TLinear is on: pixel_meaning needs its resolution")
        return KELVIN_X100 if tlinear_resolution < 0.05 else KELVIN_X10
    return RAW_COUNTS
