"""The Tornado application (URL -> handler) and its listening sockets."""
from __future__ import annotations

import errno
import logging
import socket
import ssl
from typing import Any, Optional

import tornado.netutil
import tornado.web

import web
from flirstream.binding import BindError
from flirstream.config import ConfigError

from . import listener
from .camera import CameraAPI
from .handlers import ApiState, Context, Healthz, MetricsPage, MJPEGStream, Snapshot, ViewerFiles
from .websocket import Viewer

log = logging.getLogger("server")

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 4 * 1024  # nothing here takes a body
REQUEST_TIMEOUT_S = 10.0  # a request's headers (or body) must arrive within this; idle keep-alive too
WS_PING_INTERVAL_S = 10.0
WS_PING_TIMEOUT_S = 10.0  # Tornado wants it <= the interval


access_log = logging.getLogger("tornado.access")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One access line per request (tokens are taken out by server.redact). An expected 503 -
    /healthz saying unhealthy, a full server, no fresh snapshot - is news, not an error."""
    status = handler.get_status()
    if status < 400 or status == 503:
        method = access_log.info
    elif status < 500:
        method = access_log.warning
    else:
        method = access_log.error
    method("%d %s %.2fms", status, handler._request_summary(),
           1000.0 * handler.request.request_time())


def make_app(ctx: Context, static_dir: Optional[str] = None) -> tornado.web.Application:
    args = {"ctx": ctx}
    return tornado.web.Application(
        [
            (r"/ws", Viewer, args),
            (r"/stream\.mjpg", MJPEGStream, args),
            (r"/snapshot\.(jpg|tiff|csv)", Snapshot, args),
            (r"/healthz", Healthz, args),
            (r"/metrics", MetricsPage, args),
            (r"/api/state", ApiState, args),
            (r"/api/camera", CameraAPI, args),
            (r"/(.*)", ViewerFiles, {"ctx": ctx, "path": str(static_dir or web.DIRECTORY)}),
        ],
        websocket_max_message_size=4096,
        websocket_ping_interval=WS_PING_INTERVAL_S,
        websocket_ping_timeout=WS_PING_TIMEOUT_S,
        compress_response=False,
        log_function=log_request,
        xsrf_cookies=False,
    )


def tls_context(cert: Optional[str], key: Optional[str]) -> Optional[ssl.SSLContext]:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"[server] tls_cert = {cert!r}, tls_key = {key!r}: cannot load them: "
                          f"{exc}") from None
    return context


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(app: tornado.web.Application, server: Any,
           request_timeout_s: float = REQUEST_TIMEOUT_S) -> list[listener.HTTPServer]:
    """Listen on [server] port (and websocket_port); ConfigError naming host:port if that fails."""
    ports = [server.port]
    if server.websocket_port is not None and server.websocket_port != server.port:
        ports.append(server.websocket_port)
    tls = tls_context(server.tls_cert, server.tls_key)
    # '::' means every interface, IPv6 and IPv4 (Tornado binds one socket per family for None)
    address = None if server.host == "::" else server.host
    family = socket.AF_UNSPEC
    servers = []
    limit = listener.connection_limit(listener.open_file_limit(), server.max_clients)
    for port in ports:
        try:
            sockets = tornado.netutil.bind_sockets(port, address, family, backlog=server.backlog)
        except OSError as exc:
            for s in servers:
                s.stop()
            why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise BindError(f"[server] cannot listen on {host_port(server.host, port)}: {why}") \
                from None
        http = listener.HTTPServer(
            app, ssl_options=tls, max_header_size=MAX_HEADER_BYTES, max_body_size=MAX_BODY_BYTES,
            idle_connection_timeout=request_timeout_s, body_timeout=request_timeout_s)
        http.connection_limit = limit
        http.add_sockets(sockets)
        servers.append(http)
    return servers
