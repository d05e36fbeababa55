"""HTTP endpoints: the viewer's files, MJPEG, snapshots, /healthz and /metrics."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Optional

import tornado.web
from tornado.iostream import StreamClosedError

from . import access, protocol, snapshots
from .fanout import Fanout
from .health import Health
from .hub import Hub
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
    fanout: Fanout  # the hub's streaming clients (MJPEG handlers join and leave it)
    relay: Optional[ControlRelay]
    metrics: Metrics
    health: Health
    ports: tuple = ()  # every port this server listens on (for the Origin check)
    hosts: Optional[frozenset] = None  # names the server is reached under (access.own_names)
    camera_relay: Optional[ControlRelay] = None  # to capture's camera control ([endpoints] camera)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    watch: Optional[Any] = None  # server.watch.Watch: readings, alarms, MQTT (None in some tests)


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

    def host_allowed(self) -> bool:
        """Check the Host header (DNS rebinding); on failure answer 400 and return False."""
        ctx = self.ctx
        if ctx.hosts is None:
            ctx.hosts = access.own_names(ctx.server.host, getattr(ctx.server, "allowed_hosts", ()))
        if access.host_allowed(self.request.host, ctx.hosts):
            return True
        ctx.metrics.rejected["host"] += 1
        log.warning("400 %s %s from %s: Host %r is not a name of this server (add it to [server] "
                    "allowed_hosts if it is)", self.request.method, self.request.path,
                    self.request.remote_ip, self.request.host)
        self.set_status(400)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("unknown Host: add this name to [server] allowed_hosts in server.conf\n")
        return False

    def viewer_allowed(self) -> bool:
        """Check the Host header and the viewing token; on failure answer 400 / 401 and return
        False."""
        if not self.host_allowed():
            return False
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
        if self.ctx.fanout.count() < cap:
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

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


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
        self.ctx.fanout.add(self)
        try:
            closing = asyncio.ensure_future(self.ctx.closing.wait())
            gone = asyncio.ensure_future(self._gone.wait())
            await asyncio.wait([closing, gone], return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            gone.cancel()
        finally:
            self.ctx.fanout.remove(self)
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
        counters = {name: status.counters for name, status in health.statuses.items()}
        if hub.image is not None:  # the frame's counters are newer than the last status
            for name, values in hub.image.counters.items():
                if isinstance(values, dict):
                    counters[name] = values
        extra = self.ctx.watch.gauges() if self.ctx.watch is not None else ()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render(viewers, counters, states, extra))

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
