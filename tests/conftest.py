"""Shared test helpers: free loopback ports, config files for them, stage processes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

# (tests import these from here)
from flirstream.testing import CHROMIUM, CHROMIUM_ARGS, Stage, free_port, write_config  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, *args: str, timeout: float = 60, **kw: Any
               ) -> subprocess.CompletedProcess:
    """scripts/<name> with `args` (this interpreter), its output captured as text."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kw)


def started(make: Callable[..., Any], end: str = "stop") -> Iterator[Callable[..., Any]]:
    """A fixture's body: yields start(...) -> make(...), and calls `end` on every one it made, the
    last first."""
    made: list = []

    def start(*args: Any, **kw: Any) -> Any:
        made.append(make(*args, **kw))
        return made[-1]

    yield start
    for thing in reversed(made):
        getattr(thing, end)()


@pytest.fixture
def stages():
    """Start stages with stages(command, config, *args); all are stopped after the test."""
    yield from started(Stage)


@pytest.fixture(scope="module")
def browser():
    """Real headless Chromium, one per test module."""
    from playwright.sync_api import sync_playwright  # (only the browser tests need it)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
