"""Alarm webhooks: a JSON POST per alarm change, off the frame path.

    hooks = Webhooks()
    hooks.send(rule.webhook, change.as_dict())   # returns at once; a task posts, retries, gives up

The body is {"name", "state", "value", "threshold", "time"}. Each attempt has timeout_s; a refused
connection, a timeout, a 5xx or a 429 is tried again after backoff_s, 2*backoff_s, ... up to
`attempts` in all; any other answer is final. A final failure is one log line (the URL's query, which
may hold a secret, is left out of it).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

import flirstream

log = logging.getLogger("webhook")

TIMEOUT_S = 5.0
ATTEMPTS = 4
BACKOFF_S = 1.0
MAX_IN_FLIGHT = 50  # a flapping alarm and a dead far end must not pile up tasks without end
RETRY_CODES = {429, 500, 502, 503, 504, 599}  # 599: Tornado's code for timeouts and network errors


def shown(url: str) -> str:
    """The URL without its query or credentials, for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':%d' % parts.port if parts.port else ''}{parts.path}"


class Webhooks:
    def __init__(self, timeout_s: float = TIMEOUT_S, attempts: int = ATTEMPTS,
                 backoff_s: float = BACKOFF_S,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.counters = {"sent": 0, "failed": 0, "retries": 0, "dropped": 0}
        self._tasks: set[asyncio.Task] = set()

    def send(self, url: str, body: dict) -> Optional[asyncio.Task]:
        """Post in the background (needs a running event loop); the task's result is True on a
        2xx answer. None (and one log line) when MAX_IN_FLIGHT posts are still under way."""
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.counters["dropped"] += 1
            log.warning("webhook %s for alarm %s (%s) not sent: %d webhook posts still under way",
                        shown(url), body.get("name", "?"), body.get("state", "?"), len(self._tasks))
            return None
        task = asyncio.get_running_loop().create_task(self.post(url, body))
        self._tasks.add(task)  # a task nobody refers to may be garbage-collected mid-flight
        task.add_done_callback(self._tasks.discard)
        return task

    async def post(self, url: str, body: dict) -> bool:
        request = HTTPRequest(url, method="POST", body=json.dumps(body),
                              headers={"Content-Type": "application/json"},
                              connect_timeout=self.timeout_s, request_timeout=self.timeout_s,
                              follow_redirects=False, user_agent=f"flir-stream/{flirstream.__version__}")
        client = AsyncHTTPClient()
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                self.counters["retries"] += 1
                await self.sleep(self.backoff_s * 2 ** (attempt - 1))
            code, reason = await self._attempt(client, request)
            if 200 <= code < 300:
                self.counters["sent"] += 1
                return True
            if code not in RETRY_CODES:
                break
        self.counters["failed"] += 1
        name = body.get("name", "?")
        log.warning("webhook %s for alarm %s (%s) failed after %d attempt%s: %s", shown(url), name,
                    body.get("state", "?"), attempt + 1, "" if attempt == 0 else "s", reason)
        return False

    async def _attempt(self, client: AsyncHTTPClient, request: HTTPRequest) -> tuple[int, str]:
        try:
            response = await client.fetch(request, raise_error=False)
        except HTTPClientError as exc:  # raise_error=False still raises for timeouts
            return exc.code, str(exc)
        except OSError as exc:  # connection refused, no route, name not known
            return 599, f"cannot connect: {exc.strerror or exc}"
        if response.code == 599:
            return 599, str(response.error or "network error")
        return response.code, f"HTTP {response.code} {response.reason}"

    def pending(self) -> int:
        return len(self._tasks)

    async def flush(self, timeout_s: float) -> None:
        """Wait up to timeout_s for the posts under way (e.g. at stop, before close)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    async def close(self) -> None:
        """Cancel posts still in flight (at server stop)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

