"""The server's state: the newest frame, the stages' status, the encoder settings, the viewers."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from flirstream.wire import Frame

from . import protocol
from .fanout import Fanout, feed_of
from .health import Health
from .metrics import Metrics

log = logging.getLogger("hub")

@dataclass(frozen=True)
class Outgoing:
    """One frame as every transport sends it, built once when it arrives."""

    frame: Frame  # with its picture
    ws: protocol.FramePayloads
    mjpeg: bytes  # one multipart part


def _states(status: dict) -> tuple:
    """What a status change is logged for: states, not details (a silence's "for N s" counts up)."""
    fault = status["fault"]
    return (status["capture"]["state"], status["encoder"]["state"], status["camera"],
            fault and fault["stage"])


class Hub:
    def __init__(self, metrics: Metrics, health: Health,
                 clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.fanout = Fanout(metrics, on_change=self._viewers_changed, as_sent=self._as_sent)
        self.picture_frame: Optional[Frame] = None  # the newest frame with a picture (JPEG)
        self.thermal: Optional[Frame] = None  # the newest measured frame, watched or not
        self._thermal_at = 0.0  # when it arrived (self.clock)
        self.measurement_listeners: list[Callable[[Frame], None]] = []
        self.status_listeners: list[Callable[[dict], None]] = []  # every stage status message
        self.settings: Optional[dict] = None
        self.settings_version = 0  # changes with every change of settings (thermal "defaults")
        self.snapshot_waiters = 0
        self.on_viewers: Callable[[int], None] = lambda n: None  # set by the app (-> encoder):
        # called with jpeg_viewers() on every change
        self._frame_waiters: list[asyncio.Future] = []
        self._status: Optional[dict] = None
        self._stale: Optional[tuple[Outgoing, Outgoing]] = None  # (frame, its stale-marked copy)
        self.camera: Optional[dict] = None  # capture's camera dict, as viewers were last told

    # ------------------------------------------------------------ viewers

    def viewers(self) -> int:
        """Websocket and MJPEG clients, plus snapshot requests waiting for a fresh frame."""
        return self.fanout.count() + self.snapshot_waiters

    def streaming_clients(self) -> int:
        """Websocket and MJPEG clients (what max_clients caps)."""
        return self.fanout.count()

    def jpeg_viewers(self) -> int:
        """Clients that need the encoder's JPEGs: MJPEG, mode=jpeg websockets, and snapshot requests
        waiting for a fresh frame. This is the count the encoder is told: thermal-mode viewers do
        not count, the frames they need flow whether or not the encoder makes JPEGs."""
        return self.fanout.count(feed="image") + self.snapshot_waiters

    def thermal_viewers(self) -> int:
        return self.fanout.count(feed="thermal")

    def join(self, sink: Any) -> None:
        """A new client: it gets the newest frame of its feed at once. Thermal messages are built
        only while someone takes them, so the first thermal viewer's is built here."""
        if feed_of(sink) == "thermal" and self.thermal is not None:
            now = self.clock()
            # Older than stale_after_s (capture stopped): marked stale, as the cached image is.
            stale = now - self._thermal_at > self.health.stale_after_s
            if stale or not self.fanout.has_latest("thermal"):
                self.fanout.publish(protocol.thermal_payload(self.thermal, now, self.settings_version,
                                                             stale=stale), "thermal")
        self.fanout.add(sink)

    def leave(self, sink: Any) -> None:
        self.fanout.remove(sink)

    def resend(self, sink: Any) -> None:
        """Send the newest frame of its feed again (e.g. after it enabled raw pixels)."""
        self.fanout.resend(sink)

    def viewers_by_transport(self) -> dict[str, int]:
        return {"websocket": self.fanout.count("websocket"), "mjpeg": self.fanout.count("mjpeg"),
                "snapshot": self.snapshot_waiters}

    def _viewers_changed(self) -> None:
        self.on_viewers(self.jpeg_viewers())

    def websockets(self) -> list[Any]:
        return self.fanout.sinks("websocket")

    def _as_sent(self, outgoing: Outgoing) -> Outgoing:
        """The newest frame as it goes out now. Older than stale_after_s (the cached frame a viewer
        gets on connect after a pause, or again after enabling raw pixels) it is marked stale, so
        the viewer shows it as such and computes no latency from it. The copy is built once."""
        if self.health.frame_fresh():
            return outgoing
        if self._stale is None or self._stale[0] is not outgoing:
            frame = outgoing.frame
            self._stale = (outgoing, Outgoing(
                frame, protocol.frame_payloads(frame, self.clock(), stale=True), outgoing.mjpeg))
        return self._stale[1]

    def broadcast_text(self, text: str) -> None:
        for client in self.websockets():
            client.send_text(text)

    # ------------------------------------------------------------ from the encoder

    def on_image(self, frame: Frame, drained: int = 0) -> None:
        t_sent = self.clock()
        self.metrics.frame_in(frame.seq, drained)
        self.health.on_frame(frame.seq)
        self.picture_frame = frame
        outgoing = Outgoing(frame, protocol.frame_payloads(frame, t_sent),
                            protocol.mjpeg_part(frame.picture.jpeg))
        if self.fanout.count(feed="image"):
            self.metrics.observe_latency(t_sent - frame.t)
        self.fanout.publish(outgoing)
        waiters, self._frame_waiters = self._frame_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(frame)
        self.check_status()  # a frame after silence may change "camera"

    def on_thermal(self, frame: Frame) -> None:
        """The newest measurements (every frame, even while the picture is paused); thermal-mode
        viewers get it as one message built once for all of them."""
        self.thermal = frame
        self._thermal_at = self.clock()
        self.metrics.measured_in()
        if self.thermal_viewers():
            t_sent = self.clock()
            self.metrics.observe_latency(t_sent - frame.t)
            self.fanout.publish(protocol.thermal_payload(frame, t_sent, self.settings_version),
                                "thermal")
        else:
            self.fanout.forget("thermal")
        for listener in self.measurement_listeners:
            listener(frame)

    def on_status(self, message: dict) -> None:
        self.health.on_status(message)
        settings = message.get("settings")
        if message.get("stage") == "encoder" and isinstance(settings, dict):
            self.set_settings(settings)  # the encoder's status carries its settings too
        for listener in self.status_listeners:
            listener(message)
        if message.get("stage") == "capture":
            self.set_camera(self.health.camera_info())
        self.check_status()

    def set_camera(self, camera: Optional[dict]) -> None:
        """The camera dict (capture's status, a camera control reply); viewers hear of changes."""
        if camera is not None and camera != self.camera:
            self.camera = camera
            self.broadcast_text(protocol.camera_message(camera))

    def check_status(self) -> None:
        """Tell viewers when a stage's state or the camera changed (also called once a second)."""
        status = self.health.summary()
        if status != self._status:
            if self._status is not None and _states(status) != _states(self._status):
                fault = status["fault"]
                log.info("status: capture %s (%s), encoder %s (%s), camera %s%s",
                         status["capture"]["state"], status["capture"]["detail"],
                         status["encoder"]["state"], status["encoder"]["detail"], status["camera"],
                         f"; {fault['stage']} at fault: {fault['detail']}" if fault else "")
            self._status = status
            self.broadcast_text(protocol.status_message(status))

    def set_settings(self, settings: dict) -> None:
        """The encoder's settings (from a control reply); viewers hear of changes."""
        if settings != self.settings:
            self.settings = settings
            self.settings_version += 1
            self.broadcast_text(protocol.settings_message(settings))

    # ------------------------------------------------------------ snapshots

    async def fresh_image(self, wait_s: float,
                          newer_than: float = float("-inf")) -> Optional[Frame]:
        """The newest frame if fresh (and captured at newer_than or later); else count as a viewer
        (so a paused encoder resumes) and wait up to wait_s for one. None if none came.
        (newer_than: an alarm's picture must show the alarm's scene, not the one a fresh but
        older picture from before the pause shows; thermal viewers leave the encoder paused.)"""
        def good() -> bool:
            return (self.picture_frame is not None and self.health.frame_fresh()
                    and self.picture_frame.t >= newer_than)

        if good():
            return self.picture_frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        self.snapshot_waiters += 1
        self._viewers_changed()
        try:
            while not good() and loop.time() < deadline:
                future = loop.create_future()
                self._frame_waiters.append(future)
                try:
                    await asyncio.wait_for(future, deadline - loop.time())
                except asyncio.TimeoutError:
                    break
        finally:
            self.snapshot_waiters -= 1
            self._viewers_changed()
        return self.picture_frame if good() else None
