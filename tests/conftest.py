"""Shared test helpers: free loopback ports, config files for them, stage processes."""
from __future__ import annotations

from pathlib import Path

import pytest

from flirstream.testing import Stage, free_port, write_config  # noqa: F401  (tests import them from here)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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
