"""Where VoSPI bytes come from: the SPI bus (capture/spi.py), the simulator, a recorded file or a
still image.

Every source hands out raw bytes (read()), which all go through the same FrameAssembler. A source
that cannot deliver for now raises SourceOffline; the reader reports "offline" with the reason
and asks again after `retry_delay` seconds. That is everything that can go wrong with a camera
(device missing, unreadable, unplugged while streaming, spidev not installed: the stage keeps
running, so the viewer shows why) and the end of a recording played once. A file given as
source that does not exist or cannot be read raises ConfigError when the source is made: the
stage stops at once with one line (exit 2), as a typo in a path should.
"""
from __future__ import annotations

import logging
import os
import time
from typing import BinaryIO, Callable, Optional

import numpy as np

from flirstream.config import ConfigError
from flirstream.wire import KELVIN_AT_0C

from . import vospi
from .sim import SimulatedLepton
from .reader import DEFAULT_SPI_DEVICE, Source, SourceOffline
from .spi import SpiSource

log = logging.getLogger("capture.sources")

IMAGE_RANGE_C = (20.0, 40.0)  # image: source: black is 20 C, white 40 C


class _Pacer:
    """Sleeps so that calls to wait() come `period` seconds apart (without bursting after stalls)."""

    def __init__(self, period: float):
        self.period = period
        self._due = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self._due > now:
            time.sleep(self._due - now)
            now = self._due
        self._due = max(self._due + self.period, now - self.period)


# ---------------------------------------------------------------- simulator

class SimSource:
    """The simulated Lepton at its frame rate (one VoSPI frame period per read())."""

    def __init__(self, sim: SimulatedLepton, realtime: bool = True, name: str = "sim"):
        self.sim = sim
        self.name = name
        self.retry_delay = 1.0
        self._pacer = _Pacer(1.0 / sim.fps) if realtime else None

    def read(self) -> bytes:
        if self._pacer:
            self._pacer.wait()
        return self.sim.next_period()

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- recorded file

# A discard packet in a recording stands for the time the sensor took to send it: with nothing else
# in the file, replay goes no faster than an SPI bus at the default 16 MHz delivered them.
DISCARD_PACKET_S = vospi.PACKET_BYTES * 8 / 16_000_000
EMPTY_FILE_RETRY_S = 1.0
# First ID bytes of packets that are no discard (low nibble not 0xF): translate() deletes them.
_NOT_DISCARD = bytes(b for b in range(256) if b & 0x0F != 0x0F)


class FileSource:
    """Replays raw VoSPI bytes (as written by --record): at the sensor's pace or as fast as possible,
    once or in a loop. Pacing counts every packet read: a frame's worth of non-discard packets takes
    one frame period, a discard packet the time the SPI bus took to carry it (DISCARD_PACKET_S), so a
    file of discard packets only is replayed at the bus's pace, not in a busy loop."""

    def __init__(self, path: str, sensor: str, telemetry: str, realtime: bool = True,
                 loop: bool = True, fps: float = 26.5):
        self.path = path
        self.name = f"vospi-file:{path}"
        self.retry_delay = EMPTY_FILE_RETRY_S
        self.loop = loop
        try:
            # Unbuffered: a frame's read is one read() into the bytes returned (buffered, it was
            # two, and a copy through the reader's buffer: ~10 us a frame after a frame period's
            # sleep). A raw read may return less than asked only at the end of a regular file,
            # and the size check below refuses anything else (a FIFO's size is 0).
            self._file = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise ConfigError(f"[capture] source = vospi-file:{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"[capture] source = vospi-file:{path}: cannot read: "
                              f"{exc.strerror or exc}") from None
        if os.fstat(self._file.fileno()).st_size < vospi.PACKET_BYTES:
            self._file.close()
            raise ConfigError(f"[capture] source = vospi-file:{path}: holds no VoSPI packet "
                              f"(fewer than {vospi.PACKET_BYTES} bytes)")
        frame_packets = vospi.FrameAssembler(sensor, telemetry).geometry.frame_packets
        # A frame per read: one wake-up per frame period (the pacing below sleeps once a read)
        self._chunk = frame_packets * vospi.PACKET_BYTES
        self._realtime = realtime
        self._packet_s = 1.0 / fps / frame_packets  # one non-discard packet's share of a frame
        self._due = time.monotonic()
        self._at_start = True
        self.finished = False

    def read(self) -> bytes:
        if self.finished:
            raise SourceOffline(f"end of {self.path} (loop = no)")
        try:
            at_start, self._at_start = self._at_start, False  # (kept here: tell() is a syscall)
            data = self._file.read(self._chunk)
            if len(data) < self._chunk:
                if self.loop:
                    self._file.seek(0)
                    self._at_start = True
                else:
                    self.finished = True
        except OSError as exc:
            raise SourceOffline(f"reading {self.path} failed: {exc.strerror or exc}") from None
        if not data and at_start:  # e.g. truncated while replaying: wait, do not spin
            raise SourceOffline(f"{self.path} is empty (truncated while replaying?)")
        if self._realtime and data:
            self._pace(data)
        return data

    def _pace(self, data: bytes) -> None:
        whole = len(data) // vospi.PACKET_BYTES * vospi.PACKET_BYTES
        first = data[:whole:vospi.PACKET_BYTES]  # each packet's first ID byte
        packets = len(first)
        # (bytes methods, not numpy: a frame's few numpy calls cost more than the counting)
        frame_packets = packets - len(first.translate(None, _NOT_DISCARD))
        self._due += frame_packets * self._packet_s + (packets - frame_packets) * DISCARD_PACKET_S
        now = time.monotonic()
        if self._due > now:
            time.sleep(self._due - now)
        else:
            self._due = max(self._due, now - 1.0 / 26.5)  # no burst to catch up after a stall

    def pause(self, seconds: float) -> None:
        pass  # a file does not lose sync by waiting; the assembler re-hunts by itself

    def close(self) -> None:
        self._file.close()


# ---------------------------------------------------------------- still image

def image_to_tlinear(path: str, sensor: str, kelvin_per_count: float,
                     range_c: tuple[float, float] = IMAGE_RANGE_C) -> np.ndarray:
    """A picture file as a TLinear frame: greyscale resized to the sensor, black..white = range_c."""
    import cv2  # only this source needs OpenCV in the capture stage

    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if grey is None:
        what = "no such file" if not os.path.exists(path) else "not a picture OpenCV can read"
        raise ConfigError(f"[capture] source = image:{path}: {what}")
    rows, cols = vospi.SENSORS[sensor]
    grey = cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_AREA)
    lo, hi = range_c
    celsius = lo + grey.astype(np.float64) / 255.0 * (hi - lo)
    counts = np.rint((celsius + KELVIN_AT_0C) / kelvin_per_count)
    return np.clip(counts, 0, 65535).astype(np.uint16)


class ImageSource:
    """A still picture, sent as the same VoSPI frame at the sensor's rate."""

    def __init__(self, path: str, sensor: str, telemetry: str, kelvin_per_count: float,
                 fps: float = 26.5):
        self.name = f"image:{path}"
        self.retry_delay = 1.0
        self.image = image_to_tlinear(path, sensor, kelvin_per_count)
        self._sensor, self._telemetry = sensor, telemetry
        self._pacer = _Pacer(1.0 / fps)
        self._count = 0

    def read(self) -> bytes:
        self._pacer.wait()
        self._count += 1
        return vospi.discard_packets(3) + vospi.encode_frame(
            self.image, self._sensor, self._telemetry, frame_counter=self._count)

    def pause(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- recording

class Recorder:
    """Wraps a source and writes every byte it reads to a file (replayable as vospi-file:)."""

    def __init__(self, source: Source, path: str):
        self.source = source
        self.name = source.name
        self.path = path
        try:
            self._file: Optional[BinaryIO] = open(path, "wb")
        except OSError as exc:
            raise ConfigError(f"[capture] record = {path}: cannot write: "
                              f"{exc.strerror or exc}") from None

    @property
    def retry_delay(self) -> float:
        return self.source.retry_delay

    def read(self) -> bytes:
        data = self.source.read()
        if data and self._file is not None:
            try:
                self._file.write(data)
                self._file.flush()
            except OSError as exc:  # e.g. disk full: stop recording, keep streaming
                log.error("recording to %s stopped: %s", self.path, exc.strerror or exc)
                self._close_file()
        return data

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def pause(self, seconds: float) -> None:
        self.source.pause(seconds)

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            self._close_file()


# ---------------------------------------------------------------- choosing

def source_kind(spec: str) -> str:
    """sim, spi, vospi-file or image: what a [capture] source value reads (auto resolved)."""
    if spec == "auto":
        return "spi" if os.path.exists(DEFAULT_SPI_DEVICE) else "sim"
    return spec.partition(":")[0]


def _kelvin_per_count(capture) -> float:
    return 0.1 if capture.tlinear_resolution == "0.1" else 0.01


def make_source(spec: str, capture, *, record: Optional[str] = None,
                device_factory: Optional[Callable] = None, cci=None) -> Source:
    """The source named by a [capture] source value, configured from the [capture] section
    (its telemetry resolved: not auto). `cci`: the simulator's CCI device (capture.cci_sim)."""
    kind, _, rest = spec.partition(":")
    if spec == "auto":
        if os.path.exists(DEFAULT_SPI_DEVICE):
            log.info("source auto: %s exists, reading the Lepton on it", DEFAULT_SPI_DEVICE)
            kind, rest = "spi", DEFAULT_SPI_DEVICE
        else:
            log.info("source auto: no %s, using the simulated Lepton", DEFAULT_SPI_DEVICE)
            kind = "sim"
    telemetry = "off" if capture.telemetry == "auto" else capture.telemetry
    if kind == "sim":
        sim = SimulatedLepton(capture.sensor, telemetry,
                              unique_every=capture.sim_unique_every,
                              kelvin_per_count=_kelvin_per_count(capture),
                              fps=capture.sim_fps, seed=None, cci=cci)
        source: Source = SimSource(sim)
    elif kind == "spi":
        source = SpiSource(rest, capture.spi_speed_hz, device_factory=device_factory)
    elif kind == "vospi-file":
        source = FileSource(rest, capture.sensor, telemetry,
                            realtime=capture.replay == "realtime", loop=capture.loop)
    elif kind == "image":
        source = ImageSource(rest, capture.sensor, telemetry, _kelvin_per_count(capture))
    else:
        raise ConfigError(f"[capture] source = {spec}: expected auto, sim, spi:/dev/spidevB.D, "
                          f"vospi-file:PATH or image:PATH")
    if record:
        source = Recorder(source, record)
    return source
