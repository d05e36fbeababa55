"""The frame of an alarm change kept on disk: its radiometric TIFF (as /snapshot.tiff makes it) and,
when there is a picture of it, the JPEG, in one directory with bounded retention.

    keeper = AlarmSnapshots("/var/lib/flir-stream/alarms", max_count=200, max_bytes=100 << 20)
    keeper.save(thermal, "kiln-hot", jpeg)  # lepton-20261201T101500.123Z-seq42.kiln-hot.tiff / .jpg

Names start with the capture time (UTC), so name order is time order; after each save the oldest
snapshots go until at most max_count snapshots and max_bytes remain (the newest is always kept).
Only files named like ours are ever deleted. Each file is written under a temporary name and
renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

from flirstream.wire import Frame

from . import snapshots

MAX_COUNT = 200
MAX_BYTES = 100 * 1024 * 1024
OURS = re.compile(r"lepton-\d{8}T\d{6}\.\d{3}Z-seq\d+\.[A-Za-z0-9_-]+\.(jpg|tiff)")


class AlarmSnapshots:
    def __init__(self, directory: Union[str, os.PathLike], max_count: int = MAX_COUNT,
                 max_bytes: int = MAX_BYTES) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be at least 1")
        self.directory = Path(directory)
        self.max_count = max_count
        self.max_bytes = max_bytes

    def save(self, frame: Frame, alarm: str,
             jpeg: Optional[bytes] = None) -> list[Path]:
        """Write the frame's TIFF and (given, or the frame's picture's) JPEG, then prune; returns the
        paths written. OSError if the directory cannot be written (the caller logs it)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]+", alarm):
            raise ValueError(f"alarm name {alarm!r}: expected letters, digits, _ or -")
        self.directory.mkdir(parents=True, exist_ok=True)
        if jpeg is None:
            jpeg = frame.picture.jpeg if frame.picture is not None else None
        files = [("tiff", snapshots.tiff(frame))] + ([("jpg", jpeg)] if jpeg else [])
        written = []
        for extension, data in files:
            path = self.directory / snapshots.filename(frame, f"{alarm}.{extension}")
            temporary = path.with_name(path.name + ".part")
            temporary.write_bytes(data)
            os.replace(temporary, path)
            written.append(path)
        self.prune(keep=written[0].name.rsplit(".", 1)[0])
        return written

    def add_picture(self, frame: Frame, alarm: str, jpeg: bytes
                    ) -> Optional[Path]:
        """Add a JPEG to a snapshot saved without one (nobody watched, so there was no picture of
        that frame; the caller waited for the next one). None if the snapshot is gone already."""
        path = self.directory / snapshots.filename(frame, f"{alarm}.jpg")
        if not path.with_suffix(".tiff").exists():
            return None
        temporary = path.with_name(path.name + ".part")
        temporary.write_bytes(jpeg)
        os.replace(temporary, path)
        self.prune(keep=path.name.rsplit(".", 1)[0])
        return path

    def snapshots(self) -> list[tuple[str, list[Path], int]]:
        """(stem, files, bytes) of every snapshot in the directory, oldest first."""
        groups: dict[str, list[Path]] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.is_file() and OURS.fullmatch(entry.name):
                groups.setdefault(entry.name.rsplit(".", 1)[0], []).append(Path(entry.path))
        out = []
        for stem in sorted(groups):
            files = sorted(groups[stem])
            out.append((stem, files, sum(_size(f) for f in files)))
        return out

    def prune(self, keep: str = "") -> int:
        """Delete the oldest snapshots beyond max_count / max_bytes (never `keep`); returns how many
        were deleted."""
        existing = self.snapshots()
        total = sum(size for _, _, size in existing)
        deleted = 0
        for stem, files, size in existing:
            if len(existing) - deleted <= self.max_count and total <= self.max_bytes:
                break
            if stem == keep:
                continue
            for path in files:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            total -= size
            deleted += 1
        return deleted


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
