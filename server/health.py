"""What the server knows about the stages before it: their status messages and the frames' age.

Healthy (/healthz 200) means all of:
  - capture's status is current (at most status_timeout_s old, or frames still arrive) and says
    "streaming" (camera online);
  - the encoder's status is current and says "encoding" (or "streaming") or "paused";
  - the newest frame is at most stale_after_s old - unless the encoder says "paused", which it does
    while nobody watches (then no frames is the expected state, not a fault).

When something is wrong, `fault()` names the part that actually went quiet. Capture's status reaches
the server only through the encoder (the server subscribes to the encoder alone), so a silent encoder
silences capture too: then the encoder is the one to blame, and capture's state is "unknown", not
"silent". Frames arriving prove the camera works, so the camera is never called offline while they
do unless capture itself says so; before any status has come (just after a restart) it is "starting".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

WATCHED_STAGES = ("capture", "encoder")  # the stages whose status messages the server follows
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
        self.started = clock()  # silence is counted from here until a stage first reports
        self.encoder_back = self.started  # when the encoder last started reporting after silence
        self.statuses: dict[str, StageStatus] = {}
        self.frame_received: Optional[float] = None
        self.frame_seq: Optional[int] = None

    def on_status(self, message: dict) -> None:
        """Record a wire status message (wire.unpack_status); other stages' names are ignored."""
        stage = message.get("stage")
        if stage not in WATCHED_STAGES:
            return
        if stage == "encoder" and self._fresh("encoder") is None:
            self.encoder_back = self.clock()  # capture's status can only come through from now on
        counters = message.get("counters")
        self.statuses[stage] = StageStatus(
            state=str(message.get("state")), detail=str(message.get("detail") or ""),
            received=self.clock(), counters=counters if isinstance(counters, dict) else {},
            source=message.get("source") if isinstance(message.get("source"), str) else None,
            camera=message.get("camera") if isinstance(message.get("camera"), dict) else None)

    def counters(self) -> dict[str, dict]:
        """Each stage's counters, as its last status gave them."""
        return {name: status.counters for name, status in self.statuses.items()}

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

    def _fresh(self, name: str) -> Optional[StageStatus]:
        """The stage's status if at most status_timeout_s old, else None."""
        status = self.statuses.get(name)
        if status is None or self.clock() - status.received > self.status_timeout_s:
            return None
        return status

    def _silence(self, name: str) -> float:
        """Seconds since the stage last showed it runs - its status, or a frame (every frame passed
        through both stages), and for the encoder also capture's status, which it forwarded -
        counted at most from the server's start. Capture's status comes through the encoder, so
        its silence counts only from when the encoder reports again and only up to the encoder's
        latest status: capture is silent only while the encoder is not (if both stop, the
        encoder's silence is always the longer)."""
        status = self.statuses.get(name)
        since = max(self.started, status.received if status is not None else self.started,
                    self.frame_received if self.frame_received is not None else self.started)
        if name == "encoder" and "capture" in self.statuses:  # it forwarded capture's status
            since = max(since, self.statuses["capture"].received)
        until = self.clock()
        if name == "capture":
            since = max(since, self.encoder_back)
            encoder = self.statuses.get("encoder")
            if encoder is not None:
                until = min(until, encoder.received)
        return max(0.0, until - since)

    def stage(self, name: str) -> dict:
        """{"state", "detail"} of a stage: its own (while it runs), or "starting" / "silent" when
        it has not reported lately, or "unknown" for capture behind an encoder that does not."""
        status = self.statuses.get(name)
        if name == "capture" and self.stage("encoder")["state"] == "silent":
            return {"state": "unknown",
                    "detail": "capture's status comes through the encoder, which is silent"}
        quiet = self._silence(name)
        if status is not None and quiet <= self.status_timeout_s:
            return {"state": status.state, "detail": status.detail}
        if name == "capture" and "encoder" not in self.statuses:
            return {"state": "unknown", "detail": "no status from capture yet"}
        if quiet <= self.status_timeout_s:  # it had no time to report yet
            return {"state": "starting", "detail": f"no status from {name} yet"}
        if status is None:
            return {"state": "silent", "detail": f"no status from {name} in {quiet:.0f} s"}
        return {"state": "silent", "detail": f"no status from {name} for {quiet:.0f} s"}

    def fault(self) -> Optional[dict]:
        """{"stage", "detail"} of the part that is silent or failing - "encoder", "capture" or
        "camera" - or None while none is (also while the stages are only starting)."""
        encoder, capture = self.stage("encoder"), self.stage("capture")
        if encoder["state"] == "silent":
            return {"stage": "encoder", "detail": encoder["detail"]}
        if capture["state"] == "silent":
            return {"stage": "capture", "detail": capture["detail"]}
        if self._fresh("capture") is not None and self.camera() == "offline":
            return {"stage": "camera",
                    "detail": capture["detail"] or f"capture is {capture['state']}"}
        return None

    def camera(self) -> str:
        """"online", "offline", "starting" (no status yet) or "unknown" (capture or the encoder is
        silent, so nobody can tell)."""
        capture = self._fresh("capture")
        if capture is not None and capture.state == "offline":
            return "offline"  # capture says so itself
        if self.frame_fresh():
            return "online"  # frames are arriving: whatever the statuses say, or have not said yet
        if capture is not None:
            return {"streaming": "online", "starting": "starting"}.get(capture.state, "offline")
        if "silent" in (self.stage("encoder")["state"], self.stage("capture")["state"]):
            return "unknown"
        return "starting"

    def summary(self) -> dict:
        """What viewers are told in a "status" message."""
        return {"capture": self.stage("capture"), "encoder": self.stage("encoder"),
                "camera": self.camera(), "fault": self.fault()}

    def check(self) -> tuple[bool, str]:
        """(healthy, the reason in one sentence)."""
        fault = self.fault()
        if fault is not None and fault["stage"] == "encoder":
            return False, (f"encoder silent: {fault['detail']} (capture's status comes through it, "
                           f"so capture cannot be seen either)")
        if fault is not None and fault["stage"] == "capture":
            return False, f"capture silent: {fault['detail']}"
        capture, encoder = self.stage("capture"), self.stage("encoder")
        if capture["state"] != "streaming":
            if self.camera() == "offline":
                return False, f"camera offline: capture is {capture['state']}: {capture['detail']}"
            if capture["state"] in ("unknown", "starting"):
                return False, f"starting: {capture['detail']}"
            return False, f"capture is {capture['state']}: {capture['detail']}"
        if encoder["state"] not in ENCODER_OK:
            return False, f"encoder is {encoder['state']}: {encoder['detail']}"
        if self.frame_fresh():
            return True, "frames are flowing"
        if encoder["state"] == "paused":
            return True, "camera streaming, encoder paused while no client needs JPEGs"
        age = self.frame_age()
        if age is None:
            return False, "no frame received from the encoder yet"
        return False, f"newest frame is {age:.1f} s old (stale_after_s = {self.stale_after_s:g})"

    def report(self, viewers: int) -> tuple[bool, dict]:
        """(healthy, the /healthz JSON body)."""
        healthy, reason = self.check()
        age = self.frame_age()
        return healthy, {"healthy": healthy, "reason": reason, "camera": self.camera(),
                         "fault": self.fault(),
                         "capture": self.stage("capture"), "encoder": self.stage("encoder"),
                         "frame_age_s": None if age is None else round(age, 3),
                         "seq": self.frame_seq, "viewers": viewers}
