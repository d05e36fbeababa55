"""server.alarm_files: JPEG + radiometric TIFF of an alarm's frame, bounded retention; and
server.history: the ten-minute ring buffer of readings for the chart."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from flirstream.regions import Region, celsius, measure
from flirstream.testing import tlinear_counts
from server.alarm_files import AlarmSnapshots
from server.history import History
from server_support import image_frame
from server import snapshots


def frame(seq: int, t: float):
    f = image_frame(seq)
    f.t = t  # capture time
    f.pixels = f.picture.pixels = np.full((120, 160), 30000 + seq, np.uint16)
    return f


def test_save_writes_the_same_jpeg_and_tiff_as_the_snapshot_urls(tmp_path):
    keeper = AlarmSnapshots(tmp_path / "alarms")
    f = frame(42, 1_764_583_200.125)
    tiff, jpg = keeper.save(f, "kiln-hot")
    assert jpg.name == "lepton-20251201T100000.125Z-seq42.kiln-hot.jpg"
    assert tiff.name == "lepton-20251201T100000.125Z-seq42.kiln-hot.tiff"
    assert jpg.read_bytes() == f.picture.jpeg and tiff.read_bytes() == snapshots.tiff(f)
    back = cv2.imdecode(np.frombuffer(tiff.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and (back == f.pixels).all()  # radiometric values kept exactly
    assert sorted(p.name for p in (tmp_path / "alarms").iterdir()) == [jpg.name, tiff.name]


def test_retention_keeps_the_newest_by_count_and_bytes_and_nothing_else_is_touched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "lepton-20251201T100000.000Z-seq1.jpg").write_bytes(b"a /snapshot.jpg download")
    keeper = AlarmSnapshots(tmp_path, max_count=3)
    for seq in range(6):
        keeper.save(frame(seq, 1_764_583_200.0 + seq), "hot")
    stems = [stem for stem, _, _ in keeper.snapshots()]
    assert stems == [f"lepton-20251201T1000{s:02d}.000Z-seq{s}.hot" for s in (3, 4, 5)]
    assert (tmp_path / "notes.txt").exists()
    assert (tmp_path / "lepton-20251201T100000.000Z-seq1.jpg").exists()

    one = keeper.snapshots()[-1][2]
    by_bytes = AlarmSnapshots(tmp_path, max_count=100, max_bytes=2 * one + one // 2)
    by_bytes.save(frame(6, 1_764_583_206.0), "hot")
    assert [s for s, _, _ in by_bytes.snapshots()][-1].endswith("seq6.hot")
    assert len(by_bytes.snapshots()) == 2
    assert sum(size for _, _, size in by_bytes.snapshots()) <= by_bytes.max_bytes

    tiny = AlarmSnapshots(tmp_path, max_bytes=1)  # the newest is kept even if alone it is too big
    tiny.save(frame(7, 1_764_583_207.0), "hot")
    assert [s for s, _, _ in tiny.snapshots()] == ["lepton-20251201T100007.000Z-seq7.hot"]


def test_bad_alarm_names_and_limits_are_refused(tmp_path):
    with pytest.raises(ValueError):
        AlarmSnapshots(tmp_path, max_count=0)
    with pytest.raises(ValueError):
        AlarmSnapshots(tmp_path).save(frame(1, 1.0), "../etc/passwd")
    assert AlarmSnapshots(tmp_path / "never-made").snapshots() == []


def reading_at(c: float) -> dict:
    pixels = np.full((120, 160), tlinear_counts(c), np.uint16)
    return measure(pixels, [Region("box", 0, 0, 9, 9)], celsius(0.01))


def test_history_samples_at_most_once_a_second_and_keeps_ten_minutes():
    history = History()
    assert history.add(1000.0, reading_at(20.0)) == {
        "t": 1000.0, "frame": {"max": 20.0, "min": 20.0, "centre": 20.0},
        "regions": {"box": {"max": 20.0, "min": 20.0, "mean": 20.0}}}
    assert history.add(1000.5, reading_at(21.0)) is None  # too soon
    t = 1001.0
    while t <= 1000.0 + 700:
        history.add(t, reading_at(20.0 + (t - 1000) / 100))
        t += 1.0
    snap = history.snapshot()
    assert snap["t"][0] == 1100.0 and snap["t"][-1] == 1700.0 and len(snap["t"]) == 601
    assert snap["frame"]["max"][-1] == 27.0 and snap["regions"]["box"]["mean"][0] == 21.0
    json.dumps(snap)


def test_history_regions_come_and_go_and_a_clock_step_back_starts_again():
    history = History(seconds=60)
    history.add(10.0, reading_at(20.0))
    history.add(11.0, measure(np.zeros((120, 160), np.uint16) + 29315, [], celsius(0.01)))
    snap = history.snapshot()
    assert snap["regions"]["box"]["max"] == [20.0, None]
    assert snap["frame"]["centre"] == [20.0, 20.0]
    history.add(5.0, reading_at(30.0))
    assert history.snapshot()["t"] == [5.0]


def test_a_late_picture_joins_its_snapshot_and_counts_in_its_bytes(tmp_path):
    keeper = AlarmSnapshots(tmp_path, max_count=1)
    f = frame(7, 1_764_583_200.5)
    (tiff,) = keeper.save(f, "hot", b"")  # b"": a thermal frame, no picture
    assert [p.suffix for p in tmp_path.iterdir()] == [".tiff"]  # no picture of that frame
    jpg = keeper.add_picture(f, "hot", b"\xff\xd8later")
    assert jpg == tiff.with_suffix(".jpg") and jpg.read_bytes() == b"\xff\xd8later"
    (stem, files, size), = keeper.snapshots()  # one snapshot, both files
    assert files == [jpg, tiff] and size == tiff.stat().st_size + 7
    keeper.save(frame(8, 1_764_583_201.5), "hot", b"")  # the newer one pushes it out (max_count 1)
    assert keeper.add_picture(f, "hot", b"\xff\xd8") is None  # gone: nothing written
    assert not jpg.exists()
