"""Shared test helpers: free loopback ports, config files for them, stage processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, extra: str = "", **sections: dict) -> Path:
    """A server.conf using free loopback ports everywhere; `sections` add or replace keys,
    e.g. write_config(tmp_path, capture={"source": "sim"})."""
    values = {
        "endpoints": {"frames": f"tcp://127.0.0.1:{free_port()}",
                      "images": f"tcp://127.0.0.1:{free_port()}",
                      "control": f"tcp://127.0.0.1:{free_port()}"},
        "capture": {"source": "sim"},
        "encoder": {},
        "server": {"host": "127.0.0.1", "port": str(free_port())},
    }
    for name, keys in sections.items():
        values.setdefault(name, {}).update({k: str(v) for k, v in keys.items()})
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                   for name, keys in values.items())
    path = directory / "server.conf"
    path.write_text(text + extra)
    return path


class Stage:
    """One stage (`capture`, `encoder`, `server` or `run`) as a real child process."""

    def __init__(self, command: str, config: Path, *args: str, log_dir: Optional[Path] = None):
        self.command = command
        self.log_path = (log_dir or config.parent) / f"{command}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flirstream", command, "--config", str(config), *args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(config.parent),
            start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process, wait for it, and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def stages():
    """Start stages with stages(command, config, *args); all are stopped after the test."""
    started: list[Stage] = []

    def start(command: str, config: Path, *args: str) -> Stage:
        stage = Stage(command, config, *args)
        started.append(stage)
        return stage

    yield start
    for stage in reversed(started):
        stage.stop()
