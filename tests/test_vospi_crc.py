"""capture._vospi_crc, the compiled packet CRC check, against binascii and the numpy table; and the
assembler giving the same frames and counters with either."""
from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from capture import vospi
from capture.vospi import PACKET_BYTES, FrameAssembler, encode_frame

CHECKS = [False] + ([True] if vospi._compiled_check is not None else [])


def expected(data: bytes, at: int, count: int) -> list[bool]:
    """The datasheet's check, one packet at a time with binascii."""
    out = []
    for i in range(count):
        p = data[at + i * PACKET_BYTES:at + (i + 1) * PACKET_BYTES]
        out.append(vospi.packet_crc(p) == (p[2] << 8 | p[3]))
    return out


def as_packets(data: bytes, at: int = 0, count: int = -1) -> np.ndarray:
    count = (len(data) - at) // PACKET_BYTES if count < 0 else count
    return np.frombuffer(data, np.uint8, count=count * PACKET_BYTES, offset=at).reshape(
        count, PACKET_BYTES)


def with_valid_crcs(rng: np.random.Generator, count: int) -> bytearray:
    packets = rng.integers(0, 256, (count, PACKET_BYTES), dtype=np.uint8)
    for row in packets:
        crc = vospi.packet_crc(row.tobytes())
        row[2], row[3] = crc >> 8, crc & 0xFF
    return bytearray(packets.tobytes())


def test_the_compiled_check_is_built_wherever_it_can_be():
    """setup.py's extension is optional: it must be there when a compiler and the headers are (a
    broken build would only show as a slower capture), and the log line says which check runs."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    buildable = shutil.which(cc) and Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if buildable:
        assert vospi._compiled_check is not None, "capture/_vospi_crc.c was not built"
        assert vospi.CRC_CHECK.startswith("compiled")
    else:
        assert vospi._compiled_check is None
        assert "python3-dev" in vospi.CRC_CHECK


@pytest.mark.parametrize("compiled", CHECKS)
def test_each_check_agrees_with_binascii_on_good_and_damaged_packets(compiled):
    rng = np.random.default_rng(3)
    data = with_valid_crcs(rng, 203)  # not a multiple of the compiled check's 8 lanes
    for i in range(0, 203, 3):  # one bit flipped anywhere, the CRC field and the ID included
        data[i * PACKET_BYTES + int(rng.integers(0, PACKET_BYTES))] ^= 1 << int(rng.integers(0, 8))
    for i in range(1, 203, 7):  # the ID's top nibble (TTT) is outside the CRC: still good
        data[i * PACKET_BYTES] ^= 0x70
    data = bytes(data)
    want = expected(data, 0, 203)
    assert 60 < want.count(False) < 80
    got = vospi.packets_ok(as_packets(data), compiled)
    assert got.dtype == bool and got.flags.writeable
    assert got.tolist() == want
    assert vospi.packets_ok(as_packets(data, 5 * PACKET_BYTES, 9), compiled).tolist() == want[5:14]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=0, max_size=12 * PACKET_BYTES + 40), at=st.integers(0, 40))
def test_the_checks_agree_on_any_bytes(data, at):
    at = min(at, len(data))
    count = (len(data) - at) // PACKET_BYTES
    want = expected(data, at, count)
    for compiled in CHECKS:
        assert vospi.packets_ok(as_packets(data, at, count), compiled).tolist() == want


@pytest.mark.skipif(vospi._compiled_check is None, reason="capture/_vospi_crc.c not built here "
                    "(test_the_compiled_check_is_built_wherever_it_can_be says why that is right)")
def test_the_compiled_check_refuses_what_is_not_whole_packets_in_a_row():
    packets = np.zeros((4, PACKET_BYTES), np.uint8)
    assert vospi._compiled_check(packets) == bytearray(b"\x01" * 4)
    assert vospi._compiled_check(packets[1:3]) == bytearray(b"\x01\x01")
    for size in (1, PACKET_BYTES - 1, 3 * PACKET_BYTES + 1):
        with pytest.raises(ValueError, match="not whole 164-byte packets"):
            vospi._compiled_check(bytes(size))
    with pytest.raises(ValueError, match="not C-contiguous"):
        vospi._compiled_check(packets[::2])


def test_the_assembler_gives_the_same_frames_and_counters_with_the_numpy_table(monkeypatch):
    rng = np.random.default_rng(5)
    frames = [rng.integers(1000, 60000, (120, 160), dtype=np.uint16) for _ in range(4)]
    stream = bytearray(b"".join(vospi.discard_packets(5) + encode_frame(f, "lepton3")
                                for f in frames))
    stream[(5 + 240 + 5 + 17) * PACKET_BYTES + 90] ^= 0x10  # a damaged packet in frame 2
    del stream[(3 * 245 + 30) * PACKET_BYTES + 7]           # a lost byte in frame 4
    stream = bytes(stream) + vospi.discard_packets(5) + encode_frame(frames[0], "lepton3")

    def run() -> tuple[list, dict]:
        asm = FrameAssembler("lepton3")
        out = []
        for i in range(0, len(stream), 24 * PACKET_BYTES):
            out += asm.feed(stream[i:i + 24 * PACKET_BYTES])
        return [f.image.tobytes() for f in out], asm.counters_dict()

    images, counters = run()
    monkeypatch.setattr(vospi, "_compiled_check", None)
    assert run() == (images, counters)
    assert images == [frames[0].tobytes(), frames[2].tobytes(), frames[0].tobytes()]
    assert counters["crc_errors"] >= 1 and counters["realigns"] == 1
