"""Small state files: what users change at run time and expect to survive restarts.

Camera settings set from the viewer, regions drawn in it: each stage keeps its own JSON file in the
state directory (`[state] dir`), rewritten atomically (a temporary file in the same directory,
flushed to disk, then renamed over the old one), so a power cut leaves the old file or the new one,
never half of one. A file that cannot be read is set aside (NAME.bad) with one log line and the
stage starts from server.conf's values: a broken state file must never stop a stage.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("state")

MAX_BYTES = 256 * 1024  # far more than settings and regions need; a bigger file is not ours


def default_dir() -> Path:
    """systemd's StateDirectory= if set, else $XDG_STATE_HOME/flir-stream (~/.local/state/...)."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "flir-stream"


class StateFile:
    """One stage's state: load() -> dict (empty when there is none), save(dict)."""

    def __init__(self, directory: Optional[os.PathLike | str], name: str):
        self.path = Path(directory) if directory else default_dir()
        self.path = self.path / f"{name}.json"

    def load(self) -> dict[str, Any]:
        try:
            if self.path.stat().st_size > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES} bytes")
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
            self._set_aside(exc)
            return {}

    def save(self, data: dict[str, Any]) -> bool:
        """Write atomically; False (with one log line) if the directory is not writable."""
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot save %s: %s (the change holds until the stage restarts)",
                        self.path, exc.strerror or exc)
            return False
        return True

    def _set_aside(self, exc: Exception) -> None:
        bad = self.path.with_name(self.path.name + ".bad")
        try:
            os.replace(self.path, bad)
            where = f"moved to {bad}"
        except OSError:
            where = "left as it is"
        log.warning("state file %s cannot be read (%s): %s; starting from server.conf's values",
                    self.path, exc, where)
