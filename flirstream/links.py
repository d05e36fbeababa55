"""ZeroMQ sockets between stages, set up so that every stage keeps only the newest frame.

Publishers bind, subscribers connect, so any stage can start first or restart alone. High-water marks
are small: a stalled subscriber makes ZeroMQ drop frames for it instead of queueing them, and
`recv_latest` drains whatever did queue so the caller always works on the newest message.
"""
from __future__ import annotations

from typing import Optional

import zmq

FRAME_HWM = 2  # messages; each is one whole frame


def publisher(ctx: zmq.Context, endpoint: str, hwm: int = FRAME_HWM) -> zmq.Socket:
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError:
        sock.close()  # an open socket would keep ctx.term() waiting forever
        raise
    return sock


def subscriber(ctx: zmq.Context, endpoint: str, topic: bytes, hwm: int = FRAME_HWM) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    # Reconnect quickly when a publisher restarts, so frames flow again well within 2 s.
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def recv_latest(sock: zmq.Socket, timeout_ms: int = 0) -> tuple[Optional[list], int]:
    """Wait up to timeout_ms for a message, then drain the queue: (newest parts or None, skipped)."""
    if timeout_ms and not sock.poll(timeout_ms):
        return None, 0
    newest = None
    skipped = 0
    while True:
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        if newest is not None:
            skipped += 1
        newest = parts
    return newest, skipped
