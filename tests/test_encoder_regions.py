"""Regions the encoder measures: server.conf's, drawn ones through the control op, the state file,
and their readings in every thermal frame (plain code, a real state file on disk)."""
from __future__ import annotations

import json

import numpy as np

from encoder.control import Controller, Watchers
from encoder.layout import MAX_DRAWN, Layout
from encoder.measure import Meter
from encoder.render import Renderer
from flirstream import wire
from flirstream.regions import Region
from flirstream.state import StateFile

SENSOR = (160, 120)


def controller(layout: Layout) -> Controller:
    refusals: list[str] = []
    c = Controller(Renderer(), Watchers(), on_refusal=refusals.append, layout=layout)
    c.refusals = refusals  # type: ignore[attr-defined]
    return c


def ask(c: Controller, request: dict) -> dict:
    reply = json.loads(c.handle(wire.pack_control(request)))
    reply.pop("v")
    return reply


def test_drawn_regions_are_checked_kept_in_the_state_file_and_loaded_again(tmp_path):
    state = StateFile(tmp_path, "encoder")
    state.save({"something_else": 1})  # another part's key survives region changes
    layout = Layout({"door": Region("door", 5, 5, 5, 5)}, SENSOR, state)
    c = controller(layout)
    reply = ask(c, {"op": "regions", "put": [{"name": "bed", "box": [100, 20, 119, 39]}], "id": 3})
    assert reply["ok"] and reply["id"] == 3
    assert reply["regions"] == [{"name": "door", "kind": "spot", "spot": [5, 5], "source": "config"},
                                {"name": "bed", "kind": "box", "box": [100, 20, 119, 39],
                                 "source": "viewer"}]
    assert json.loads(state.path.read_text())["something_else"] == 1
    # a restarted encoder has it again; server.conf's regions come from server.conf
    again = Layout({"door": Region("door", 5, 5, 5, 5)}, SENSOR, StateFile(tmp_path, "encoder"))
    assert list(again.regions()) == ["door", "bed"]
    # moved (same name), then deleted
    ask(c, {"op": "regions", "put": [{"name": "bed", "spot": [0, 119]}]})
    assert layout.regions()["bed"] == Region("bed", 0, 119, 0, 119)
    assert ask(c, {"op": "regions", "delete": ["bed"]})["regions"][1:] == []
    assert Layout({}, SENSOR, StateFile(tmp_path, "encoder")).regions() == {}


def test_bad_region_requests_are_refused_with_a_reason_and_change_nothing(tmp_path):
    layout = Layout({"door": Region("door", 5, 5, 5, 5)}, SENSOR, StateFile(tmp_path, "encoder"))
    c = controller(layout)
    ask(c, {"op": "regions", "put": [{"name": "bed", "box": [1, 1, 2, 2]}]})
    version = layout.version
    for request, needle in [
            ({"put": [{"name": "x", "box": [0, 0, 160, 10]}]}, "X0 <= X1 from 0 to 159"),
            ({"put": [{"name": "a b", "spot": [1, 1]}]}, "expected a NAME"),
            ({"put": [{"name": "x", "spot": [1.5, 1]}]}, "whole numbers"),
            ({"put": [{"name": "door", "spot": [1, 1]}]}, "[roi:door] in server.conf"),
            ({"delete": ["door"]}, "[roi:door] in server.conf"),
            ({"delete": ["nope"]}, "no such region"),
            ({"put": "bed"}, "expected \"put\""),
            ({}, "expected \"put\""),
            # all or nothing: the good one is not applied either
            ({"put": [{"name": "ok", "spot": [1, 1]}, {"name": "bad", "spot": [-1, 1]}]}, "expected"),
            ({"put": [{"name": f"r{i}", "spot": [i, 0]} for i in range(MAX_DRAWN)]}, "at most")]:
        reply = ask(c, {"op": "regions", **request})
        assert reply["ok"] is False and needle in reply["error"], (request, reply)
    assert layout.version == version and list(layout.regions()) == ["door", "bed"]
    assert len(c.refusals) == 10


def test_a_broken_state_file_is_set_aside_and_bad_entries_left_out(tmp_path):
    state = StateFile(tmp_path, "encoder")
    state.save({"regions": [{"name": "ok", "spot": [1, 2]}, {"name": "off", "spot": [500, 2]},
                            {"name": "door", "spot": [3, 3]}, "junk"]})
    layout = Layout({"door": Region("door", 5, 5, 5, 5)}, SENSOR, state)
    assert layout.regions() == {"door": Region("door", 5, 5, 5, 5), "ok": Region("ok", 1, 2, 1, 2)}
    state.path.write_text("{not json")
    assert Layout({}, SENSOR, StateFile(tmp_path, "encoder")).regions() == {}
    assert (tmp_path / "encoder.json.bad").exists()


def test_every_thermal_frame_carries_the_regions_readings():
    pixels = np.full((120, 160), 29315, dtype=np.uint16)  # 20 °C
    pixels[30, 110] = 29315 + 2500  # 45 °C
    regions = {"bed": Region("bed", 100, 20, 119, 39), "cold": Region("cold", 0, 0, 0, 0)}
    meter = Meter(regions=lambda: regions.values())
    raw = wire.Frame(seq=7, t=1.0, sensor="lepton3", pixels=pixels)
    frame = raw.measurement = meter.measure(raw)
    assert frame.regions["bed"] == {"min": 20.0, "max": 45.0, "mean": round(20 + 25 / 400, 2),
                                    "max_xy": [110, 30]}
    assert frame.regions["cold"]["max"] == 20.0
    again = wire.unpack_thermal(wire.pack_thermal(raw)).measurement  # through the wire as it is
    assert again.regions == frame.regions
    regions.pop("cold")  # asked on every frame: a deleted region is gone from the next one
    assert list(meter.measure(raw).regions) == ["bed"]


def test_the_region_list_goes_through_the_status_schema():
    layout = Layout({"door": Region("door", 5, 5, 5, 5)}, SENSOR)
    layout.change(put=[{"name": "bed", "box": [1, 2, 3, 4]}])
    status = wire.unpack_status(wire.pack_status("encoder", "encoding", t=1.0,
                                                 regions=layout.as_list()))
    assert status["regions"] == layout.as_list()
    for bad in ([{"name": "x", "box": [1.5, 2, 3, 4]}], [{"name": "x", "colour": "red"}],
                [{"box": [1, 2, 3, 4]}], [{"name": "x", "spot": [1, 2]}] * (wire.MAX_REGIONS + 1)):
        try:
            wire.pack_status("encoder", "encoding", t=1.0, regions=bad)
        except wire.WireError as exc:
            assert "regions" in str(exc)
        else:
            raise AssertionError(f"accepted {bad!r:.60}")
