"""HTTP endpoints: the viewer's files, MJPEG, snapshots, /healthz and /metrics."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Optional

import tornado.web
from tornado.iostream import StreamClosedError

from . import access, snapshots
from .health import Health
from .hub import BOUNDARY, Hub
from .metrics import Metrics
from .relay import ControlRelay

log = logging.getLogger("http")

SNAPSHOT_WAIT_S = 2.0
# Kernel send buffer of a viewer's connection (Linux doubles it). Left to autotuning it grows to
# megabytes, so a stalled viewer would swallow hundreds of frames (CPU spent for nothing) and a slow
# one would see old frames; small, the newest-frame-wins rule starts after a few frames. 128 KiB per
# round trip is still ~2.5 MB/s at 50 ms, far above what a Lepton stream needs.
SEND_BUFFER_BYTES = 64 * 1024


def limit_send_buffer(stream: Any) -> None:
    """Small kernel send buffer and no Nagle delay on a viewer's connection."""
    try:
        stream.set_nodelay(True)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    except (OSError, AttributeError):  # closed already, or not a TCP socket
        pass

TOKEN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flir-stream: token needed</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 30em; margin: 3em auto">
<h1>Token needed</h1>
<p>This thermal camera viewer needs its access token (<code>[server] token</code> in server.conf).</p>
<form method="get"><input name="token" type="password" autofocus aria-label="token">
<button type="submit">Open</button></form>
</body></html>
"""


@dataclass
class Context:
    """What every handler needs; passed to each as its initialize() argument."""

    server: Any  # the [server] section of server.conf
    hub: Hub
    relay: Optional[ControlRelay]
    metrics: Metrics
    health: Health
    ports: tuple = ()  # every port this server listens on (for the Origin check)
    camera_relay: Optional[ControlRelay] = None  # to capture's camera control ([endpoints] camera)
    closing: asyncio.Event = field(default_factory=asyncio.Event)


class AccessMixin:
    """Token check for every request; security headers on every response."""

    ctx: Context

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")  # the URL may hold the token
        self.set_header("Cache-Control", "no-store")

    def presented_token(self) -> Optional[str]:
        return access.presented_token(self.get_query_argument("token", None),
                                      self.request.headers.get("Authorization"))

    def viewer_allowed(self) -> bool:
        """Check the viewing token; on failure answer 401 and return False."""
        expected = self.ctx.server.token
        token = self.presented_token()
        if access.viewer_allowed(expected, token, self.get_cookie(access.COOKIE)):
            if expected and token is not None:
                # Later requests from the viewer page (websocket, snapshots) carry the cookie.
                self.set_cookie(access.COOKIE, access.session_value(expected), httponly=True,
                                samesite="Strict", secure=self.request.protocol == "https")
            return True
        self.ctx.metrics.rejected["token"] += 1
        log.info("401 %s %s from %s: no valid token", self.request.method, self.request.path,
                 self.request.remote_ip)
        self.set_status(401)
        self.set_header("WWW-Authenticate", 'Basic realm="flir-stream", charset="UTF-8"')
        if self.request.path in ("/", "/index.html"):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(TOKEN_PAGE)
        else:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("token needed: add ?token=TOKEN to the URL or use HTTP basic auth\n")
        return False

    def refuse_full(self) -> bool:
        """At max_clients viewers answer 503 and return True."""
        cap = self.ctx.server.max_clients
        if self.ctx.hub.fanout.count() < cap:
            return False
        self.ctx.metrics.rejected["max_clients"] += 1
        log.warning("503 %s from %s: max_clients = %d viewers already", self.request.path,
                    self.request.remote_ip, cap)
        self.set_status(503)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Retry-After", "10")
        self.finish(f"too many viewers: this server serves at most {cap} (max_clients)\n")
        return True


class Base(AccessMixin, tornado.web.RequestHandler):
    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    def prepare(self) -> None:
        self.viewer_allowed()  # finishes the request with 401 when the token is missing

    def compute_etag(self) -> None:
        return None  # live data: no ETag, no hashing of every snapshot

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class ViewerFiles(AccessMixin, tornado.web.StaticFileHandler):
    """The viewer (web/): no directory listing, nothing outside its directory (Tornado checks)."""

    def initialize(self, ctx: Context, path: str) -> None:  # type: ignore[override]
        self.ctx = ctx
        super().initialize(path=path, default_filename="index.html")

    def prepare(self) -> None:
        self.viewer_allowed()

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")  # revalidate (ETag) so updates show at once

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


class MJPEGStream(Base):
    """multipart/x-mixed-replace JPEGs: plays in <img>, VLC, ffmpeg. Newest frame wins."""

    transport = "mjpeg"
    wants_raw = False

    async def get(self) -> None:
        if self.refuse_full():
            return
        self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.set_header("Cache-Control", "no-cache, no-store")
        self.set_header("Pragma", "no-cache")
        self._gone = asyncio.Event()
        limit_send_buffer(self.request.connection.stream)
        log.info("MJPEG viewer %s connected", self.request.remote_ip)
        self.ctx.hub.fanout.add(self)
        try:
            closing = asyncio.ensure_future(self.ctx.closing.wait())
            gone = asyncio.ensure_future(self._gone.wait())
            await asyncio.wait([closing, gone], return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            gone.cancel()
        finally:
            self.ctx.hub.fanout.remove(self)
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
            data, kind, disposition = frame.jpeg, "image/jpeg", "inline"
        elif extension == "tiff":
            data, kind, disposition = snapshots.tiff(frame), "image/tiff", "attachment"
        else:
            data, kind, disposition = snapshots.csv(frame), "text/csv; charset=us-ascii", "attachment"
        self.ctx.metrics.snapshots += 1
        self.set_header("Content-Type", kind)
        self.set_header("Content-Disposition",
                        f'{disposition}; filename="{snapshots.filename(frame, extension)}"')
        self.set_header("X-Frame-Seq", str(frame.seq))
        self.set_header("X-Frame-Time", f"{frame.t:.3f}")
        self.set_header("X-Pixel-Meaning", frame.meaning)  # what the TIFF's values are
        self.finish(data)


class Healthz(Base):
    def get(self) -> None:
        healthy, report = self.ctx.health.report(self.ctx.hub.viewers())
        self.set_status(200 if healthy else 503)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(report))


class MetricsPage(Base):
    def get(self) -> None:
        hub, health = self.ctx.hub, self.ctx.health
        viewers = hub.viewers_by_transport()
        del viewers["snapshot"]
        states = {name: health.stage(name)["state"] for name in ("capture", "encoder")}
        counters = {name: status.counters for name, status in health.statuses.items()}
        if hub.image is not None:  # the frame's counters are newer than the last status
            for name, values in hub.image.counters.items():
                if isinstance(values, dict):
                    counters[name] = values
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render(viewers, counters, states))
