"""The encoder's control channel and its idea of whether anyone watches. Plain code, no sockets.

Controller.handle() takes one request part (bytes, as it came off the ROUTER socket) and returns the
reply part; every request gets a reply, a bad one an error naming the problem, and nothing in a
request can stop the encoder. Watchers combines the image subscriptions seen on the XPUB socket with
the viewer count the server sends.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Callable, Optional

from flirstream import config as configuration
from flirstream import wire
from flirstream.config import ConfigError

from .layout import Layout
from .render import Renderer, as_text

log = logging.getLogger("encoder.control")

VIEWERS_TTL_S = 3.0  # a viewer count older than this no longer counts (the server may be gone)
# The topics a subscriber may ask for: those of the wire format and their prefixes (b"" is all).
# Any other subscription is ignored at once, so what is tracked stays this small set.
TOPICS = frozenset(topic[:n] for topic in (wire.IMAGE_TOPIC, wire.THERMAL_TOPIC, wire.STATUS_TOPIC)
                   for n in range(len(topic) + 1))


class Watchers:
    """Should the encoder encode? Yes while someone subscribes to images and the newest viewer count
    from the last VIEWERS_TTL_S (if any came) is above 0 - or always, with pause_when_unwatched off."""

    def __init__(self, pause_when_unwatched: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.pause_when_unwatched = pause_when_unwatched
        self._clock = clock
        self._topics: Counter = Counter()  # subscribed topic prefixes seen on the XPUB socket
        self._wanted: dict[bytes, bool] = {}  # wants() of each topic asked, until _topics changes
        self._viewers: Optional[tuple[int, float]] = None  # (count, when)
        self._thermal = 0  # thermal-mode viewers in that count's report

    def subscription(self, message: bytes) -> bool:
        """One XPUB subscription message: b"\\x01" + topic subscribes, b"\\x00" + topic leaves.
        False (and nothing tracked) for anything else, e.g. a topic the wire format does not know."""
        if not message or message[0] not in (0, 1):
            return False  # not a subscription message (XPUB passes other messages up too)
        topic = bytes(message[1:])
        if topic not in TOPICS:
            return False
        self._wanted.clear()
        if message[0] == 1:
            self._topics[topic] += 1
        elif self._topics[topic] > 0:
            self._topics[topic] -= 1
            if not self._topics[topic]:
                del self._topics[topic]
        return True

    def viewers(self, count: int, thermal: int = 0) -> None:
        self._viewers = (count, self._clock())
        self._thermal = thermal

    @property
    def radiometric(self) -> bool:
        """The newest viewer report is recent (viewer_count) and has thermal-mode viewers: make
        their RAD2."""
        return self._thermal > 0 and self.viewer_count is not None

    def wants(self, topic: bytes) -> bool:
        """Someone subscribes to a prefix of `topic`."""
        wanted = self._wanted.get(topic)
        if wanted is None:  # asked for every frame, changed only by a subscription
            wanted = self._wanted[topic] = any(topic.startswith(t) for t in self._topics)
        return wanted

    @property
    def subscribed(self) -> bool:
        """Someone subscribes to a prefix of b"image" (b"" included)."""
        return self.wants(wire.IMAGE_TOPIC)

    def changes_at(self) -> Optional[float]:
        """When (on the clock) the newest viewer count stops counting, if one came; watched may
        change then without a message."""
        return None if self._viewers is None else self._viewers[1] + VIEWERS_TTL_S

    @property
    def viewer_count(self) -> Optional[int]:
        """The newest viewer count if it is recent, else None."""
        if self._viewers is None or self._clock() - self._viewers[1] > VIEWERS_TTL_S:
            return None
        return self._viewers[0]

    @property
    def watched(self) -> bool:
        if not self.pause_when_unwatched:
            return True
        count = self.viewer_count
        return self.subscribed and (count is None or count > 0)

    def why_paused(self) -> str:
        if not self.subscribed:
            return "nobody subscribes to the images"
        return f"the server reports {self.viewer_count} viewers that need JPEGs"


class Controller:
    """Answers control requests: set / get settings, viewer counts, regions."""

    def __init__(self, renderer: Renderer, watchers: Watchers,
                 on_refusal: Callable[[str], None] = log.warning,
                 layout: Optional[Layout] = None):
        self.renderer = renderer
        self.watchers = watchers
        self.layout = layout
        self.on_refusal = on_refusal  # told the reason of every refused request (for the log)

    def settings(self) -> dict[str, str]:
        """Every [encoder] setting in server.conf form."""
        return {**self.renderer.settings_text(),
                "pause_when_unwatched": "yes" if self.watchers.pause_when_unwatched else "no"}

    def handle(self, part: bytes) -> bytes:
        """One request part -> one reply part (JSON)."""
        request_id: Any = None
        try:
            try:
                loose = wire.load_json(part)
                if isinstance(loose, dict):
                    request_id = loose.get("id")
            except wire.WireError:
                pass  # unpack_control below says what is wrong
            request = wire.check_control_request(wire.unpack_control(part))
            reply = self._dispatch(request)
        except (wire.WireError, ConfigError) as exc:
            reply = wire.control_reply(error=str(exc))
            self.on_refusal(f"control request refused: {exc}")
        except Exception as exc:  # nothing in a request may stop the encoder; the log says what
            reply = wire.control_reply(error=f"request not handled: {exc!r:.200}")
            self.on_refusal(f"control request failed: {exc!r:.200}")
            log.debug("control failure", exc_info=True)
        if request_id is not None:
            reply["id"] = request_id
        try:
            return wire.pack_control(reply)
        except (TypeError, ValueError):  # an id JSON cannot echo back (it came from JSON, so rare)
            reply.pop("id", None)
            return wire.pack_control(reply)

    def _dispatch(self, request: dict) -> dict:
        """A request checked by wire.check_control_request -> the reply."""
        op = request["op"]
        if op == "get":
            return wire.control_reply(settings=self.settings())
        if op == "regions":
            if self.layout is None:
                raise ConfigError("regions: this encoder measures no regions")
            self.layout.change(request.get("put", []), request.get("delete", []))
            return wire.control_reply(**self._regions())
        if op == "viewers":
            self.watchers.viewers(request["count"], request.get("thermal", 0))
            return wire.control_reply(settings=self.settings(), watched=self.watchers.watched)
        self._set(request["settings"])  # "set"
        return wire.control_reply(settings=self.settings())

    def _regions(self) -> dict:
        return {} if self.layout is None else {"regions": self.layout.as_list()}

    def _set(self, changes: dict) -> None:
        changes = dict(changes)
        unknown = [k for k in changes if k not in configuration.SCHEMA["encoder"]]
        if unknown:
            raise ConfigError(f"set: [encoder] {unknown[0][:40]!r}: unknown key (expected "
                              f"{', '.join(configuration.SCHEMA['encoder'])})")
        pause = None
        if "pause_when_unwatched" in changes:  # checked first, applied only if the rest is good
            raw = changes.pop("pause_when_unwatched")
            pause = configuration.parse_value("encoder", "pause_when_unwatched",
                                              as_text("pause_when_unwatched", raw))
        if changes:
            self.renderer.update(**changes)
        if pause is not None:
            self.watchers.pause_when_unwatched = pause
        changed = set(changes) | ({"pause_when_unwatched"} if pause is not None else set())
        log.info("settings changed: %s",
                 " ".join(f"{k}={v}" for k, v in self.settings().items() if k in changed))

