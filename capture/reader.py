"""The capture loop's logic without sockets: source -> assembler -> frames, plus the stream state.

States: "starting" (no frame yet), "streaming", "resyncing" (sync lost: the source paused >= 185 ms
and the assembler starts afresh), "offline" (the source cannot deliver; retried with backoff).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

import numpy as np

from .sources import Source, SourceOffline
from .vospi import RESYNC_PAUSE_S, Frame, FrameAssembler

log = logging.getLogger("capture.reader")

# No frame for this long while bytes keep coming = sync lost (the sensor can also fall silent
# into discard packets only, which the assembler alone cannot tell from idle time).
WATCHDOG_S = 1.0
OFFLINE_SLICE_S = 0.5  # longest wait inside one poll() while offline


class Reader:
    """Call poll() in a loop; it returns the frames completed meanwhile."""

    def __init__(self, source: Source, assembler: FrameAssembler, *,
                 watchdog_s: float = WATCHDOG_S, resync_pause_s: float = RESYNC_PAUSE_S,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
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

    def _set(self, state: str, detail: str) -> None:
        hint = self.assembler.hint
        if hint and hint not in self._hints:
            self._hints.add(hint)
            log.warning("%s: %s", self.source.name, hint)
        if hint:
            detail = f"{detail}; {hint}" if detail else hint
        if state != self.state or detail != self.detail:
            if state != self.state:
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
            self._set("streaming", "")
        elif self.assembler.lost_sync or now - self._last_frame > self.watchdog_s:
            why = ("packets without a frame" if self.assembler.lost_sync
                   else f"no frame for {now - self._last_frame:.1f} s")
            self._set("resyncing", f"sync lost ({why}): pausing {self.resync_pause_s * 1000:.0f} ms")
            self.source.pause(self.resync_pause_s)
            self.assembler.resync()
            self._last_frame = self._clock()
        return frames

    def _wait(self, seconds: float) -> bool:
        self._sleep(seconds)
        return False


class Deduper:
    """Drops a frame identical to the previous one, except once `keepalive_s` passed since the last
    frame let through (a still scene must not look like a dead camera downstream)."""

    def __init__(self, keepalive_s: float = 1.0):
        self.keepalive_s = keepalive_s
        self._previous: Optional[np.ndarray] = None
        self._sent_at = 0.0
        self.duplicates = 0

    def is_duplicate(self, image: np.ndarray, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        if (self._previous is not None and now - self._sent_at < self.keepalive_s
                and np.array_equal(self._previous, image)):
            self.duplicates += 1
            return True
        self._previous = image
        self._sent_at = now
        return False
