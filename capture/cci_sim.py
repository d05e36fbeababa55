"""A simulated Lepton CCI device at register level, behind smbus2's i2c_rdwr seam.

It takes smbus2.i2c_msg objects (or capture.cci.StandInMsg when smbus2 is missing): a write
message sets the register pointer (first two bytes, big-endian) and writes the words after it; a
read message returns words from the pointer on. Writing COMMAND runs the command on the camera
state below with the data in DATA0..15 (or the block buffer at 0xF800 beyond 16 words), holds the
busy bit for `command_s` and leaves the LEP_RESULT in STATUS bits 15..8 as the SDK reads it:
-7 LEP_UNDEFINED_FUNCTION_ERROR for an unknown command ID or a type the command does not have
(also OEM / RAD IDs without the 0x4000 protection bit), -6 LEP_DATA_SIZE_ERROR when DATA_LENGTH
does not match the command's size, -3 LEP_RANGE_ERROR for a value out of its range. A message to
another address fails as the kernel reports a NACK (OSError EREMOTEIO).

The camera state drives capture.sim.SimulatedLepton (see SimulatedLepton(cci=...)): FFC (RUN
0x0240) walks imminent (0.1 s) -> in progress (0.3 s, the picture frozen) -> complete and stamps
the uptime and FPA temperature of the FFC; in auto FFC mode an FFC comes every desired period;
auto gain switches by the thresholds a Lepton 3.5 reports in telemetry row C (high -> low when 25 %
of the pixels pass 115 C, back when fewer than 25 % pass 85 C); with TLinear auto resolution on
(this simulator's power-on setting), low gain reports 0.1 K per count. OEM reboot (RUN 0x4840)
holds busy while it boots (`boot_s`), then everything is back at power-on values.
All times come from `clock` (injectable: tests pass a ManualClock).
"""
from __future__ import annotations

import ctypes
import errno
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import cci
from .cci import GET, I2C_M_RD, RUN, SET

FFC_IMMINENT_S = 0.1   # a commanded FFC: "imminent" this long, then...
FFC_DURATION_S = 0.3   # ... "in progress" (shutter closed, picture frozen) this long
COMMAND_S = 0.002      # busy time of an ordinary command
BOOT_S = 0.8           # busy time of a reboot
AUTO_GAIN = {"population": 0.25, "high_to_low_c": 115.0, "low_to_high_c": 85.0}


class RangeError(Exception):
    """A SET value outside what the command takes (-> LEP_RANGE_ERROR)."""


class ManualClock:
    """A clock that moves only when told to (sleep() advances it): for tests and benchmarks."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)

    advance = sleep


def _u32(value: int) -> list[int]:
    return [value & 0xFFFF, (value >> 16) & 0xFFFF]


def _chars(text: str, words: int) -> list[int]:
    raw = text.encode("ascii").ljust(2 * words, b"\0")[:2 * words]
    return [int.from_bytes(raw[i:i + 2], "little") for i in range(0, 2 * words, 2)]


@dataclass
class CameraState:
    """What a Lepton 3.5 holds at power-on (the values the SDK headers give as defaults)."""
    telemetry_enabled: bool = False
    telemetry_location: int = 0          # 0 header, 1 footer
    radiometry: bool = True
    tlinear: bool = True
    tlinear_resolution: int = 1          # 1 = 0.01 K, 0 = 0.1 K
    tlinear_auto_resolution: bool = True
    gain_mode: int = 0                   # 0 high, 1 low, 2 auto
    agc: bool = False
    agc_policy: int = 1                  # 0 linear, 1 HEQ
    flux: list = field(default_factory=lambda: [8192, 30000, 8192, 30000, 8192, 30000, 0, 30000])
    ffc_mode: int = 1                    # 0 manual, 1 auto, 2 external
    ffc_freeze: bool = True
    ffc_period_ms: int = 300000
    ffc_temp_delta: int = 300
    ffc_imminent_frames: int = 52
    spotmeter_roi: tuple = (59, 79, 60, 80)
    lut: list = field(default_factory=lambda: [0] * 512)


class SimulatedCCI:
    """See the module docstring. `violations` counts commands written while busy (a client
    that waits properly never makes one)."""

    def __init__(self, part_number: str = "500-0771-01", serial: int = 0x0123_4567_89AB_CDEF,
                 software: tuple = (3, 3, 26, 3, 3, 26), address: int = cci.ADDRESS,
                 clock: Callable[[], float] = time.monotonic, command_s: float = COMMAND_S,
                 boot_s: float = BOOT_S, state: Optional[CameraState] = None):
        self.part_number = part_number
        self.model = cci.model_for(part_number)
        self.serial = serial
        self.software = software
        self.address = address
        self.clock = clock
        self.command_s = command_s
        self.boot_s = boot_s
        self._power_on = state or CameraState()
        self.violations = 0
        self.commands: list[tuple[int, int]] = []  # (command word, result) of each command
        self._mem = bytearray(0x10000)
        self._pointer = 0
        self._power_up(clock())
        self._stall_s = 0.0
        self.nack_while_booting = False  # True: no I2C answer at all while booting
        # The capture loop (frames) and a control thread (CCI commands) may share the device.
        self.lock = threading.RLock()

    # -- power

    def _power_up(self, now: float) -> None:
        p = self._power_on
        self.state = CameraState(**{**p.__dict__, "flux": list(p.flux), "lut": list(p.lut)})
        self.boot_at = now
        self.busy_until = now
        self.booting_until = now
        self.result = 0
        self.command_count = 0
        self.effective_gain = 1 if self.state.gain_mode == 1 else 0
        # The FFC the camera makes at power-on.
        self.ffc_state = "complete"
        self.ffc_started = now
        self.ffc_time_ms = 0
        self.ffc_fpa_k = self.fpa_temp_k(now)

    def set_power_on(self, **changes) -> None:
        """Change power-on settings (CameraState fields); the current state takes them too."""
        for key, value in changes.items():
            if not hasattr(self._power_on, key):
                raise ValueError(f"no camera setting {key!r}")
            setattr(self._power_on, key, value)
            setattr(self.state, key, value)

    def stall(self, seconds: float) -> None:
        """The next command holds the busy bit this long (for timeout tests)."""
        self._stall_s = seconds

    # -- time-dependent state

    def uptime_ms(self, now: Optional[float] = None) -> int:
        now = self.clock() if now is None else now
        return max(0, int((now - self.boot_at) * 1000))

    def fpa_temp_k(self, now: Optional[float] = None) -> float:
        now = self.clock() if now is None else now
        return 300.0 + 0.5 * math.sin((now - self.boot_at) / 60.0)

    def housing_temp_k(self, now: Optional[float] = None) -> float:
        return self.fpa_temp_k(now) - 0.7

    def update(self, now: Optional[float] = None) -> None:
        """Advance the FFC and boot state machines to `now`."""
        with self.lock:
            self._update(self.clock() if now is None else now)

    def _update(self, now: float) -> None:
        if self.booting_until > self.boot_at and now >= self.booting_until:
            self._power_up(self.booting_until)
        if self.ffc_state == "complete" and self.state.ffc_mode == 1:
            due = self.ffc_started + self.state.ffc_period_ms / 1000.0
            imminent = self.state.ffc_imminent_frames / 26.5
            if now >= due - imminent:
                self.ffc_state = "imminent"
                self.ffc_started = due
        if self.ffc_state == "imminent" and now >= self.ffc_started:
            self.ffc_state = "in progress"
            self.ffc_time_ms = self.uptime_ms(self.ffc_started)
            self.ffc_fpa_k = self.fpa_temp_k(self.ffc_started)
        if self.ffc_state == "in progress" and now >= self.ffc_started + FFC_DURATION_S:
            self.ffc_state = "complete"

    def start_ffc(self, now: float) -> None:
        if self.ffc_state in ("imminent", "in progress"):
            return
        self.ffc_state = "imminent"
        self.ffc_started = now + FFC_IMMINENT_S

    @property
    def frozen(self) -> bool:
        """The picture is frozen (an FFC in progress with videoFreezeDuringFFC on)."""
        return self.ffc_state == "in progress" and self.state.ffc_freeze

    def ffc_desired(self, now: Optional[float] = None) -> bool:
        """The camera asks for an FFC (manual mode and the desired period has passed)."""
        now = self.clock() if now is None else now
        return (self.state.ffc_mode != 1 and self.ffc_state == "complete"
                and now - self.ffc_started >= self.state.ffc_period_ms / 1000.0)

    def update_gain(self, fraction_above) -> int:
        """Auto gain: `fraction_above(celsius)` is the share of pixels hotter than that.
        Returns the effective gain (0 high, 1 low)."""
        mode = self.state.gain_mode
        if mode in (0, 1):
            self.effective_gain = mode
        elif self.effective_gain == 0:
            if fraction_above(AUTO_GAIN["high_to_low_c"]) >= AUTO_GAIN["population"]:
                self.effective_gain = 1
        elif fraction_above(AUTO_GAIN["low_to_high_c"]) < AUTO_GAIN["population"]:
            self.effective_gain = 0
        return self.effective_gain

    @property
    def kelvin_per_count(self) -> float:
        """The TLinear resolution in effect (auto resolution: 0.1 K in low gain)."""
        s = self.state
        # A fixed gain mode is in effect at once; auto follows the scene (update_gain).
        gain = s.gain_mode if s.gain_mode in (0, 1) else self.effective_gain
        if s.tlinear_auto_resolution and gain == 1:
            return 0.1
        return 0.01 if s.tlinear_resolution == 1 else 0.1

    @property
    def tlinear_output(self) -> bool:
        return self.state.radiometry and self.state.tlinear

    @property
    def telemetry_mode(self) -> str:
        s = self.state
        return "off" if not s.telemetry_enabled else ("header", "footer")[s.telemetry_location]

    # -- the I2C seam

    def i2c_rdwr(self, *msgs) -> None:
        """smbus2's SMBus.i2c_rdwr: run the messages in order (see the module docstring)."""
        with self.lock:
            now = self.clock()
            self._update(now)
            if self.nack_while_booting and now < self.booting_until:
                raise OSError(errno.EREMOTEIO, "Remote I/O error (the camera is booting)")
            self._transfer(msgs, now)

    def _transfer(self, msgs, now: float) -> None:
        for m in msgs:
            if m.addr != self.address:
                raise OSError(errno.EREMOTEIO, f"Remote I/O error (no device at 0x{m.addr:02X})")
            if m.flags & I2C_M_RD:
                data = self._read(self._pointer, m.len, now)
                ctypes.memmove(m.buf, data, m.len)
                self._pointer = (self._pointer + m.len) & 0xFFFF
            else:
                data = ctypes.string_at(m.buf, m.len)
                if len(data) < 2:
                    continue  # a probe: the device acknowledged its address
                self._pointer = int.from_bytes(data[:2], "big")
                for i in range(2, len(data) - 1, 2):
                    self._write_word(self._pointer, int.from_bytes(data[i:i + 2], "big"), now)
                    self._pointer = (self._pointer + 2) & 0xFFFF

    def status_word(self, now: float) -> int:
        if now < self.booting_until:
            return cci.STATUS_BUSY  # booting: busy, not booted
        busy = cci.STATUS_BUSY if now < self.busy_until else 0
        return ((self.result & 0xFF) << 8) | cci.STATUS_BOOTED | cci.STATUS_BOOT_MODE | busy

    def _read(self, address: int, length: int, now: float) -> bytes:
        out = bytearray()
        for i in range(0, length, 2):
            a = (address + i) & 0xFFFF
            word = self.status_word(now) if a == cci.REG_STATUS else \
                int.from_bytes(self._mem[a:a + 2], "big")
            out += word.to_bytes(2, "big")
        return bytes(out[:length])

    def _write_word(self, address: int, word: int, now: float) -> None:
        if address == cci.REG_STATUS:
            return  # read-only
        self._mem[address:address + 2] = word.to_bytes(2, "big")
        if address == cci.REG_COMMAND:
            if now < self.busy_until or now < self.booting_until:
                self.violations += 1
                return
            self._command(word, now)

    def peek(self, address: int, count: int) -> list[int]:
        """Words held at `address` on (registers, block buffer), as the bus would read them."""
        return [int.from_bytes(self._mem[address + 2 * i:address + 2 * i + 2], "big")
                for i in range(count)]

    def _put_words(self, address: int, words: list[int]) -> None:
        for i, w in enumerate(words):
            self._mem[address + 2 * i:address + 2 * i + 2] = (w & 0xFFFF).to_bytes(2, "big")

    def _command(self, word: int, now: float) -> None:
        cid, kind = word & ~0x3, word & 0x3
        length = self.peek(cci.REG_DATA_LENGTH, 1)[0]
        extra = 0.0
        entry = self._table().get(cid)
        code = 0
        if entry is None or kind == 3 or entry[kind] is None:
            code = -7  # LEP_UNDEFINED_FUNCTION_ERROR
        elif kind == RUN:
            extra = entry[RUN](now) or 0.0
        elif length != entry[3] or length > cci.BLOCK_BUFFER_WORDS:
            code = -6  # LEP_DATA_SIZE_ERROR
        else:
            register = cci.REG_DATA0 if length <= cci.DATA_REGISTERS else cci.BLOCK_BUFFER0
            if kind == GET:
                self._put_words(register, entry[GET]())
            else:
                try:
                    entry[SET](self.peek(register, length))
                except RangeError:
                    code = -3  # LEP_RANGE_ERROR
        self.result = code
        self.command_count += 1
        self.commands.append((word, code))
        self.busy_until = now + self.command_s + extra + self._stall_s
        self._stall_s = 0.0

    # -- the commands: cid -> (get, set, run, words)

    def _table(self) -> dict:
        s = self.state

        def flag(name: str):
            def get():
                return _u32(int(getattr(s, name)))

            def put(w):
                setattr(s, name, bool(_enum(w, 2)))
            return get, put

        def enum(name: str, count: int):
            def get():
                return _u32(getattr(s, name))

            def put(w):
                setattr(s, name, _enum(w, count))
            return get, put

        def run_ffc(now):
            self.start_ffc(now)

        def run_reboot(now):
            self.booting_until = now + self.command_s + self.boot_s
            return self.boot_s

        def ro(fn):
            return (fn, None, None)

        table = {
            cci.AGC_ENABLE: (*flag("agc"), None, 2),
            cci.AGC_POLICY: (*enum("agc_policy", 2), None, 2),
            cci.SYS_PING: (None, None, lambda now: None, 0),
            cci.SYS_CAM_STATUS: (*ro(lambda: _u32(4 if self.ffc_state == "in progress" else 0)
                                     + [self.command_count & 0xFFFF, 0]), 4),
            cci.SYS_SERIAL: (*ro(lambda: [(self.serial >> (16 * i)) & 0xFFFF for i in range(4)]),
                             4),
            cci.SYS_UPTIME: (*ro(lambda: _u32(self.uptime_ms())), 2),
            cci.SYS_AUX_TEMP: (*ro(lambda: [int(round(self.housing_temp_k() * 100))]), 1),
            cci.SYS_FPA_TEMP: (*ro(lambda: [int(round(self.fpa_temp_k() * 100))]), 1),
            cci.SYS_TELEMETRY_ENABLE: (*flag("telemetry_enabled"), None, 2),
            cci.SYS_TELEMETRY_LOCATION: (*enum("telemetry_location", 2), None, 2),
            cci.SYS_FFC_SHUTTER_MODE: (self._get_ffc_mode, self._set_ffc_mode, None, 16),
            cci.SYS_RUN_FFC: (None, None, run_ffc, 0),
            cci.SYS_FFC_STATUS: (*ro(lambda: _u32(
                1 if self.ffc_state in ("imminent", "in progress") else 0)), 2),
            cci.SYS_GAIN_MODE: (*enum("gain_mode", 3), None, 2),
            cci.VID_LUT_TRANSFER: (lambda: list(s.lut), lambda w: setattr(s, "lut", list(w)),
                                   None, 512),
            cci.OEM_PART_NUMBER: (*ro(lambda: _chars(self.part_number, 16)), 16),
            cci.OEM_SOFTWARE_VERSION: (*ro(lambda: _chars_bytes(self.software)), 4),
            cci.OEM_REBOOT: (None, None, run_reboot, 0),
            cci.RAD_FLUX_LINEAR_PARAMS: (lambda: list(s.flux), self._set_flux, None, 8),
            cci.RAD_SPOTMETER_ROI: (lambda: list(s.spotmeter_roi), self._set_roi, None, 4),
        }
        if self.model is None or self.model.radiometric:
            table.update({
                cci.RAD_ENABLE: (*flag("radiometry"), None, 2),
                cci.RAD_TLINEAR_ENABLE: (*flag("tlinear"), None, 2),
                cci.RAD_TLINEAR_RESOLUTION: (lambda: _u32(1 if self.kelvin_per_count < 0.05
                                                          else 0),
                                             enum("tlinear_resolution", 2)[1], None, 2),
                cci.RAD_TLINEAR_AUTO_RESOLUTION: (*flag("tlinear_auto_resolution"), None, 2),
            })
        else:  # a non-radiometric part has no RAD module
            for cid in (cci.RAD_FLUX_LINEAR_PARAMS, cci.RAD_SPOTMETER_ROI):
                table.pop(cid)
        return table

    def _get_ffc_mode(self) -> list[int]:
        s = self.state
        elapsed = int((self.clock() - self.ffc_started) * 1000) if self.ffc_state == "complete" \
            else 0
        values = [s.ffc_mode, 0, int(s.ffc_freeze), int(self.ffc_desired()), max(elapsed, 0),
                  s.ffc_period_ms, 0]
        words: list[int] = []
        for v in values:
            words += _u32(v)
        return words + [s.ffc_temp_delta, s.ffc_imminent_frames]

    def _set_ffc_mode(self, w: list[int]) -> None:
        values = [w[i] | (w[i + 1] << 16) for i in range(0, 14, 2)]
        if values[0] > 2 or values[1] > 2 or values[2] > 1 or values[6] > 1:
            raise RangeError
        s = self.state
        s.ffc_mode, s.ffc_freeze, s.ffc_period_ms = values[0], bool(values[2]), values[5]
        s.ffc_temp_delta, s.ffc_imminent_frames = w[14], w[15]

    def _set_flux(self, w: list[int]) -> None:
        # Ranges from LEPTON_RAD.h: tau / emissivity 82..8192, tauReflWindow 0..8192 - tauWindow.
        if not all(82 <= w[i] <= 8192 for i in (0, 2, 4)) or w[6] > 8192 - w[2]:
            raise RangeError
        self.state.flux = list(w)

    def _set_roi(self, w: list[int]) -> None:
        rows, cols = (120, 160) if self.model is None or self.model.sensor == "lepton3" \
            else (60, 80)
        r0, c0, r1, c1 = w
        if not (r0 <= r1 < rows and c0 <= c1 < cols):
            raise RangeError
        self.state.spotmeter_roi = tuple(w)


def _enum(w: list[int], count: int) -> int:
    value = w[0] | (w[1] << 16)
    if value >= count:
        raise RangeError
    return value


def _chars_bytes(values: tuple) -> list[int]:
    raw = bytes(values) + b"\0\0"
    return [int.from_bytes(raw[i:i + 2], "little") for i in range(0, 8, 2)]
