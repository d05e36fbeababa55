"""A real Tornado static server on a free loopback port, in a thread: web/ under /web/ and
tests/pages/ under /, for browser tests and benchmarks of web/ modules without the stages."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import tornado.web

from flirstream.testing import free_port

ROOT = Path(__file__).resolve().parent.parent


class StaticSite:
    def __init__(self, pages: Path = ROOT / "tests" / "pages"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._pages = pages
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the static site did not start within 10 s")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = tornado.web.Application([
            (r"/web/(.*)", tornado.web.StaticFileHandler, {"path": str(ROOT / "web")}),
            (r"/(.*)", tornado.web.StaticFileHandler, {"path": str(self._pages)}),
        ])
        self._server = app.listen(self.port, "127.0.0.1")
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    def close(self) -> None:
        def stop() -> None:
            self._server.stop()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
        self._loop.close()
