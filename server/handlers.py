"""HTTP endpoints: the viewer's files, MJPEG, snapshots, /healthz and /metrics."""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, Optional

import tornado.web
from tornado.iostream import StreamClosedError

from . import protocol, snapshots
from .plumbing import AccessMixin, Base, Context, limit_send_buffer, plain_error

log = logging.getLogger("http")

SNAPSHOT_WAIT_S = 2.0

VIEWER_TYPES = (".html", ".js", ".css", ".svg", ".ico", ".png")


class ViewerFiles(AccessMixin, tornado.web.StaticFileHandler):
    """The viewer (web/): no directory listing, nothing outside its directory (Tornado checks),
    and only the viewer's own kinds of file - web/ is also a Python package (make_palettes.py,
    __pycache__), and a static_dir may hold other things. No dotfiles."""

    def initialize(self, ctx: Context, path: str) -> None:  # type: ignore[override]
        self.ctx = ctx
        super().initialize(path=path, default_filename="index.html")

    def prepare(self) -> None:
        self.viewer_allowed()

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:  # the OS would refuse it with ValueError (a 500)
            raise tornado.web.HTTPError(400)
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> Optional[str]:
        path = super().validate_absolute_path(root, absolute_path)
        if path is None:
            return None  # redirected (a directory without its trailing slash)
        inside = os.path.relpath(path, os.path.abspath(root))
        if os.path.splitext(path)[1].lower() not in VIEWER_TYPES or \
                any(part.startswith(".") for part in inside.split(os.sep)):
            raise tornado.web.HTTPError(404)
        return path

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")  # revalidate (ETag) so updates show at once

    write_error = plain_error


class MJPEGStream(Base):
    """multipart/x-mixed-replace JPEGs: plays in <img>, VLC, ffmpeg. Newest frame wins."""

    transport = "mjpeg"
    wants_raw = False

    def head(self) -> None:
        """Monitors probe with HEAD: the stream's headers, no stream."""
        self.set_header("Content-Type", protocol.MJPEG_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-cache, no-store")
        self.finish()

    async def get(self) -> None:
        if self.refuse_full():
            return
        self.set_header("Content-Type", protocol.MJPEG_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-cache, no-store")
        self.set_header("Pragma", "no-cache")
        self._gone = asyncio.Event()
        limit_send_buffer(self.request.connection.stream)
        log.info("MJPEG viewer %s connected", self.request.remote_ip)
        self.ctx.hub.join(self)
        try:
            closing = asyncio.ensure_future(self.ctx.closing.wait())
            gone = asyncio.ensure_future(self._gone.wait())
            await asyncio.wait([closing, gone], return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            gone.cancel()
        finally:
            self.ctx.hub.leave(self)
            log.info("MJPEG viewer %s left", self.request.remote_ip)

    def payload(self, outgoing: Any) -> bytes:
        return outgoing.mjpeg

    def send_frame(self, payload: bytes) -> Any:
        if self._gone.is_set():
            raise StreamClosedError()
        self.write(payload)
        return self.flush()

    def on_connection_close(self) -> None:
        self._gone.set()


class Snapshot(Base):
    """The newest frame as /snapshot.jpg, .tiff (raw 16-bit values) or .csv (degrees C)."""

    async def get(self, extension: str) -> None:
        frame = await self.ctx.hub.fresh_image(SNAPSHOT_WAIT_S)
        if frame is None:
            _, reason = self.ctx.health.check()
            self.set_status(503)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("Retry-After", "2")
            self.finish(f"no fresh frame within {SNAPSHOT_WAIT_S:g} s: {reason}\n")
            return
        if extension == "csv" and not frame.tlinear:
            self.set_status(409)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"no temperatures: the camera sends {snapshots.MEANING_TEXT[frame.meaning]},"
                        f" not TLinear kelvin; /snapshot.tiff has the raw values\n")
            return
        if extension == "jpg":
            data, kind, disposition = frame.picture.jpeg, "image/jpeg", "inline"
        elif extension == "tiff":
            data, kind, disposition = snapshots.tiff(frame), "image/tiff", "attachment"
        else:
            data, kind, disposition = snapshots.csv(frame), "text/csv; charset=us-ascii", "attachment"
        self.ctx.metrics.snapshot_served()
        self.set_header("Content-Type", kind)
        self.set_header("Content-Disposition",
                        f'{disposition}; filename="{snapshots.filename(frame, extension)}"')
        self.set_header("X-Frame-Seq", str(frame.seq))
        self.set_header("X-Frame-Time", f"{frame.t:.3f}")
        self.set_header("X-Pixel-Meaning", frame.meaning)  # what the TIFF's values are
        self.finish(data)

    head = get  # Tornado sends no body for HEAD (and keeps Content-Length)


class Healthz(Base):
    def get(self) -> None:
        healthy, report = self.ctx.health.report(self.ctx.hub.viewers())
        if self.ctx.watch is not None:
            report["mqtt"] = self.ctx.watch.mqtt_status()  # detail only: MQTT never makes it 503
        self.set_status(200 if healthy else 503)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(report))

    head = get


class MetricsPage(Base):
    def get(self) -> None:
        hub, health = self.ctx.hub, self.ctx.health
        viewers = hub.viewers_by_transport()
        del viewers["snapshot"]
        states = {name: health.stage(name)["state"] for name in ("capture", "encoder")}
        counters = health.counters()  # as each stage's last status gave them (once a second)
        extra = self.ctx.watch.gauges() if self.ctx.watch is not None else ()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.exposition(viewers, counters, states, extra))

    head = get


class ApiState(Base):
    """GET /api/state: the newest frame's readings, every region's and alarm's, camera and MQTT
    status, as JSON (what Home Assistant REST sensors and scripts poll)."""

    def get(self) -> None:
        if self.ctx.watch is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.ctx.watch.state(), allow_nan=False))

    head = get
