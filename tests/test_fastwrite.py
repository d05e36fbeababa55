"""server.fastwrite.send_binary over a real Tornado websocket on loopback: the direct send, the
remainder through IOStream, and the public-API fallbacks when Tornado's internals look different."""
from __future__ import annotations

import asyncio
import os

import tornado.httpserver
import tornado.iostream
import tornado.web
import tornado.websocket

from flirstream.testing import free_port
from server.fastwrite import send_binary
from server.plumbing import limit_send_buffer


class Handler(tornado.websocket.WebSocketHandler):
    def initialize(self, opened: asyncio.Queue, compress: bool) -> None:
        self.opened = opened
        self.compress = compress

    def get_compression_options(self):
        return {} if self.compress else None

    def open(self) -> None:
        limit_send_buffer(self.ws_connection.stream)
        self.opened.put_nowait(self)


class OtherIOStream(tornado.iostream.IOStream):
    """A stream of another class than the one whose internals send_binary knows."""


class WithoutCompressor:
    """The server side's websocket connection as a Tornado without the _compressor attribute would
    have it; everything else is the real connection's."""

    def __init__(self, real: object) -> None:
        self.__dict__["_real"] = real

    def __getattr__(self, name: str) -> object:
        if name == "_compressor":
            raise AttributeError(name)
        return getattr(self._real, name)


def exchange(payload: bytes, change=lambda handler: None, compress: bool = False) -> tuple[object, bytes]:
    """Open a websocket, let `change` alter the server side's internals, send `payload` with
    send_binary; return (what send_binary returned, what the client received)."""
    async def run() -> tuple[object, bytes]:
        opened: asyncio.Queue = asyncio.Queue()
        port = free_port()
        app = tornado.web.Application([(r"/ws", Handler, {"opened": opened, "compress": compress})])
        server = tornado.httpserver.HTTPServer(app)
        server.listen(port, "127.0.0.1")
        client = await tornado.websocket.websocket_connect(
            f"ws://127.0.0.1:{port}/ws", compression_options={} if compress else None,
            max_message_size=len(payload) + 1024)
        try:
            handler = await asyncio.wait_for(opened.get(), 10)
            change(handler)
            result = send_binary(handler, payload)
            received = await asyncio.wait_for(client.read_message(), 10)
            if result is not None:
                await asyncio.wait_for(result, 10)
            return result, received
        finally:
            client.close()
            server.stop()
            await server.close_all_connections()

    return asyncio.run(run())


def test_a_frame_the_kernel_takes_at_once_goes_straight_to_the_socket():
    payload = os.urandom(20_000)
    result, received = exchange(payload)
    assert result is None  # no IOStream future: sent directly
    assert received == payload


def test_what_the_kernel_does_not_take_goes_through_iostream():
    payload = os.urandom(4 * 1024 * 1024)  # far more than the 64 KiB send buffer
    result, received = exchange(payload)  # the client reads only once send_binary returned
    assert isinstance(result, asyncio.Future)
    assert received == payload


def test_another_stream_class_falls_back_to_iostream_write():
    payload = os.urandom(20_000)

    def other_stream(handler):
        handler.ws_connection.stream.__class__ = OtherIOStream

    result, received = exchange(payload, other_stream)
    assert isinstance(result, asyncio.Future)
    assert received == payload


def test_a_connection_without_the_compressor_attribute_falls_back_to_write_message():
    payload = os.urandom(20_000)

    def no_compressor(handler):
        handler.ws_connection = WithoutCompressor(handler.ws_connection)

    result, received = exchange(payload, no_compressor)
    assert isinstance(result, asyncio.Future)
    assert received == payload


def test_a_compressed_connection_falls_back_to_write_message():
    payload = bytes(20_000)
    result, received = exchange(payload, compress=True)
    assert isinstance(result, asyncio.Future)
    assert received == payload


def test_a_closed_connection_raises():
    payload = b"x"

    def close(handler):
        handler.close()

    try:
        exchange(payload, close)
    except tornado.websocket.WebSocketClosedError:
        return
    raise AssertionError("send_binary on a closed connection did not raise WebSocketClosedError")
