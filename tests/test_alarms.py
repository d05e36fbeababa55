"""server.alarms: ok / alarm with hysteresis, for_s hold, below alarms, injectable clocks."""
from __future__ import annotations

from flirstream.regions import AlarmRule
from server.alarms import ALARM, OK, Alarms, value_of


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def reading(box_max=None, box_min=None, frame_max=30.0, frame_min=20.0) -> dict:
    regions = {} if box_max is None else {"box": {"min": box_min if box_min is not None else box_max,
                                                  "max": box_max, "mean": box_max, "max_xy": [0, 0]}}
    return {"frame": {"min": frame_min, "max": frame_max, "centre": 25.0}, "regions": regions}


def make(rule: AlarmRule):
    mono, wall = Clock(10.0), Clock(1_700_000_000.0)
    return Alarms({rule.name: rule}, clock=mono, wall=wall), mono, wall


def test_above_fires_once_and_clears_only_below_the_hysteresis_band():
    alarms, mono, wall = make(AlarmRule("hot", "box", "above", 50.0, hysteresis=2.0))
    assert alarms.states["hot"].state == OK and alarms.states["hot"].since == wall.t
    assert alarms.update(reading(50.0)) == []  # at the threshold is not above it
    wall.t += 1
    (change,) = alarms.update(reading(50.5))
    assert (change.name, change.state, change.value, change.threshold, change.time) == (
        "hot", ALARM, 50.5, 50.0, wall.t)
    assert change.as_dict() == {"name": "hot", "state": "alarm", "value": 50.5, "threshold": 50.0,
                                "time": wall.t}
    assert "alarm hot fired: region box max 50.5 °C is above 50 °C" == change.describe()
    for value in (49.0, 51.0, 48.5, 55.0):  # wobbling inside the band: no new changes
        assert alarms.update(reading(value)) == []
    assert alarms.active() == {"hot": True}
    wall.t += 5
    (cleared,) = alarms.update(reading(48.0))
    assert (cleared.state, cleared.value, cleared.time) == (OK, 48.0, wall.t)
    assert alarms.as_dict()["hot"] == {"state": "ok", "since": wall.t, "value": 48.0,
                                       "threshold": 50.0, "direction": "above", "roi": "box"}


def test_for_s_needs_the_condition_to_hold_without_a_break():
    alarms, mono, wall = make(AlarmRule("hot", "box", "above", 50.0, for_s=10.0))
    assert alarms.update(reading(60.0)) == []
    mono.t += 9.9
    assert alarms.update(reading(60.0)) == []
    mono.t += 0.05
    assert alarms.update(reading(49.0)) == []  # dipped: the hold starts again
    mono.t += 1
    assert alarms.update(reading(60.0)) == []
    mono.t += 9.99
    assert alarms.update(reading(60.0)) == []
    wall.t = 1_700_000_099.0  # the wall clock may step: the hold runs on the monotonic one
    mono.t += 0.01
    (change,) = alarms.update(reading(61.0))
    assert change.state == ALARM and change.time == 1_700_000_099.0
    assert "for 10 s" in change.describe()
    (cleared,) = alarms.update(reading(49.0))  # clearing does not wait for for_s
    assert cleared.state == OK


def test_below_alarm_on_the_whole_frame_uses_its_minimum():
    rule = AlarmRule("frost", None, "below", 0.0, hysteresis=1.5)
    alarms, mono, wall = make(rule)
    assert value_of(rule, reading(frame_min=-3.0)) == -3.0
    assert alarms.update(reading(frame_min=0.0, frame_max=90)) == []
    (change,) = alarms.update(reading(frame_min=-0.1))
    assert change.state == ALARM and "the frame min -0.1 °C is below 0 °C" in change.describe()
    assert alarms.update(reading(frame_min=1.4)) == []
    (cleared,) = alarms.update(reading(frame_min=1.5))
    assert cleared.state == OK and cleared.describe() == "alarm frost cleared: the frame min 1.5 °C"


def test_missing_region_holds_the_state_and_restarts_the_hold():
    alarms, mono, wall = make(AlarmRule("hot", "box", "above", 50.0, for_s=5.0))
    alarms.update(reading(60.0))
    mono.t += 4
    assert alarms.update(reading()) == [] and alarms.states["hot"].value is None
    mono.t += 2
    assert alarms.update(reading(60.0)) == []  # the hold began again just now
    mono.t += 5
    assert [c.state for c in alarms.update(reading(60.0))] == [ALARM]
    assert alarms.update(reading()) == [] and alarms.active() == {"hot": True}


def test_several_alarms_change_independently():
    rules = {"a": AlarmRule("a", "box", "above", 40.0), "b": AlarmRule("b", None, "above", 35.0),
             "c": AlarmRule("c", "box", "below", 10.0, hysteresis=0.0)}
    alarms = Alarms(rules, clock=Clock(), wall=Clock(5.0))
    assert [c.name for c in alarms.update(reading(45.0, box_min=9.0, frame_max=36.0))] == ["a", "b", "c"]
    assert [(c.name, c.state) for c in alarms.update(reading(38.0, box_min=10.0, frame_max=36.0))] == [
        ("a", OK), ("c", OK)]
