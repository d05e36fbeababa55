"""The SPI source: a real Lepton on Linux spidev.

The device is opened through a factory, a seam that lets tests serve simulator bytes from a
stand-in device (there is no SPI hardware where the tests run). Everything that can go wrong with
the camera makes the source offline with the reason, and it tries again with growing delays,
forever: the device missing (SPI not enabled, not plugged in), not a spidev, the spidev module not
installed, a read failing (unplugged while streaming), Errno 90 (spidev's buffer smaller than a
packet).
"""
from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable, Optional, Protocol

from . import vospi
from .reader import DEFAULT_SPI_DEVICE, SourceOffline

log = logging.getLogger("capture.spi")

BUFSIZ_PATH = "/sys/module/spidev/parameters/bufsiz"
SPIDEV_DEFAULT_BUFSIZ = 4096
MAX_READ_PACKETS = 128        # ~21 kB per read: a few ms of the bus, so frames leave promptly
BATCH_PACKETS = 72            # what read() gathered before whole-segment reads (the benchmark's
                              # "before")
# read() takes one Lepton segment's worth: 61 packets (a Lepton 3 segment with telemetry; one
# packet more than without, and about a Lepton 2 frame). One wake-up per segment (106 a second)
# reads ~5 ms of bus at 16 MHz and leaves the other ~4.5 ms of the 9.4 ms segment period for the
# assembler, instead of a Python loop per packet or per small transfer.
SEGMENT_READ_PACKETS = 61
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)


class Device(Protocol):
    """What SpiSource needs of an opened SPI device. A device may also have readv(buffers)
    (consecutive transfers into the buffers, as os.readv on spidev) or readinto(buffer): then
    SpiSource reads into its own preallocated buffer instead of making new bytes per transfer."""

    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


DeviceFactory = Callable[[str], Device]

_SPIDEV_NAME = re.compile(r"spidev(\d+)\.(\d+)$")


class NotSpidev(OSError):
    """The path exists but is no spidev device."""


def spidev_bus(path: str) -> tuple[int, int]:
    """/dev/spidevB.D (or a link to one) -> (B, D)."""
    m = _SPIDEV_NAME.search(os.path.realpath(path))
    if not m:
        raise NotSpidev(f"not a spidev device (expected one like {DEFAULT_SPI_DEVICE})")
    return int(m.group(1)), int(m.group(2))


class SpidevDevice:
    """A Lepton on Linux spidev: mode 3, 8-bit words, MSB first, reads only."""

    def __init__(self, path: str, speed_hz: int):
        import spidev  # ImportError: told to the user as offline, with the pip command

        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "no such device", path)
        bus, dev = spidev_bus(path)
        self._spi = spidev.SpiDev()
        self._spi.open(bus, dev)  # FileNotFoundError / PermissionError go to the caller
        try:
            self._spi.mode = 3
            self._spi.bits_per_word = 8
            self._spi.max_speed_hz = speed_hz
        except OSError:
            self._spi.close()
            raise
        # Reading the file descriptor gives bytes at once; readbytes() builds a list of ints.
        fileno = getattr(self._spi, "fileno", None)
        self._fd = fileno() if fileno else None

    def read(self, size: int) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, size)
        return bytes(self._spi.readbytes(size))

    def readv(self, buffers) -> int:
        """One transfer per buffer in one system call: spidev has no read_iter, so the kernel
        calls its read() for each buffer in turn (each within bufsiz), chip select deasserted
        between them, which VoSPI allows between whole packets."""
        if self._fd is not None:
            return os.readv(self._fd, buffers)
        total = 0
        for buffer in buffers:
            data = self._spi.readbytes(len(buffer))
            buffer[:len(data)] = bytes(data)
            total += len(data)
        return total

    def close(self) -> None:
        self._spi.close()


def spidev_bufsiz(path: str = BUFSIZ_PATH) -> int:
    """spidev's largest transfer (the module parameter), or its default when unknown."""
    try:
        return max(int(Path(path).read_text().strip()), vospi.PACKET_BYTES)
    except (OSError, ValueError):
        return SPIDEV_DEFAULT_BUFSIZ


class SpiSource:
    """A real Lepton on the SPI bus. The device is opened through `device_factory`, a seam that
    lets tests serve simulator bytes from a stand-in. When opening or reading fails the source
    is offline: it closes the device and tries again with growing delays, forever."""

    def __init__(self, path: str, speed_hz: int = 16_000_000,
                 device_factory: Optional[DeviceFactory] = None, bufsiz: Optional[int] = None,
                 read_packets: int = SEGMENT_READ_PACKETS,
                 sleep: Callable[[float], None] = time.sleep):
        self.path = path
        self.name = f"spi:{path}"
        self.speed_hz = speed_hz
        if device_factory is None:
            device_factory = lambda p: SpidevDevice(p, speed_hz)  # noqa: E731
        self._factory = device_factory
        self._sleep = sleep
        size = bufsiz if bufsiz is not None else spidev_bufsiz()
        # Whole packets only, within spidev's buffer (a bigger read fails with Errno 90).
        self.read_size = max(1, min(size // vospi.PACKET_BYTES, MAX_READ_PACKETS)) * vospi.PACKET_BYTES
        # One buffer for every read(), cut into transfers of at most read_size (views made once).
        self.read_packets = max(1, read_packets)
        self._buffer = bytearray(self.read_packets * vospi.PACKET_BYTES)
        self._views: list[memoryview] = []
        self._cut()
        self._device: Optional[Device] = None
        self._failures = 0
        self.retry_delay = BACKOFF_S[0]
        self.opens = 0

    def _offline(self, detail: str) -> SourceOffline:
        self.retry_delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
        self._failures += 1
        return SourceOffline(detail)

    def _open(self) -> None:
        try:
            self._device = self._factory(self.path)
        except ImportError:
            raise self._offline(f"cannot read {self.path}: the Python module spidev is not "
                                f"installed: pip install flir-stream[spi]") from None
        except NotSpidev as exc:
            raise self._offline(f"cannot open {self.path}: {exc}") from None
        except FileNotFoundError:
            raise self._offline(f"cannot open {self.path}: no such device (is SPI enabled? "
                                f"dtparam=spi=on in config.txt)") from None
        except PermissionError:
            raise self._offline(f"cannot open {self.path}: permission denied (add the user to "
                                f"the spi group)") from None
        except OSError as exc:
            raise self._offline(f"cannot open {self.path}: {exc.strerror or exc}") from None
        self.opens += 1
        log.info("opened %s (mode 3, %d Hz, %d-byte reads)", self.path, self.speed_hz,
                 self.read_size)

    def _cut(self) -> None:
        whole = memoryview(self._buffer)
        step = self.read_size
        self._views = [whole[i:i + step] for i in range(0, len(whole), step)]

    def read(self) -> bytes:
        """About `read_packets` packets (whole transfers of at most read_size bytes)."""
        if self._device is None:
            self._open()
        device = self._device
        try:
            readv = getattr(device, "readv", None)
            if readv is not None:
                got = readv(self._views)
            elif hasattr(device, "readinto"):
                got = sum(device.readinto(view) for view in self._views)
            else:  # a plain read(size) device: new bytes per transfer
                got = -1
                data = b"".join(device.read(len(view)) for view in self._views)
            if got >= 0:
                data = bytes(self._buffer) if got == len(self._buffer) else bytes(self._buffer[:got])
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                return self._too_long()
            self.close()
            raise self._offline(f"reading {self.path} failed: {exc.strerror or exc}; "
                                f"reopening") from None
        self._failures = 0
        self.retry_delay = BACKOFF_S[0]
        return data

    def _too_long(self) -> bytes:
        message = (f"{self.path}: a {self.read_size}-byte read is larger than spidev's buffer "
                   f"(Errno 90): add spidev.bufsiz=65536 to the kernel command line "
                   f"(/boot/firmware/cmdline.txt) and reboot")
        if self.read_size <= vospi.PACKET_BYTES:
            raise self._offline(message)
        # Keep streaming with smaller reads meanwhile.
        self.read_size = max(self.read_size // 2 // vospi.PACKET_BYTES, 1) * vospi.PACKET_BYTES
        self._cut()
        log.warning("%s; reading %d bytes at a time for now", message, self.read_size)
        return b""

    def pause(self, seconds: float) -> None:
        # spidev deasserts chip select between transfers: not reading for a while resyncs.
        self._sleep(seconds)

    def reopen(self) -> None:
        """Close the device; the next read() opens it again (the recovery ladder's step)."""
        self.close()

    def close(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except OSError:
                pass
            self._device = None
