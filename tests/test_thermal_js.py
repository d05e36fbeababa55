"""web/thermal.js in real headless Chromium: it decodes flirstream/radiometric.py's payloads exactly and
paints the same picture as the encoder's Renderer (same palette tables, AGC and orientation).

Picture check: PSNR of the browser's canvas (upscaled by drawImage, nearest) against Renderer's
picture before JPEG (`bgr`). Both apply the same 256-entry table to the same 8-bit AGC output, and
thermal.js repeats OpenCV's arithmetic (half-to-even rounding, float32 scaling), so the pictures
should be identical (they are, and the tests check that too). The 50 dB threshold is what one
grey level of difference on a few pixels in a thousand would cost (a palette step is 1-10 levels
per channel; 1 pixel in 1000 off by 10 levels is 58 dB), invisible; a rounding slip that moves
many pixels by a level lands near 70 dB and is caught by the equality check, a wrong table, AGC
or rotation falls far below 50 dB.
"""
from __future__ import annotations

import base64

import numpy as np
import pytest

from capture.sim import SimulatedLepton
from encoder.render import Renderer, orient
from flirstream.testing import StaticSite, tlinear_counts
from flirstream.wire import KELVIN_AT_0C
from flirstream import radiometric

TLINEAR = {"tlinear": True, "kelvin_per_count": 0.01}
MIN_PSNR_DB = 50.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    sim = SimulatedLepton(seed=seed)
    return [sim.scene(i) for i in range(count)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def site():
    s = StaticSite()
    yield s
    s.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 800, "height": 700})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site.url + "/thermal.html")
    page.wait_for_function("window.ready === true", timeout=15_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def browser_decode(page, payload: bytes) -> np.ndarray:
    got = page.evaluate("""async (b64) => {
        const f = await thermal.decode(page.bytes(b64));
        return {rows: f.rows, cols: f.cols,
                pixels: page.base64(new Uint8Array(f.pixels.buffer))};
    }""", b64(payload))
    pixels = np.frombuffer(base64.b64decode(got["pixels"]), "<u2")
    return pixels.reshape(got["rows"], got["cols"])


@pytest.mark.parametrize("frame", [
    frames(1)[0],
    np.random.default_rng(4).integers(0, 65536, (120, 160)).astype(np.uint16),
    np.array([[0, 65535, 0], [65535, 0, 65535]], np.uint16),
    np.random.default_rng(5).integers(2380, 2900, (60, 80)).astype(np.uint16),
])
def test_decoded_values_equal_the_source(page, frame):
    np.testing.assert_array_equal(browser_decode(page, radiometric.encode(frame)), frame)


@pytest.mark.parametrize("step", [3, 5])
def test_a_stepped_payload_decodes_like_pythons(page, step):
    frame = frames(1)[0]
    payload = radiometric.encode(frame, step=step)
    np.testing.assert_array_equal(browser_decode(page, payload), radiometric.decode(payload))


def test_a_bad_payload_is_an_error_naming_it(page):
    message = page.evaluate("""async () => {
        try { await thermal.decode(new Uint8Array([1, 2, 3])); return "decoded"; }
        catch (e) { return e.message; }
    }""")
    assert "shorter than its header" in message


def browser_render(page, payloads: list[bytes], settings: dict, meta: dict, size: tuple[int, int]):
    """Render the payloads in order with one ThermalView; the last one's canvas (RGBA) and every
    frame's range."""
    got = page.evaluate("""async ([payloads, settings, meta, size]) => {
        const view = new thermal.ThermalView(settings);
        const canvas = page.canvas;
        [canvas.width, canvas.height] = size;
        const ranges = [];
        for (const p of payloads) {
            const out = view.render(await thermal.decode(page.bytes(p)), meta);
            thermal.draw(canvas, out.image);
            ranges.push([out.lo, out.hi, out.agc]);
        }
        const rgba = canvas.getContext("2d").getImageData(0, 0, size[0], size[1]).data;
        return {ranges, rgba: page.base64(new Uint8Array(rgba.buffer))};
    }""", [[b64(p) for p in payloads], settings, meta, list(size)])
    rgba = np.frombuffer(base64.b64decode(got["rgba"]), np.uint8).reshape(size[1], size[0], 4)
    return rgba, got["ranges"]


CASES = [  # settings as web/thermal.js takes them (server.conf's [encoder] names)
    {"palette": "ironbow", "agc": "fixed", "range_c": [22.0, 40.0]},
    {"palette": "jet", "agc": "linear", "clip_percent": [1.0, 99.0], "smoothing": 0.8},
    {"palette": "white-hot", "agc": "histogram", "rotate": 90, "flip": "horizontal"},
    {"palette": "contrast", "agc": "linear", "clip_percent": [5.0, 95.0], "smoothing": 0.5,
     "rotate": 270},
    {"palette": "inferno", "agc": "fixed", "range_c": [25.5, 33.3], "rotate": 180, "flip": "both"},
]


@pytest.mark.parametrize("settings", CASES, ids=lambda s: f"{s['palette']}-{s['agc']}")
def test_canvas_matches_the_encoders_rendering(page, settings):
    scene = frames(4, seed=2)
    renderer = Renderer(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    for frame in scene:
        ref = renderer.render_pixels(frame)
    rgb_ref = ref.bgr[..., ::-1]
    rgba, ranges = browser_render(page, [radiometric.encode(f) for f in scene], settings, TLINEAR,
                                  (ref.width, ref.height))
    assert (rgba[..., 3] == 255).all()
    quality = psnr(rgba[..., :3], rgb_ref)
    assert quality >= MIN_PSNR_DB, f"PSNR {quality:.1f} dB"
    lo, hi, agc = ranges[-1]
    assert agc == ref.agc
    assert (lo, hi) == pytest.approx(ref.range, abs=0.006)  # Renderer rounds to 0.01
    # measured: identical in every case (PSNR infinite), so hold it to that as well
    np.testing.assert_array_equal(rgba[..., :3], rgb_ref)


def test_raw_counts_fall_back_to_linear_like_the_encoder(page):
    rng = np.random.default_rng(9)
    frame = (2600 + rng.integers(0, 60, (120, 160))).astype(np.uint16)
    renderer = Renderer(agc="fixed", size=(160, 120))
    ref = renderer.render_pixels(frame, tlinear=False)
    rgba, ranges = browser_render(page, [radiometric.encode(frame)], {"agc": "fixed"},
                                  {"tlinear": False, "kelvin_per_count": 0.01}, (160, 120))
    assert ranges[0][2] == "linear" == ref.agc
    assert psnr(rgba[..., :3], ref.bgr[..., ::-1]) >= MIN_PSNR_DB


def test_temperature_under_a_pixel_follows_rotation(page):
    frame = frames(1, seed=3)[0].copy()
    frame[10, 150] = tlinear_counts(55.55)  # a marked pixel near the top right
    settings = {"rotate": 90, "flip": "vertical"}
    shown = orient(frame, 90, "vertical")
    (y, x), = np.argwhere(shown == frame[10, 150])
    got = page.evaluate("""async ([p, settings, meta, x, y]) => {
        const view = new thermal.ThermalView(settings);
        const out = view.render(await thermal.decode(page.bytes(p)), meta);
        // the pointer at the centre of that pixel, as a fraction of the displayed picture
        const at = thermal.pixelAt(out.frame, (x + 0.5) / out.frame.cols, (y + 0.5) / out.frame.rows);
        return {shape: [out.frame.rows, out.frame.cols], at,
                value: thermal.valueAt(out.frame, at.x, at.y, meta),
                stats: thermal.statistics(out.frame, meta)};
    }""", [b64(radiometric.encode(frame)), settings, TLINEAR, int(x), int(y)])
    assert got["shape"] == [160, 120]
    assert got["at"] == {"x": int(x), "y": int(y)}
    assert got["value"] == pytest.approx(55.55, abs=1e-6)
    ref = Renderer(rotate=90, flip="vertical").render_pixels(frame).stats
    assert got["stats"]["max_xy"] == ref["max_xy"]
    for key in ("min", "max", "mean", "centre"):
        assert got["stats"][key] == pytest.approx(ref[key], abs=0.006)


@pytest.mark.parametrize("isotherm", [
    {"mode": "above", "lo": 30.0, "hi": 0, "colour": [0, 255, 0]},
    {"mode": "below", "lo": 21.0, "hi": 0, "colour": [0, 0, 255]},
    {"mode": "between", "lo": 33.0, "hi": 35.0, "colour": [255, 0, 255]},
])
def test_isotherm_paints_exactly_the_pixels_in_its_range(page, isotherm):
    frame = frames(1, seed=6)[0]
    settings = {"palette": "white-hot", "agc": "fixed", "range_c": [20.0, 40.0]}
    plain = Renderer(palette="white-hot", agc="fixed", range_c=(20.0, 40.0), size=(160, 120))
    ref = plain.render_pixels(frame).bgr[..., ::-1]
    rgba, _ = browser_render(page, [radiometric.encode(frame)], {**settings, "isotherm": isotherm},
                             TLINEAR, (160, 120))
    celsius = frame * 0.01 - KELVIN_AT_0C
    lo, hi = isotherm["lo"], isotherm["hi"]
    hit = {"above": celsius >= lo, "below": celsius <= lo,
           "between": (celsius >= lo) & (celsius <= hi)}[isotherm["mode"]]
    assert 0 < hit.sum() < hit.size  # the case means something
    np.testing.assert_array_equal(rgba[hit][:, :3], np.tile(isotherm["colour"], (int(hit.sum()), 1)))
    np.testing.assert_array_equal(rgba[~hit][:, :3], ref[~hit])


def test_an_unknown_palette_is_refused_when_chosen(page):
    message = page.evaluate("""() => {
        try { new thermal.ThermalView({palette: "no-such"}); return "accepted"; }
        catch (e) { return e.message; }
    }""")
    assert message == "unknown palette no-such"


def test_a_payload_with_a_broken_zlib_stream_is_named(page):
    payload = bytearray(radiometric.encode(frames(1)[0]))
    payload[20:40] = bytes(20)
    message = page.evaluate("""async (b64) => {
        try { await thermal.decode(page.bytes(b64)); return "decoded"; }
        catch (e) { return e.message; }
    }""", b64(bytes(payload)))
    assert message.startswith("radiometric frame: ")


@pytest.mark.parametrize("text,isotherm", [
    ("above 30", {"mode": "above", "lo": 30.0, "hi": None}),
    ("below 21.37", {"mode": "below", "lo": 21.37, "hi": None}),
    ("between 33 35.5", {"mode": "between", "lo": 33.0, "hi": 35.5}),
])
def test_isotherm_equals_the_encoders_pixel_for_pixel(page, text, isotherm):
    """[encoder] isotherm in the encoder's picture (MJPEG, snapshots) and the same view setting in
    the browser mark the same pixels in the same colour, on the same palette underneath."""
    scene = frames(3, seed=8)
    renderer = Renderer(palette="ironbow", agc="linear", isotherm=text, isotherm_colour="ff00ff",
                        rotate=90)
    for frame in scene:
        ref = renderer.render_pixels(frame)
    settings = {"palette": "ironbow", "agc": "linear", "rotate": 90,
                "isotherm": {**isotherm, "colour": [255, 0, 255]}}
    rgba, _ = browser_render(page, [radiometric.encode(f) for f in scene], settings, TLINEAR,
                             (ref.width, ref.height))
    marked = (ref.bgr[..., ::-1] == [255, 0, 255]).all(axis=-1)
    assert 0 < marked.mean() < 1  # the case means something
    np.testing.assert_array_equal(rgba[..., :3], ref.bgr[..., ::-1])
