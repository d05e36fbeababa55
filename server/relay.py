"""The server's side of the encoder's control channel: a DEALER socket, requests matched by id.

Requests are sent only while the encoder is connected (ZMQ_IMMEDIATE), so nothing piles up while it
is down; a request then fails at once with "not reachable", or after `timeout_s` with "did not
answer". Requests and replies follow wire.py's schema (a request breaking it is refused here, as the
peer would; a reply breaking it is dropped). Any reply that carries settings updates the server's
copy of them (on_settings).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Callable, Optional

import zmq
import zmq.asyncio

from flirstream import links, wire

log = logging.getLogger("relay")


# (request validator, reply validator) of each control channel
ENCODER = (wire.check_control_request, wire.check_control_reply)
CAMERA = (wire.check_camera_request, wire.check_camera_reply)


class RelayError(Exception):
    """The encoder (or capture) could not be asked or did not answer; str() says which."""


class ControlRelay:
    """`peer` names the stage in errors: the encoder's control channel, or capture's camera
    control (ControlRelay(ctx, [endpoints] camera, peer="capture", schema=CAMERA))."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, timeout_s: float = 2.0,
                 on_settings: Callable[[dict], None] = lambda s: None,
                 peer: str = "the encoder", schema: Optional[tuple] = None) -> None:
        self.peer = peer
        self._check_request, self._check_reply = schema or ENCODER
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.on_settings = on_settings
        self.sock = links.control_dealer(ctx, endpoint)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader: Optional[asyncio.Task] = None
        self._complained_at = -1e9

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def reader(self) -> Optional[asyncio.Task]:
        """The task reading replies (after start())."""
        return self._reader

    async def _send(self, message: dict) -> int:
        """Send a request checked by the schema (WireError if it breaks it); returns its id."""
        message = self._check_request(message)
        request_id = next(self._ids)
        if self.sock.closed:  # a viewer leaving while the server stops still reports the count
            raise RelayError("the server is stopping")
        try:
            await self.sock.send(wire.pack_control({**message, "id": request_id}), zmq.NOBLOCK)
        except zmq.Again:
            raise RelayError(f"{self.peer} is not reachable on {self.endpoint}") from None
        except zmq.ZMQError as exc:
            raise RelayError(f"control socket to {self.endpoint}: {exc}") from None
        return request_id

    async def notify(self, message: dict) -> bool:
        """Send without waiting for the reply (e.g. the viewer count); False if not sent."""
        try:
            await self._send(message)
            return True
        except (RelayError, wire.WireError):
            return False

    async def request(self, message: dict) -> dict:
        """Send a request and return the peer's reply (a request breaking the schema gets the
        refusal the peer would send); raises RelayError."""
        future = asyncio.get_running_loop().create_future()
        try:
            request_id = await self._send(message)
        except wire.WireError as exc:
            return {"v": wire.VERSION, "ok": False, "error": str(exc), "reason": "bad_request"}
        self._pending[request_id] = future
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            raise RelayError(f"{self.peer} did not answer within {self.timeout_s:g} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        while True:
            try:
                parts = await self.sock.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                self._reply(parts)
            except Exception as exc:  # one bad reply must not end the reader
                self._complain(f"bad control reply from {self.peer}: {exc}")

    def _reply(self, parts: list) -> None:
        reply = self._check_reply(wire.unpack_control(parts[-1]))  # (REQ-style delimiter too)
        if reply["ok"] is True and reply.get("settings") is not None:
            self.on_settings(reply["settings"])
        future = self._pending.get(reply.get("id")) if isinstance(reply.get("id"), int) else None
        if future is not None and not future.done():
            future.set_result(reply)

    def _complain(self, text: str) -> None:
        """At most one line per 5 s, so a broken encoder cannot flood the log."""
        now = time.monotonic()
        if now - self._complained_at >= 5.0:
            self._complained_at = now
            log.warning("%s (such replies are dropped)", text)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.sock.close(0)
