"""`flir-stream server`: frames from the encoder to browsers (websocket, MJPEG, snapshots)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
from pathlib import Path

import zmq
import zmq.asyncio

import web
from flirstream import config as configuration

from .feed import Feed
from .handlers import Context
from .health import Health
from .hub import Hub
from .metrics import Metrics
from .relay import ControlRelay
from .routes import REQUEST_TIMEOUT_S, host_port, listen, make_app

log = logging.getLogger("server")

TICK_S = 1.0  # viewer count heartbeat to the encoder, status re-check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S, metavar="S",
                        help="close connections whose request headers or body take longer, and "
                             "idle keep-alive connections (slowloris protection)")


def raise_fd_limit(max_clients: int) -> None:
    """Room for max_clients viewer sockets: raise the soft open-file limit (systemd's default is
    1024) up to the hard one. Viewers beyond the limit would be refused with EMFILE."""
    need = max_clients + 256  # plus ZeroMQ, listening sockets, snapshots, logs
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    new = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError):
        new = soft
    if new < need:
        log.warning("open-file limit is %d, too low for max_clients = %d: raise it (LimitNOFILE= in "
                    "the systemd unit, ulimit -n) or lower max_clients", new, max_clients)


def run(cfg: configuration.Config, args: argparse.Namespace) -> int:
    raise_fd_limit(cfg.server.max_clients)
    asyncio.run(serve(cfg, getattr(args, "request_timeout", REQUEST_TIMEOUT_S)))
    return 0


async def serve(cfg: configuration.Config, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
    loop = asyncio.get_running_loop()
    srv = cfg.server
    zctx = zmq.asyncio.Context()
    metrics, health = Metrics(), Health(srv.stale_after_s)
    hub = Hub(metrics, health)
    relay = ControlRelay(zctx, cfg.endpoints.control, on_settings=hub.set_settings)
    # Camera commands to capture; a reboot with its set-up takes a few seconds.
    camera_relay = ControlRelay(zctx, cfg.endpoints.camera, timeout_s=10.0, peer="capture")
    feed = Feed(zctx, cfg.endpoints.images, hub)
    ports = tuple(p for p in (srv.port, srv.websocket_port) if p)
    ctx = Context(server=srv, hub=hub, relay=relay, metrics=metrics, health=health, ports=ports,
                  camera_relay=camera_relay)
    try:
        servers = listen(make_app(ctx, srv.static_dir), srv, request_timeout_s)
    except configuration.ConfigError:
        feed.close()
        relay.close()
        camera_relay.close()
        zctx.term()
        raise
    _announce(cfg, ports)

    viewers_sent = {"count": -1}

    def tell_encoder(count: int) -> None:
        if count != viewers_sent["count"]:
            viewers_sent["count"] = count
            asyncio.ensure_future(relay.notify({"op": "viewers", "count": count}))

    hub.on_viewers = tell_encoder
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    relay.start()
    camera_relay.start()
    tasks = [loop.create_task(feed.run()), loop.create_task(_tick(hub, relay))]
    await stop.wait()

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
    feed.close()
    relay.close()
    camera_relay.close()
    zctx.term()
    log.info("stopped")


async def _tick(hub: Hub, relay: ControlRelay) -> None:
    """Once a second: the viewer count to the encoder, stage status, settings if still unknown."""
    while True:
        await relay.notify({"op": "viewers", "count": hub.viewers()})
        hub.check_status()
        if hub.settings is None:
            await relay.notify({"op": "get"})  # the reply's settings land in hub.settings
        await asyncio.sleep(TICK_S)


def _announce(cfg: configuration.Config, ports: tuple) -> None:
    srv = cfg.server
    http, ws = ("https", "wss") if srv.tls_cert else ("http", "ws")
    where = host_port(srv.host, srv.port)
    extra = f", also /ws on {host_port(srv.host, srv.websocket_port)}" \
        if srv.websocket_port and srv.websocket_port != srv.port else ""
    log.info("serving %s://%s/ (viewer), %s://%s/ws, /stream.mjpg, /snapshot.jpg|tiff|csv, /healthz, "
             "/metrics, /api/camera%s; frames from %s, control to %s, camera control to %s", http,
             where, ws, where, extra, cfg.endpoints.images, cfg.endpoints.control,
             cfg.endpoints.camera)
    log.info("settings: %s", configuration.describe(cfg, "server"))
    static = Path(srv.static_dir or web.DIRECTORY)
    if not (static / "index.html").is_file():
        log.warning("no viewer at %s (index.html is missing): / answers 404", static)
