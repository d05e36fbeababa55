"""The encoder's core (encoder.render.Renderer) on constructed frames: AGC, fixed ranges,
orientation, statistics, scaling, settings changes and bad input. No sockets."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from encoder import agc, palettes
from encoder.render import Renderer, paint, scale
from flirstream import config
from flirstream.config import AGCS, PALETTES, ConfigError
from flirstream.wire import Frame
from flirstream.testing import tlinear_counts
from flirstream.wire import KELVIN_AT_0C


def scene(rows: int = 120, cols: int = 160, seed: int = 1) -> np.ndarray:
    """A 20..30 °C gradient with a little sensor noise (TLinear)."""
    rng = np.random.default_rng(seed)
    celsius = 20 + 10 * np.arange(cols)[None, :] / (cols - 1) + np.zeros((rows, 1))
    return tlinear_counts(celsius + rng.normal(0, 0.03, (rows, cols)))


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image


# ---------------------------------------------------------------- AGC

def test_fixed_range_maps_celsius_to_the_expected_colour():
    # four 40x30 blocks at 10, 25, 40 and 50 °C; range 20..40 °C
    temps = np.array([[10.0, 25.0], [40.0, 50.0]])
    frame = tlinear_counts(np.kron(temps, np.ones((30, 40))))
    r = Renderer(palette="ironbow", agc="fixed", range_c=(20, 40), size=(80, 60), quality=95)
    jpeg = r.render(frame)
    table = palettes.lut("ironbow")[:, 0]
    expected = {(0, 0): 0, (0, 1): round(5 / 20 * 255), (1, 0): 255, (1, 1): 255}  # clipped ends
    picture = decode(jpeg)
    for (by, bx), index in expected.items():
        y, x = by * 30 + 15, bx * 40 + 20
        assert r.last.bgr[y, x].tolist() == table[index].tolist(), (by, bx)
        assert np.abs(picture[y, x].astype(int) - table[index]).max() <= 8, (by, bx)
    assert r.last.range == (20.0, 40.0) and r.last.unit == "C" and r.last.agc == "fixed"


def test_fixed_range_respects_kelvin_per_count():
    frame = np.full((60, 80), tlinear_counts(30, 0.1), np.uint16)  # 30 °C at 0.1 K per count
    r = Renderer(palette="white-hot", agc="fixed", range_c=(20, 40), size=(80, 60))
    r.render(frame, kelvin_per_count=0.1)
    assert abs(int(r.last.bgr[30, 40, 0]) - 128) <= 1
    assert r.last.stats["mean"] == pytest.approx(30.0, abs=0.06)


def test_fixed_on_raw_counts_falls_back_to_linear_and_says_so_once(caplog):
    r = Renderer(agc="fixed", smoothing=0)
    with caplog.at_level(logging.WARNING, logger="encoder.render"):
        for _ in range(3):
            r.render(np.tile(np.arange(7000, 7160, dtype=np.uint16), (120, 1)), tlinear=False)
    assert r.last.agc == "linear" and r.last.unit == "counts"
    warnings = [rec for rec in caplog.records if "fixed" in rec.getMessage()]
    assert len(warnings) == 1 and "TLinear" in warnings[0].getMessage()


def test_histogram_agc_spans_the_whole_palette_on_a_ramp():
    ramp = np.arange(30000, 30000 + 160 * 120, dtype=np.uint16).reshape(120, 160)
    gray, lo, hi = agc.HistogramAGC()(ramp)
    assert gray.min() == 0 and gray.max() == 255
    assert (lo, hi) == (30000, 30000 + 160 * 120 - 1)
    # equalised: every index gets about the same number of pixels
    counts = np.bincount(gray.ravel(), minlength=256)
    assert counts[1:255].max() - counts[1:255].min() <= 1  # (the ends get half a step each)


def test_histogram_agc_spreads_a_skewed_scene():
    # 95% of the frame within 0.5 °C, a few hot pixels far away: linear would squash the scene
    frame = np.tile(tlinear_counts(20) + np.arange(160, dtype=np.uint16) // 3, (120, 1))
    frame[:6, :] = tlinear_counts(80)
    gray, _, _ = agc.HistogramAGC()(frame)
    assert len(np.unique(gray[6:])) > 40 and gray[6:].max() > 200


def test_linear_clip_ignores_one_hot_pixel():
    frame = scene()
    frame[60, 80] = tlinear_counts(200)
    r = Renderer(agc="linear", clip_percent=(1, 99), smoothing=0)
    r.render(frame)
    lo, hi = r.last.range
    assert 19.5 < lo < 21 and 29 < hi < 30.5  # the scene's range, not 200 °C
    assert r.last.stats["max"] == pytest.approx(200.0, abs=0.01)  # statistics still see it
    gray, _, _ = agc.LinearAGC((1, 99), 0)(frame)
    assert gray[:, :5].mean() < 10 and gray[:, -5:].mean() > 245  # full contrast kept

    plain = Renderer(agc="linear", clip_percent=(0, 100), smoothing=0)
    plain.render(frame)
    assert plain.last.range[1] == pytest.approx(200.0, abs=0.01)  # without clipping it would flatten


def test_percentiles_match_numpy_nearest_rank():
    rng = np.random.default_rng(5)
    frame = rng.integers(20000, 40000, (120, 160)).astype(np.uint16)
    lo, hi = agc.percentiles(frame, 1, 99)
    assert (lo, hi) == tuple(float(v) for v in np.percentile(frame, [1, 99], method="nearest"))


def test_linear_range_is_smoothed_over_frames():
    r = Renderer(agc="linear", clip_percent=(0, 100), smoothing=0.8)
    r.render(tlinear_counts(np.tile(np.linspace(20, 30, 160), (120, 1))))
    assert r.last.range == pytest.approx((20.0, 30.0), abs=0.02)
    r.render(tlinear_counts(np.tile(np.linspace(20, 40, 160), (120, 1))))
    assert r.last.range[1] == pytest.approx(0.8 * 30 + 0.2 * 40, abs=0.02)  # moves, not jumps
    for _ in range(40):
        r.render(tlinear_counts(np.tile(np.linspace(20, 40, 160), (120, 1))))
    assert r.last.range[1] == pytest.approx(40.0, abs=0.05)
    r.restart()  # e.g. after a pause: the next frame's range is taken as it is
    r.render(tlinear_counts(np.tile(np.linspace(10, 20, 160), (120, 1))))
    assert r.last.range == pytest.approx((10.0, 20.0), abs=0.02)


def test_flat_frame_is_mid_palette_not_noise():
    r = Renderer(palette="white-hot", agc="linear", smoothing=0)
    r.render(np.full((120, 160), tlinear_counts(22), np.uint16))
    assert 100 < r.last.bgr.mean() < 156
    r.update(agc="histogram")
    r.render(np.full((120, 160), tlinear_counts(22), np.uint16))
    assert r.last.bgr.mean() == 128


# ---------------------------------------------------------------- orientation and statistics

def _expected_xy(x: int, y: int, w: int, h: int, rotate: int, flip: str) -> tuple[int, int]:
    for _ in range(rotate // 90):  # clockwise quarter turns
        x, y, w, h = h - 1 - y, x, h, w
    if flip in ("horizontal", "both"):
        x = w - 1 - x
    if flip in ("vertical", "both"):
        y = h - 1 - y
    return x, y


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
@pytest.mark.parametrize("flip", ["none", "horizontal", "vertical", "both"])
def test_rotation_and_flip_move_a_marked_pixel(rotate, flip):
    frame = np.full((120, 160), tlinear_counts(20), np.uint16)
    frame[5, 10] = tlinear_counts(60)  # hot marker at x=10, y=5
    frame[100, 150] = tlinear_counts(0)  # cold marker at x=150, y=100
    r = Renderer(palette="white-hot", agc="fixed", range_c=(10, 50), rotate=rotate, flip=flip)
    r.render(frame)
    hot = _expected_xy(10, 5, 160, 120, rotate, flip)
    cold = _expected_xy(150, 100, 160, 120, rotate, flip)
    assert tuple(r.last.stats["max_xy"]) == hot and tuple(r.last.stats["min_xy"]) == cold
    assert r.last.pixels[hot[1], hot[0]] == tlinear_counts(60)
    sideways = rotate in (90, 270)
    assert (r.last.width, r.last.height) == ((480, 640) if sideways else (640, 480))
    # in the picture the marker is the white 4x4 block at 4x its position
    ys, xs = np.nonzero(r.last.bgr[:, :, 0] == 255)
    assert (xs.min() // 4, ys.min() // 4) == hot and len(xs) == 16
    picture = decode(r.render(frame))
    assert picture.shape[:2] == (r.last.height, r.last.width)
    assert picture[hot[1] * 4 + 1, hot[0] * 4 + 1].mean() > 150


def test_statistics_in_celsius_from_kelvin_times_100():
    frame = np.full((120, 160), 29315, np.uint16)  # 20.00 °C
    frame[2, 3] = 31315   # 40.00 °C at x=3, y=2
    frame[9, 7] = 27315   # 0.00 °C at x=7, y=9
    frame[59:61, 79:81] = 30815  # 35.00 °C under the centre spot (2x2 middle of an even frame)
    r = Renderer()
    r.render(frame)
    s = r.last.stats
    assert s["max"] == 40.0 and s["min"] == 0.0 and s["centre"] == 35.0
    assert s["max_xy"] == [3, 2] and s["min_xy"] == [7, 9]
    expected_mean = frame.astype(np.float64).mean() / 100 - KELVIN_AT_0C
    assert s["mean"] == pytest.approx(expected_mean, abs=0.005)
    assert r.last.unit == "C"


def test_statistics_in_counts_without_tlinear():
    frame = np.full((60, 80), 8000, np.uint16)
    frame[10, 20] = 9000
    r = Renderer()
    r.render(frame, tlinear=False)
    s = r.last.stats
    assert r.last.unit == "counts" and s["max"] == 9000.0 and s["min"] == 8000.0
    assert s["max_xy"] == [20, 10]
    assert (r.last.width, r.last.height) == (320, 240)  # auto: 4x a Lepton 2
    lo, hi = r.last.range  # 99% of the frame is 8000: the range is widened around it
    assert lo < 8000 < hi and hi - lo == agc.MIN_SPAN


def test_render_frame_takes_a_raw_frame():
    raw = Frame(seq=7, t=1.0, sensor="lepton3", pixels=scene(), tlinear=True,
                kelvin_per_count=0.01)
    result = Renderer(size=(320, 240)).render_frame(raw)
    assert decode(result.jpeg).shape == (240, 320, 3)
    assert 19 < result.stats["min"] < result.stats["max"] < 31


# ---------------------------------------------------------------- scaling

@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic", "area", "lanczos"])
def test_every_interpolation_gives_the_requested_size(interpolation):
    r = Renderer(interpolation=interpolation, size=(500, 300))
    assert decode(r.render(scene())).shape == (300, 500, 3)


def test_whole_number_nearest_scaling_equals_opencv_resize():
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for size in [(640, 480), (320, 480), (160, 360), (800, 600)]:
        expected = cv2.resize(bgr, size, interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(scale(bgr, size, "nearest"), expected), size


@pytest.mark.parametrize("palette", ["ironbow", "jet"])
def test_painting_equals_colouring_then_opencv_resize(palette):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    coloured = cv2.applyColorMap(gray, palettes.lut(palette))
    # 1x, 2x and 4x wide take the one-LUT widening path; 3x and 5x the general one
    for size in [(160, 120), (320, 240), (640, 480), (640, 120), (320, 600), (480, 360), (800, 600),
                 (300, 200)]:
        expected = cv2.resize(coloured, size, interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(paint(gray, palette, size, "nearest"), expected), size
    assert paint(gray, palette, (640, 480), "linear").shape == (480, 640, 3)


# ---------------------------------------------------------------- settings

def test_from_config_section():
    cfg = config.loads("[encoder]\npalette = jet\nagc = histogram\nsize = 320x240\nquality = 60\n")
    r = Renderer.from_settings(cfg.encoder)
    assert r.settings["palette"] == "jet" and r.settings["size"] == (320, 240)
    assert decode(r.render(scene())).shape == (240, 320, 3)
    assert r.last.palette == "jet" and r.last.agc == "histogram"


def test_update_is_all_or_nothing_with_the_reason():
    r = Renderer()
    with pytest.raises(ConfigError, match=r"\[encoder\] quality = '500': expected an integer"):
        r.update(palette="jet", quality="500")
    assert r.settings["palette"] == "ironbow" and r.settings["quality"] == 80
    with pytest.raises(ConfigError, match="palette = 'purple': expected one of ironbow"):
        r.update(palette="purple")
    with pytest.raises(ConfigError, match="unknown key"):
        r.update(colour="red")
    with pytest.raises(ConfigError, match="expected a string"):
        r.update(palette={"name": "jet"})
    r.render(scene())
    assert r.last.palette == "ironbow"


def test_update_takes_text_numbers_and_lists():
    r = Renderer()
    r.update(palette="jet", quality=50, range_c=[10, 30.5], size=[320, 240], rotate=90,
             smoothing=0)
    assert r.settings_text() == {
        "palette": "jet", "agc": "linear", "clip_percent": "1, 99", "smoothing": "0",
        "range_c": "10, 30.5", "size": "320x240", "interpolation": "nearest", "rotate": "90",
        "flip": "none", "quality": "50", "isotherm": "off", "isotherm_colour": "00ff00"}
    r.update(**r.settings_text())  # what get answers can be sent back unchanged
    assert r.settings["range_c"] == (10.0, 30.5)
    r.update(size=None)
    assert r.settings["size"] is None
    r.render(scene())
    assert (r.last.width, r.last.height) == (480, 640)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((120, 160), np.float32), "uint16"),
    (np.zeros((120, 160, 3), np.uint16), "2-D"),
    (np.zeros((0, 160), np.uint16), "shape"),
    ([[1, 2], [3, 4]], "numpy"),
])
def test_bad_frames_are_refused_with_a_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        Renderer().render(bad)


@pytest.mark.parametrize("kpc", [0.0, -0.01, float("nan"), float("inf")])
def test_bad_kelvin_per_count_is_refused(kpc):
    with pytest.raises(ValueError, match="kelvin_per_count"):
        Renderer(agc="fixed").render(scene(), kelvin_per_count=kpc)


def test_auto_size_stays_within_the_largest_allowed_picture():
    r = Renderer(quality=30)
    r.render(np.zeros((1200, 1600), np.uint16), tlinear=False)
    assert (r.last.width, r.last.height) == (3200, 2400)  # 2x, not 4x
    r.render(np.zeros((1000, 4000), np.uint16), tlinear=False)
    assert (r.last.width, r.last.height) == (4000, 1000)  # 1x


# ---------------------------------------------------------------- any frame, any settings

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
           lambda shape: arrays(np.uint16, shape)),
       palette=st.sampled_from(PALETTES), mode=st.sampled_from(AGCS),
       rotate=st.sampled_from([0, 90, 180, 270]),
       flip=st.sampled_from(["none", "horizontal", "vertical", "both"]),
       interpolation=st.sampled_from(["nearest", "linear", "cubic", "area", "lanczos"]),
       size=st.one_of(st.none(), st.tuples(st.integers(16, 200), st.integers(16, 200))),
       tlinear=st.booleans(), kpc=st.sampled_from([0.01, 0.1]))
def test_any_frame_with_any_settings_gives_a_consistent_picture(
        frame, palette, mode, rotate, flip, interpolation, size, tlinear, kpc):
    r = Renderer(palette=palette, agc=mode, rotate=rotate, flip=flip,
                 interpolation=interpolation, size=size, quality=50)
    picture = decode(r.render(frame, tlinear=tlinear, kelvin_per_count=kpc))
    result = r.last
    rows, cols = frame.shape[::-1] if rotate in (90, 270) else frame.shape
    assert result.pixels.shape == (rows, cols)
    assert np.array_equal(np.sort(result.pixels, axis=None), np.sort(frame, axis=None))
    expected = size or (cols * 4, rows * 4)
    assert picture.shape == (expected[1], expected[0], 3)
    assert (result.width, result.height) == expected
    s = result.stats
    assert s["min"] <= s["mean"] <= s["max"] and s["min"] <= s["centre"] <= s["max"]
    (x0, y0), (x1, y1) = s["min_xy"], s["max_xy"]
    assert result.pixels[y0, x0] == frame.min() and result.pixels[y1, x1] == frame.max()
    assert result.range[0] <= result.range[1]
    assert result.unit == ("C" if tlinear else "counts")


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 1), (4, 1), (1, 4), (2, 2), (1, 5)])
@pytest.mark.parametrize("mode", AGCS)
def test_frames_of_four_pixels_or_fewer_render(shape, mode):
    # OpenCV reads an array of <= 4 elements as a scalar; the AGCs must not trip over that.
    frame = (np.arange(np.prod(shape), dtype=np.uint16).reshape(shape) * 7 + 29_300)
    r = Renderer(agc=mode, quality=50)
    picture = decode(r.render(frame, tlinear=True))
    assert picture.shape == (shape[0] * 4, shape[1] * 4, 3)
    assert r.last.stats["max"] == pytest.approx(frame.max() * 0.01 - KELVIN_AT_0C, abs=0.01)


@pytest.mark.parametrize("isotherm,hit", [
    ("above 40", lambda c: c >= 40), ("below 21", lambda c: c <= 21),
    ("between 30 35", lambda c: (c >= 30) & (c <= 35)), ("off", lambda c: np.zeros_like(c, bool)),
])
def test_isotherm_paints_its_pixels_at_sensor_resolution_before_scaling(isotherm, hit):
    frame = np.full((12, 16), tlinear_counts(25.0), np.uint16)
    frame[2:4, 3:6] = tlinear_counts(45.0)
    frame[7, 1:9] = tlinear_counts(32.5)
    frame[9:11, 10:14] = tlinear_counts(18.0)
    plain = Renderer(palette="white-hot", agc="fixed", range_c=(15.0, 50.0), size=(64, 48))
    marked = Renderer(palette="white-hot", agc="fixed", range_c=(15.0, 50.0), size=(64, 48),
                      isotherm=isotherm, isotherm_colour="#ff0080")
    ref = plain.render_pixels(frame).bgr
    got = marked.render_pixels(frame).bgr
    mask = np.repeat(np.repeat(hit(frame * 0.01 - KELVIN_AT_0C), 4, axis=0), 4, axis=1)
    assert (got[mask] == [128, 0, 255]).all()  # BGR of #ff0080, whole 4x4 blocks
    np.testing.assert_array_equal(got[~mask], ref[~mask])
    assert marked.settings_text()["isotherm"] == isotherm
    assert marked.settings_text()["isotherm_colour"] == "ff0080"


def test_isotherm_marks_nothing_on_raw_counts():
    frame = np.full((12, 16), 30000, np.uint16)
    renderer = Renderer(isotherm="above -100", size=(32, 24))
    ref = Renderer(size=(32, 24)).render_pixels(frame, tlinear=False).bgr
    np.testing.assert_array_equal(renderer.render_pixels(frame, tlinear=False).bgr, ref)


def test_isotherm_is_a_setting_changed_at_run_time():
    renderer = Renderer()
    assert renderer.settings_text()["isotherm"] == "off"
    renderer.update(isotherm="between 30.5 40", isotherm_colour="#0000FF")
    assert renderer.settings_text()["isotherm"] == "between 30.5 40"
    assert renderer.settings_text()["isotherm_colour"] == "0000ff"
    with pytest.raises(ConfigError, match="isotherm"):
        renderer.update(isotherm="above hot")
    assert renderer.settings_text()["isotherm"] == "between 30.5 40"


@pytest.mark.parametrize("meaning, values", [("agc_8bit", (0, 255)), ("raw_counts", (7000, 9000))])
def test_frames_that_are_not_temperatures_render_as_counts(meaning, values):
    """The camera's AGC output and raw counts are relative values: no degrees in unit, range or
    stats, whatever the AGC."""
    lo, hi = values
    pixels = np.linspace(lo, hi, 120 * 160).reshape(120, 160).astype(np.uint16)
    for mode in ("linear", "histogram", "fixed"):
        out = Renderer(agc=mode, size=(160, 120)).render_frame(
            Frame(seq=1, t=0.0, sensor="lepton3", pixels=pixels, tlinear=False, meaning=meaning))
        assert out.unit == "counts", mode
        assert lo <= out.stats["min"] <= out.stats["max"] <= hi, (mode, out.stats)
