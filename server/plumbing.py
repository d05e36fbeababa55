"""What every handler shares: the Context it is given, the access checks and security headers
(AccessMixin), the token page, the plain-text error page, and the viewer connections' send buffer."""
from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Optional

import tornado.web

from . import access
from .health import Health
from .hub import Hub
from .metrics import Metrics
from .relay import ControlRelay

log = logging.getLogger("http")

# Kernel send buffer of a viewer's connection (Linux doubles it). Left to autotuning it grows to
# megabytes, so a stalled viewer would swallow hundreds of frames (CPU spent for nothing) and a slow
# one would see old frames; small, the newest-frame-wins rule starts after a few frames. 128 KiB per
# round trip is still ~2.5 MB/s at 50 ms, far above what a Lepton stream needs.
VIEWER_SEND_BUFFER_BYTES = 64 * 1024


def limit_send_buffer(stream: Any) -> None:
    """Small kernel send buffer and no Nagle delay on a viewer's connection."""
    try:
        stream.set_nodelay(True)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SEND_BUFFER_BYTES)
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
    hosts: Optional[frozenset] = None  # names the server is reached under (access.own_names)
    camera_relay: Optional[ControlRelay] = None  # to capture's camera control ([endpoints] camera)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    watch: Optional[Any] = None  # server.watch.Watch: readings, alarms, MQTT (None in some tests)


def plain_error(handler: tornado.web.RequestHandler, status_code: int, **kwargs: Any) -> None:
    """An error page as one line of plain text (a handler's write_error)."""
    handler.set_header("Content-Type", "text/plain; charset=utf-8")
    handler.finish(f"{status_code} {handler._reason}\n")


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
        ctx.metrics.reject("host")
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
        self.ctx.metrics.reject("token")
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
        if self.ctx.hub.streaming_clients() < cap:
            return False
        self.ctx.metrics.reject("max_clients")
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

    write_error = plain_error
