"""flirstream.regions: [roi:NAME] / [alarm:NAME] parsing, measure(), sensor -> display orientation."""
from __future__ import annotations

import configparser
import json

import numpy as np
import pytest

from conftest import run_script
from encoder.render import Units, orient, statistics
from flirstream.config import ConfigError
from flirstream.wire import KELVIN_AT_0C
from flirstream.regions import (AlarmRule, Region, celsius, counts, from_parser, measure,
                                point_to_display, region_from_dict, to_display)


def parse(text: str, sensor="lepton3"):
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.read_string(text)
    return from_parser(parser, "test.conf", sensor)


def error(text: str, sensor="lepton3") -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, sensor)
    message = str(info.value)
    assert "\n" not in message and message.startswith("test.conf: [")
    return message


def test_spots_boxes_and_alarms_are_read_in_file_order():
    regions, alarms = parse("""
[roi:nozzle]
spot = 100, 20
[roi:bed]
box = 10, 60, 149, 119   ; the print bed
[alarm:nozzle-hot]
roi = nozzle
above = 250
for_s = 5
hysteresis = 2.5
webhook = https://example.org/hook?x=1
[alarm:frozen]
below = -5
""")
    assert list(regions) == ["nozzle", "bed"]
    assert regions["nozzle"] == Region("nozzle", 100, 20, 100, 20) and regions["nozzle"].spot
    assert regions["bed"] == Region("bed", 10, 60, 149, 119) and regions["bed"].kind == "box"
    assert alarms["nozzle-hot"] == AlarmRule("nozzle-hot", "nozzle", "above", 250.0, 5.0, 2.5,
                                             "https://example.org/hook?x=1")
    frozen = alarms["frozen"]
    assert (frozen.roi, frozen.direction, frozen.threshold, frozen.for_s, frozen.hysteresis,
            frozen.webhook, frozen.stat) == (None, "below", -5.0, 0.0, 1.0, None, "min")
    assert regions["bed"].as_dict() == {"name": "bed", "kind": "box", "box": [10, 60, 149, 119]}
    assert regions["nozzle"].as_dict() == {"name": "nozzle", "kind": "spot", "spot": [100, 20]}


def test_coordinates_are_checked_against_the_sensor():
    assert parse("[roi:corner]\nspot = 159, 119\n")[0]["corner"].x1 == 159
    message = error("[roi:corner]\nspot = 160, 119\n")
    assert message == ("test.conf: [roi:corner] spot = '160, 119': expected 'X, Y' with X from 0 to "
                       "159 and Y from 0 to 119 (the 160x120 sensor)")
    assert "from 0 to 79" in error("[roi:corner]\nspot = 80, 10\n", sensor="lepton2")
    assert "[roi:b] box = '10, 10, 5, 20'" in error("[roi:b]\nbox = 10, 10, 5, 20\n")
    assert "[roi:b] box = '0, 0, 10'" in error("[roi:b]\nbox = 0, 0, 10\n")
    assert "[roi:b] box = '0, 0, 10, 120'" in error("[roi:b]\nbox = 0, 0, 10, 120\n")
    assert "[roi:b] spot = 'x, 1'" in error("[roi:b]\nspot = x, 1\n")
    assert "[roi:b] spot = '-1, 1'" in error("[roi:b]\nspot = -1, 1\n")


@pytest.mark.parametrize("text, expected", [
    ("[roi:b]\n", "[roi:b]: expected exactly one of spot"),
    ("[roi:b]\nspot = 1, 1\nbox = 0, 0, 2, 2\n", "[roi:b]: expected exactly one of spot"),
    ("[roi:b]\ncircle = 1, 1, 3\n", "[roi:b] circle: unknown key"),
    ("[roi:two words]\nspot = 1, 1\n", "[roi:two words]: expected a NAME"),
    ("[roi:]\nspot = 1, 1\n", "[roi:]: expected a NAME"),
    ("[alarm:a]\nroi = nowhere\nabove = 3\n", "[alarm:a] roi = 'nowhere': no such region"),
    ("[alarm:a]\nabove = 3\nbelow = 1\n", "[alarm:a]: expected exactly one of above"),
    ("[alarm:a]\nfor_s = 3\n", "[alarm:a]: expected exactly one of above"),
    ("[alarm:a]\nabove = hot\n", "[alarm:a] above = 'hot': expected degrees C"),
    ("[alarm:a]\nbelow = nan\n", "[alarm:a] below = 'nan': expected degrees C"),
    ("[alarm:a]\nabove = -300\n", "[alarm:a] above = '-300': expected degrees C"),
    ("[alarm:a]\nabove = 3\nfor_s = -1\n", "[alarm:a] for_s = '-1': expected a number from 0"),
    ("[alarm:a]\nabove = 3\nhysteresis = lots\n", "[alarm:a] hysteresis = 'lots': expected a number"),
    ("[alarm:a]\nabove = 3\nwebhook = ftp://h/x\n", "[alarm:a] webhook = 'ftp://h/x': expected an http"),
    ("[alarm:a]\nabove = 3\nwebhook = http://\n", "[alarm:a] webhook = 'http://': expected an http"),
    ("[alarm:a]\nabove = 3\nemail = me@example.org\n", "[alarm:a] email: unknown key"),
])
def test_every_bad_section_gets_one_line_naming_it(text, expected):
    assert expected in error(text)


def test_an_unknown_key_in_a_region_or_alarm_is_named_without_its_value():
    # A misspelt `webhok = http://ha/api/webhook/SECRET` must not print the webhook's secret id.
    for text in ("[roi:b]\nspot = 1, 1\nsecret = Hunter2\n",
                 "[alarm:a]\nabove = 3\nwebhok = http://ha:8123/api/webhook/Hunter2\n"):
        message = error(text)
        assert "unknown key" in message and "Hunter2" not in message, message


def test_regions_from_the_viewer_are_checked_like_the_file():
    for region in (Region("a", 1, 2, 1, 2), Region("b", 0, 0, 159, 119)):
        assert region_from_dict(region.as_dict(), (160, 120)) == region
    for data, expected in [
            ({"name": "a", "spot": [160, 2]}, "viewer: [roi:a] spot = '160, 2': expected 'X, Y'"),
            ({"name": "a", "box": [1, 2, 3]}, "viewer: [roi:a] box = '1, 2, 3': expected"),
            ({"name": "a", "box": [1, 2, 3, "4"]}, "viewer: [roi:a] box = [1, 2, 3, '4']: expected a"),
            ({"name": "a b", "spot": [1, 2]}, "viewer: [roi:a b]: expected a NAME"),
            ({"name": "a"}, "viewer: [roi:a]: expected exactly one of"),
            (["a"], "viewer: expected {"), ({"spot": [1, 2]}, "viewer: expected {")]:
        with pytest.raises(ConfigError) as info:
            region_from_dict(data, (160, 120), "viewer")
        assert str(info.value).startswith(expected), str(info.value)


def test_alarm_on_a_region_defined_later_in_the_file_is_fine():
    regions, alarms = parse("[alarm:a]\nroi = late\nabove = 30\n[roi:late]\nspot = 1, 2\n")
    assert alarms["a"].roi == "late" and "late" in regions


def test_measure_matches_the_pixels_and_the_encoders_statistics():
    rng = np.random.default_rng(5)
    pixels = rng.integers(29000, 31000, (120, 160), dtype=np.uint16)
    pixels[30, 50] = 40000  # the hottest pixel, inside "box"
    regions = [Region("box", 40, 20, 70, 45), Region("spot", 3, 4, 3, 4),
               Region("all", 0, 0, 159, 119)]
    reading = measure(pixels, regions, celsius(0.01))
    box = pixels[20:46, 40:71].astype(np.float64)
    assert reading["regions"]["box"] == {
        "min": round(box.min() * 0.01 - KELVIN_AT_0C, 2), "max": round(40000 * 0.01 - KELVIN_AT_0C, 2),
        "mean": round(box.mean() * 0.01 - KELVIN_AT_0C, 2), "max_xy": [50, 30]}
    spot = round(pixels[4, 3] * 0.01 - KELVIN_AT_0C, 2)
    assert reading["regions"]["spot"] == {"min": spot, "max": spot, "mean": spot, "max_xy": [3, 4]}
    # the frame's readings agree with what the encoder puts in every frame's stats
    stats = statistics(pixels, Units(True, 0.01))
    assert reading["frame"] == {"min": stats["min"], "max": stats["max"], "centre": stats["centre"]}
    whole = reading["regions"]["all"]
    assert (whole["min"], whole["max"], whole["mean"], whole["max_xy"]) == (
        stats["min"], stats["max"], stats["mean"], stats["max_xy"])
    json.dumps(reading)  # plain JSON types only


def test_measure_raw_counts_and_regions_beyond_a_smaller_frame():
    pixels = np.arange(80 * 60, dtype=np.uint16).reshape(60, 80)
    reading = measure(pixels, [Region("edge", 70, 50, 159, 119), Region("gone", 100, 70, 120, 80)],
                      counts)
    assert "gone" not in reading["regions"]
    assert reading["regions"]["edge"] == {"min": float(pixels[50, 70]), "max": float(pixels[59, 79]),
                                          "mean": float(pixels[50:, 70:].mean()), "max_xy": [79, 59]}
    assert reading["frame"]["max"] == 80 * 60 - 1


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
@pytest.mark.parametrize("flip", ["none", "horizontal", "vertical", "both"])
def test_display_orientation_matches_the_encoders_orient(rotate, flip):
    sensor = (160, 120)
    for x, y in [(0, 0), (159, 0), (3, 117), (100, 20), (159, 119)]:
        frame = np.zeros((120, 160), np.uint16)
        frame[y, x] = 1
        shown = orient(frame, rotate, flip)
        dy, dx = np.argwhere(shown == 1)[0]
        assert point_to_display(x, y, sensor, rotate, flip) == (dx, dy)
    region = Region("b", 10, 20, 40, 30)
    frame = np.zeros((120, 160), np.uint16)
    frame[20:31, 10:41] = 1
    shown = orient(frame, rotate, flip)
    turned = to_display(region, sensor, rotate, flip)
    # the turned box covers exactly the turned pixels, so measuring either way gives the same
    assert shown[turned.y0:turned.y1 + 1, turned.x0:turned.x1 + 1].all()
    assert shown.sum() == (turned.x1 - turned.x0 + 1) * (turned.y1 - turned.y0 + 1)


def test_bench_measure_quick_writes_its_figures(tmp_path):
    out = tmp_path / "measure.json"
    proc = run_script("bench_measure.py", "--quick", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "us per frame" in proc.stdout and str(out) in proc.stdout
    data = json.loads(out.read_text())
    assert data["measure_us"] > data["frame_only_us"] > 0 and data["setup"]["regions"] == 10
    assert data["monitor_us"] > 0 and "alarm" not in proc.stderr


def tjsn(path, pixels: np.ndarray, spot: list[int]) -> None:
    """A tCam-style .tjsn file: the frame and telemetry with the spotmeter words set."""
    import base64
    telemetry = np.zeros(240, "<u2")
    telemetry[210:218] = spot
    path.write_text(json.dumps({"radiometric": base64.b64encode(pixels.astype("<u2").tobytes()).decode(),
                                "telemetry": base64.b64encode(telemetry.tobytes()).decode()}))


def test_check_spotmeter_compares_measure_with_the_cameras_own_spotmeter(tmp_path):
    # On the real fox.tjsn (Lepton 3.5, ../shared/realdata) the camera's spotmeter over rows 59-60,
    # columns 79-80 said mean/max/min 26640/26666/26607 and measure() gives 26640.5/26666/26607.
    pixels = np.full((120, 160), 29000, np.uint16)
    pixels[59:61, 79:81] = [[26607, 26666], [26640, 26649]]  # mean 26640.5: the camera truncates
    tjsn(tmp_path / "same.tjsn", pixels, [26640, 26666, 26607, 4, 59, 79, 60, 80])
    tjsn(tmp_path / "off.tjsn", pixels, [26640, 26666, 26607, 4, 59, 80, 60, 81])  # ROI moved
    same = run_script("check_spotmeter.py", tmp_path / "same.tjsn")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "26666/26607/26640, measure 26666/26607/26640.5" in same.stdout and "same" in same.stdout
    off = run_script("check_spotmeter.py", tmp_path / "same.tjsn", tmp_path / "off.tjsn",
                     tmp_path / "missing.tjsn")
    assert off.returncode == 1
    lines = off.stdout.splitlines()
    assert lines[0].endswith("same") and lines[1].endswith("DIFFERENT")
    assert "missing.tjsn: cannot read it as a tCam .tjsn file" in lines[2]
