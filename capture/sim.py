"""A simulated Lepton: a moving thermal scene, sent as the VoSPI bytes a real sensor produces.

Pure generator of bytes (no clock): each next_period() returns what the SPI bus carries during one
VoSPI frame period - a few discard packets, then the frame (4 segments with TTT on a Lepton 3,
telemetry lines when configured). Pixels are TLinear values (kelvin / kelvin_per_count). Each scene
frame is sent `unique_every` times, like the real sensor (3: ~8.7 unique frames per second out of
~26.5). Faults can be injected for tests: corrupted packets, lost packets, invalid (TTT = 0)
segments and runs of garbage bytes.

With a simulated CCI device attached (`cci=capture.cci_sim.SimulatedCCI(...)`) the simulator
obeys the camera's settings as a Lepton 3.5 would (see camera_output): telemetry on / off and
header / footer change the packet layout; an FFC freezes the picture while in progress; the gain
mode limits the range (high gain about -10..140 C, low gain up to about 400 C at 0.1 K per count);
the flux parameters (emissivity, background temperature, ...) change the reported temperatures;
AGC on gives 8-bit values; TLinear or radiometry off gives raw counts. Telemetry rows carry all of
it (capture.telemetry.build).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from flirstream.wire import KELVIN_AT_0C

from . import telemetry as tm
from . import vospi
from .cci import FluxParameters
from .scene import SensorNoise



@dataclass
class Faults:
    """Probabilities of faults: `crc` and `lost` per packet, the others per frame period."""
    crc: float = 0.0               # flip 1-3 CRC-covered bits of a packet
    lost: float = 0.0              # a packet never arrives
    invalid_segments: float = 0.0  # an invalid (TTT = 0) Lepton 3 segment before the frame
    garbage: float = 0.0           # random bytes before the frame (misaligning the stream)
    garbage_bytes: int = 1500      # at most this many


class SimulatedLepton:
    """See the module docstring. `last_image` is the image of the last frame sent and
    `last_intact` says whether its packets went out unharmed."""

    def __init__(self, sensor: str = "lepton3", telemetry: str = "off", unique_every: int = 3,
                 kelvin_per_count: float = 0.01, fps: float = 26.5, seed: Optional[int] = 0,
                 faults: Optional[Faults] = None, discards: tuple[int, int] = (2, 12),
                 cci=None, hot_c: float = 70.0, scene_emissivity: float = 1.0,
                 scene_reflected_k: float = 295.15):
        if sensor not in vospi.SENSORS:
            raise ValueError(f"sensor {sensor!r}: expected one of {', '.join(vospi.SENSORS)}")
        if unique_every < 1:
            raise ValueError("unique_every must be at least 1")
        self.sensor = sensor
        self.telemetry = telemetry
        self.unique_every = unique_every
        self.kelvin_per_count = kelvin_per_count
        self.fps = fps
        self.faults = faults or Faults()
        self.discards = discards
        self.rng = np.random.default_rng(seed)
        self.rows, self.cols = vospi.SENSORS[sensor]
        self.frame_counter = 0
        self.last_image: Optional[np.ndarray] = None
        self.last_intact = True
        y, x = np.mgrid[0:self.rows, 0:self.cols]
        self._x = x / (self.cols - 1)  # 0..1
        self._y = y / (self.rows - 1)
        self._scene_index = -1
        self._scene: Optional[np.ndarray] = None
        self._ids = vospi.segment_ids(sensor, telemetry)
        self._ids_mode = telemetry
        self._noise = SensorNoise(self.rows, self.cols, seed)
        # The scene's physics (used with a CCI device): the hot spot's mean temperature, the
        # true emissivity of everything in view and the temperature it reflects.
        self.hot_c = hot_c
        self.scene_emissivity = scene_emissivity
        self.scene_reflected_k = scene_reflected_k
        self.cci = cci
        self.last_true_k: Optional[np.ndarray] = None  # true scene temperatures (with cci)
        self._output: Optional[np.ndarray] = None       # the camera's last picture (with cci)
        if cci is not None:
            if telemetry not in vospi.TELEMETRY_MODES:
                raise ValueError(f"telemetry {telemetry!r}: expected one of "
                                 f"{', '.join(vospi.TELEMETRY_MODES)}")
            cci.set_power_on(telemetry_enabled=telemetry != "off",
                             telemetry_location=1 if telemetry == "footer" else 0,
                             tlinear_resolution=1 if kelvin_per_count < 0.05 else 0)

    # -- the scene

    def scene(self, index: int) -> np.ndarray:
        """Scene frame `index` as TLinear counts, (rows, cols) uint16."""
        counts = np.rint((self.scene_celsius(index) + KELVIN_AT_0C) / self.kelvin_per_count)
        return np.clip(counts, 0, 65535).astype(np.uint16)

    def scene_celsius(self, index: int) -> np.ndarray:
        """The true temperatures of scene frame `index` (noise included), (rows, cols) float."""
        t = index * self.unique_every / self.fps  # seconds
        x, y = self._x, self._y
        celsius = 20.0 + 2.5 * x + 1.5 * y  # background: 20..24 C across the view
        # A warm body (~34 C) walking left and right: an ellipse with a soft edge.
        bx = 0.5 + 0.3 * math.sin(0.4 * t)
        d = ((x - bx) / 0.13) ** 2 + ((y - 0.6) / 0.35) ** 2
        body = 1.0 / (1.0 + np.exp((d - 1.0) * 8.0))
        celsius = celsius + body * (34.0 - celsius)
        # A hot spot (60-80 C, e.g. a soldering iron tip) circling.
        hx = 0.5 + 0.25 * math.cos(0.7 * t)
        hy = 0.35 + 0.2 * math.sin(0.7 * t)
        h = ((x - hx) * self.cols) ** 2 + ((y - hy) * self.rows) ** 2
        hot = self.hot_c + 10.0 * math.sin(0.25 * t)
        spot = np.exp(-h / (2 * (self.cols / 60.0) ** 2))
        celsius = celsius + spot * (hot - celsius)
        return celsius + self._noise.kelvin(t)  # a real Lepton's texture and noise (scene.py)

    # -- the byte stream

    def next_period(self) -> bytes:
        """The bytes of one VoSPI frame period: discards, then the next frame (faults applied)."""
        index = self.frame_counter // self.unique_every
        if self.cci is not None:
            image = self._camera_frame(index)
        else:
            if index != self._scene_index:
                self._scene = self.scene(index)
                self._scene_index = index
            image = self._scene
        f = self.faults
        parts = [vospi.discard_packets(int(self.rng.integers(*self.discards)))]
        if f.garbage and self.rng.random() < f.garbage:
            size = int(self.rng.integers(1, f.garbage_bytes + 1))
            parts.append(self.rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        if f.invalid_segments and self.sensor == "lepton3" and self.rng.random() < f.invalid_segments:
            parts.append(vospi.invalid_segment(self.sensor, self.telemetry))
        frame = self._frame_bytes(image)
        intact = True
        if f.crc or f.lost:
            frame, intact = self._damage(frame)
        parts.append(frame)
        self.last_image = image
        self.last_intact = intact
        self.frame_counter += 1
        return b"".join(parts)

    def _frame_bytes(self, image: np.ndarray) -> bytes:
        if self.cci is not None:
            return self._camera_frame_bytes(image)
        t = self.frame_counter / self.fps
        return vospi.encode_frame(image, self.sensor, self.telemetry,
                                  frame_counter=self.frame_counter,
                                  fpa_temp_k=300.0 + 0.5 * math.sin(t / 60.0), ffc_state=3,
                                  time_ms=int(t * 1000))

    def _damage(self, frame: bytes) -> tuple[bytes, bool]:
        packets = np.frombuffer(frame, dtype=np.uint8).reshape(-1, vospi.PACKET_BYTES).copy()
        n = len(packets)
        f = self.faults
        corrupt = np.flatnonzero(self.rng.random(n) < f.crc)
        for i in corrupt.tolist():
            # Only bits the CRC covers (not the ID's top nibble, which carries TTT unprotected).
            for _ in range(int(self.rng.integers(1, 4))):
                bit = int(self.rng.integers(4, vospi.PACKET_BYTES * 8))
                packets[i, bit // 8] ^= 0x80 >> (bit % 8)
        keep = self.rng.random(n) >= f.lost
        intact = bool(keep.all()) and corrupt.size == 0
        return packets[keep].tobytes(), intact

    # -- with a CCI device: the camera's settings decide what goes out

    def _camera_frame(self, index: int) -> np.ndarray:
        with self.cci.lock:  # a control thread may be changing settings meanwhile
            return self._camera_frame_locked(index)

    def _camera_frame_locked(self, index: int) -> np.ndarray:
        dev = self.cci
        dev.update()
        mode = dev.telemetry_mode  # the packet layout follows the camera's telemetry setting
        if mode != self._ids_mode:
            self._ids = vospi.segment_ids(self.sensor, mode)
            self._ids_mode = mode
        self.telemetry = mode
        if index != self._scene_index or self._output is None:
            self._scene_index = index
            true_k = self.scene_celsius(index) + KELVIN_AT_0C
            self.last_true_k = true_k
            if not (dev.frozen and self._output is not None):
                self._output = camera_output(true_k, dev, self.scene_emissivity,
                                             self.scene_reflected_k)
        return self._output

    def camera_telemetry(self, image: np.ndarray) -> tm.Telemetry:
        """The telemetry rows' values for a frame going out now."""
        dev = self.cci
        now = dev.clock()
        s = dev.state
        flux = FluxParameters.from_words(s.flux)
        r0, c0, r1, c1 = s.spotmeter_roi
        spot = image[r0:r1 + 1, c0:c1 + 1]
        g = dev.software
        return tm.Telemetry(
            uptime_ms=dev.uptime_ms(now),
            status=tm.status_word(dev.ffc_state, dev.ffc_desired(now), s.agc),
            serial=dev.serial,
            software_revision=(g[1] << 8 | g[2], g[0], g[4] << 8 | g[5], g[3]),
            frame_counter=self.frame_counter // self.unique_every,
            frame_mean=int(image.mean()) if image.size else 0,
            fpa_temp_k=dev.fpa_temp_k(now), housing_temp_k=dev.housing_temp_k(now),
            fpa_temp_at_ffc_k=dev.ffc_fpa_k, time_at_ffc_ms=dev.ffc_time_ms,
            housing_temp_at_ffc_k=dev.ffc_fpa_k - 0.7,
            emissivity=flux.emissivity, background_k=flux.background_k,
            atmosphere_transmission=flux.atmosphere_transmission,
            atmosphere_k=flux.atmosphere_k, window_transmission=flux.window_transmission,
            window_reflection=flux.window_reflection, window_k=flux.window_k,
            window_reflected_k=flux.reflected_k,
            gain_mode=tm.GAIN_MODES[s.gain_mode],
            effective_gain_mode=tm.GAIN_MODES[dev.effective_gain],
            tlinear_enabled=dev.tlinear_output, tlinear_resolution=dev.kelvin_per_count,
            spotmeter_mean=int(spot.mean()), spotmeter_max=int(spot.max()),
            spotmeter_min=int(spot.min()), spotmeter_population=int(spot.size),
            spotmeter_roi=tuple(s.spotmeter_roi))

    def _camera_frame_bytes(self, image: np.ndarray) -> bytes:
        mode = self._ids_mode
        words = None
        if mode != "off":
            with self.cci.lock:
                rows = tm.build(self.camera_telemetry(image))
            if self.sensor == "lepton3":  # the fourth telemetry packet is reserved
                rows = np.vstack((rows, np.zeros((1, tm.ROW_WORDS), dtype=np.uint16)))
            words = rows
        payload = vospi.frame_payload(image, self.sensor, mode, words)
        return vospi.build_packets(self._ids, payload)


# ---------------------------------------------------------------- the camera's signal chain

# Band radiance of a blackbody, approximated by Planck's law at 10 um (the middle of the
# Lepton's 8-14 um band), in relative units: W(T) = 1 / (exp(c2 / (lambda T)) - 1).
C2_OVER_LAMBDA = 14388.0 / 10.0  # c2 = 14388 um K, lambda = 10 um

# Reported range per effective gain (Lepton 3.5 datasheet: high gain -10..140 C, low gain
# -10..400 C), in kelvin.
GAIN_RANGE_K = {0: (263.15, 413.15), 1: (263.15, 673.15)}
RAW_COUNTS_PER_K = {0: 20.0, 1: 5.0}  # raw 14-bit counts: ~50 mK per count in high gain


def radiance(kelvin):
    return 1.0 / np.expm1(C2_OVER_LAMBDA / np.asarray(kelvin, dtype=np.float64))


def radiance_temperature(w):
    """The inverse of radiance(); W <= 0 (no physical temperature) gives 1 K."""
    w = np.asarray(w, dtype=np.float64)
    out = np.full(w.shape, 1.0)
    ok = w > 0
    out[ok] = C2_OVER_LAMBDA / np.log1p(1.0 / w[ok])
    return out


def reported_temperature(true_k, scene_emissivity: float, scene_reflected_k: float,
                         flux: FluxParameters):
    """What a radiometric Lepton reports for objects at `true_k`.

    The world: an object of emissivity e0 at T sends e0 W(T) + (1 - e0) W(Trefl0) (the rest is
    what it reflects); the simulated world has no window and a clear atmosphere, so that is the
    flux the sensor measures (W_meas). The camera inverts its flux-linear model with the
    parameters it was given (FLIR's radiometry model, parameters of LEP_RAD_FLUX_LINEAR_PARAMS):
      W_meas = tw [ta (e W(Tobj) + (1 - e) W(Tbkg)) + (1 - ta) W(Tatm)]
               + (1 - tw - rw) W(Twin) + rw W(Trefl)
    solved for Tobj. With the defaults (e = tw = ta = 1, rw = 0) a blackbody's temperature comes
    back unchanged; set e = e0 and Tbkg = Trefl0 and any object's true temperature comes back.
    """
    f = flux
    w_meas = (scene_emissivity * radiance(true_k)
              + (1.0 - scene_emissivity) * radiance(scene_reflected_k))
    w = (w_meas - (1.0 - f.window_transmission - f.window_reflection) * radiance(f.window_k)
         - f.window_reflection * radiance(f.reflected_k)) / f.window_transmission
    w = (w - (1.0 - f.atmosphere_transmission) * radiance(f.atmosphere_k)) \
        / f.atmosphere_transmission
    w_obj = (w - (1.0 - f.emissivity) * radiance(f.background_k)) / f.emissivity
    return radiance_temperature(w_obj), radiance_temperature(w_meas)


def agc_8bit(kelvin: np.ndarray, policy: int) -> np.ndarray:
    """The Lepton's AGC output scaled to 8 bits: linear (policy 0) or histogram equalised (1)."""
    if policy == 0:
        lo, hi = float(kelvin.min()), float(kelvin.max())
        scaled = (kelvin - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(kelvin)
        return np.rint(scaled).astype(np.uint16)
    ranks = np.argsort(np.argsort(kelvin, axis=None, kind="stable"), kind="stable")
    return (ranks * 256 // kelvin.size).reshape(kelvin.shape).astype(np.uint16)


def camera_output(true_k: np.ndarray, dev, scene_emissivity: float = 1.0,
                  scene_reflected_k: float = 295.15) -> np.ndarray:
    """The picture a Lepton with the CCI device's settings sends for a scene at `true_k`."""
    s = dev.state
    flux = FluxParameters.from_words(s.flux)
    reported, apparent = reported_temperature(true_k, scene_emissivity, scene_reflected_k, flux)
    gain = dev.update_gain(lambda c: float(np.mean(reported > c + KELVIN_AT_0C)))
    lo, hi = GAIN_RANGE_K[gain]
    reported = np.clip(reported, lo, hi)
    if s.agc:
        return agc_8bit(reported, s.agc_policy)
    if dev.tlinear_output:
        counts = np.rint(reported / dev.kelvin_per_count)
        return np.clip(counts, 0, 65535).astype(np.uint16)
    fpa = dev.fpa_temp_k()
    counts = np.rint(8192 + RAW_COUNTS_PER_K[gain] * (np.clip(apparent, lo, hi) - fpa))
    return np.clip(counts, 0, 16383).astype(np.uint16)
