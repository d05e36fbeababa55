"""CCI, the Lepton's control interface over I2C: the protocol core (LeptonCCI), the named
operations (Lepton) and the Linux transport (open_bus).

Facts from FLIR's Lepton SDK (LEPTON_I2C_Reg.h, LEPTON_I2C_Protocol.c, LEPTON_SYS.h, LEPTON_RAD.h,
LEPTON_OEM.h, LEPTON_AGC.h, LEPTON_ErrorCodes.h) and ../shared/LEPTON_VOSPI.md:
- device address 0x2A; 16-bit register addresses and data, big-endian on the bus; the register
  pointer increments by itself, so consecutive words go in one transfer.
- STATUS 0x0002: bit 0 busy, bit 1 boot mode, bit 2 booted, bits 15..8 the signed result of the
  last command (LEP_RESULT). COMMAND 0x0004, DATA_LENGTH 0x0006 (16-bit words), DATA0..DATA15
  0x0008..0x0026, DATA_CRC 0x0028, block buffer 0 at 0xF800 (1024 bytes) for more than 16 words.
- The command word is the command ID | type (GET 0, SET 1, RUN 2); OEM (0x0800) and RAD (0x0E00)
  IDs carry the protection bit 0x4000 ("LEP_I2C_COMMAND_PROT_BIT ... for OEM and RAD modules").
- GET: wait not busy, DATA_LENGTH, COMMAND, wait not busy, check result, read data.
  SET: wait not busy, write data, DATA_LENGTH, COMMAND, wait not busy, check result.
  RUN: wait not busy, DATA_LENGTH 0, COMMAND, wait not busy, check result.
- 32-bit values (enums too: "enums are 32-bit") take two words, least significant word first.

`bus` is anything with smbus2's SMBus.i2c_rdwr(*msgs): smbus2 itself (open_bus) or the simulated
device (capture.cci_sim). smbus2 is optional: without it the messages are a stand-in with the same
attributes (only the simulator can take those), and open_bus says why I2C is unavailable.
"""
from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

ADDRESS = 0x2A

# Registers (LEPTON_I2C_Reg.h).
REG_POWER = 0x0000
REG_STATUS = 0x0002
REG_COMMAND = 0x0004
REG_DATA_LENGTH = 0x0006
REG_DATA0 = 0x0008
REG_DATA_CRC = 0x0028
DATA_REGISTERS = 16
BLOCK_BUFFER0 = 0xF800
BLOCK_BUFFER_WORDS = 0x400 // 2  # LEP_I2C_DATA_BUFFER_0_LENGTH is 0x400 bytes

STATUS_BUSY = 0x0001
STATUS_BOOT_MODE = 0x0002
STATUS_BOOTED = 0x0004

GET, SET, RUN = 0, 1, 2
TYPE_NAMES = {GET: "GET", SET: "SET", RUN: "RUN"}
PROTECTION_BIT = 0x4000

# Command IDs without type bits (module base + offset; OEM and RAD with the protection bit).
AGC_ENABLE = 0x0100            # LEP_CID_AGC_ENABLE_STATE, enum (2 words)
AGC_POLICY = 0x0104            # LEP_CID_AGC_POLICY: 0 linear, 1 HEQ
SYS_PING = 0x0200              # RUN
SYS_CAM_STATUS = 0x0204        # struct: camStatus (u32), commandCount, reserved
SYS_SERIAL = 0x0208            # LEP_CID_SYS_FLIR_SERIAL_NUMBER, u64 (4 words)
SYS_UPTIME = 0x020C            # LEP_CID_SYS_CAM_UPTIME, u32 ms
SYS_AUX_TEMP = 0x0210          # LEP_CID_SYS_AUX_TEMPERATURE_KELVIN, K x 100 (1 word)
SYS_FPA_TEMP = 0x0214          # LEP_CID_SYS_FPA_TEMPERATURE_KELVIN, K x 100 (1 word)
SYS_TELEMETRY_ENABLE = 0x0218  # enum 0/1
SYS_TELEMETRY_LOCATION = 0x021C  # enum 0 header, 1 footer
SYS_FFC_SHUTTER_MODE = 0x023C  # LEP_SYS_FFC_SHUTTER_MODE_OBJ struct (16 words)
SYS_RUN_FFC = 0x0240           # RUN; on the bus 0x0242 (the SDK's LEP_CID_SYS_RUN_FFC)
SYS_FFC_STATUS = 0x0244        # enum: -2 write error, -1 error, 0 ready, 1 busy
SYS_GAIN_MODE = 0x0248         # enum 0 high, 1 low, 2 auto
VID_LUT_TRANSFER = 0x0308      # user LUT, 256 x 4 bytes = 512 words: a block-buffer transfer
OEM_PART_NUMBER = 0x481C       # LEP_CID_OEM_FLIR_PART_NUMBER, 32 chars (16 words)
OEM_SOFTWARE_VERSION = 0x4820  # LEP_OEM_SW_VERSION_T: 6 bytes + reserved word (4 words)
OEM_REBOOT = 0x4840            # RUN; on the bus 0x4842
RAD_ENABLE = 0x4E10            # LEP_CID_RAD_RADIOMETRY_CONTROL_ENABLE, enum
RAD_FLUX_LINEAR_PARAMS = 0x4EBC  # LEP_RAD_FLUX_LINEAR_PARAMS_T (8 words)
RAD_TLINEAR_ENABLE = 0x4EC0    # enum
RAD_TLINEAR_RESOLUTION = 0x4EC4  # enum 0 = 0.1 K, 1 = 0.01 K
RAD_TLINEAR_AUTO_RESOLUTION = 0x4EC8  # enum
RAD_SPOTMETER_ROI = 0x4ECC     # startRow, startCol, endRow, endCol

COMMAND_NAMES = {
    AGC_ENABLE: "AGC enable", AGC_POLICY: "AGC policy", SYS_PING: "SYS ping",
    SYS_CAM_STATUS: "SYS camera status", SYS_SERIAL: "SYS serial number",
    SYS_UPTIME: "SYS uptime", SYS_AUX_TEMP: "SYS AUX temperature",
    SYS_FPA_TEMP: "SYS FPA temperature", SYS_TELEMETRY_ENABLE: "SYS telemetry enable",
    SYS_TELEMETRY_LOCATION: "SYS telemetry location", SYS_FFC_SHUTTER_MODE: "SYS FFC shutter mode",
    SYS_RUN_FFC: "SYS run FFC", SYS_FFC_STATUS: "SYS FFC status", SYS_GAIN_MODE: "SYS gain mode",
    VID_LUT_TRANSFER: "VID LUT transfer", OEM_PART_NUMBER: "OEM part number",
    OEM_SOFTWARE_VERSION: "OEM software version", OEM_REBOOT: "OEM reboot",
    RAD_ENABLE: "RAD radiometry enable", RAD_FLUX_LINEAR_PARAMS: "RAD flux linear parameters",
    RAD_TLINEAR_ENABLE: "RAD TLinear enable", RAD_TLINEAR_RESOLUTION: "RAD TLinear resolution",
    RAD_TLINEAR_AUTO_RESOLUTION: "RAD TLinear auto resolution",
    RAD_SPOTMETER_ROI: "RAD spotmeter ROI",
}

# LEP_RESULT codes a camera reports in STATUS bits 15..8 (LEPTON_ErrorCodes.h).
ERROR_NAMES = {
    0: ("LEP_OK", "ok"),
    -1: ("LEP_ERROR", "camera general error"),
    -2: ("LEP_NOT_READY", "camera not ready"),
    -3: ("LEP_RANGE_ERROR", "camera range error"),
    -4: ("LEP_CHECKSUM_ERROR", "camera checksum error"),
    -5: ("LEP_BAD_ARG_POINTER_ERROR", "camera bad argument error"),
    -6: ("LEP_DATA_SIZE_ERROR", "camera byte count error"),
    -7: ("LEP_UNDEFINED_FUNCTION_ERROR", "camera undefined function"),
    -8: ("LEP_FUNCTION_NOT_SUPPORTED", "camera function not yet supported"),
    -9: ("LEP_DATA_OUT_OF_RANGE_ERROR", "camera input data out of valid range"),
    -11: ("LEP_COMMAND_NOT_ALLOWED", "command not allowed in the camera's current state"),
    -15: ("LEP_OTP_WRITE_ERROR", "camera OTP write error"),
    -16: ("LEP_OTP_READ_ERROR", "camera OTP read error (double bit error)"),
    -18: ("LEP_OTP_NOT_PROGRAMMED_ERROR", "camera OTP not programmed"),
    -20: ("LEP_ERROR_I2C_BUS_NOT_READY", "I2C bus not available"),
    -22: ("LEP_ERROR_I2C_BUFFER_OVERFLOW", "I2C buffer overflow"),
    -23: ("LEP_ERROR_I2C_ARBITRATION_LOST", "I2C arbitration lost"),
    -24: ("LEP_ERROR_I2C_BUS_ERROR", "I2C bus error"),
    -25: ("LEP_ERROR_I2C_NACK_RECEIVED", "I2C NACK received"),
    -26: ("LEP_ERROR_I2C_FAIL", "I2C failure"),
    -80: ("LEP_DIV_ZERO_ERROR", "division by zero"),
    -126: ("LEP_OPERATION_CANCELED", "camera operation canceled"),
    -127: ("LEP_UNDEFINED_ERROR_CODE", "undefined error"),
}

DEFAULT_TIMEOUT_S = 1.0  # longest wait for the busy bit; commands take a few ms, FFC ~ 0.2 s
POLL_S = 0.001
REBOOT_TIMEOUT_S = 5.0   # a Lepton boots in about a second


def command_name(cid: int) -> str:
    name = COMMAND_NAMES.get(cid)
    return f"0x{cid:04X} ({name})" if name else f"0x{cid:04X}"


def error_name(code: int) -> str:
    name, text = ERROR_NAMES.get(code, ("unknown LEP_RESULT", "not in LEPTON_ErrorCodes.h"))
    return f"{code} {name} ({text})"


class CCIError(Exception):
    """The camera answered a command with an error code (STATUS bits 15..8)."""

    def __init__(self, kind: int, cid: int, code: int):
        self.kind, self.cid, self.code = kind, cid, code
        super().__init__(f"CCI {TYPE_NAMES[kind]} {command_name(cid)} failed: {error_name(code)}")


class CCITimeout(Exception):
    """The busy bit did not clear in time."""


class CCIUnavailable(Exception):
    """Camera control over I2C cannot work here; str() says why (one line for people)."""


# ---------------------------------------------------------------- I2C messages

I2C_M_RD = 0x0001  # linux/i2c.h: the message is a read


class StandInMsg:
    """What smbus2.i2c_msg offers (addr, flags, len, buf; read(); write(); bytes()), for when
    smbus2 is not installed. Only the simulated device can take these."""

    def __init__(self, addr: int, flags: int, data: bytes = b"", length: int = 0):
        self.addr, self.flags = addr, flags
        self.len = len(data) if not flags & I2C_M_RD else length
        self.buf = ctypes.create_string_buffer(bytes(data), self.len) if data else \
            ctypes.create_string_buffer(self.len)

    @staticmethod
    def read(address: int, length: int) -> "StandInMsg":
        return StandInMsg(address, I2C_M_RD, length=length)

    @staticmethod
    def write(address: int, buf) -> "StandInMsg":
        return StandInMsg(address, 0, bytes(buf))

    def __bytes__(self) -> bytes:
        return ctypes.string_at(self.buf, self.len)

    def __iter__(self):
        return iter(bytes(self))

    def __len__(self) -> int:
        return self.len


def message_type():
    """smbus2.i2c_msg when smbus2 is installed, else StandInMsg."""
    try:
        from smbus2 import i2c_msg
    except ImportError:
        return StandInMsg
    return i2c_msg


def open_bus(bus: int = 1):
    """smbus2.SMBus(bus) for /dev/i2c-<bus>; CCIUnavailable (saying why) when it cannot be."""
    path = f"/dev/i2c-{bus}"
    try:
        from smbus2 import SMBus
    except ImportError:
        raise CCIUnavailable("camera control needs smbus2 (pip install smbus2, or the "
                             "flir-stream[i2c] extra)") from None
    if not os.path.exists(path):
        raise CCIUnavailable(f"no {path}: enable I2C (dtparam=i2c_arm=on in /boot/config.txt) "
                             f"and wire the Lepton's SDA/SCL") from None
    try:
        return SMBus(bus)
    except OSError as exc:
        why = "permission denied (add the user to group i2c)" if exc.errno == errno.EACCES \
            else (exc.strerror or str(exc))
        raise CCIUnavailable(f"cannot open {path}: {why}") from None


# ---------------------------------------------------------------- the protocol core

class LeptonCCI:
    """get / set / run of CCI commands on `bus` (see the module docstring)."""

    def __init__(self, bus, address: int = ADDRESS, timeout: float = DEFAULT_TIMEOUT_S, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 i2c_msg=None, poll_s: float = POLL_S):
        self.bus = bus
        self.address = address
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._msg = i2c_msg or message_type()
        self._poll_s = poll_s

    # -- registers

    def read_registers(self, register: int, words: int) -> list[int]:
        """`words` 16-bit words from `register` on (one write of the address, one read)."""
        read = self._msg.read(self.address, 2 * words)
        self.bus.i2c_rdwr(self._msg.write(self.address, register.to_bytes(2, "big")), read)
        data = bytes(read)
        return [int.from_bytes(data[i:i + 2], "big") for i in range(0, 2 * words, 2)]

    def write_registers(self, register: int, values: Sequence[int]) -> None:
        """Words to `register` on, in one write (the register pointer increments itself)."""
        data = register.to_bytes(2, "big") + b"".join(
            (int(v) & 0xFFFF).to_bytes(2, "big") for v in values)
        self.bus.i2c_rdwr(self._msg.write(self.address, data))

    def status(self) -> int:
        return self.read_registers(REG_STATUS, 1)[0]

    def wait_ready(self, what: str = "") -> int:
        """Poll STATUS until not busy; returns STATUS. CCITimeout after `timeout` seconds."""
        deadline = self._clock() + self.timeout
        while True:
            status = self.status()
            if not status & STATUS_BUSY:
                return status
            if self._clock() >= deadline:
                raise CCITimeout(f"CCI busy for more than {self.timeout:g} s"
                                 f"{' ' + what if what else ''} (STATUS 0x{status:04X})")
            self._sleep(self._poll_s)

    # -- commands

    @staticmethod
    def _check_cid(cid: int, kind: int) -> int:
        if not 0 <= cid <= 0xFFFF:
            raise ValueError(f"command ID 0x{cid:X} is not 16 bits")
        if cid & 0x3 not in (0, kind):
            raise ValueError(f"command ID 0x{cid:04X} carries type bits "
                             f"{cid & 3}: pass it without them")
        return cid & ~0x3

    def _execute(self, kind: int, cid: int, words: int) -> None:
        what = f"before {TYPE_NAMES[kind]} {command_name(cid)}"
        self.wait_ready(what)
        self.write_registers(REG_DATA_LENGTH, [words])
        self.write_registers(REG_COMMAND, [cid | kind])
        status = self.wait_ready(f"after {TYPE_NAMES[kind]} {command_name(cid)}")
        code = (status >> 8) & 0xFF
        if code:
            raise CCIError(kind, cid, code - 0x100 if code & 0x80 else code)

    @staticmethod
    def _data_register(words: int) -> int:
        if words > BLOCK_BUFFER_WORDS:
            raise ValueError(f"{words} words: a CCI transfer holds at most {BLOCK_BUFFER_WORDS}")
        return REG_DATA0 if words <= DATA_REGISTERS else BLOCK_BUFFER0

    def get(self, cid: int, words: int) -> list[int]:
        """GET `cid` (without type bits): its `words` data words."""
        cid = self._check_cid(cid, GET)
        register = self._data_register(words)
        self._execute(GET, cid, words)
        return self.read_registers(register, words) if words else []

    def set(self, cid: int, values: Sequence[int]) -> None:
        """SET `cid` (without type bits) to the data words `values`."""
        cid = self._check_cid(cid, SET)
        values = [int(v) for v in values]
        if any(not 0 <= v <= 0xFFFF for v in values):
            raise ValueError(f"SET {command_name(cid)}: data words must be 0..65535: {values}")
        register = self._data_register(len(values))
        self.wait_ready(f"before SET {command_name(cid)}")
        if values:
            self.write_registers(register, values)
        self._execute(SET, cid, len(values))

    def run(self, cid: int) -> None:
        """RUN `cid` (without type bits, e.g. 0x0240 for FFC; 0x0242 is taken too)."""
        self._execute(RUN, self._check_cid(cid, RUN), 0)

    # -- 32-bit helpers (low word first)

    def get_u32(self, cid: int) -> int:
        lo, hi = self.get(cid, 2)
        return lo | (hi << 16)

    def set_u32(self, cid: int, value: int) -> None:
        self.set(cid, [value & 0xFFFF, (value >> 16) & 0xFFFF])


def join_u32(words: Sequence[int]) -> list[int]:
    """Words, low word first -> 32-bit values."""
    return [words[i] | (words[i + 1] << 16) for i in range(0, len(words) - 1, 2)]


# ---------------------------------------------------------------- what the part is

@dataclass(frozen=True)
class Model:
    name: str           # "Lepton 3.5"
    sensor: str         # "lepton2" (80x60) or "lepton3" (160x120), as [capture] sensor
    radiometric: bool


# FLIR part numbers (the first 8 characters of the OEM part number, e.g. "500-0771-01").
MODELS = {
    "500-0771": Model("Lepton 3.5", "lepton3", True),
    "500-0758": Model("Lepton 3.1R", "lepton3", True),
    "500-0726": Model("Lepton 3.0", "lepton3", False),
    "500-0763": Model("Lepton 2.5", "lepton2", True),
    "500-0659": Model("Lepton 2.0", "lepton2", False),
    "500-0690": Model("Lepton 1.6", "lepton2", False),
    "500-0643": Model("Lepton 1.5", "lepton2", False),
}


def model_for(part_number: str) -> Optional[Model]:
    """The model of a FLIR part number, None if it is not one this table knows."""
    return MODELS.get(part_number.strip()[:8])


# ---------------------------------------------------------------- named operations

GAIN_MODES = ("high", "low", "auto")
FFC_MODES = ("manual", "auto", "external")  # LEP_SYS_FFC_SHUTTER_MODE_E
FFC_STATUS = {-2: "write error", -1: "error", 0: "ready", 1: "busy",
              2: "collecting frames"}
SCALE = 8192  # 8192 = 1.0 for emissivity, transmissions, reflection (LEPTON_RAD.h)


@dataclass
class FluxParameters:
    """LEP_RAD_FLUX_LINEAR_PARAMS_T (LEPTON_RAD.h), in natural units (kelvin, fractions).
    Struct order: sceneEmissivity, TBkgK, tauWindow, TWindowK, tauAtm, TAtmK, tauReflWindow, TReflK."""
    emissivity: float = 1.0
    background_k: float = 300.0
    window_transmission: float = 1.0
    window_k: float = 300.0
    atmosphere_transmission: float = 1.0
    atmosphere_k: float = 300.0
    window_reflection: float = 0.0
    reflected_k: float = 300.0

    def to_words(self) -> list[int]:
        """The 8 struct words, range-checked as LEPTON_RAD.h documents them (ValueError)."""
        def ratio(name: str, value: float, lo: int) -> int:
            word = int(round(value * SCALE))
            if not lo <= word <= SCALE:
                raise ValueError(f"{name} {value:g}: must be {lo / SCALE:.2f}..1")
            return word

        def kelvin(name: str, value: float) -> int:
            word = int(round(value * 100))
            if not 0 <= word <= 0xFFFF:
                raise ValueError(f"{name} {value:g} K: must be 0..655.35 K")
            return word

        tau_window = ratio("window transmission", self.window_transmission, 82)
        words = [ratio("emissivity", self.emissivity, 82),
                 kelvin("background temperature", self.background_k), tau_window,
                 kelvin("window temperature", self.window_k),
                 ratio("atmosphere transmission", self.atmosphere_transmission, 82),
                 kelvin("atmosphere temperature", self.atmosphere_k),
                 ratio("window reflection", self.window_reflection, 0),
                 kelvin("reflected temperature", self.reflected_k)]
        if words[6] > SCALE - tau_window:  # "max: 8192 - tauWindow"
            raise ValueError(f"window reflection {self.window_reflection:g}: at most "
                             f"1 - window transmission ({1 - tau_window / SCALE:.3f})")
        return words

    @classmethod
    def from_words(cls, w: Sequence[int]) -> "FluxParameters":
        return cls(w[0] / SCALE, w[1] / 100, w[2] / SCALE, w[3] / 100, w[4] / SCALE,
                   w[5] / 100, w[6] / SCALE, w[7] / 100)


FFC_MODE_FIELDS = ("shutter_mode", "temp_lockout_state", "video_freeze_during_ffc",
                   "ffc_desired", "elapsed_since_last_ffc_ms", "desired_ffc_period_ms",
                   "explicit_cmd_to_open")  # 7 x u32, then desiredFFCTempDelta, imminentDelay


def _enum(value: str, choices: Sequence[str], what: str) -> int:
    if value not in choices:
        raise ValueError(f"{what} {value!r}: expected one of {', '.join(choices)}")
    return choices.index(value)


class Lepton:
    """The camera's named operations on a LeptonCCI."""

    def __init__(self, cci: LeptonCCI):
        self.cci = cci

    # -- identity

    def part_number(self) -> str:
        """OEM part number (32 characters, NUL padded; two characters per word, low byte first
        as the SDK's LEP_CHAR8 array lies in the little-endian words)."""
        words = self.cci.get(OEM_PART_NUMBER, 16)
        raw = b"".join(w.to_bytes(2, "little") for w in words)
        return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()

    def model(self) -> Optional[Model]:
        return model_for(self.part_number())

    def serial(self) -> int:
        w = self.cci.get(SYS_SERIAL, 4)
        return w[0] | (w[1] << 16) | (w[2] << 32) | (w[3] << 48)

    def software_version(self) -> str:
        """LEP_OEM_SW_VERSION_T: gpp major, minor, build, dsp major, minor, build (bytes)."""
        raw = b"".join(w.to_bytes(2, "little") for w in self.cci.get(OEM_SOFTWARE_VERSION, 4))
        return f"gpp {raw[0]}.{raw[1]}.{raw[2]} dsp {raw[3]}.{raw[4]}.{raw[5]}"

    def uptime_ms(self) -> int:
        return self.cci.get_u32(SYS_UPTIME)

    def fpa_temp_k(self) -> float:
        return self.cci.get(SYS_FPA_TEMP, 1)[0] / 100.0

    def aux_temp_k(self) -> float:
        return self.cci.get(SYS_AUX_TEMP, 1)[0] / 100.0

    def ping(self) -> None:
        self.cci.run(SYS_PING)

    # -- FFC

    def run_ffc(self) -> None:
        self.cci.run(SYS_RUN_FFC)

    def ffc_status(self) -> str:
        value = self.cci.get_u32(SYS_FFC_STATUS)
        value = value - (1 << 32) if value & 0x80000000 else value
        return FFC_STATUS.get(value, f"unknown ({value})")

    def ffc_shutter_mode(self) -> dict:
        """LEP_SYS_FFC_SHUTTER_MODE_OBJ_T as a dict (shutter_mode as 'manual'/'auto'/...)."""
        w = self.cci.get(SYS_FFC_SHUTTER_MODE, 16)
        values = join_u32(w[:14])
        d = dict(zip(FFC_MODE_FIELDS, values))
        d["shutter_mode"] = FFC_MODES[d["shutter_mode"]] if d["shutter_mode"] < 3 \
            else f"unknown ({d['shutter_mode']})"
        for key in ("video_freeze_during_ffc", "ffc_desired", "explicit_cmd_to_open"):
            d[key] = bool(d[key])
        d["desired_ffc_temp_delta_k"] = w[14] / 100.0
        d["imminent_delay_frames"] = w[15]
        return d

    def ffc_mode(self) -> str:
        return self.ffc_shutter_mode()["shutter_mode"]

    def set_ffc_mode(self, mode: str) -> None:
        """auto / manual (external too): read the struct, change shutterMode, write it back."""
        value = _enum(mode, FFC_MODES, "FFC mode")
        w = self.cci.get(SYS_FFC_SHUTTER_MODE, 16)
        w[0], w[1] = value, 0
        self.cci.set(SYS_FFC_SHUTTER_MODE, w)

    # -- telemetry, radiometry, TLinear, gain, AGC

    def _flag(self, cid: int) -> bool:
        return bool(self.cci.get_u32(cid))

    def telemetry_enabled(self) -> bool:
        return self._flag(SYS_TELEMETRY_ENABLE)

    def set_telemetry(self, enabled: bool) -> None:
        self.cci.set_u32(SYS_TELEMETRY_ENABLE, int(bool(enabled)))

    def telemetry_location(self) -> str:
        return ("header", "footer")[self.cci.get_u32(SYS_TELEMETRY_LOCATION) & 1]

    def set_telemetry_location(self, where: str) -> None:
        self.cci.set_u32(SYS_TELEMETRY_LOCATION, _enum(where, ("header", "footer"),
                                                       "telemetry location"))

    def radiometry_enabled(self) -> bool:
        return self._flag(RAD_ENABLE)

    def set_radiometry(self, enabled: bool) -> None:
        self.cci.set_u32(RAD_ENABLE, int(bool(enabled)))

    def tlinear_enabled(self) -> bool:
        return self._flag(RAD_TLINEAR_ENABLE)

    def set_tlinear(self, enabled: bool) -> None:
        self.cci.set_u32(RAD_TLINEAR_ENABLE, int(bool(enabled)))

    def tlinear_resolution(self) -> float:
        """Kelvin per count: 0.01 (LEP_RAD_RESOLUTION_0_01) or 0.1."""
        return 0.01 if self.cci.get_u32(RAD_TLINEAR_RESOLUTION) == 1 else 0.1

    def set_tlinear_resolution(self, kelvin_per_count: float) -> None:
        if kelvin_per_count not in (0.1, 0.01):
            raise ValueError(f"TLinear resolution {kelvin_per_count:g}: expected 0.1 or 0.01")
        self.cci.set_u32(RAD_TLINEAR_RESOLUTION, 1 if kelvin_per_count == 0.01 else 0)

    def gain_mode(self) -> str:
        value = self.cci.get_u32(SYS_GAIN_MODE)
        return GAIN_MODES[value] if value < 3 else f"unknown ({value})"

    def set_gain_mode(self, mode: str) -> None:
        self.cci.set_u32(SYS_GAIN_MODE, _enum(mode, GAIN_MODES, "gain mode"))

    def flux_parameters(self) -> FluxParameters:
        return FluxParameters.from_words(self.cci.get(RAD_FLUX_LINEAR_PARAMS, 8))

    def set_flux_parameters(self, params: FluxParameters) -> None:
        self.cci.set(RAD_FLUX_LINEAR_PARAMS, params.to_words())

    def set_emissivity(self, emissivity: float, background_k: Optional[float] = None) -> None:
        """Change the scene emissivity (and the background temperature), keeping the rest."""
        params = self.flux_parameters()
        params.emissivity = emissivity
        if background_k is not None:
            params.background_k = background_k
        self.set_flux_parameters(params)

    def agc_enabled(self) -> bool:
        return self._flag(AGC_ENABLE)

    def set_agc(self, enabled: bool) -> None:
        self.cci.set_u32(AGC_ENABLE, int(bool(enabled)))

    # -- reboot

    def reboot(self, timeout: float = REBOOT_TIMEOUT_S) -> None:
        """OEM reboot: the camera restarts with its power-on settings (re-apply them after).
        Returns once it answers again, booted and not busy; while it boots it may not
        acknowledge its address at all (OSError), which is waited out too."""
        c = self.cci
        c.wait_ready("before RUN " + command_name(OEM_REBOOT))
        c.write_registers(REG_DATA_LENGTH, [0])
        c.write_registers(REG_COMMAND, [OEM_REBOOT | RUN])
        deadline = c._clock() + timeout
        why = "no answer"
        while c._clock() < deadline:
            try:
                status = c.status()
            except OSError as exc:
                why = f"I2C: {exc.strerror or exc}"
            else:
                if not status & STATUS_BUSY and status & STATUS_BOOTED:
                    return
                why = f"STATUS 0x{status:04X}"
            c._sleep(0.01)
        raise CCITimeout(f"camera not back {timeout:g} s after RUN {command_name(OEM_REBOOT)} "
                         f"({why})")
