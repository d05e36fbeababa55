"""Alarm states from frame readings: ok / alarm with hysteresis and a hold time. Plain code, clocks
injectable, no I/O: `update` returns the changes and the caller logs, publishes and posts them.

    alarms = Alarms(rules)                       # rules: {name: regions.AlarmRule}
    for change in alarms.update(reading):        # reading: regions.measure(...)
        log.info("%s", change.describe())

An `above` alarm fires once the value has been > threshold for for_s seconds and clears when it falls
to threshold - hysteresis or lower (a `below` alarm mirrors that), so a reading wobbling around the
threshold gives one alarm, not one per frame. for_s delays firing only; clearing is immediate.
Hold times run on a monotonic clock (a Pi without a battery clock steps its wall clock at boot);
the times reported are wall-clock.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from flirstream.regions import AlarmRule

OK, ALARM = "ok", "alarm"


def value_of(rule: AlarmRule, reading: Mapping) -> Optional[float]:
    """The reading an alarm compares: its region's (or the frame's) max for above, min for below;
    None when the region is not in the reading."""
    source = reading.get("frame") if rule.roi is None else reading.get("regions", {}).get(rule.roi)
    if not source:
        return None
    value = source.get(rule.stat)
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class AlarmState:
    state: str
    since: float  # wall time the state began
    value: Optional[float] = None  # the newest value compared
    pending: Optional[float] = None  # monotonic time the condition began holding (while ok)

    def as_dict(self, rule: AlarmRule) -> dict:
        return {"state": self.state, "since": round(self.since, 3), "value": self.value,
                "threshold": rule.threshold, "direction": rule.direction, "roi": rule.roi}


@dataclass(frozen=True)
class Change:
    """An alarm that fired (state "alarm") or cleared (state "ok")."""

    name: str
    state: str
    value: float
    threshold: float
    time: float  # wall
    rule: AlarmRule

    def as_dict(self) -> dict:
        """The webhook's JSON body."""
        return {"name": self.name, "state": self.state, "value": self.value,
                "threshold": self.threshold, "time": round(self.time, 3)}

    def describe(self) -> str:
        """One log line."""
        where = f"region {self.rule.roi}" if self.rule.roi else "the frame"
        if self.state == ALARM:
            return (f"alarm {self.name} fired: {where} {self.rule.stat} {self.value:g} °C is "
                    f"{self.rule.direction} {self.threshold:g} °C"
                    + (f" for {self.rule.for_s:g} s" if self.rule.for_s else ""))
        return f"alarm {self.name} cleared: {where} {self.rule.stat} {self.value:g} °C"


class Alarms:
    def __init__(self, rules: Mapping[str, AlarmRule], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.rules = dict(rules)
        self.clock = clock
        self.wall = wall
        started = wall()
        self.states = {name: AlarmState(OK, started) for name in self.rules}

    def update(self, reading: Mapping) -> list[Change]:
        """Feed one frame's readings (°C); returns the alarms that changed state."""
        now, changes = self.clock(), []
        for name, rule in self.rules.items():
            state = self.states[name]
            value = value_of(rule, reading)
            state.value = value
            if value is None:  # region gone or no temperature: hold the state, restart the hold
                state.pending = None
                continue
            above = rule.direction == "above"
            if state.state == OK:
                beyond = value > rule.threshold if above else value < rule.threshold
                if not beyond:
                    state.pending = None
                    continue
                if state.pending is None:
                    state.pending = now
                if now - state.pending >= rule.for_s:
                    changes.append(self._enter(name, rule, ALARM, value))
            else:
                back = (value <= rule.threshold - rule.hysteresis if above
                        else value >= rule.threshold + rule.hysteresis)
                if back:
                    changes.append(self._enter(name, rule, OK, value))
        return changes

    def _enter(self, name: str, rule: AlarmRule, new: str, value: float) -> Change:
        at = self.wall()
        self.states[name] = AlarmState(new, at, value)
        return Change(name, new, value, rule.threshold, at, rule)

    def active(self) -> dict[str, bool]:
        """{name: in alarm} (for /metrics flirstream_alarm_active)."""
        return {name: s.state == ALARM for name, s in self.states.items()}

    def as_dict(self) -> dict[str, dict]:
        """Every alarm's state, JSON-able (for /api/state and MQTT)."""
        return {name: self.states[name].as_dict(rule) for name, rule in self.rules.items()}
