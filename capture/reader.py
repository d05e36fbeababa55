"""The capture loop's logic without sockets: source -> assembler -> frames, plus the stream state.

States: "starting" (no frame yet), "streaming", "resyncing" (sync lost: the source paused >= 185 ms
and the assembler starts afresh), "offline" (the source cannot deliver; retried with backoff).

When resyncing does not bring frames back, the reader climbs a recovery ladder, one step per
REBOOT_AFTER_RESYNCS failed resyncs, each step one log line and a state the viewer shows:
"rebooting" (the `reboot` hook: an OEM reboot over CCI), "reopening" (the SPI device closed and
opened again), then "retrying": wait (growing delays up to a minute), reboot and reopen, again
and again. A frame resets the ladder. Sources that can neither be rebooted nor reopened (a
recording) only resync.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Protocol

import numpy as np

from .vospi import RESYNC_PAUSE_S, Frame, FrameAssembler

log = logging.getLogger("capture.reader")

DEFAULT_SPI_DEVICE = "/dev/spidev0.0"


# The source contract lives with its consumer: every source of VoSPI bytes (capture/sources.py,
# capture/spi.py) implements it and imports it from here, so no source imports another's module.
class SourceOffline(Exception):
    """The source cannot deliver bytes right now; str() says why (one line for people)."""


class Source(Protocol):
    name: str
    retry_delay: float

    def read(self) -> bytes:
        """Some bytes (may be empty), blocking at most about 0.1 s; raises SourceOffline."""

    def pause(self, seconds: float) -> None:
        """Stop reading for at least `seconds` (on SPI: chip select deasserted, to resync)."""

    def close(self) -> None:
        ...

# No frame for this long while bytes keep coming = sync lost (the sensor can also fall silent
# into discard packets only, which the assembler alone cannot tell from idle time).
WATCHDOG_S = 1.0
OFFLINE_SLICE_S = 0.5  # longest wait inside one poll() while offline
# Resyncs without a frame before the next step of the ladder. Each failed resync is about a
# second of nothing (the 1 s watchdog or four frames of garbage, then 0.2 s with CS high), so
# three is ~1-3 s: LeptonModule's reader reboots the camera after 750 bad reads with a 1 ms
# sleep each (~1 s); its users report streams that freeze for good without it.
REBOOT_AFTER_RESYNCS = 3
RETRY_BACKOFF_S = (2.0, 5.0, 10.0, 30.0, 60.0)  # waits between later reboot + reopen attempts


class Reader:
    """Call poll() in a loop; it returns the frames completed meanwhile."""

    def __init__(self, source: Source, assembler: FrameAssembler, *,
                 watchdog_s: float = WATCHDOG_S, resync_pause_s: float = RESYNC_PAUSE_S,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 reboot: Optional[Callable[[], None]] = None,
                 reboot_after: int = REBOOT_AFTER_RESYNCS,
                 retry_backoff_s: tuple[float, ...] = RETRY_BACKOFF_S):
        self.source = source
        self.reboot = reboot  # reboots the camera (over CCI); None: this source cannot
        self.reboot_after = max(1, reboot_after)
        self.retry_backoff_s = retry_backoff_s
        self.failed_resyncs = 0  # resyncs since the last frame that brought no frame
        self.reboots = 0
        self.reopens = 0
        self._losses = 0  # sync losses since the last frame
        self._pending: Optional[str] = None  # a ladder step to take at the next poll()
        self.assembler = assembler
        self.watchdog_s = watchdog_s
        self.resync_pause_s = resync_pause_s
        self.state = "starting"
        self.detail = f"waiting for the first frame from {source.name}"
        self.changes = 0  # state changes so far (the app publishes status on each)
        self._sleep = sleep
        self._clock = clock
        self._last_frame = clock()
        self._retry_at = 0.0  # while offline: when to ask the source again
        self._hints: set[str] = set()

    def _set(self, state: str, detail: str, logged: bool = False) -> None:
        hint = self.assembler.hint
        if hint and hint not in self._hints:
            self._hints.add(hint)
            log.warning("%s: %s", self.source.name, hint)
        if hint:
            detail = f"{detail}; {hint}" if detail else hint
        if state != self.state or detail != self.detail:
            if state != self.state and not logged:
                log.info("%s: %s%s", state, self.source.name, f" ({detail})" if detail else "")
            self.state, self.detail = state, detail
            self.changes += 1

    def poll(self, wait: Optional[Callable[[float], bool]] = None) -> list[Frame]:
        """Read once. While offline, wait (`wait(seconds)`, True = stop early) at most
        OFFLINE_SLICE_S per call, so the caller keeps publishing status during a long backoff."""
        now = self._clock()
        if now < self._retry_at:
            (wait or self._wait)(min(self._retry_at - now, OFFLINE_SLICE_S))
            return []
        if self._pending:
            self._take_step()
        try:
            data = self.source.read()
        except SourceOffline as exc:
            self._set("offline", str(exc))
            self._retry_at = self._clock() + self.source.retry_delay
            self._last_frame = self._retry_at
            return []
        frames = self.assembler.feed(data) if data else []
        now = self._clock()
        if frames:
            self._last_frame = now
            if self._losses > 1:
                log.info("%s: frames again after %d failed resyncs", self.source.name,
                         self._losses - 1)
            self._losses = 0
            self.failed_resyncs = 0
            self._set("streaming", "")
        elif self.assembler.lost_sync or now - self._last_frame > self.watchdog_s:
            why = ("packets without a frame" if self.assembler.lost_sync
                   else f"no frame for {now - self._last_frame:.1f} s")
            self._losses += 1
            self.failed_resyncs = self._losses - 1
            if not self._escalate(why):
                failed = (f"; {self.failed_resyncs} resyncs brought no frame"
                          if self.failed_resyncs else "")
                self._set("resyncing", f"sync lost ({why}): pausing "
                                       f"{self.resync_pause_s * 1000:.0f} ms{failed}")
                self._resync()
        return frames

    # -- the recovery ladder

    def _resync(self) -> None:
        self.source.pause(self.resync_pause_s)
        self.assembler.resync()
        self._last_frame = self._clock()

    def _reopener(self) -> Optional[Callable[[], None]]:
        source = self.source
        reopen = getattr(source, "reopen", None)
        if reopen is None and hasattr(source, "source"):  # a Recorder around the source
            reopen = getattr(source.source, "reopen", None)
        return reopen

    def _escalate(self, why: str) -> bool:
        """Every reboot_after failed resyncs: the next step of the ladder (taken at the next
        poll, so the status saying so goes out first). False: just resync."""
        failed = self.failed_resyncs
        if failed == 0 or failed % self.reboot_after:
            return False
        steps = (["reboot"] if self.reboot else []) + (["reopen"] if self._reopener() else [])
        if not steps:
            return False
        level = failed // self.reboot_after - 1
        head = f"no frame after {failed} resyncs ({why})"
        if level < len(steps):
            step = steps[level]
            if step == "reboot":
                self._step("rebooting", f"{head}: rebooting the camera", "reboot")
            else:
                self._step("reopening", f"{head}: reopening {self.source.name}", "reopen")
        else:
            delay = self.retry_backoff_s[min(level - len(steps), len(self.retry_backoff_s) - 1)]
            self._step("retrying", f"{head}: {' and '.join(steps)} again in {delay:g} s", "retry")
            reopen = self._reopener()
            if reopen:
                reopen()  # closed (chip select high) while waiting; opened by the next read
            self._retry_at = self._clock() + delay
        return True

    def _step(self, state: str, detail: str, action: str) -> None:
        log.warning("%s: %s", self.source.name, detail)
        self._set(state, detail, logged=True)
        self._pending = action

    def _take_step(self) -> None:
        action, self._pending = self._pending, None
        if action in ("reboot", "retry") and self.reboot:
            self.reboots += 1
            try:
                self.reboot()
            except Exception as exc:  # noqa: BLE001 - any failure is told and the ladder goes on
                log.warning("%s: camera reboot failed: %s", self.source.name, exc)
                self._set(self.state, f"{self.detail}; the reboot failed: {exc}")
        reopen = self._reopener()
        if reopen and action in ("reopen", "retry"):
            self.reopens += 1
            if action == "reopen":  # (a retry closed it when it began waiting)
                reopen()
        self._resync()

    def _wait(self, seconds: float) -> bool:
        self._sleep(seconds)
        return False


class Deduper:
    """Drops a frame identical to the previous one, except once `keepalive_s` passed since the last
    frame let through (a still scene must not look like a dead camera downstream)."""

    def __init__(self, keepalive_s: float = 1.0):
        self.keepalive_s = keepalive_s
        # The previous frame as (shape, dtype, bytes): one memcpy and a memcmp per frame are
        # cheaper than np.array_equal's several numpy calls (this runs at 26.5 Hz).
        self._previous: Optional[tuple] = None
        self._sent_at = 0.0
        self.duplicates = 0

    def is_duplicate(self, image: np.ndarray, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        key = (image.shape, image.dtype.str, image.tobytes())
        if (self._previous is not None and now - self._sent_at < self.keepalive_s
                and key == self._previous):
            self.duplicates += 1
            return True
        self._previous = key
        self._sent_at = now
        return False
