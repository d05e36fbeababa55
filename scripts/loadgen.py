#!/usr/bin/env python3
"""Websocket load generator for scripts/bench.py: many /ws viewers in one process.

    python scripts/loadgen.py --url ws://127.0.0.1:8080/ws --clients 250 [--mode normal|slow]

Each process holds --clients connections to the server on loopback (127.0.0.1 / ::1 only) and talks
to its parent over stdin/stdout, one JSON object per line:

  1. it connects every client (at most --batch handshakes at once), waits until each normal client has
     received its first frame (bounded by --connect-timeout), then prints
     {"event": "ready", "connected": n, "failed": m, "with_frame": k, "errors": [...]}.
  2. for each line {"t0": T0, "t1": T1, "linger": S} read from stdin it counts, per client, the frames
     whose capture time t (header "t", Unix seconds on this host) lies in [T0, T1), keeps running
     until T1 + S so that late frames of the window still arrive, then prints
     {"event": "result", "clients": [[frames_in_window, frames_total, bytes_total], ...],
      "latency_ms": [...], "net_ms": [...], "server_ms": [...], "encode_ms": [...], ...}
     latency = receive time of the message's last byte - t; its parts: encode = t_encoded - t,
     server = t_sent - t_encoded, net = receive - t_sent (all on this host's clock).
  3. "quit", end of input or --max-seconds ends it.

Normal clients are a minimal RFC 6455 client on asyncio.BufferedProtocol: the kernel copies into one
preallocated buffer per connection, the client decodes only the frame headers and the JSON header of
each binary message and skips the JPEG without copying it, so one process can keep up with hundreds
of viewers (the `websockets` package costs several times more CPU per message, and the load
generator shares this machine's cores with the server it measures). It answers pings, and a close.

Slow clients (--mode slow) are plain TCP sockets with a small receive buffer that do the websocket
handshake and then never read again: what a stalled browser tab or a dead network looks like to the
server. At the end they report how many the server has closed (TCP state CLOSE_WAIT).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import json
import os
import re
import socket
import struct
import sys
import time
from array import array
from typing import Optional
from urllib.parse import urlsplit

from flirstream.testing import raise_fd_limit

BUFFER_BYTES = 1 << 20
MAX_HEADER = 64 * 1024
MAX_TEXT = 256 * 1024
CONNECTING, OPEN, CLOSED = 0, 1, 2


def check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise SystemExit(f"loadgen: {host} is not a loopback address; refusing to generate load there")


def handshake_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://{hostport}\r\nUser-Agent: flir-stream-loadgen\r\n\r\n").encode()


_NUMBER = rb'\s*:\s*(-?[0-9][0-9.eE+-]*)'
_FIELDS = tuple((name, re.compile(b'"' + name.encode() + b'"' + _NUMBER))
                for name in ("seq", "t", "t_encoded", "t_sent"))


def header_fields(buf: bytearray, start: int, end: int) -> dict:
    """seq, t, t_encoded, t_sent of a frame's JSON header in buf[start:end], read in place.

    A JSON parse of the whole header (stats, range, telemetry...) costs several times more, and
    this runs for every frame of every viewer; the first occurrence of each key is the top-level
    one (the server writes seq and t first; t_encoded and t_sent are names used nowhere else).
    Falls back to json when a field is missing."""
    out = {}
    for name, pattern in _FIELDS:
        # the server writes seq, t, t_encoded first and t_sent among the last: look there first
        near = (start, min(end, start + 256)) if name != "t_sent" else (max(start, end - 256), end)
        m = pattern.search(buf, *near) or pattern.search(buf, start, end)
        if m is None:
            break
        out[name] = float(m.group(1)) if name != "seq" else int(m.group(1))
    else:
        return out
    try:
        header = json.loads(buf[start:end])
        return header if isinstance(header, dict) else {}
    except ValueError:
        return {}


class Window:
    """The measurement window all clients of this process share."""

    def __init__(self) -> None:
        self.t0 = float("inf")
        self.t1 = float("-inf")
        self.latency = array("d")
        self.net = array("d")
        self.server = array("d")
        self.encode = array("d")
        self.gaps = 0  # frames a client skipped (seq jumps) inside the window, summed over clients

    def reset(self, t0: float, t1: float) -> None:
        self.__init__()
        self.t0, self.t1 = t0, t1


class Client(asyncio.BufferedProtocol):
    """One viewer: handshake, then parse frames straight out of a fixed buffer."""

    def __init__(self, request: bytes, window: Window) -> None:
        self.request = request
        self.window = window
        self.buf = bytearray(BUFFER_BYTES)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.skip = 0  # payload bytes still to drop
        self.pending: Optional[dict] = None  # header of the binary message being received
        self.state = CONNECTING
        self.transport: Optional[asyncio.Transport] = None
        self.opened = asyncio.get_event_loop().create_future()
        self.first_frame = asyncio.get_event_loop().create_future()
        self.frames_total = 0
        self.bytes_total = 0
        self.in_window = 0
        self.last_seq: Optional[int] = None
        self.texts = 0
        self.error: Optional[str] = None

    # -- asyncio
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.start == self.end:
            self.start = self.end = 0
        elif BUFFER_BYTES - self.end < 65536:
            n = self.end - self.start
            self.buf[0:n] = self.buf[self.start:self.end]  # same length: no resize
            self.start, self.end = 0, n
        return self.mv[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        self.bytes_total += nbytes
        if self.state == CONNECTING:
            self._handshake()
        if self.state == OPEN:
            self._frames(time.time())

    def eof_received(self):
        self._fail("server closed the connection")
        return False

    def connection_lost(self, exc) -> None:
        if self.state != CLOSED:
            self._fail(f"connection lost: {exc}" if exc else "connection closed")

    # -- protocol
    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        self.state = CLOSED
        for fut in (self.opened, self.first_frame):
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
                fut.exception()  # mark retrieved
        if self.transport is not None:
            self.transport.abort()

    def _handshake(self) -> None:
        head_end = self.buf.find(b"\r\n\r\n", self.start, self.end)
        if head_end < 0:
            if self.end - self.start > 65536:
                self._fail("handshake response too long")
            return
        status = bytes(self.buf[self.start:self.buf.find(b"\r\n", self.start, self.end)])
        if b" 101 " not in status + b" ":
            self._fail(f"handshake refused: {status.decode('latin-1')[:100]}")
            return
        self.start = head_end + 4
        self.state = OPEN
        self.opened.set_result(True)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        # client frames are masked; a zero mask leaves the payload as it is
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def _complete(self, now: float) -> None:
        header, self.pending = self.pending, None
        self.frames_total += 1
        if not self.first_frame.done():
            self.first_frame.set_result(True)
        try:
            t = header["t"]
            seq = header["seq"]
        except (KeyError, TypeError):
            return
        w = self.window
        if w.t0 <= t < w.t1:
            self.in_window += 1
            if self.last_seq is not None and seq > self.last_seq + 1:
                w.gaps += seq - self.last_seq - 1
            w.latency.append((now - t) * 1e3)
            t_sent = header.get("t_sent")
            t_enc = header.get("t_encoded")
            if isinstance(t_sent, (int, float)):
                w.net.append((now - t_sent) * 1e3)
                if isinstance(t_enc, (int, float)):
                    w.server.append((t_sent - t_enc) * 1e3)
            if isinstance(t_enc, (int, float)):
                w.encode.append((t_enc - t) * 1e3)
        self.last_seq = seq

    def _frames(self, now: float) -> None:
        buf = self.buf
        start, end = self.start, self.end
        while self.state == OPEN:
            if self.skip:
                avail = end - start
                if avail < self.skip:
                    self.skip -= avail
                    start = end
                    break
                start += self.skip
                self.skip = 0
                if self.pending is not None:
                    self._complete(now)
            avail = end - start
            if avail < 2:
                break
            b0, b1 = buf[start], buf[start + 1]
            length, hl = b1 & 0x7F, 2
            if length == 126:
                if avail < 4:
                    break
                length, hl = (buf[start + 2] << 8) | buf[start + 3], 4
            elif length == 127:
                if avail < 10:
                    break
                length, hl = int.from_bytes(buf[start + 2:start + 10], "big"), 10
            if b1 & 0x80:
                self._fail("server sent a masked frame")
                break
            opcode = b0 & 0x0F
            if opcode == 2 and b0 & 0x80 and length >= 4:  # a whole binary message: one frame
                if avail < hl + 4:
                    break
                n = int.from_bytes(buf[start + hl:start + hl + 4], "big")
                if n > MAX_HEADER or 4 + n > length:
                    self._fail(f"bad frame header length {n}")
                    break
                if avail < hl + 4 + n:
                    break
                self.pending = header_fields(buf, start + hl + 4, start + hl + 4 + n)
                start += hl
                self.skip = length
                if length == 0:
                    self._complete(now)
                continue
            if opcode in (1, 8, 9, 10) and length <= MAX_TEXT:
                if avail < hl + length:
                    break
                payload = bytes(buf[start + hl:start + hl + length])
                start += hl + length
                if opcode == 1:
                    self.texts += 1
                elif opcode == 9:
                    self._send_control(0xA, payload[:125])
                elif opcode == 8:
                    self._send_control(0x8, payload[:2])
                    self._fail("server closed the websocket " + payload[:2].hex())
                continue
            start += hl  # anything else (fragments, huge text): drop it
            self.skip = length
            self.pending = None
        self.start = start

    def close(self) -> None:
        if self.transport is not None and self.state == OPEN:
            try:
                self._send_control(0x8, struct.pack(">H", 1000))
            except Exception:
                pass
        self.state = CLOSED
        if self.transport is not None:
            self.transport.abort()


async def connect_normal(args, host: str, port: int, path: str, window: Window) -> tuple[list, list]:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(args.batch)

    async def one() -> None:
        async with sem:
            client = Client(handshake_request(host, port, path), window)
            try:
                await asyncio.wait_for(loop.create_connection(lambda: client, host, port),
                                       args.connect_timeout)
                await asyncio.wait_for(asyncio.shield(client.opened), args.connect_timeout)
                clients.append(client)
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                client.close()

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(args.clients))),
                           args.connect_timeout * 3)
    waiting = [c.first_frame for c in clients if not c.first_frame.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=args.connect_timeout)
    return clients, errors


def connect_slow(args, host: str, port: int, path: str) -> tuple[list, list]:
    socks, errors = [], []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(args.clients):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.slow_rcvbuf)
            s.settimeout(args.connect_timeout)
            s.connect((host, port))
            s.sendall(handshake_request(host, port, path))
            got = b""
            deadline = time.monotonic() + args.connect_timeout
            while b"\r\n\r\n" not in got and time.monotonic() < deadline and len(got) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            if not got.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"handshake refused: {got[:60]!r}")
            socks.append(s)  # from here on: never read again
        except (OSError, ConnectionError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            s.close()
    return socks, errors


def tcp_state(sock: socket.socket) -> int:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return -1


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def main_async(args) -> int:
    url = urlsplit(args.url)
    host, port, path = url.hostname, url.port or 80, (url.path or "/") + (
        "?" + url.query if url.query else "")
    check_loopback(host)
    deadline = time.monotonic() + args.max_seconds
    loop = asyncio.get_running_loop()
    window = Window()
    t_start = time.time()
    if args.mode == "normal":
        clients, errors = await connect_normal(args, host, port, path, window)
        with_frame = sum(1 for c in clients if c.first_frame.done() and not c.first_frame.exception())
        socks = []
    else:
        clients = []
        socks, errors = await loop.run_in_executor(None, connect_slow, args, host, port, path)
        with_frame = 0
    emit({"event": "ready", "mode": args.mode, "connected": len(clients) + len(socks),
          "failed": len(errors), "with_frame": with_frame, "errors": errors[:5],
          "connect_s": round(time.time() - t_start, 3), "pid": os.getpid()})

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while time.monotonic() < deadline:
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if not line or line.strip() in (b"quit", b""):
            break
        command = json.loads(line)
        t0, t1, linger = float(command["t0"]), float(command["t1"]), float(command.get("linger", 1.0))
        window.reset(t0, t1)
        for c in clients:
            c.in_window = 0
        before = {id(c): (c.frames_total, c.bytes_total) for c in clients}
        wait = t1 + linger - time.time()
        if wait > 0:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        emit({"event": "result", "mode": args.mode,
              "clients": [[c.in_window, c.frames_total - before[id(c)][0],
                           c.bytes_total - before[id(c)][1], c.texts] for c in clients],
              "open": sum(1 for c in clients if c.state == OPEN),
              "client_errors": sorted({c.error for c in clients if c.error})[:5],
              "gaps": window.gaps,
              "latency_ms": [round(x, 3) for x in window.latency],
              "net_ms": [round(x, 3) for x in window.net],
              "server_ms": [round(x, 3) for x in window.server],
              "encode_ms": [round(x, 3) for x in window.encode],
              "slow_closed_by_server": sum(1 for s in socks if tcp_state(s) in (7, 8)),
              "slow_open": len(socks)})
    for c in clients:
        c.close()
    for s in socks:
        s.close()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ws (loopback only)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--mode", choices=("normal", "slow"), default="normal")
    p.add_argument("--batch", type=int, default=64, help="handshakes in flight at once")
    p.add_argument("--connect-timeout", type=float, default=15.0)
    p.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long regardless")
    p.add_argument("--slow-rcvbuf", type=int, default=4096,
                   help="SO_RCVBUF of slow clients (small, so the server sees them stall at once)")
    args = p.parse_args(argv)
    raise_fd_limit()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
