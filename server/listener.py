"""Accepting connections without running out of file descriptors.

Every TCP connection costs the server one descriptor, and so do ZeroMQ, the listening sockets and the
log. Tornado's own accept loop (tornado.netutil.add_accept_handler) lets an accept() that fails with
EMFILE escape: the listening socket stays readable, so the loop runs again at once, forever, logging
a traceback each time (issue 11: 1,100 idle connections under the systemd default of 1024 gave 100 %
CPU and 25 MB of log in 5 s). Here connections are kept below the limit, and when accept() fails for
lack of descriptors or memory the listening socket is taken off the event loop for a moment, with one
line per ten seconds in the log.
"""
from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from typing import Any, Callable, Iterable

import tornado.httpserver
from tornado.ioloop import IOLoop

log = logging.getLogger("server")

RESERVE_FDS = 64  # kept free for ZeroMQ, static files, snapshots, logs
PAUSE_S = 0.25  # accepting pauses this long at the limit or on EMFILE
LOG_EVERY_S = 10.0
ACCEPTS_PER_WAKEUP = 128  # as Tornado: do not starve other work while a crowd connects
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def open_file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def connection_limit(fd_limit: int, max_clients: int) -> int:
    """How many connections to hold at once: below the open-file limit with RESERVE_FDS to spare,
    and not far beyond what max_clients viewers plus page loads, snapshots and probes need."""
    return max(1, min(fd_limit - RESERVE_FDS, 4 * max_clients + 1024))


class Acceptor:
    """Accepts connections on one listening socket and hands them to `callback`, at most `limit`
    at once (counted by the descriptor number: the kernel hands out the lowest free one, so a new
    connection numbered `limit` or above means the descriptors below are all taken)."""

    def __init__(self, sock: socket.socket, callback: Callable[[socket.socket, Any], None],
                 limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self.callback = callback
        self.limit = limit
        self.clock = clock
        self.loop = IOLoop.current()
        self.refused = 0  # since the last log line
        self.logged_at = -LOG_EVERY_S
        self.removed = False
        self.paused = False
        self.loop.add_handler(sock, self._accept, IOLoop.READ)

    def _accept(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if self.removed or self.paused:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                self._pause(f"accept() failed: {exc.strerror}")
                return
            if connection.fileno() >= self.limit:
                connection.close()
                self._pause(f"{self.limit} connections are open (open-file limit "
                            f"{open_file_limit()}, max_clients)")
                return
            self.callback(connection, address)

    def _pause(self, why: str) -> None:
        """Stop accepting for PAUSE_S: new connections wait in the listen backlog meanwhile."""
        self.refused += 1
        now = self.clock()
        if now - self.logged_at >= LOG_EVERY_S:
            log.warning("not accepting connections for a moment: %s (%d refused or delayed since the "
                        "last such line); idle connections close after the request timeout",
                        why, self.refused)
            self.logged_at = now
            self.refused = 0
        self.paused = True
        self.loop.remove_handler(self.sock)
        self.loop.call_later(PAUSE_S, self._resume)

    def _resume(self) -> None:
        self.paused = False
        if not self.removed:
            self.loop.add_handler(self.sock, self._accept, IOLoop.READ)

    def remove(self) -> None:
        if not self.removed and not self.paused:
            self.loop.remove_handler(self.sock)
        self.removed = True


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server with the bounded accept loop above."""

    connection_limit = 1 << 20

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = Acceptor(sock, self._handle_connection,
                                                     self.connection_limit).remove
