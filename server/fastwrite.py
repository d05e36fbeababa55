"""One binary websocket message to one viewer, handed to the kernel directly when that is safe.

Why: every viewer gets the same frame. Tornado's write_message builds a new frame (header + a copy
of the payload) per viewer, and IOStream.write adds a future, callbacks and buffer bookkeeping per
write. Sending the frame's one shared websocket message (protocol.ws_framed) straight to the socket
when nothing is queued for that viewer is what makes 1000 viewers fit on one core: most of the
server's CPU per frame sent goes away (the figure, measured: docs/PERFORMANCE.md, "Fan-out, server
side" under "What limits each figure").

The direct send relies on three Tornado internals (WebSocketProtocol13._compressor, IOStream's
_write_buffer and its socket). Where they are not what this code knows - a Tornado that names them
differently, a subclass of IOStream (TLS), compression on - it falls back to the public API:
IOStream.write of the same framed bytes, or write_message.
"""
from __future__ import annotations

from typing import Any, Optional

import tornado.iostream
import tornado.websocket

from .protocol import ws_framed

_NO_COMPRESSOR = object()  # the connection has no _compressor attribute at all


def send_binary(handler: tornado.websocket.WebSocketHandler, payload: bytes) -> Optional[Any]:
    """Start sending `payload` as one binary message; None when the kernel took it all at once,
    else a future done when it is written. WebSocketClosedError when the connection is closed."""
    connection = handler.ws_connection
    if connection is None or connection.is_closing():
        raise tornado.websocket.WebSocketClosedError()
    stream = getattr(connection, "stream", None)
    if stream is None or getattr(connection, "_compressor", _NO_COMPRESSOR) is not None:
        # compressed (not expected: the viewer turns compression off), or internals we do not know
        return handler.write_message(payload, binary=True)
    # Written apart from write_message, the shared frame is kept by IOStream as a view (buffers
    # over 2 KiB are not copied): a stalled viewer holds a reference, not a copy.
    frame = ws_framed(payload)
    queued = getattr(stream, "_write_buffer", None)
    if type(stream) is tornado.iostream.IOStream and queued is not None and not queued \
            and not stream.closed():
        # Nothing queued (most viewers, most frames): straight to the kernel. What the socket does
        # not take now goes through IOStream as usual.
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        if sent == len(frame):
            return None
        return stream.write(memoryview(frame)[sent:])
    return stream.write(frame)
