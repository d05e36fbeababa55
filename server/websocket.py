"""/ws: one viewer's websocket (the protocol is described in server/protocol.py)."""
from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from typing import Any, Optional

import tornado.ioloop
import tornado.web
import tornado.websocket

from . import access, fastwrite, protocol
from .plumbing import AccessMixin, Context, limit_send_buffer, plain_error
from .relay import RelayError

log = logging.getLogger("ws")

MESSAGES_PER_S = 20  # sustained; a burst of as many is allowed
# A refused client's connection is dropped this long after the close frame: time for the client to
# read the close frame (dropping a connection with its flood unread sends a TCP reset, which makes
# the client's kernel discard what the client has not read yet), a tenth of Tornado's 5 s.
ABORT_AFTER_S = 0.5


class RateLimit:
    """Token bucket: `rate` messages a second, bursts up to `rate`."""

    def __init__(self, rate: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate
        self.stamp = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _retrieve(future: Any) -> None:
    """Mark a failed write's exception as seen (the close handler cleans up)."""
    if not future.cancelled():
        future.exception()


class WebSocketStream(AccessMixin, tornado.websocket.WebSocketHandler):
    transport = "websocket"
    write_error = plain_error

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx
        self.wants_raw = False
        self.feed = "image"  # "thermal" for /ws?mode=thermal (server/protocol.py)
        self.monitoring = False  # asked for regions, alarms, history and samples ("monitor" op)
        self.token: Optional[str] = None
        self.limit = RateLimit(MESSAGES_PER_S)
        self.peer = "?"

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not self.viewer_allowed() or self.refuse_full():
            return
        try:
            mode = protocol.mode(self.get_query_argument("mode", None))
        except tornado.web.HTTPError:  # Tornado's only complaint about an argument: not UTF-8
            self._refuse_request(400, "mode is not valid UTF-8 (expected thermal or jpeg)")
            return
        except protocol.ProtocolError as exc:
            self._refuse_request(400, str(exc))
            return
        origin = self.request.headers.get("Origin")
        try:  # Tornado splits it before check_origin, and a broken IPv6 literal raises there
            urllib.parse.urlsplit(origin or "")
        except ValueError:
            self.ctx.metrics.reject("origin")
            log.warning("403 /ws from %s: Origin %r is not a URL", self.request.remote_ip,
                        origin[:100])
            self._refuse_request(403, f"Origin {origin[:100]!r} is not a URL")
            return
        self.feed = "thermal" if mode == "thermal" else "image"
        await super().get(*args, **kwargs)

    def _refuse_request(self, status: int, text: str) -> None:
        """Answer the upgrade request with `status` and one line of plain text."""
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{text}\n")

    def check_origin(self, origin: str) -> bool:
        if access.origin_allowed(origin, self.request.host, self.request.protocol, self.ctx.ports,
                                 self.ctx.server.allowed_origins):
            return True
        self.ctx.metrics.reject("origin")
        log.warning("403 /ws from %s: Origin %r is neither this server nor in allowed_origins",
                    self.request.remote_ip, origin[:100])
        self.set_header("Content-Type", "text/plain; charset=utf-8")  # (Tornado writes the line)
        return False

    def get_compression_options(self) -> None:
        return None  # JPEGs do not compress; deflate would only cost CPU

    def open(self, *args: Any, **kwargs: Any) -> None:
        limit_send_buffer(self.ws_connection.stream)
        self.peer = self.request.remote_ip or "?"
        self.token = self.presented_token()
        hub = self.ctx.hub
        log.info("websocket viewer %s connected (%s mode, %d viewers)", self.peer,
                 "thermal" if self.feed == "thermal" else "jpeg", hub.viewers() + 1)
        self.send_text(protocol.hello(hub.settings, bool(self.ctx.server.control_token),
                                      self.ctx.health.camera()))
        self.send_text(protocol.status_message(self.ctx.health.summary()))
        if hub.camera is not None:
            self.send_text(protocol.camera_message(hub.camera))
        hub.join(self)  # sends the newest frame at once

    def on_close(self) -> None:
        self.ctx.hub.leave(self)
        log.info("websocket viewer %s left (code %s)", self.peer, self.close_code)

    # ------------------------------------------------------------ fan-out sink

    def payload(self, outgoing: Any) -> bytes:
        if self.feed == "thermal":
            return outgoing  # the thermal feed's messages are the bytes themselves
        return outgoing.ws.for_client(self.wants_raw)

    def send_frame(self, payload: bytes) -> Any:
        return fastwrite.send_binary(self, payload)

    def send_text(self, text: str) -> None:
        try:
            self.write_message(text).add_done_callback(_retrieve)
        except tornado.websocket.WebSocketClosedError:
            pass

    # ------------------------------------------------------------ from the browser

    def on_message(self, message: Any) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return  # messages that were already on their way when we closed
        try:
            self._handle(message)
        except Exception as exc:  # a bug, not the client's fault: one line, and this client only
            log.error("websocket %s: message not handled (%s: %s): closing (1011)", self.peer,
                      type(exc).__name__, exc)
            self.refuse(1011, "internal error")

    def refuse(self, code: int, reason: str) -> None:
        """Close with `code`, then drop the connection at once instead of reading whatever the
        client goes on sending until Tornado's 5 s close timeout (a flood cost a core that long).
        The close frame gets ABORT_AFTER_S to reach the client first."""
        stream = getattr(self.ws_connection, "stream", None)  # close() forgets the connection
        self.close(code, reason)
        if stream is not None and not stream.closed():
            tornado.ioloop.IOLoop.current().call_later(ABORT_AFTER_S, stream.close)

    def _handle(self, message: Any) -> None:
        if isinstance(message, bytes):
            log.warning("websocket %s sent a binary message: closing (1003)", self.peer)
            self.refuse(1003, "binary messages are not accepted")
            return
        if not self.limit.allow():
            log.warning("websocket %s sends more than %d messages a second: closing (1008)",
                        self.peer, MESSAGES_PER_S)
            self.refuse(1008, "too many messages")
            return
        try:
            request = protocol.parse_client(message)
        except protocol.ProtocolError as exc:
            log.info("websocket %s: refused message: %s", self.peer, exc)
            self.send_text(protocol.error(str(exc)))
            return
        if isinstance(request, protocol.Ping):
            self.send_text(protocol.pong(request.t, time.time()))
        elif isinstance(request, protocol.EnableRaw):
            self.wants_raw = request.enable
            if request.enable and self.feed == "image":  # thermal messages carry the pixels
                self.ctx.hub.resend(self)
        elif isinstance(request, protocol.SetSettings):
            if not access.control_allowed(self.ctx.server.control_token, request.token, self.token):
                self.ctx.metrics.reject("control_token")
                log.info("websocket %s: settings change refused: no valid control token", self.peer)
                self.send_text(protocol.error("changing settings needs the control token"))
                return
            asyncio.ensure_future(self._set(request.settings))
        elif isinstance(request, protocol.Monitor):
            self.monitoring = True
            if self.ctx.watch is not None:  # regions, alarm states, the last 10 minutes
                for text in self.ctx.watch.greeting():
                    self.send_text(text)
        elif isinstance(request, protocol.ChangeRegion):
            if not access.control_allowed(self.ctx.server.control_token, request.token, self.token):
                self.ctx.metrics.reject("control_token")
                log.info("websocket %s: region change refused: no valid control token", self.peer)
                self.send_text(protocol.error("changing regions needs the control token"))
                return
            asyncio.ensure_future(self._region(request))

        elif isinstance(request, protocol.CameraCommand):
            if not access.control_allowed(self.ctx.server.control_token, request.token, self.token):
                self.ctx.metrics.reject("control_token")
                log.info("websocket %s: camera command refused: no valid control token", self.peer)
                self.send_text(protocol.error("camera commands need the control token"))
                return
            asyncio.ensure_future(self._camera(request.request))

    async def _region(self, request: protocol.ChangeRegion) -> None:
        change = {"put": [request.put]} if request.put is not None else {"delete": [request.delete]}
        try:
            if self.ctx.relay is None:
                raise RelayError("no control channel to the encoder")
            reply = await self.ctx.relay.request({"op": "regions", **change})
        except RelayError as exc:
            log.warning("region change %s from %s not applied: %s", change, self.peer, exc)
            self.send_text(protocol.error(f"region not changed: {exc}"))
            return
        if reply.get("ok") is True and isinstance(reply.get("regions"), list):
            log.info("regions changed by %s: %s", self.peer, change)
            watch = self.ctx.watch
            if watch is not None and not (watch.set_regions(reply["regions"]) and self.monitoring):
                self.send_text(protocol.regions_message(watch.regions))  # the sender hears back
        else:
            error = str(reply.get("error") or "the encoder refused the region")
            log.info("region change %s from %s refused by the encoder: %s", change, self.peer, error)
            self.send_text(protocol.error(error))

    async def _camera(self, request: dict) -> None:
        from .camera import ask  # (camera.py builds on plumbing, as this module does)

        status, body = await ask(self.ctx.camera_relay, request)
        if status != 200:
            log.info("camera %s from %s not done: %s", request, self.peer, body["error"])
            self.send_text(protocol.error(body["error"]))
            return
        log.info("camera %s by %s", request["op"], self.peer)
        self.ctx.hub.set_camera(body["camera"])
        self.send_text(protocol.camera_message(body["camera"]))

    async def _set(self, settings: dict) -> None:
        relay = self.ctx.relay
        try:
            if relay is None:
                raise RelayError("no control channel to the encoder")
            before = self.ctx.hub.settings
            reply = await relay.request({"op": "set", "settings": settings})
        except RelayError as exc:
            log.warning("settings %s from %s not applied: %s", settings, self.peer, exc)
            self.send_text(protocol.error(f"settings not applied: {exc}"))
            return
        if reply.get("ok") is True:
            log.info("settings changed by %s: %s", self.peer, settings)
            # The relay stored the reply's settings; the hub told every viewer if they changed.
            # If nothing changed nobody was told, so answer the sender.
            if isinstance(reply.get("settings"), dict) and reply["settings"] == before:
                self.send_text(protocol.settings_message(reply["settings"]))
        else:
            error = str(reply.get("error") or "the encoder refused the settings")
            log.info("settings %s from %s refused by the encoder: %s", settings, self.peer, error)
            self.send_text(protocol.error(error))
