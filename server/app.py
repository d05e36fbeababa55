"""`flir-stream server`: frames from the encoder to browsers (websocket, MJPEG, snapshots): the
Tornado application (URL -> handler), its listening sockets, and the process around them."""
from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import resource
import signal
import socket
import ssl
from pathlib import Path
from typing import Any, Optional

import tornado.netutil
import tornado.web
import zmq
import zmq.asyncio

import web
from flirstream import config as configuration
from flirstream import links, wire
from flirstream.binding import BindError, bind_retrying
from flirstream.config import ConfigError

from . import access, listener, redact, tuning
from .camera import CameraAPI
from .feed import Feed
from .handlers import ApiState, Healthz, MetricsPage, MJPEGStream, Snapshot, ViewerFiles
from .health import Health
from .hub import Hub
from .metrics import Metrics
from .plumbing import Context
from .relay import CAMERA, ControlRelay
from .watch import Watch
from .websocket import WebSocketStream

log = logging.getLogger("server")

TICK_S = 1.0  # viewer count heartbeat to the encoder, status re-check
MAX_REQUEST_HEADER_BYTES = 16 * 1024
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
            (r"/ws", WebSocketStream, args),
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
            app, ssl_options=tls, max_header_size=MAX_REQUEST_HEADER_BYTES,
            max_body_size=MAX_BODY_BYTES, idle_connection_timeout=request_timeout_s,
            body_timeout=request_timeout_s)
        http.connection_limit = limit
        http.add_sockets(sockets)
        servers.append(http)
    return servers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S, metavar="S",
                        help="close connections whose request headers or body take longer, and "
                             "idle keep-alive connections (slowloris protection)")


def raise_fd_limit(max_clients: int) -> int:
    """Raise the soft open-file limit (systemd's default is 1024) to the hard one: every viewer is
    a descriptor. Returns the limit in force; warns when it leaves too little room for max_clients."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return listener.open_file_limit()
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass
    limit = listener.open_file_limit()
    if listener.connection_limit(limit, max_clients) < max_clients + listener.RESERVE_FDS:
        log.warning("open-file limit is %d, too low for max_clients = %d: raise it (LimitNOFILE= in "
                    "the systemd unit, ulimit -n) or lower max_clients", limit, max_clients)
    return limit


def run(cfg: configuration.Config, args: argparse.Namespace) -> int:
    redact.install((cfg.server.token, cfg.server.control_token))
    raise_fd_limit(cfg.server.max_clients)
    return asyncio.run(serve(cfg, getattr(args, "request_timeout", REQUEST_TIMEOUT_S)))


def watch_vital(task: "asyncio.Task", name: str, on_death: asyncio.Event,
                stopping: asyncio.Event) -> None:
    """If `task` ever ends (an exception, or returning) before `stopping` is set, log it and set
    on_death: the process then stops with status 1, so run / supervisord / systemd restart it,
    instead of living on without frames."""

    def done(t: "asyncio.Task") -> None:
        if stopping.is_set() or t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.error("the %s task died: %r; stopping with status 1 to be restarted", name, exc,
                      exc_info=exc)
        else:
            log.error("the %s task ended; stopping with status 1 to be restarted", name)
        on_death.set()

    task.add_done_callback(done)


async def serve(cfg: configuration.Config, request_timeout_s: float = REQUEST_TIMEOUT_S) -> int:
    """Serve until SIGINT / SIGTERM (returns 0) or until a vital task dies (returns 1)."""
    loop = asyncio.get_running_loop()
    srv = cfg.server
    zctx = zmq.asyncio.Context()
    links.yielding_io_threads(zctx)
    metrics, health = Metrics(), Health(srv.stale_after_s)
    hub = Hub(metrics, health)
    relay = ControlRelay(zctx, cfg.endpoints.control, on_settings=hub.set_settings)
    # Camera commands to capture; a reboot with its set-up takes a few seconds.
    camera_relay = ControlRelay(zctx, cfg.endpoints.camera, timeout_s=10.0, peer="capture",
                                schema=CAMERA)
    feed = Feed(zctx, cfg.endpoints.images, hub, metrics)
    ports = tuple(p for p in (srv.port, srv.websocket_port) if p)
    watch = Watch(cfg, hub, health)  # readings, alarms, history, MQTT: every frame, watched or not
    # the names are looked up once here: getfqdn() may ask DNS, which must not stall a request
    hosts = access.own_names(srv.host, srv.allowed_hosts)
    ctx = Context(server=srv, hub=hub, relay=relay, metrics=metrics,
                  health=health, ports=ports, hosts=hosts, watch=watch, camera_relay=camera_relay)
    try:
        app = make_app(ctx, srv.static_dir)
        servers = bind_retrying(lambda: listen(app, srv, request_timeout_s))
        try:
            watch.start()  # ConfigError if the [mqtt] TLS files cannot be used
        except Exception:
            for http in servers:
                http.stop()
            raise
    except Exception:  # ConfigError, or StageFault after retrying a restarted server's port
        await watch.stop()
        feed.close()
        relay.close()
        camera_relay.close()
        zctx.term()
        raise
    _announce(cfg, ports)
    tuning.apply()

    viewers_sent = {"counts": (-1, -1)}

    def tell_encoder(_count: int) -> None:
        request = viewers_request(hub)
        counts = (request["count"], request["thermal"])
        if counts != viewers_sent["counts"]:
            viewers_sent["counts"] = counts
            asyncio.ensure_future(relay.notify(request))

    hub.on_viewers = tell_encoder
    stop, died = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    relay.start()
    camera_relay.start()
    tasks = [loop.create_task(feed.run()), loop.create_task(_tick(hub, relay))]
    for task, name in zip(tasks, ("frame feed", "status tick")):
        watch_vital(task, name, died, stop)
    watch_vital(relay.reader, "control reply reader", died, stop)
    waiters = [loop.create_task(stop.wait()), loop.create_task(died.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    stop.set()  # from here on, tasks end because we stop them

    log.info("stopping")
    for http in servers:
        http.stop()
    ctx.closing.set()  # MJPEG responses end
    for client in hub.websockets():
        client.close(1001, "server stopping")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for http in servers:
        try:
            await asyncio.wait_for(http.close_all_connections(), 2.0)
        except asyncio.TimeoutError:
            pass
    await watch.stop()  # MQTT says offline; webhooks under way get a moment to finish
    feed.close()
    relay.close()
    camera_relay.close()
    zctx.term()
    log.info("stopped")
    return 1 if died.is_set() else 0


def viewers_request(hub: Hub) -> dict:
    """What the encoder is told of the viewers: how many need its JPEGs, and how many are in
    thermal mode (it then adds each frame's RAD2 payload for them)."""
    return wire.control_request("viewers", count=hub.jpeg_viewers(), thermal=hub.thermal_viewers())


async def _tick(hub: Hub, relay: ControlRelay) -> None:
    """Once a second: the viewer count to the encoder, stage status, settings if still unknown."""
    while True:
        await relay.notify(viewers_request(hub))
        hub.check_status()
        if hub.settings is None:
            await relay.notify(wire.control_request("get"))  # its reply's settings: hub.settings
        await asyncio.sleep(TICK_S)


def _announce(cfg: configuration.Config, ports: tuple) -> None:
    srv = cfg.server
    http, ws = ("https", "wss") if srv.tls_cert else ("http", "ws")
    where = host_port(srv.host, srv.port)
    extra = f", also /ws on {host_port(srv.host, srv.websocket_port)}" \
        if srv.websocket_port and srv.websocket_port != srv.port else ""
    log.info("serving %s://%s/ (viewer), %s://%s/ws, /stream.mjpg, /snapshot.jpg|tiff|csv, /healthz, "
             "/metrics, /api/state, /api/camera%s; frames from %s, control to %s, camera control to %s",
             http, where, ws, where, extra, cfg.endpoints.images, cfg.endpoints.control,
             cfg.endpoints.camera)
    log.info("settings: %s", configuration.describe(cfg, "server"))
    static = Path(srv.static_dir or web.DIRECTORY)
    if not (static / "index.html").is_file():
        log.warning("no viewer at %s (index.html is missing): / answers 404", static)
