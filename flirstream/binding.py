"""Binding a port at start and after a restart: a configuration error the first time, a runtime fault
afterwards.

At the first start of the service, a port that cannot be bound (in use, no such interface) is a
configuration error: the stage exits 2 at once with one line, and `run` / systemd do not retry. When a
stage is *restarted*, the same port was bound a moment ago, so a failure is something passing (another
program took the port for a moment, a socket still closing): the stage keeps trying with back-off for
up to FLIRSTREAM_BIND_RETRY_S seconds, one log line per attempt saying why, and then exits 1 (a runtime
fault, which `run`, supervisord and systemd restart). `flir-stream run` sets FLIRSTREAM_BIND_RETRY_S
for every child it restarts; scripts/supervisord.conf sets it for every stage (supervisord cannot tell
a first start from a restart). Unset or 0: no retrying (a stage started by hand, `run`'s first start).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, TypeVar

from .config import ConfigError

log = logging.getLogger("binding")

RETRY_ENV = "FLIRSTREAM_BIND_RETRY_S"
RETRY_FIRST_S = 0.1
RETRY_MOST_S = 2.0
T = TypeVar("T")


class BindError(ConfigError):
    """An address could not be bound; str() names the setting, the address and why."""


class StageFault(Exception):
    """A runtime fault that ends the stage with status 1 (not 2): restarting it may help."""


def retry_window() -> float:
    """Seconds a failed bind is retried, from the environment (0: not at all)."""
    try:
        value = float(os.environ.get(RETRY_ENV, "0") or 0)
    except ValueError:
        return 0.0
    return value if 0 < value < float("inf") else 0.0


def bind_retrying(attempt: Callable[[], T], window_s: float | None = None,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> T:
    """attempt() until it does not raise BindError: at once if window_s is 0 (BindError goes on up,
    a configuration error), else with doubling delays for up to window_s, then StageFault."""
    window_s = retry_window() if window_s is None else window_s
    deadline = clock() + window_s
    delay, tries = RETRY_FIRST_S, 0
    while True:
        try:
            return attempt()
        except BindError as exc:
            tries += 1
            if window_s <= 0:
                raise
            left = deadline - clock()
            if left <= 0:
                raise StageFault(f"{exc}; gave up after {tries} attempts in {window_s:g} s") from None
            wait = min(delay, left)
            # One line per attempt; the doubling delay (at most every RETRY_MOST_S) rate-limits them.
            log.warning("%s; a restarted stage retries (attempt %d, next in %.1f s, giving up "
                        "in %.0f s)", exc, tries, wait, left)
            sleep(wait)
            delay = min(delay * 2, RETRY_MOST_S)
