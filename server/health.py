"""What the server knows about the stages before it: their status messages and the frames' age.

Healthy (/healthz 200) means all of:
  - capture's status is fresh (at most status_timeout_s old) and says "streaming" (camera online);
  - the encoder's status is fresh and says "encoding" (or "streaming") or "paused";
  - the newest frame is at most stale_after_s old - unless the encoder says "paused", which it does
    while nobody watches (then no frames is the expected state, not a fault).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

STAGES = ("capture", "encoder")
ENCODER_OK = ("encoding", "streaming", "paused")  # "waiting" = no frames from capture
STATUS_TIMEOUT_S = 3.0  # stages report about once a second


@dataclass
class StageStatus:
    state: str
    detail: str
    received: float  # monotonic
    counters: dict = field(default_factory=dict)
    source: Optional[str] = None
    camera: Optional[dict] = None  # capture's camera dict (wire.py: camera control)


class Health:
    """Stage statuses and frame freshness; plain code, its clock injectable for tests."""

    def __init__(self, stale_after_s: float, status_timeout_s: float = STATUS_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after_s = stale_after_s
        self.status_timeout_s = status_timeout_s
        self.clock = clock
        self.statuses: dict[str, StageStatus] = {}
        self.frame_received: Optional[float] = None
        self.frame_seq: Optional[int] = None

    def on_status(self, message: dict) -> None:
        """Record a wire status message (wire.unpack_status); other stages' names are ignored."""
        stage = message.get("stage")
        if stage not in STAGES:
            return
        counters = message.get("counters")
        self.statuses[stage] = StageStatus(
            state=str(message.get("state")), detail=str(message.get("detail") or ""),
            received=self.clock(), counters=counters if isinstance(counters, dict) else {},
            source=message.get("source") if isinstance(message.get("source"), str) else None,
            camera=message.get("camera") if isinstance(message.get("camera"), dict) else None)

    def camera_info(self) -> Optional[dict]:
        """The camera dict of capture's newest status (None if it sent none or went silent)."""
        status = self.statuses.get("capture")
        if status is None or self.clock() - status.received > self.status_timeout_s:
            return None
        return status.camera

    def on_frame(self, seq: int) -> None:
        self.frame_received = self.clock()
        self.frame_seq = seq

    def frame_age(self) -> Optional[float]:
        return None if self.frame_received is None else self.clock() - self.frame_received

    def frame_fresh(self) -> bool:
        age = self.frame_age()
        return age is not None and age <= self.stale_after_s

    def stage(self, name: str) -> dict:
        """{"state", "detail"} of a stage; "unknown"/"silent" when it has not reported (lately)."""
        status = self.statuses.get(name)
        if status is None:
            return {"state": "unknown", "detail": f"no status from {name} yet"}
        age = self.clock() - status.received
        if age > self.status_timeout_s:
            return {"state": "silent", "detail": f"no status from {name} for {age:.0f} s"}
        return {"state": status.state, "detail": status.detail}

    def camera(self) -> str:
        return "online" if self.stage("capture")["state"] == "streaming" else "offline"

    def summary(self) -> dict:
        """What viewers are told in a "status" message."""
        return {"capture": self.stage("capture"), "encoder": self.stage("encoder"),
                "camera": self.camera()}

    def check(self) -> tuple[bool, str]:
        """(healthy, the reason in one sentence)."""
        capture, encoder = self.stage("capture"), self.stage("encoder")
        if capture["state"] != "streaming":
            return False, f"camera offline: capture is {capture['state']}: {capture['detail']}"
        if encoder["state"] not in ENCODER_OK:
            return False, f"encoder is {encoder['state']}: {encoder['detail']}"
        if self.frame_fresh():
            return True, "frames are flowing"
        if encoder["state"] == "paused":
            return True, "camera streaming, encoder paused while nobody watches"
        age = self.frame_age()
        if age is None:
            return False, "no frame received from the encoder yet"
        return False, f"newest frame is {age:.1f} s old (stale_after_s = {self.stale_after_s:g})"

    def report(self, viewers: int) -> tuple[bool, dict]:
        """(healthy, the /healthz JSON body)."""
        healthy, reason = self.check()
        age = self.frame_age()
        return healthy, {"healthy": healthy, "reason": reason, "camera": self.camera(),
                         "capture": self.stage("capture"), "encoder": self.stage("encoder"),
                         "frame_age_s": None if age is None else round(age, 3),
                         "seq": self.frame_seq, "viewers": viewers}
