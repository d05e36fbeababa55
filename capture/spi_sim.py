"""A timing-faithful simulated Lepton on the SPI bus, behind SpiSource's device seam.

capture.sim.SimulatedLepton makes the pixels; this module adds what the bus does with them in
time. The Lepton has no flow control (Lepton engineering datasheet, 500-0659-00-09 rev 203,
VoSPI: "no embedded timing signals and no requirement for flow control"): it makes segments on
its own clock, whether anybody reads them or not.

- Lepton 3: a segment every 1/106 s ("the segment rate is approximately 106 Hz, which equates to
  a frame rate of ~26.5 Hz"), so four per frame at the simulator's fps. Lepton 2: one frame (a
  "segment" of 60 packets here) per frame period.
- A segment can be read from its packet 0 on from the moment it is available until the next one
  is; whatever is left of it then is gone and the reader gets the next segment's packets. Once
  it is read out the reader gets discard packets until the next one.
- Bytes cost bus time: a read of n bytes takes n * 8 / speed_hz seconds (spidev blocks for the
  transfer), so a reader slower than the camera cannot catch up by reading more at once.
- Sync (datasheet 4.2.3.3.2 "Maintaining Sync"): a packet must be clocked out within 3 line
  periods once it started (the intra-packet timeout; a line period is ~0.5 ms: "-3 to +3 line
  periods (approximately -1.5 msec to +1.5 msec)"), and failing to read out the frames is a
  violation too. This simulator forgives a missed segment (it is only lost) but a stall longer
  than `lose_sync_s` (default: a whole frame period, every segment of a frame missed) or a read
  that stops inside a packet for longer than the intra-packet timeout loses sync: from then on
  the reader gets garbage (or only discard packets, `out_of_sync="discards"`) until it holds
  chip select high (does not read) for at least 185 ms ("Deassert /CS and idle SCK for at least
  5 frame periods (>185 msec)"). Then the stream starts again at the next segment ("when a new
  segment is available (should be less than 10 msec after asserting /CS ...) the first video
  packet will be transmitted").
- `broken` makes a camera that never syncs: "until-reboot" (until an OEM reboot over CCI, or
  reboot() without a CCI device) or "always" (a dead camera or bus). While the camera boots
  (after a reboot) it sends discard packets.

TimedLepton is the camera (it keeps running while the device is closed); open() gives the file
SpiSource reads (`device_factory=camera.open`). Clock and sleep are injectable.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from . import vospi
from .sim import SimulatedLepton

RESYNC_MIN_S = vospi.RESYNC_MIN_S  # CS high this long (>185 ms = 5 frame periods) resyncs
LINE_PERIOD_S = 0.5e-3           # "3 line periods (approximately 1.5 msec)"
INTRA_PACKET_TIMEOUT_S = 3 * LINE_PERIOD_S
GARBAGE_BYTES = 1 << 16
P = vospi.PACKET_BYTES


def stamp_frame_counter(frame: bytes, counter: int, sensor: str, telemetry: str) -> bytes:
    """A frame's packets with telemetry row A's frame counter (words 20-21, low word first)
    set to `counter` and that packet's CRC made right again."""
    geometry = vospi.FrameAssembler(sensor, telemetry).geometry
    if not geometry.telemetry_packets:
        return frame
    out = bytearray(frame)
    at = geometry.telemetry_rows.start * P
    low, high = counter & 0xFFFF, (counter >> 16) & 0xFFFF
    out[at + 4 + 40:at + 4 + 44] = bytes((low >> 8, low & 0xFF, high >> 8, high & 0xFF))
    crc = vospi.packet_crc(bytes(out[at:at + P]))
    out[at + 2:at + 4] = bytes((crc >> 8, crc & 0xFF))
    return bytes(out)


class TimedLepton:
    """The camera: SimulatedLepton frames cut into segments on the camera's clock."""

    def __init__(self, sim: SimulatedLepton, *, speed_hz: int = 16_000_000,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 lose_sync_s: Optional[float] = None, out_of_sync: str = "garbage",
                 broken: Optional[str] = None, pool: int = 0, seed: int = 0):
        if out_of_sync not in ("garbage", "discards"):
            raise ValueError("out_of_sync: expected garbage or discards")
        if broken not in (None, "until-reboot", "always"):
            raise ValueError("broken: expected None, until-reboot or always")
        self.sim = sim
        self.segments = 4 if sim.sensor == "lepton3" else 1
        # Lepton 3: 106 segments/s at 26.5 frames/s, i.e. four segments per frame period.
        self.segment_s = 1.0 / (sim.fps * self.segments)
        self.packet_s = P * 8.0 / speed_hz
        self.lose_sync_s = self.segments * self.segment_s if lose_sync_s is None else lose_sync_s
        self.out_of_sync = out_of_sync
        self.broken = broken
        self._clock = clock
        self._sleep = sleep
        self.epoch = clock()
        self.in_sync = not broken
        self.booting_until = 0.0
        self._after_boot = False
        self._boot_seen = getattr(sim.cci, "boot_at", None)
        self._last_end: Optional[float] = None  # bus time the last read ended (None: never read)
        self._partial = False                   # the last read stopped inside a packet
        self._carry = b""                       # ... and the rest of that packet
        self._segment = -1                       # index of the segment being served
        self._taken = 0                          # packets of it read so far
        self._whole = False                      # ... all of them
        self._withheld = False                   # it is not sent (resync mid-segment)
        self._parts: list[bytes] = []            # the segments of the frame being served
        self._frame = -1
        self._pool = [self._frame_packets(i) for i in range(pool)] if pool else None
        rng = np.random.default_rng(seed)
        self._garbage = rng.integers(0, 256, GARBAGE_BYTES + P, dtype=np.uint8).tobytes()
        self._garbage_at = 0
        self._discard = vospi.discard_packets(1)
        self.opens = 0
        self.open_devices = 0
        # What happened (the benchmark and tests read these)
        self.segments_read = 0     # segments the reader took whole
        self.segments_lost = 0     # segments that were (partly or wholly) not read in time
        self.sync_losses = 0
        self.resyncs = 0           # times CS was held high >= 185 ms
        self.reboots = 0
        self.reads = 0
        self.read_sizes: set[int] = set()

    # -- the camera

    def open(self, path: str = "/dev/spidev0.0") -> "TimedSpiDevice":
        """A device for SpiSource (usable as its device_factory)."""
        self.opens += 1
        return TimedSpiDevice(self)

    def reboot(self) -> None:
        """An OEM reboot without a CCI device: the camera boots (~0.8 s of discards) afresh."""
        self._rebooted(self._clock() + 0.8)

    def _rebooted(self, ready_at: float) -> None:
        self.reboots += 1
        self.booting_until = ready_at
        self._after_boot = True
        if self.broken == "until-reboot":
            self.broken = None
        self.in_sync = not self.broken

    def produced(self, until: Optional[float] = None) -> int:
        """Segments the camera has made available since it started."""
        now = self._clock() if until is None else until
        return int((now - self.epoch) / self.segment_s) + 1

    def _check_cci(self, now: float) -> None:
        cci = self.sim.cci
        if cci is None:
            return
        cci.update(now)
        if cci.booting_until > cci.boot_at:  # rebooting now
            if self.booting_until < cci.booting_until:
                self._rebooted(cci.booting_until)
        elif cci.boot_at != self._boot_seen:  # booted meanwhile
            self._boot_seen = cci.boot_at
            if self.booting_until < cci.boot_at:
                self._rebooted(cci.boot_at)

    def _frame_packets(self, frame: int) -> bytes:
        """Frame `frame`'s packets (the simulator's frame with its leading discards cut)."""
        self.sim.frame_counter = frame
        data = self.sim.next_period()
        start = 0
        while start + P <= len(data) and data[start] & 0x0F == 0x0F:
            start += P
        return data[start:]

    def _segment_bytes(self, index: int) -> bytes:
        frame, part = divmod(index, self.segments)
        if frame != self._frame:
            if self._pool is not None:
                data = stamp_frame_counter(self._pool[frame % len(self._pool)], frame,
                                           self.sim.sensor, self.sim.telemetry)
            else:
                data = self._frame_packets(frame)
            count = len(data) // P
            per = count // self.segments
            cuts = [i * per * P for i in range(self.segments)] + [len(data)]
            self._parts = [data[cuts[i]:cuts[i + 1]] for i in range(self.segments)]
            self._frame = frame
        return self._parts[part]

    # -- the bus

    def transfer(self, out: memoryview) -> None:
        """Fill `out` with what the bus carries for a read starting now, and block for as long
        as the transfer takes."""
        start = self._clock()
        size = len(out)
        self.reads += 1
        self.read_sizes.add(size)
        self._check_cci(start)
        gap = None if self._last_end is None else start - self._last_end
        if gap is None or gap >= RESYNC_MIN_S:
            if gap is not None:
                self.resyncs += 1
            if not self.broken:
                self.in_sync = True
            current = int((start - self.epoch) / self.segment_s)
            if gap is None:  # the first read: nothing before it counts as lost
                self._segment, self._whole = current, True
            self._advance(current, withhold=True)
        elif self.in_sync and (gap > self.lose_sync_s
                               or (self._partial and gap > INTRA_PACKET_TIMEOUT_S)):
            self.in_sync = False
            self.sync_losses += 1
        if not self.in_sync or gap is None or gap >= RESYNC_MIN_S:
            self._carry = b""
        end = start + size / P * self.packet_s
        if self._after_boot and start >= self.booting_until:
            self._after_boot = False
            self._advance(int((start - self.epoch) / self.segment_s), withhold=True)
        if not self.in_sync or start < self.booting_until:
            self._fill_out_of_sync(out, booting=start < self.booting_until)
        else:
            self._fill(out, start)
        self._partial = size % P != 0
        self._last_end = end
        delay = end - self._clock()
        if delay > 0:
            self._sleep(delay)

    def _advance(self, current: int, withhold: bool = False) -> None:
        """Move to segment `current`, counting the segments that went by unread. `withhold`:
        after a resync the segment under way is not sent (the stream resumes at the next)."""
        if current != self._segment:
            if self._segment >= 0:
                if not self._whole:
                    self.segments_lost += 1
                self.segments_lost += current - self._segment - 1
            self._segment = current
            self._taken = 0
            self._whole = False
            self._withheld = False
        if withhold and not self._whole:
            self._withheld = True

    def _fill(self, out: memoryview, start: float) -> None:
        size = len(out)
        pos = 0
        t = start
        if self._carry:  # the rest of a packet the last read stopped inside
            pos = min(len(self._carry), size)
            out[:pos] = self._carry[:pos]
            self._carry = self._carry[pos:]
            t += pos / P * self.packet_s
        while pos < size:
            current = int((t - self.epoch) / self.segment_s)
            self._advance(current)
            # Packets that start before the next segment is available come from this one.
            window_end = self.epoch + (current + 1) * self.segment_s
            count = min(max(1, int((window_end - t) / self.packet_s + 0.999999)),
                        (size - pos + P - 1) // P)
            take = 0
            if not self._withheld and not self._whole:
                data = self._segment_bytes(current)
                total = len(data) // P
                take = min(count, total - self._taken)
                n = min(take * P, size - pos)
                at = self._taken * P
                out[pos:pos + n] = data[at:at + n]
                self._carry = data[at + n:at + take * P]
                pos += n
                self._taken += take
                if self._taken >= total:
                    self._whole = True
                    self.segments_read += 1
            for _ in range(count - take):
                n = min(P, size - pos)
                out[pos:pos + n] = self._discard[:n]
                self._carry = self._discard[n:]
                pos += n
            t += count * self.packet_s

    def _fill_out_of_sync(self, out: memoryview, booting: bool) -> None:
        size = len(out)
        if booting or self.out_of_sync == "discards":
            pos = 0
            while pos < size:
                n = min(P, size - pos)
                out[pos:pos + n] = self._discard[:n]
                pos += n
            return
        pos = 0
        while pos < size:  # misaligned random bytes, a different stretch every time
            n = min(size - pos, GARBAGE_BYTES - self._garbage_at)
            out[pos:pos + n] = self._garbage[self._garbage_at:self._garbage_at + n]
            pos += n
            self._garbage_at = (self._garbage_at + n + 7) % GARBAGE_BYTES


class TimedSpiDevice:
    """An open /dev/spidevB.D with a TimedLepton on it: read(size), readinto(buffer) and
    readv(buffers) (consecutive transfers, as os.readv on spidev does), close()."""

    def __init__(self, camera: TimedLepton):
        self.camera = camera
        self.closed = False
        camera.open_devices += 1

    def read(self, size: int) -> bytes:
        buffer = bytearray(size)
        self.readinto(buffer)
        return bytes(buffer)

    def readinto(self, buffer) -> int:
        if self.closed:
            raise OSError(9, "Bad file descriptor")
        view = memoryview(buffer).cast("B")
        self.camera.transfer(view)
        return len(view)

    def readv(self, buffers) -> int:
        return sum(self.readinto(b) for b in buffers)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.camera.open_devices -= 1
