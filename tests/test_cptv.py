"""capture/cptv.py reads CPTV v2 files: built here, field by field and bit by bit (plain Python, not
the reader's numpy), so the test is an independent check of the format."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from capture import cptv, vospi
from conftest import run_script


def field(code: str, data: bytes) -> bytes:
    return bytes([len(data)]) + code.encode() + data


def pack_bits(values: list[int], width: int) -> bytes:
    """Signed integers as `width`-bit two's complement, most significant bit first."""
    bits = "".join(format(v & ((1 << width) - 1), f"0{width}b") for v in values)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def snake(image: np.ndarray) -> list[int]:
    return [int(v) for r, row in enumerate(image.tolist()) for v in (row if r % 2 == 0 else row[::-1])]


def frame_section(delta: np.ndarray, width: int, time_ms: int) -> bytes:
    values = snake(delta)
    steps = [b - a for a, b in zip(values, values[1:])]
    data = struct.pack("<i", values[0]) + pack_bits(steps, width)
    fields = [field("t", struct.pack("<I", time_ms)), field("w", bytes([width])),
              field("f", struct.pack("<I", len(data))), field("a", struct.pack("<f", 31.5))]
    return b"F" + bytes([len(fields)]) + b"".join(fields) + data


def cptv_file(frames: list[np.ndarray], widths: list[int]) -> bytes:
    rows, cols = frames[0].shape
    header = [field("T", struct.pack("<Q", 1_600_000_000_000_000)), field("X", struct.pack("<I", cols)),
              field("Y", struct.pack("<I", rows)), field("C", b"\x01"), field("D", b"test-cam"),
              field("Q", b"\x07\x07")]  # a field this reader does not know: kept as bytes
    body = b"CPTV\x02H" + bytes([len(header)]) + b"".join(header)
    previous = np.zeros_like(frames[0], dtype=np.int64)
    for i, (frame, width) in enumerate(zip(frames, widths)):
        body += frame_section(frame.astype(np.int64) - previous, width, 1000 + 114 * i)
        previous = frame.astype(np.int64)
    return gzip.compress(body)


def tiny_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    first = rng.integers(2380, 2900, (3, 5)).astype(np.uint16)
    second = first + rng.integers(-3, 4, first.shape).astype(np.uint16)
    third = second.copy()
    third[1, 4] += 200  # a big jump: needs a wide bit width
    return [first, second, third]


def test_decodes_a_built_file_exactly():
    frames = tiny_frames()
    rec = cptv.parse(cptv_file(frames, [12, 4, 10]))
    assert (rec.rows, rec.cols) == (3, 5)
    assert rec.header["device_name"] == "test-cam"
    assert rec.header["Q"] == b"\x07\x07"
    assert [f.time_ms for f in rec.frames] == [1000, 1114, 1228]
    assert rec.frames[0].fields["temp_c"] == pytest.approx(31.5)
    for got, want in zip(rec.frames, frames):
        assert got.pixels.dtype == np.uint16
        np.testing.assert_array_equal(got.pixels, want)


def test_negative_steps_and_odd_rows_run_backwards():
    # a ramp along each row: in snake order odd rows run downhill, i.e. negative steps
    image = (2500 + np.arange(4 * 6).reshape(4, 6) * 3).astype(np.uint16)
    rec = cptv.parse(cptv_file([image], [16]))
    np.testing.assert_array_equal(rec.frames[0].pixels, image)


@pytest.mark.parametrize("data, words", [
    (b"not a cptv file", "expected b'CPTV'"),
    (b"CPTV\x03H\x00", "version 03"),
    (b"CPTV\x02H\x01\x04X\xa0\x00", "ends inside a header field"),
    (b"CPTV\x02H\x01\x04Y\x03\x00\x00\x00", "no cols"),
    (b"CPTV\x02H\x01\x02X\x01\x00", "is 2 bytes, expected 4"),
])
def test_bad_files_are_named(data, words):
    with pytest.raises(cptv.CptvError, match=words.replace("(", r"\(")):
        cptv.parse(data)


def test_truncated_frame_data_is_named():
    data = gzip.decompress(cptv_file(tiny_frames(), [12, 4, 10]))
    with pytest.raises(cptv.CptvError, match="frame 2's data"):
        cptv.parse(data[:-3])


def test_script_writes_a_vospi_recording_that_replays_the_frames(tmp_path):
    frames = [np.random.default_rng(i).integers(2380, 2900, (120, 160)).astype(np.uint16)
              for i in range(3)]
    src = tmp_path / "in.cptv"
    src.write_bytes(cptv_file(frames, [11, 11, 11]))
    out = tmp_path / "out.vospi"
    done = run_script("cptv_to_vospi.py", src, out, "--repeat", "2", "--telemetry", "header")
    assert done.returncode == 0, done.stderr
    assert "3 frames" in done.stdout
    assembler = vospi.FrameAssembler("lepton3", "header")
    got = assembler.feed(out.read_bytes())
    assert len(got) == 6  # each frame twice, as --repeat 2 asks
    for i, frame in enumerate(got):
        np.testing.assert_array_equal(frame.image, frames[i // 2])
    assert [f.telemetry["frame_counter"] for f in got] == list(range(6))


def test_script_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.cptv"
    bad.write_bytes(b"CPTV\x09")
    done = run_script("cptv_to_vospi.py", bad, tmp_path / "o.vospi")
    assert done.returncode == 2
    assert "version 09" in done.stderr
