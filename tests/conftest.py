"""Shared test helpers: free loopback ports, config files for them, stage processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import pytest

from flirstream.testing import free_port, write_config  # noqa: F401  (tests import them from here)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Stage:
    """One stage (`capture`, `encoder`, `server` or `run`) as a real child process."""

    def __init__(self, command: str, config: Path, *args: str, log_dir: Optional[Path] = None,
                 wrap: Sequence[str] = ()):
        """`wrap` goes before the command line, e.g. ("prlimit", "--nofile=1024") (it must exec)."""
        self.command = command
        self.log_path = (log_dir or config.parent) / f"{command}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "flirstream", command, "--config", str(config), *args],
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


@pytest.fixture(scope="module")
def browser():
    """Real headless Chromium, one per test module."""
    from playwright.sync_api import sync_playwright  # (only the browser tests need it)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield b
        b.close()
