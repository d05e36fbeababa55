"""`flir-stream encoder`: raw frames in (SUB), JPEG frames out (XPUB), settings in (ROUTER).

The loop always works on the newest frame: it drains the frames socket, keeps the newest raw frame
(the older ones are counted as skipped, never queued) and forwards capture's newest status. While
nobody watches it only drains, and says "paused" in its status once a second.
"""
from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import time
from typing import Any, Optional

import cv2
import zmq

from flirstream import config as configuration
from flirstream import links, radiometric, startup, wire
from flirstream.regions import SENSORS
from flirstream.state import StateFile

from .control import Controller, Watchers
from .layout import Layout
from .measure import Meter
from .render import Renderer

log = logging.getLogger("encoder")

STATUS_EVERY_S = 1.0
WAITING_AFTER_S = 2.0  # no frame for this long: status says "waiting"
POLL_MS = 100  # while frames flow: a gap this long counts as "no frames" (the XPUB is polled again)
XPUB_EVERY_S = 0.2  # while frames flow: how soon a new subscription (a viewer's topic) is read
DRAIN_MAX = 256  # messages per drain, so a flood cannot starve control and status
ERROR_LOG_EVERY_S = 5.0
RESTART_AGC_AFTER_S = 1.0  # a gap this long between rendered frames starts AGC smoothing afresh


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The encoder has no options of its own: everything is in server.conf [encoder]."""


class _RateLimitedLog:
    """Log a recurring problem at most once per interval, with how often it happened meanwhile."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        self._count[kind] = self._count.get(kind, 0) + 1
        if now - self._last.get(kind, -1e9) >= self.every_s:
            more = self._count[kind] - 1
            log.warning("%s%s", message, f" (and {more} more like it)" if more else "")
            self._last[kind], self._count[kind] = now, 0


class Encoder:
    """The sockets and the loop around Renderer/Controller."""

    def __init__(self, cfg: configuration.Config, ctx: zmq.Context):
        self.cfg = cfg
        self.renderer = Renderer.from_settings(cfg.encoder)
        # regions: server.conf's [roi:NAME] and those drawn in the viewer (kept in the state file)
        self.layout = Layout(getattr(cfg, "regions", {}), SENSORS[cfg.capture.sensor],
                             StateFile(cfg.state.dir, "encoder"))
        self.meter = Meter(regions=lambda: self.layout.regions().values())
        self.watchers = Watchers(cfg.encoder.pause_when_unwatched)
        self.errors = _RateLimitedLog(ERROR_LOG_EVERY_S)
        self.controller = Controller(self.renderer, self.watchers,
                                     on_refusal=lambda text: self.errors.warning("control", text),
                                     layout=self.layout)
        self.counters = {"frames": 0, "skipped": 0, "unwatched": 0, "errors": 0, "control": 0,
                         "refused_subscriptions": 0, "paused": False}
        self.last_frame_at: Optional[float] = None
        self.rendered_at: Optional[float] = None
        self.last_error = ""
        self._state = ""
        self._status_at = 0.0
        self._framed = False  # the last turn of the loop handled a frame
        self._xpub_polled = False
        self._xpub_due = 0.0  # while frames flow: when the XPUB's subscriptions are read next
        self._sent = False  # this turn sent on the XPUB (which may take in its commands then)
        self._unread: set = set()  # sockets whose reading stopped at its limit, not when empty
        self.stopping = False

        # XPUB: its subscriptions tell us whether anyone watches. Each frame is two messages here
        # (its thermal message, then its JPEG): room for FRAME_HWM frames of both, not for half as
        # many: a server that fell a frame behind then lost JPEGs, never thermal messages (the
        # thermal goes first; scripts/soak.py counted it).
        self.images = links.publisher(ctx, "images", cfg.endpoints.images,
                                      hwm=2 * links.FRAME_HWM, socket_type=zmq.XPUB)
        self.control = links.control_router(ctx, "control", cfg.endpoints.control)
        self.frames = links.subscriber(ctx, cfg.endpoints.frames, wire.RAW_TOPIC)
        self.frames.setsockopt(zmq.SUBSCRIBE, wire.STATUS_TOPIC)
        # The loop sleeps in poll() on the sockets' ZMQ_FDs, not in zmq.Poller: zmq_poll asks
        # every socket's ZMQ_EVENTS (a system call each) before and after it sleeps, ~10 system
        # calls per frame in all; a ZMQ_FD only says "ask again", so ZMQ_EVENTS is asked only of
        # the sockets whose FD fired, or that the loop used since they last said "nothing".
        # The XPUB's FD is watched only while no frames flow: every frame it sends comes back as
        # a command from ZeroMQ's I/O thread (with SNDHWM 2 each message read lets the writer go
        # on), so watching it then wakes the loop a second time per frame for nothing. While
        # frames flow its subscriptions are read every XPUB_EVERY_S, before that turn's frames
        # (asking ZMQ_EVENTS on every turn cost ~20 us a frame after the sleep), and on every turn
        # that a frame did not wake; POLL_MS without a frame puts its FD back, so a subscription
        # wakes the loop at once while none flow.
        self.waiter = select.poll()
        self._fds = {sock.get(zmq.FD): sock for sock in (self.frames, self.control, self.images)}
        self._images_fd = self.images.get(zmq.FD)
        for fd, sock in self._fds.items():
            if sock is not self.images:
                self.waiter.register(fd, select.POLLIN)
        # stop() writes here: Python retries an interrupted poll(), so a signal alone would not end
        # a sleep that may now last up to STATUS_EVERY_S
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.waiter.register(self._wake_r, select.POLLIN)

    def close(self) -> None:
        for sock in (self.frames, self.images, self.control):
            sock.close(0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def stop(self) -> None:
        """End run() (safe to call from a signal handler)."""
        self.stopping = True
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        images, control, frames, fds = self.images, self.control, self.frames, self._fds
        look = {images, control, frames}  # the sockets to ask: all of them at first
        while not self.stopping:
            self._framed = self._sent = False
            self._unread = set()
            if (images in look or not self._xpub_polled and (
                    frames not in look or time.monotonic() >= self._xpub_due)) \
                    and self._subscriptions_waiting():
                self._guarded(self._subscriptions)
            if control in look and links.has_message(control):
                self._guarded(self._control)
            if frames in look:
                self._guarded(self._frames)  # (links.drain asks ZMQ_EVENTS first)
            self._guarded(self._status)
            self._poll_xpub(not self._framed)
            # Sleep only when no socket holds what the loop has not read: one whose reading
            # stopped at its limit, or the XPUB after a send (a send may take in the command that
            # says a subscription waits, and then its FD does not fire for it).
            look = set(self._unread)
            if self._sent and self._xpub_polled and links.has_message(images):
                look.add(images)
            if look:
                continue
            look = {fds[fd] for fd, _ in self.waiter.poll(self._timeout_ms()) if fd in fds}

    def _subscriptions_waiting(self) -> bool:
        """Whether the XPUB holds subscriptions to read (asked now; next due in XPUB_EVERY_S)."""
        self._xpub_due = time.monotonic() + XPUB_EVERY_S
        return links.has_message(self.images)

    def _poll_xpub(self, polled: bool) -> None:
        """Watch the XPUB's FD (no frames flow) or not (they do: it is asked every XPUB_EVERY_S)."""
        if polled != self._xpub_polled:
            if polled:
                self.waiter.register(self._images_fd, select.POLLIN)
            else:
                self.waiter.unregister(self._images_fd)
            self._xpub_polled = polled

    def _send(self, message: list) -> None:
        """Publish one message without blocking (zmq.Again at the high-water mark).

        Copied, never zero-copy: pyzmq sends a part over its copy_threshold (64 KB: a real scene's
        640x480 JPEG is ~70 KB) zero-copy, and then starts a garbage-collector thread with a
        ZeroMQ context of its own (3 threads, 7 descriptors) that wakes for every such frame to
        let go of its buffer. Copying the part costs a memcpy."""
        self._sent = True
        links.publish(self.images, message)

    def _timeout_ms(self) -> int:
        """How long the loop may sleep: while frames flow POLL_MS (a frame comes sooner); else
        until the next status is due or the state may change by itself (frames stop counting,
        a viewer count expires), instead of waking every POLL_MS for nothing."""
        if not self._xpub_polled:
            return POLL_MS
        now = time.monotonic()
        due = self._status_at + STATUS_EVERY_S
        if self.last_frame_at is not None and now < self.last_frame_at + WAITING_AFTER_S:
            due = min(due, self.last_frame_at + WAITING_AFTER_S)
        expires = self.watchers.changes_at()
        if expires is not None and now < expires:
            due = min(due, expires)
        # +1 ms: never wake a moment before it is due (and spin through a zero timeout)
        return max(0, int((due - now) * 1000) + 1)

    def _guarded(self, handle) -> None:
        """Run one handler; an error it did not expect costs what it was reading, not the stage."""
        try:
            handle()
        except zmq.ContextTerminated:
            raise
        except Exception as exc:
            self._error("loop", f"{handle.__name__.strip('_')}: {exc!r:.200}")
            log.debug("loop failure", exc_info=True)

    def _subscriptions(self) -> None:
        self._unread.add(self.images)  # until the socket says it is empty
        for _ in range(DRAIN_MAX * 4):
            try:
                message = self.images.recv(zmq.NOBLOCK)
            except zmq.Again:
                self._unread.discard(self.images)
                return
            if not self.watchers.subscription(message):
                self.counters["refused_subscriptions"] += 1
                self._error("subscription", f"ignored a subscription to {bytes(message[1:17])!r}"
                                            f" ({len(message)} bytes): not a topic of the wire "
                                            f"format")

    def _control(self) -> None:
        self._unread.add(self.control)  # until the socket says it is empty
        for _ in range(DRAIN_MAX):
            try:
                parts = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self._unread.discard(self.control)
                return
            if len(parts) < 2:  # only a peer identity: nothing to answer
                continue
            self.counters["control"] += 1
            envelope, request = parts[:-1], parts[-1]  # DEALER: [id]; REQ: [id, b""]
            regions_before = self.layout.version
            reply = self.controller.handle(request)  # never raises: a bad request gets an error
            try:
                self.control.send_multipart([*envelope, reply], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                self._error("control", f"control reply not sent: {exc}")
            # a change of settings or viewers shows at once, one of the regions too
            self._status(force=self.layout.version != regions_before)

    def _frames(self) -> None:
        self._unread.add(self.frames)  # until drain says it is empty
        newest, statuses, skipped, more = links.drain(self.frames, DRAIN_MAX)
        self._framed = newest is not None
        if not more:
            self._unread.discard(self.frames)
        self.counters["skipped"] += skipped
        if statuses:
            self._forward_status(statuses[-1])  # capture's newest status says all the older did
        if newest is not None:
            self._encode(newest)

    def _forward_status(self, parts: list) -> None:
        try:
            status = wire.unpack_status(parts)  # only well-formed statuses go on to the server
            if status["stage"] != "capture":  # the encoder speaks for itself
                raise wire.WireError(f"stage is {status['stage']!r}, expected 'capture'")
        except wire.WireError as exc:
            self._error("status", f"dropped a capture status message: {exc}")
            return
        try:
            self._send([p.buffer for p in parts])
        except zmq.ZMQError:
            pass  # at the high-water mark: the next status says the same

    def _encode(self, parts: list) -> None:
        try:
            raw = wire.unpack_raw(parts)
        except wire.WireError as exc:
            self._error("wire", f"dropped a frame: {exc}")
            return
        except Exception as exc:  # nothing on the frames link may stop the encoder
            self._error("wire", f"dropped a frame: {exc!r:.200}")
            return
        self.last_frame_at = time.monotonic()
        if self.watchers.wants(wire.THERMAL_TOPIC):
            self._measure(raw)
        if not self.watchers.watched:
            self.counters["unwatched"] += 1
            return
        try:
            self._publish(raw)
        except (ValueError, RuntimeError, cv2.error) as exc:
            self._error("render", f"cannot render frame {raw.seq}: {exc}")
        except Exception as exc:  # a stage must outlive any one frame; the log keeps the trace
            self._error("render", f"cannot render frame {raw.seq}: {exc!r}")
            log.debug("render failure", exc_info=True)

    def _measure(self, frame: wire.Frame) -> None:
        """Statistics and region readings of every frame, whether or not the picture is watched."""
        try:
            frame.measurement = measured = self.meter.measure(frame)
            if self.watchers.radiometric:  # made here once, not in the server's event loop
                measured.radiometric = radiometric.encode_frame(
                    frame.pixels, frame.tlinear, frame.kelvin_per_count)
            message = wire.pack_thermal(frame)
        except (ValueError, TypeError) as exc:  # e.g. NaN in a header field
            self._error("measure", f"cannot measure frame {frame.seq}: {exc}")
            return
        try:
            self._send(message)
        except zmq.Again:
            pass  # PUB drops at the high-water mark; never block

    def _publish(self, frame: wire.Frame) -> None:
        now = time.monotonic()
        if self.rendered_at is not None and now - self.rendered_at > RESTART_AGC_AFTER_S:
            self.renderer.restart()  # no fade from a scene seen before a pause or a capture restart
        self.rendered_at = now
        frame.picture = self.renderer.render_frame(frame)
        message = wire.pack_image(frame)  # ValueError if e.g. the header carried NaN
        self.counters["frames"] += 1
        try:
            self._send(message)
        except zmq.Again:
            pass  # PUB drops at the high-water mark; never reached, but never block either

    def _error(self, kind: str, message: str) -> None:
        self.counters["errors"] += 1
        self.last_error = message
        self.errors.warning(kind, message)

    # ------------------------------------------------------------ status

    def state(self) -> tuple[str, str]:
        state = self._state_name()
        return state, self._detail(state)

    def _state_name(self) -> str:
        """paused, waiting or encoding (checked on every turn of the loop, so kept cheap)."""
        if not self.watchers.watched:
            return "paused"
        if self.last_frame_at is None or time.monotonic() - self.last_frame_at > WAITING_AFTER_S:
            return "waiting"
        return "encoding"

    def _detail(self, state: str) -> str:
        if state == "paused":
            return f"paused: {self.watchers.why_paused()}"
        if state == "waiting":
            return f"waiting for frames from {self.cfg.endpoints.frames}"
        s = self.renderer.settings_text()
        return f"encoding {s['palette']} {s['agc']} {s['size']} JPEG q{s['quality']}"

    def _status(self, force: bool = False) -> None:
        state = self._state_name()
        now = time.monotonic()
        if not force and state == self._state and now - self._status_at < STATUS_EVERY_S:
            return
        detail = self._detail(state)
        if state != self._state:
            log.info("%s", detail)
        self._state, self._status_at = state, now
        self.counters["paused"] = state == "paused"
        message = wire.pack_status("encoder", state, detail, t=time.time(),
                                   source=self.cfg.endpoints.frames, counters=dict(self.counters),
                                   settings=self.controller.settings(), last_error=self.last_error,
                                   regions=self.layout.as_list()[:wire.MAX_REGIONS])
        try:
            self._send(message)
        except zmq.Again:
            pass


def run(cfg: configuration.Config, args: Any) -> int:
    log.info("endpoints: %s", configuration.describe(cfg, "endpoints"))
    log.info("settings: %s", configuration.describe(cfg, "encoder"))
    ctx = zmq.Context()
    links.yielding_io_threads(ctx)
    encoder: Optional[Encoder] = None
    try:
        encoder = Encoder(cfg, ctx)

        def stop(signum: int, frame: Any) -> None:
            encoder.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        startup.freeze_startup()  # the loop's collections no longer walk what start-up made
        log.info("publishing images on %s, control on %s", cfg.endpoints.images,
                 cfg.endpoints.control)
        encoder.run()
        log.info("stopped: %d frames encoded, %d skipped, %d errors", encoder.counters["frames"],
                 encoder.counters["skipped"], encoder.counters["errors"])
        return 0
    finally:
        if encoder is not None:
            encoder.close()
        ctx.destroy(linger=0)  # also closes the sockets of an Encoder that failed half-way
