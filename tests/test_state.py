"""State files: saved atomically, read back, and a broken one never stops a stage."""
from __future__ import annotations

import json
import logging
import os

from flirstream.state import StateFile, default_dir


def test_saved_state_comes_back(tmp_path):
    state = StateFile(tmp_path / "new" / "dir", "capture")
    assert state.load() == {}
    assert state.save({"gain": "low", "emissivity": 0.95})
    assert StateFile(tmp_path / "new" / "dir", "capture").load() == {"gain": "low", "emissivity": 0.95}
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == ["capture.json"]  # no temp left


def test_a_broken_state_file_is_set_aside_with_one_line(tmp_path, caplog):
    (tmp_path / "encoder.json").write_bytes(b'{"regions": [1, 2')
    with caplog.at_level(logging.WARNING, logger="state"):
        assert StateFile(tmp_path, "encoder").load() == {}
    assert len(caplog.records) == 1 and "cannot be read" in caplog.text
    assert (tmp_path / "encoder.json.bad").exists() and not (tmp_path / "encoder.json").exists()
    (tmp_path / "server.json").write_text(json.dumps([1, 2]))
    assert StateFile(tmp_path, "server").load() == {}


def test_an_unwritable_directory_is_one_line_not_a_crash(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="state"):
        assert StateFile(tmp_path / "file", "capture").save({"a": 1}) is False
    assert "cannot save" in caplog.text


def test_a_failed_write_keeps_the_old_file(tmp_path):
    state = StateFile(tmp_path, "capture")
    state.save({"gain": "high"})
    try:
        state.save({"bad": float("nan")})
    except ValueError:
        pass
    assert state.load() == {"gain": "high"}


def test_default_dir_follows_systemd_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    assert default_dir() == tmp_path / "sd"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_dir() == tmp_path / "xdg" / "flir-stream"
    assert os.fspath(StateFile("", "x").path) == os.fspath(tmp_path / "xdg" / "flir-stream" / "x.json")
