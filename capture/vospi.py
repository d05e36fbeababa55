"""VoSPI, the Lepton's video-over-SPI stream: packets in, frames out (and the inverse, for tests).

Pure code, no I/O. Facts from ../shared/LEPTON_VOSPI.md (the Lepton engineering datasheet):
a packet is 164 bytes (ID, CRC, 80 big-endian 16-bit words); discard packets (ID & 0x0F00 == 0x0F00)
are skipped; every other packet's CRC-16 (XMODEM, over the packet with the ID's top nibble and the
CRC field zeroed) is checked. Lepton 2: a frame is packets 0..59 (0..62 with telemetry). Lepton 3:
a frame is segments 1, 2, 3, 4 (from the TTT bits of packet 20) of 60 packets each (61 with
telemetry); TTT = 0 segments are invalid and dropped.

Telemetry layout (datasheet): the telemetry lines are extra packets at the start (header) or end
(footer) of the frame's packet sequence. Lepton 2: 3 packets (rows A, B, C) -> 63 per frame.
Lepton 3: 4 packets (A, B, C, reserved) -> 244 per frame, so every segment has 61 packets and the
segment boundaries fall in the middle of image rows (footer: segment 4 packets 57..60 are telemetry).

How the assembler works: each feed() views the complete packets as an (n, 164) array, checks all
CRCs at once (capture/_vospi_crc.c where it was compiled, else a per-position lookup table, since
the CRC is linear in the bytes), and finds whole segments with a few array operations (a segment is
Q consecutive good packets numbered 0..Q-1). A short Python loop then joins segments into frames.
The unfinished tail (a partial segment, and the segments of an unfinished frame) is kept for the
next feed().

If several packets in a row fail their CRC the byte stream is probably misaligned (a lost or extra
byte). The assembler then hunts byte by byte for the next packet with a valid CRC, from just after
the start of the last packet that showed the stream in step (the slip may lie anywhere after it,
even in the discards before the bad packets), and continues from there. `lost_sync` tells the
SPI reader that no frame came for a long time, so it can pause >= 185 ms (the sensor's
resynchronisation) and call resync().

An all-zero packet is never taken, though its CRC is valid (CRC-16/XMODEM of zeros is zero): the
last 162 bytes of a zero-filled discard and the 2 ID bytes of a packet 0 cut short after them make
one, in step with the packets that follow when 2 bytes were lost before it (164 bytes lost in all:
no CRC fails), and taking it would put a row of zeros in a frame that looks whole. It is counted
as a CRC error. The cost: a real packet 0 of zero pixels loses its frame. Raw and TLinear values
are never 0; with the camera's own AGC on, 0 is black, so a frame whose first half-row (Lepton 3;
a row on a Lepton 2) is all black would be lost (the real AGC-on tCam sample has black pixels, but
no such packet).
"""
from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Optional

import numpy as np

from flirstream.wire import KELVIN_AT_0C

PACKET_BYTES = 164
PAYLOAD_BYTES = 160
WORDS_PER_PACKET = 80
RESYNC_MIN_S = 0.185    # the datasheet's minimum CS-deasserted time to resynchronise
RESYNC_PAUSE_S = 0.2    # what the reader waits (a margin over the minimum)

SENSORS = {"lepton2": (60, 80), "lepton3": (120, 160)}  # (rows, cols)
TELEMETRY_MODES = ("off", "header", "footer")
FFC_STATES = ("never", "imminent", "in progress", "complete")

# Consecutive CRC failures after which the stream is taken to be misaligned and re-hunted.
HUNT_AFTER_BAD = 3
# How far back before a bad run the hunt may start, and so the bytes kept across feed() calls.
# A misalignment can begin anywhere after the start of the last packet in step (see _process),
# and a misaligned slot whose first byte happens to have the discard nibble (1 in 16) is skipped
# as a discard: the packet it hides is lost unless the hunt goes back into it. 8 slots back miss
# such a packet only at odds of 16^-7.
MAX_LOOKBACK = 8 * 164

# A packet's first byte says discard when its low nibble is 0xF: tables for bytes.translate().
_NOT_DISCARD = bytes(b for b in range(256) if b & 0x0F != 0x0F)
_DISCARD_FLAG = bytes(1 if b & 0x0F == 0x0F else 0 for b in range(256))
_ZERO_PACKET = bytes(PACKET_BYTES)


# ---------------------------------------------------------------- CRC

def _crc_table() -> np.ndarray:
    """(164 * 256) table: CRC of a packet = XOR over byte positions i of table[i * 256 + byte_i].

    CRC-16/XMODEM with initial value 0 is linear over GF(2), so a packet's CRC is the XOR of the
    CRCs of packets that hold only one of its bytes each. The masking the datasheet asks for (ID top
    nibble and CRC field count as zero) is folded into the table: rows 2 and 3 are zero and row 0
    ignores the high nibble.
    """
    basis = np.zeros((PACKET_BYTES, 8), dtype=np.uint16)  # CRC of a packet with one bit set
    zero = bytearray(PACKET_BYTES)
    for pos in range(PACKET_BYTES):
        for bit in range(8):
            zero[pos] = 1 << bit
            basis[pos, bit] = binascii.crc_hqx(bytes(zero), 0)
        zero[pos] = 0
    values = np.arange(256)
    bits = ((values[:, None] >> np.arange(8)) & 1).astype(bool)  # (256, 8)
    table = np.bitwise_xor.reduce(np.where(bits[None, :, :], basis[:, None, :], 0), axis=2)
    table = table.astype(np.uint16)
    table[0] = table[0][values & 0x0F]
    table[2] = 0
    table[3] = 0
    return np.ascontiguousarray(table.ravel())


_CRC_TABLE = _crc_table()
# Table offsets fit in uint16 (164 * 256 < 65536): a uint16 index array is the cheapest to build.
_CRC_OFFSETS = (np.arange(PACKET_BYTES) * 256).astype(np.uint16)


# The same table with each entry's two bytes swapped: XOR commutes with the swap, so it gives
# each CRC as the packet's own two bytes read as a little-endian uint16 (native on the Pi and
# x86): compared with the CRC field where it lies, no byte-order conversion of the packets' words.
_CRC_TABLE_SWAPPED = _CRC_TABLE.astype("<u2").byteswap()


def packet_crcs(packets: np.ndarray, table: np.ndarray = _CRC_TABLE) -> np.ndarray:
    """The CRC each packet of an (n, 164) uint8 array should carry (computed, not read)."""
    index = packets + _CRC_OFFSETS  # uint8 + uint16 arrays -> uint16
    return np.bitwise_xor.reduce(table.take(index), axis=1)


try:  # the same check compiled (setup.py builds it where it can), one call a read
    from ._vospi_crc import check as _compiled_check
except ImportError:
    _compiled_check = None

CRC_CHECK = ("compiled (capture/_vospi_crc.c)" if _compiled_check else
             "numpy table (capture/_vospi_crc.c not built: installing needs a C compiler and "
             "Python's headers, Debian's python3-dev)")


def packets_ok(packets: np.ndarray, compiled: bool = True) -> np.ndarray:
    """For each packet of an (n, 164) uint8 array: does its CRC field hold its CRC? (A writable
    bool array; compiled=False uses the numpy table even where the C check is.)"""
    if compiled and _compiled_check is not None:
        return np.frombuffer(_compiled_check(packets), dtype=bool)
    return packet_crcs(packets, _CRC_TABLE_SWAPPED) == packets.view("<u2")[:, 1]


def _refuse_zero_packets(data: bytes, at: int, n: int, found: int, ok: np.ndarray) -> None:
    """Mark the all-zero packets among the n at `at` as bad (`found`: where the first run of
    PACKET_BYTES zeros starts; one that straddles two packets is no packet)."""
    stop = at + n * PACKET_BYTES
    while found >= 0:
        i, rest = divmod(found - at, PACKET_BYTES)
        if rest == 0:
            ok[i] = False
        found = data.find(_ZERO_PACKET, at + (i + 1) * PACKET_BYTES, stop)  # the next packet on


def packet_crc(packet: bytes) -> int:
    """The CRC one packet should carry, with binascii (used where a single packet is checked)."""
    head = bytes((packet[0] & 0x0F, packet[1], 0, 0))
    return binascii.crc_hqx(packet[4:PACKET_BYTES], binascii.crc_hqx(head, 0))


# ---------------------------------------------------------------- frames and counters

@dataclass
class Frame:
    image: np.ndarray  # (rows, cols) native uint16; the caller may keep it
    telemetry: Optional[dict] = None
    # Telemetry rows A, B, C as sent, (3, 80) native uint16 (capture.telemetry.parse reads them)
    telemetry_rows: Optional[np.ndarray] = None


@dataclass
class Counters:
    packets: int = 0           # packets read, discards included
    discards: int = 0
    crc_errors: int = 0        # packets whose CRC did not match (the first of a misaligned stretch)
    sequence_errors: int = 0   # good packets whose number did not follow the previous good packet
    dropped_segments: int = 0  # Lepton 3 segments started but not used (incl. TTT = 0 segments)
    dropped_frames: int = 0    # frames started but not completed
    resyncs: int = 0           # resync() calls (the reader paused the stream)
    realigns: int = 0          # times the byte stream was found misaligned and re-hunted
    skipped_bytes: int = 0     # bytes a hunt skipped that were not counted as packets
    frames: int = 0

    def as_dict(self) -> dict:
        # a plain copy (the fields are ints): dataclasses.asdict's deep copy is slow at 26.5 Hz
        return dict(self.__dict__)


def parse_telemetry(words: np.ndarray) -> dict:
    """Telemetry row A (80 words) -> the fields people look at.

    Datasheet layout: 32-bit values are two words, least significant word first. Word 0 revision,
    1-2 time counter (ms), 3-4 status (FFC state in bits 4-5), 20-21 frame counter, 22 frame mean,
    23 FPA temperature (counts), 24 FPA temperature (kelvin x 100), 26 housing temperature (x 100).
    """
    w = [int(x) for x in words[:27]]
    status = w[3] | (w[4] << 16)
    fpa_k = w[24] / 100.0
    housing_k = w[26] / 100.0
    return {
        "revision": w[0],
        "time_ms": w[1] | (w[2] << 16),
        "frame_counter": w[20] | (w[21] << 16),
        "frame_mean": w[22],
        "fpa_temp_k": round(fpa_k, 2),
        "fpa_temp_c": round(fpa_k - KELVIN_AT_0C, 2),
        "housing_temp_k": round(housing_k, 2),
        "housing_temp_c": round(housing_k - KELVIN_AT_0C, 2),
        "ffc_state": FFC_STATES[(status >> 4) & 0x3],
        "ffc_desired": bool(status & 0x8),
    }


class _Geometry:
    """Packets per segment, segments per frame and where the image and telemetry lie in a frame."""

    def __init__(self, sensor: str, telemetry: str):
        if sensor not in SENSORS:
            raise ValueError(f"sensor {sensor!r}: expected one of {', '.join(SENSORS)}")
        if telemetry not in TELEMETRY_MODES:
            raise ValueError(f"telemetry {telemetry!r}: expected one of {', '.join(TELEMETRY_MODES)}")
        self.sensor = sensor
        self.telemetry = telemetry
        self.rows, self.cols = SENSORS[sensor]
        self.video_packets = self.rows * self.cols // WORDS_PER_PACKET  # 60 or 240
        self.segments = 1 if sensor == "lepton2" else 4
        self.telemetry_packets = 0 if telemetry == "off" else (3 if sensor == "lepton2" else 4)
        self.frame_packets = self.video_packets + self.telemetry_packets
        self.segment_packets = self.frame_packets // self.segments  # Q: 60, 61 or 63
        first = self.telemetry_packets if telemetry == "header" else 0
        self.video = slice(first, first + self.video_packets)
        tel_first = 0 if telemetry == "header" else self.video_packets
        self.telemetry_rows = slice(tel_first, tel_first + self.telemetry_packets)


# ---------------------------------------------------------------- the assembler

class FrameAssembler:
    """Bytes read from the sensor in, complete frames out. See the module docstring."""

    def __init__(self, sensor: str = "lepton3", telemetry: str = "off",
                 lost_after_packets: Optional[int] = None):
        self.geometry = g = _Geometry(sensor, telemetry)
        self.sensor = sensor
        self.telemetry = telemetry
        self.counters = Counters()
        # No frame within this many non-discard packets (about four frames) = sync is lost.
        self.lost_after_packets = lost_after_packets or 4 * g.frame_packets
        # Bytes kept for the next feed(): a partial packet, and the slots from the last packet
        # that showed the stream in step (at most MAX_LOOKBACK: a hunt starts there); processing
        # resumes at offset _resume of them.
        self._tail = b""
        self._resume = 0
        self._in_step = 0           # offset in the buffer of that packet
        self._hunting = False
        self._counted_to = 0        # while hunting: the end of the slots counted as packets
        self._bad_run = 0           # consecutive CRC failures so far
        self._since_frame = 0       # non-discard packets (and skipped bytes / 164) since a frame
        self._prev: tuple[int, bool] = (-1, False)  # (number, CRC good) of the last packet
        # The unfinished tail: complete segments of the frame being assembled, then the packets
        # of the segment being received (a chain numbered 0..len-1).
        self._segments: list[list] = []  # each a list of (k, 160) uint8 views, TTT 1, 2, ...
        self._chain: list[np.ndarray] = []         # (k, 160) uint8 pieces
        self._chain_len = 0
        self._chain_ttt: Optional[int] = None      # TTT of the chain once its packet 20 arrived
        self._numbers = np.arange(0)  # cache for _pattern()
        self._starts = 0        # good packets numbered 0 (segment starts; frame starts on Lepton 2)
        self._frame_starts = 0  # Lepton 3: complete segments with TTT 1
        # Signs that the settings do not match the camera (see hint).
        self._ttt_on_lepton2 = 0    # Lepton 2 packets with segment bits: a Lepton 3
        self._invalid_segments = 0  # Lepton 3 segments with TTT 0
        self._extra_numbers = 0     # good packets numbered just past the segment: telemetry

    # -- public

    @property
    def hint(self) -> Optional[str]:
        """What the settings probably get wrong about the camera, when frames do not come right."""
        g, c = self.geometry, self.counters
        if self._ttt_on_lepton2 >= 2:
            return ("packet 20 carries a segment number, so this is a Lepton 3: "
                    "set [capture] sensor = lepton3")
        if c.frames == 0 and self._invalid_segments >= 8:
            return ("segments never carry a segment number (TTT), as from a Lepton 2: "
                    "set [capture] sensor = lepton2")
        if g.telemetry == "off" and self._extra_numbers >= 3:
            return (f"packets numbered {g.segment_packets} and up arrive: the camera sends "
                    f"telemetry lines: set [capture] telemetry = header or footer")
        if c.frames == 0 and c.packets - c.discards >= 8 * g.frame_packets:
            return ("no complete frame yet: check that [capture] sensor and telemetry match "
                    "the camera")
        return None

    @property
    def lost_sync(self) -> bool:
        """True when no frame came for a long stretch of packets: pause >= 185 ms, then resync()."""
        return self._since_frame >= self.lost_after_packets

    def resync(self) -> None:
        """Forget everything buffered: the reader paused and the sensor starts a fresh frame."""
        self.counters.resyncs += 1
        self._tail = b""
        self._resume = 0
        self._in_step = 0
        self._hunting = False
        self._counted_to = 0
        self._bad_run = 0
        self._since_frame = 0
        self._prev = (-1, False)
        self._drop_pending()

    def counters_dict(self) -> dict:
        """Counters with the dropped segments / frames brought up to date."""
        self._update_dropped()
        return self.counters.as_dict()

    def feed(self, data: bytes) -> list[Frame]:
        """Bytes in any chunking -> the frames they complete, oldest first."""
        buf = self._tail + bytes(data) if self._tail else bytes(data)
        frames: list[Frame] = []
        pos = self._resume
        while True:
            if self._hunting:
                pos = self._hunt(buf, pos)
                if self._hunting:  # not found yet: wait for more bytes
                    break
            count = (len(buf) - pos) // PACKET_BYTES
            if count == 0:
                break
            pos = self._process(buf, pos, count, frames)
            if not self._hunting:
                break
        keep = pos
        if not self._hunting:  # keep the slots from the last packet in step, for a hunt
            keep = min(pos, max(self._in_step, pos - MAX_LOOKBACK))
            self._in_step = max(self._in_step - keep, 0)
        self._counted_to = max(self._counted_to - keep, 0)
        self._tail = buf[keep:]
        self._resume = pos - keep
        self._update_dropped()
        return frames

    # -- internals

    def _hunt(self, buf: bytes, pos: int) -> int:
        """Look for the stream's packets again from pos; returns where to go on from.

        A candidate is a packet whose number fits the frame and whose CRC is valid, followed by
        another such packet (or by a discard after the last packet of a segment). Checking two
        packets keeps the hunt from locking on a run of zeros: an all-zero packet has a valid
        CRC, and discard payloads followed by packet 0's ID can look like one. That is not enough
        when packet 0 was cut short after its ID: the 162 zeros ending a zero-filled discard, plus
        that ID, make an all-zero "packet 0" and the real packet 1 follows it. So an all-zero
        candidate is never taken (the cost: a real packet 0 of zero pixels, which no working
        sensor sends, is not found by a hunt and its frame is lost; a false frame would be worse).
        """
        Q = self.geometry.segment_packets
        last = len(buf) - 2 * PACKET_BYTES  # last offset where a candidate and its successor fit
        if last < pos:
            return pos
        arr = np.frombuffer(buf, dtype=np.uint8)
        b0 = arr[pos:last + 1]
        b1 = arr[pos + 1:last + 2]
        # A packet number < Q has bits 11..8 zero (so the packet is no discard either).
        plausible = np.flatnonzero(((b0 & 0x0F) == 0) & (b1 < Q))
        for rel in plausible.tolist():
            off = pos + rel
            packet = buf[off:off + PACKET_BYTES]
            if packet_crc(packet) != (packet[2] << 8 | packet[3]) or packet == _ZERO_PACKET:
                continue
            following = buf[off + PACKET_BYTES:off + 2 * PACKET_BYTES]
            if (following[0] & 0x0F) == 0x0F:
                if packet[1] != Q - 1:
                    continue
            elif ((following[0] & 0x0F) << 8 | following[1]) >= Q or (
                    packet_crc(following) != (following[2] << 8 | following[3])):
                continue
            self._skipped(pos, off)
            self.counters.realigns += 1
            self._hunting = False
            self._bad_run = 0
            self._in_step = off
            return off
        self._skipped(pos, last + 1)
        return last + 1

    def _skipped(self, start: int, stop: int) -> None:
        """Count the bytes start..stop the hunt stepped over, less those already read as packets
        (it goes back over the slots from the last packet in step)."""
        start = max(start, self._counted_to)
        if stop > start:
            self.counters.skipped_bytes += stop - start
            self._since_frame += (stop - start) // PACKET_BYTES

    def _process(self, buf: bytes, pos: int, count: int, frames: list[Frame]) -> int:
        """Handle `count` aligned packets at pos; returns the new position (hunting may start)."""
        c = self.counters
        stop = pos + count * PACKET_BYTES
        # Discards found with bytes methods on each packet's first byte (C loops without numpy's
        # per-call cost, which at 26.5 feeds a second is most of a feed's time).
        first = buf[pos:stop:PACKET_BYTES]
        n_discard = len(first.translate(None, _NOT_DISCARD))
        if n_discard == count:
            c.packets += count
            c.discards += count
            return stop
        index = None
        if n_discard:
            # The packets between the discards, joined (the sensor sends discards in runs). One
            # run (the discards all before or after a frame's packets, as usual) is read in place.
            flags = first.translate(_DISCARD_FLAG)  # 1 for a discard, 0 for a packet
            runs, i = [], flags.find(0)
            while i >= 0:
                j = flags.find(1, i)
                j = count if j < 0 else j
                runs.append((pos + i * PACKET_BYTES, pos + j * PACKET_BYTES))
                i = flags.find(0, j)
            if len(runs) == 1:
                data, at = buf, runs[0][0]
            else:
                view = memoryview(buf)  # (slices of it are no copies; the join is the one)
                data, at = b"".join([view[a:b] for a, b in runs]), 0
        else:
            data, at = buf, pos
        n = count - n_discard
        real = np.frombuffer(data, dtype=np.uint8, count=n * PACKET_BYTES,
                             offset=at).reshape(n, PACKET_BYTES)
        words = real.view("<u2")  # the packets' big-endian words read little-endian, as they lie
        ok = packets_ok(real)
        # (a bytes search, ~3 us a Lepton 3 frame, instead of a numpy reduction a feed)
        zero = data.find(_ZERO_PACKET, at, at + n * PACKET_BYTES)
        if zero >= 0:
            _refuse_zero_packets(data, at, n, zero, ok)
        all_ok = bool(ok.all())

        # A run of HUNT_AFTER_BAD failures: the bytes are probably misaligned. Process up to and
        # including the run's first packet, then hunt from the byte after the start of the last
        # packet that showed the stream in step (good, and not all zeros). The misalignment may
        # have begun anywhere after that packet's first byte:
        # - in the discards before the run: a misaligned slot with the discard nibble in its
        #   first byte can hold the start of the next real packet (1 byte lost among discards);
        # - in that packet itself: one that lost its last bytes is still good when the next
        #   packet's first bytes equal them (a zero telemetry row, then packet 0's ID 00 00);
        # - an all-zero packet shows nothing: its CRC is valid, and the end of a zero-filled
        #   discard with packet 0's ID after it is one (2 bytes lost among discards).
        end = len(real)
        hunt_from = None

        def offset(i: int) -> int:  # byte offset in buf of non-discard packet i
            nonlocal index
            if not n_discard:
                return pos + i * PACKET_BYTES
            if index is None:  # (worked out only when needed: it costs numpy calls)
                index = np.flatnonzero(np.frombuffer(flags, dtype=np.uint8) == 0)
            return pos + int(index[i]) * PACKET_BYTES

        def in_step(i: int, floor: int) -> int:
            """Where the last packet at or before non-discard packet i that is good (so not all
            zeros) starts (else the one kept from an earlier call), not before floor."""
            while i >= 0 and offset(i) >= floor:
                if ok[i]:
                    return offset(i)
                i -= 1
            return max(self._in_step, floor)

        if not all_ok:
            at = np.arange(end)
            last_ok = np.maximum.accumulate(np.where(ok, at, -1 - self._bad_run))
            long_run = np.flatnonzero(at - last_ok >= HUNT_AFTER_BAD)
            if long_run.size:
                first_bad = int(long_run[0]) - HUNT_AFTER_BAD + 1
                if first_bad >= 0:
                    look = in_step(first_bad - 1, offset(first_bad) - MAX_LOOKBACK)
                else:  # the run began in an earlier call
                    look = self._in_step
                hunt_from = look + 1
                end = max(first_bad, 0) + 1
                real, ok = real[:end], ok[:end]
                consumed = (offset(end - 1) - pos) // PACKET_BYTES + 1
                self._bad_run = 0  # (_in_step is set again where the hunt finds a packet)
                self._counted_to = pos + consumed * PACKET_BYTES
            else:
                trailing = np.flatnonzero(ok)
                if trailing.size:
                    last = int(trailing[-1])
                    self._bad_run = end - 1 - last
                    self._in_step = in_step(last, offset(last) - MAX_LOOKBACK)
                else:  # no good packet: _in_step stays at the last one
                    self._bad_run += end
        else:
            self._bad_run = 0
            # (all good: none is all zeros, so the last one shows the stream in step)
            self._in_step = pos + (flags.rfind(0) if n_discard else count - 1) * PACKET_BYTES
        if hunt_from is None:
            consumed = count
        c.packets += consumed
        c.discards += n_discard if hunt_from is None else len(
            first[:consumed].translate(None, _NOT_DISCARD))
        if not all_ok:
            c.crc_errors += int(end - np.count_nonzero(ok))
        self._since_frame += end

        ids = words[:end, 0].byteswap()  # each packet's ID (its value: the bytes swapped)
        self._assemble(ids, ok, all_ok and hunt_from is None, real, frames)
        if hunt_from is not None:
            self._hunting = True
            self._prev = (-1, False)
            self._drop_pending()
            return hunt_from
        return pos + consumed * PACKET_BYTES

    def _assemble(self, ids: np.ndarray, ok: np.ndarray, all_ok: bool, real: np.ndarray,
                  frames: list[Frame]) -> None:
        g = self.geometry
        Q = g.segment_packets
        num_new = ids & 0x0FFF
        k = self._chain_len
        n = len(num_new)
        total = k + n  # positions in the virtual sequence: the unfinished chain, then the new packets

        if g.segments == 1:
            self._ttt_on_lepton2 += int(np.count_nonzero(ids > 0x0FFF))
        first, (prev_num, prev_ok) = int(num_new[0]), self._prev
        perfect = (all_ok and first == k % Q
                   and (not prev_ok or first == prev_num + 1 or (first == 0 and prev_num == Q - 1))
                   and bool((num_new == self._pattern(k, n)).all()))
        if perfect:
            # The common case: every packet good and numbered as expected. Segments end at fixed
            # places and the chain runs to the end.
            ends = range(Q - 1, total, Q)
            self._starts += (total - 1) // Q - (k - 1) // Q if k else (total - 1) // Q + 1
            last = int(num_new[-1])
            chain_start = None if last == Q - 1 else total - 1 - last
        else:
            ends, chain_start = self._segment_ends(num_new, ok, k)
            ends = ends.tolist()
        self._prev = (int(num_new[-1]), bool(ok[-1]))

        new_rows = real[:, 4:]

        def pieces(s: int, e: int) -> list:
            """Virtual positions s..e as payload views (no copy): the chain, then the new rows."""
            if s >= k:
                return [new_rows[s - k:e - k + 1]]
            return self._chain + [new_rows[:e - k + 1]]  # (a segment starting in the chain: s = 0)

        # Join segments into frames. A segment is a list of payload views.
        cand: list = list(self._segments)
        last_end = -1  # virtual position where the candidate's last segment ended
        for e in ends:
            s = e - Q + 1
            if g.segments == 1:
                self._emit([pieces(s, e)], frames)
                continue
            ttt = self._chain_ttt if s + 20 < k else int(ids[s + 20 - k]) >> 12 & 0x7
            if ttt == 0:
                self._invalid_segments += 1
            if ttt == 1:
                self._frame_starts += 1
                cand = [pieces(s, e)]
            elif cand and ttt == len(cand) + 1 and s == last_end + 1:
                cand.append(pieces(s, e))
            else:
                cand = []  # TTT 0 (invalid), out of order, or something between the segments
            last_end = e
            if len(cand) == g.segments:
                self._emit(cand, frames)
                cand = []

        # Keep the unfinished tail: the chain running at the end, and the candidate frame if the
        # chain follows it directly (or it ended on the last packet).
        if cand and not (last_end == total - 1 or chain_start == last_end + 1):
            cand = []
        # (views, not copies: the bytes read are immutable)
        self._segments = cand
        if chain_start is None:
            self._chain, self._chain_len, self._chain_ttt = [], 0, None
        else:
            if chain_start >= k:  # a new chain
                self._chain = [new_rows[chain_start - k:]]
                self._chain_ttt = None
            else:                 # the old chain went on
                self._chain = self._chain + [new_rows]
            self._chain_len = total - chain_start
            if self._chain_ttt is None and self._chain_len > 20:
                self._chain_ttt = int(ids[chain_start + 20 - k]) >> 12 & 0x7

    def _pattern(self, start: int, count: int) -> np.ndarray:
        """Packet numbers start, start+1, ... wrapping at Q (what a clean stream carries)."""
        Q = self.geometry.segment_packets
        if start + count > len(self._numbers):
            self._numbers = np.arange(2 * (start + count) + Q) % Q
        return self._numbers[start:start + count]

    def _segment_ends(self, num_new: np.ndarray, ok: np.ndarray,
                      k: int) -> tuple[np.ndarray, Optional[int]]:
        """Virtual positions where complete segments end, and where the chain running at the
        end starts (None if none runs); counts sequence errors and segment starts on the way."""
        Q = self.geometry.segment_packets
        # Sequence errors: a good packet that does not follow the good packet before it.
        prev_num = np.concatenate(([self._prev[0]], num_new[:-1]))
        prev_ok = np.concatenate(([self._prev[1]], ok[:-1]))
        follows = (num_new == prev_num + 1) | ((num_new == 0) & (prev_num == Q - 1))
        self.counters.sequence_errors += int(np.count_nonzero(
            ok & ((prev_ok & ~follows) | (num_new >= Q))))

        self._extra_numbers += int(np.count_nonzero(ok & (num_new >= Q) & (num_new < Q + 4)))
        good_new = ok & (num_new < Q)
        self._starts += int(np.count_nonzero(good_new & (num_new == 0)))
        num = np.concatenate((np.arange(k), num_new)) if k else num_new
        good = np.concatenate((np.ones(k, dtype=bool), good_new)) if k else good_new
        prev = np.concatenate(([-2], num[:-1]))
        prev_good = np.concatenate(([False], good[:-1]))
        link = good & ((num == 0) | (prev_good & (prev + 1 == num)))
        breaks = np.concatenate(([0], np.cumsum(~link)))
        ends = np.flatnonzero(link & (num == Q - 1))
        ends = ends[ends >= Q - 1]
        ends = ends[breaks[ends + 1] == breaks[ends - Q + 1]]

        total = len(num)
        chain_start = None
        if link[-1] and not (ends.size and ends[-1] == total - 1):
            start = total - 1 - int(num[-1])
            if start >= 0 and breaks[total] == breaks[start]:
                chain_start = start
        return ends, chain_start

    def _emit(self, segments: list, frames: list[Frame]) -> None:
        g = self.geometry
        # One copy: the segments' payload views joined straight into native uint16 words.
        words = np.concatenate([p.view(">u2") for seg in segments for p in seg],
                               out=np.empty((g.frame_packets, WORDS_PER_PACKET), np.uint16))
        image = words[g.video].reshape(g.rows, g.cols)
        telemetry = tel_rows = None
        if g.telemetry_packets:
            first = g.telemetry_rows.start
            tel_rows = words[first:first + 3]
            telemetry = parse_telemetry(tel_rows[0])
        frames.append(Frame(image, telemetry, tel_rows))
        self.counters.frames += 1
        self._since_frame = 0

    def _drop_pending(self) -> None:
        self._segments = []
        self._chain, self._chain_len, self._chain_ttt = [], 0, None

    def _update_dropped(self) -> None:
        """Dropped = started - used - still pending (so nothing is counted twice)."""
        c = self.counters
        pending_chain = 1 if self._chain_len else 0
        if self.geometry.segments == 1:
            c.dropped_frames = self._starts - c.frames - pending_chain
        else:
            c.dropped_segments = (self._starts - 4 * c.frames - len(self._segments)
                                  - pending_chain)
            c.dropped_frames = self._frame_starts - c.frames - (1 if self._segments else 0)


# ---------------------------------------------------------------- the packetizer (inverse)

def build_packets(ids: np.ndarray, payload: np.ndarray) -> bytes:
    """Packets with the given 16-bit IDs and (n, 160) uint8 payloads, CRCs filled in."""
    n = len(ids)
    packets = np.empty((n, PACKET_BYTES), dtype=np.uint8)
    ids = np.asarray(ids, dtype=np.uint16)
    packets[:, 0] = ids >> 8
    packets[:, 1] = ids & 0xFF
    packets[:, 2:4] = 0
    packets[:, 4:] = payload
    crc = packet_crcs(packets)
    packets[:, 2] = crc >> 8
    packets[:, 3] = crc & 0xFF
    return packets.tobytes()


def discard_packets(count: int, fill: int = 0) -> bytes:
    """Discard packets (ID 0x0FFF) as the sensor sends while no frame is ready."""
    packet = bytes((0x0F, 0xFF, 0, 0)) + bytes([fill]) * PAYLOAD_BYTES
    return packet * count


def telemetry_rows(sensor: str, frame_counter: int = 0, fpa_temp_k: float = 300.0,
                   ffc_state: int = 3, time_ms: int = 0, housing_temp_k: float = 299.0,
                   frame_mean: int = 0) -> np.ndarray:
    """The telemetry packets' words, (3 or 4, 80) uint16, with row A filled as parse_telemetry reads it."""
    rows = np.zeros((3 if sensor == "lepton2" else 4, WORDS_PER_PACKET), dtype=np.uint16)
    a = rows[0]
    a[0] = 14  # telemetry revision
    a[1], a[2] = time_ms & 0xFFFF, (time_ms >> 16) & 0xFFFF
    status = (ffc_state & 0x3) << 4
    a[3], a[4] = status & 0xFFFF, status >> 16
    a[20], a[21] = frame_counter & 0xFFFF, (frame_counter >> 16) & 0xFFFF
    a[22] = frame_mean & 0xFFFF
    a[24] = int(round(fpa_temp_k * 100)) & 0xFFFF
    a[26] = int(round(housing_temp_k * 100)) & 0xFFFF
    return rows


def frame_payload(image: np.ndarray, sensor: str, telemetry: str = "off",
                  telemetry_words: Optional[np.ndarray] = None) -> np.ndarray:
    """(frame packets, 160) uint8: the payloads of one frame in stream order."""
    g = _Geometry(sensor, telemetry)
    image = np.asarray(image)
    if image.shape != (g.rows, g.cols):
        raise ValueError(f"image is {image.shape}, a {sensor} frame is {(g.rows, g.cols)}")
    video = image.astype(">u2").reshape(g.video_packets, WORDS_PER_PACKET)
    if not g.telemetry_packets:
        words = video
    else:
        tel = telemetry_rows(sensor) if telemetry_words is None else telemetry_words
        tel = np.asarray(tel).astype(">u2").reshape(g.telemetry_packets, WORDS_PER_PACKET)
        # (concatenate would return native byte order, so join the bytes)
        tel, video = tel.view(np.uint8), video.view(np.uint8)
        words = np.concatenate((tel, video) if telemetry == "header" else (video, tel))
    return words.view(np.uint8).reshape(g.frame_packets, PAYLOAD_BYTES)


def segment_ids(sensor: str, telemetry: str = "off", ttt: Optional[list] = None) -> np.ndarray:
    """Packet IDs of one frame: numbers 0..Q-1 per segment, TTT on packet 20 (Lepton 3)."""
    g = _Geometry(sensor, telemetry)
    ids = np.tile(np.arange(g.segment_packets, dtype=np.uint16), g.segments)
    if g.segments > 1:
        for seg, value in enumerate(ttt or range(1, g.segments + 1)):
            ids[seg * g.segment_packets + 20] |= np.uint16(value << 12)
    return ids


def encode_frame(image: np.ndarray, sensor: str, telemetry: str = "off", frame_counter: int = 0,
                 fpa_temp_k: float = 300.0, ffc_state: int = 3, time_ms: int = 0) -> bytes:
    """One frame as the VoSPI packets a sensor sends (no discards), CRCs and TTT included."""
    words = None
    if telemetry != "off":
        words = telemetry_rows(sensor, frame_counter=frame_counter, fpa_temp_k=fpa_temp_k,
                               ffc_state=ffc_state, time_ms=time_ms)
    payload = frame_payload(image, sensor, telemetry, words)
    return build_packets(segment_ids(sensor, telemetry), payload)


def invalid_segment(sensor: str = "lepton3", telemetry: str = "off", fill: int = 0x20) -> bytes:
    """A Lepton 3 segment with TTT = 0 (valid packets the reader must drop). Each pixel word is
    fill * 0x101 (0x2020 = 8224 raw counts, as a sensor sends; an all-zero packet is refused)."""
    g = _Geometry(sensor, telemetry)
    payload = np.full((g.segment_packets, PAYLOAD_BYTES), fill, dtype=np.uint8)
    return build_packets(np.arange(g.segment_packets, dtype=np.uint16), payload)
