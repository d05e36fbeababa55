"""The regions the encoder measures: server.conf's `[roi:NAME]` sections plus those drawn in the
viewer. Drawn ones are kept in the encoder's state file so they survive restarts. Plain code.

    layout = Layout(cfg.regions, sensor=(160, 120), state=StateFile(cfg.state.dir, "encoder"))
    layout.change(put=[{"name": "bed", "box": [10, 10, 40, 30]}], delete=["old"])
    layout.regions()    # {name: Region}, server.conf's first
    layout.as_list()    # [{"name", "kind", "box" | "spot", "source": "config" | "viewer"}]

server.conf's regions cannot be moved or deleted from the viewer (alarms may name them, and the
file would bring them back at the next start): a change to one is refused, naming the section.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Optional

from flirstream.config import ConfigError
from flirstream.regions import Region, region_from_dict
from flirstream.state import StateFile

log = logging.getLogger("encoder.regions")

MAX_DRAWN = 32  # every region is in every thermal frame's header and status message
STATE_KEY = "regions"


class Layout:
    def __init__(self, configured: Mapping[str, Region], sensor: tuple[int, int],
                 state: Optional[StateFile] = None) -> None:
        self.configured = dict(configured)
        self.sensor = sensor
        self.state = state
        self.drawn: dict[str, Region] = {}
        self.version = 0  # counts changes (the status message goes out at once after one)
        if state is not None:
            self._load(state.load().get(STATE_KEY, []))

    def _load(self, saved: Any) -> None:
        if not isinstance(saved, list):
            log.warning("state file %s: 'regions' is not a list: ignored", self.state.path)
            return
        for item in saved[:MAX_DRAWN]:
            try:
                region = region_from_dict(item, self.sensor, where=f"state file {self.state.path}")
            except ConfigError as exc:
                log.warning("%s: region left out", exc)
                continue
            if region.name in self.configured:
                log.warning("state file %s: region %s is now defined in server.conf: the drawn one "
                            "is left out", self.state.path, region.name)
                continue
            self.drawn[region.name] = region
        if self.drawn:
            log.info("regions drawn in the viewer: %s (from %s)", ", ".join(self.drawn),
                     self.state.path)

    def regions(self) -> dict[str, Region]:
        return {**self.configured, **self.drawn}

    def as_list(self) -> list[dict]:
        return ([{**r.as_dict(), "source": "config"} for r in self.configured.values()]
                + [{**r.as_dict(), "source": "viewer"} for r in self.drawn.values()])

    def change(self, put: Iterable[Any] = (), delete: Iterable[Any] = ()) -> None:
        """Add or replace (same name) regions and delete others, all or nothing; ConfigError names
        what is wrong. Saved to the state file."""
        drawn = dict(self.drawn)
        for name in delete:
            if not isinstance(name, str):
                raise ConfigError(f"regions: delete {name!r}: expected a region name")
            self._not_configured(name, "deleted")
            if name not in drawn:
                raise ConfigError(f"regions: delete {name!r}: no such region")
            del drawn[name]
        for item in put:
            region = region_from_dict(item, self.sensor, where="regions")
            self._not_configured(region.name, "changed")
            drawn[region.name] = region
        if len(drawn) > MAX_DRAWN:
            raise ConfigError(f"regions: {len(drawn)} drawn regions, expected at most {MAX_DRAWN}")
        if drawn == self.drawn:
            return
        self.drawn = drawn
        self.version += 1
        log.info("regions now: %s", ", ".join(f"{r['name']} {r['kind']} "
                                              f"{r.get('box', r.get('spot'))}"
                                              for r in self.as_list()) or "none")
        if self.state is not None:
            data = self.state.load()  # other keys of the file are kept as they are
            data[STATE_KEY] = [r.as_dict() for r in self.drawn.values()]
            self.state.save(data)

    def _not_configured(self, name: str, what: str) -> None:
        if name in self.configured:
            raise ConfigError(f"regions: {name} is [roi:{name}] in server.conf: it can only be "
                              f"{what} there")
