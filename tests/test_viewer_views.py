"""Each viewer its own view (issue 15), in real headless Chromium against real encoder and server
processes: one page's palette / range / isotherm leave another page's picture alone; a new page
starts from the server's defaults; the owner's "make default" reaches new pages and MJPEG; and the
bytes per frame the real viewer receives over its websocket, measured through the browser's own
network events (CDP Network.webSocketFrameReceived), on a replay of a real Lepton 3 recording and on
the simulator.
"""
from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_script, write_config
from encoder.palettes import lut
from encoder.render import Renderer
from flirstream import wire
from flirstream.testing import StandInCapture, tlinear_counts
from server_support import read_mjpeg_parts

import viewer_support as viewer  # the viewer tests' helpers (wait_for_frames, start_server, ...)

ROWS, COLS = 120, 160
WAIT_MS = 15_000
HOT = (100, 20, 120, 40)  # x0, y0, x1, y1 of a 45 degrees C square
GOAL_BYTES = 15_000  # per frame, on average (issue 15)
REALDATA = Path(__file__).resolve().parents[2] / "shared/realdata/cacophony-v2.cptv"


def still_scene() -> np.ndarray:
    """The same frame every time: a left-to-right ramp 20..36 degrees C and a 45 degrees C square, so
    a page's picture changes only when its view does."""
    ramp = np.linspace(20.0, 36.0, COLS)[None, :].repeat(ROWS, axis=0)
    pixels = tlinear_counts(ramp)
    x0, y0, x1, y1 = HOT
    pixels[y0:y1, x0:x1] = tlinear_counts(45.0)
    return pixels


def new_page(browser, url: str, errors: list):
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    viewer.wait_for_frames(page)
    return page


@pytest.fixture
def pages(browser):
    """new(url) -> a page that shows frames; all closed after the test, with no JavaScript errors."""
    opened, errors = [], []

    def new(url: str):
        page = new_page(browser, url, errors)
        opened.append(page)
        return page

    yield new
    for page in opened:
        page.context.close()
    assert not errors, f"JavaScript errors on the pages: {errors}"


@pytest.fixture
def still(tmp_path, stages):
    """start(encoder settings, server settings) -> (config, url): the still camera, a real encoder
    and a real server."""
    cameras = []

    def start(encoder: dict = None, server: dict = None):
        config = write_config(tmp_path, encoder=encoder or {}, server=server or {})
        pixels = still_scene()
        cameras.append(StandInCapture(viewer.setting(config, "endpoints", "frames"),
                                      lambda seq: pixels, fps=15))
        url = f"http://127.0.0.1:{viewer.setting(config, 'server', 'port')}/"
        stages("encoder", config)
        viewer.start_server(stages, config, url)
        return config, url

    yield start
    for camera in cameras:
        camera.stop()


CANVAS = """() => {
  const c = document.getElementById('view');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return h;
}"""


def canvas_hash(page) -> int:
    return page.evaluate(CANVAS)


def next_frames(page, n: int = 2) -> None:
    viewer.wait_for_frames(page, after=viewer.shown_seq(page) + n - 1)


def hot_rgb(page) -> list:
    x0, y0, x1, y1 = HOT
    return [round(v) for v in viewer.canvas_rgb(page, (x0 + x1) / 2, (y0 + y1) / 2)]


def test_one_pages_view_changes_nothing_on_another_page(still, pages):
    _, url = still(encoder={"palette": "ironbow"})
    a, b = pages(url), pages(url)
    for page in (a, b):
        next_frames(page)
    before_b, before_a = canvas_hash(b), canvas_hash(a)
    assert canvas_hash(b) == before_b  # a still scene: the same picture frame after frame

    a.select_option("#palette", "jet")
    viewer.wait_for_palette(a, "jet")
    a.fill("#range-lo", "22")
    a.fill("#range-hi", "30")
    a.click("#range-apply")
    a.wait_for_function("document.getElementById('bar-hi').textContent === '30.0\u202f°C'",
                        timeout=WAIT_MS)
    a.select_option("#iso-mode", "above")
    a.fill("#iso-lo", "40")
    a.click("#iso-apply")
    a.wait_for_function(f"""() => {{ const f = {viewer.CANVAS_RGB};
        const [r, g, b] = f([{(HOT[0] + HOT[2]) / 2 + 0.5} / {COLS}, {(HOT[1] + HOT[3]) / 2 + 0.5} / {ROWS}]);
        return r < 5 && g > 250 && b < 5; }}""", timeout=WAIT_MS)  # the square is isotherm green
    assert canvas_hash(a) != before_a

    next_frames(b, 3)  # b kept streaming all along, and its picture is what it was
    assert canvas_hash(b) == before_b
    assert b.input_value("#palette") == "ironbow" and b.input_value("#agc") == "linear"
    assert hot_rgb(b) != [0, 255, 0]

    # a's view is its own across a reload (localStorage), until it resets to the defaults
    a.reload()
    viewer.wait_for_frames(a)
    viewer.wait_for_palette(a, "jet")
    assert a.input_value("#agc") == "fixed" and a.input_value("#iso-mode") == "above"
    a.click("#view-reset")
    viewer.wait_for_palette(a, "ironbow")
    next_frames(a)
    assert canvas_hash(a) == before_b  # exactly what the other page shows: the defaults
    assert a.input_value("#iso-mode") == "off"


def test_pointer_reads_the_pixel_under_it_in_this_pages_own_orientation(still, pages):
    _, url = still()
    page = pages(url)
    page.click("#rotate")  # this page only: 90 degrees clockwise, the picture is 120 x 160
    page.wait_for_function("document.getElementById('st-size').textContent === '120×160'",
                           timeout=WAIT_MS)
    scene = still_scene()
    for x, y in ((30, 100), (150, 5), (110, 30)):  # raw (x, y) -> shown (rows - 1 - y, x)
        box = page.locator("#view").bounding_box()
        sx, sy = ROWS - 1 - y, x
        page.mouse.move(box["x"] + (sx + 0.5) / ROWS * box["width"],
                        box["y"] + (sy + 0.5) / COLS * box["height"])
        want = scene[y, x] * 0.01 - wire.KELVIN_AT_0C  # within one count: 0.01 K frames go in steps of 3
        page.wait_for_function(
            f"Math.abs(Number(document.getElementById('spot').dataset.value) - {want}) < 0.01 + 1e-6",
            timeout=WAIT_MS)


def mjpeg_picture(port: int) -> np.ndarray:
    _, parts = read_mjpeg_parts(port, 3)
    return cv2.imdecode(np.frombuffer(parts[-1], np.uint8), cv2.IMREAD_COLOR)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def reference(**settings) -> np.ndarray:
    renderer = Renderer(**settings)
    for _ in range(30):  # the linear AGC settles on the still scene
        picture = renderer.render_pixels(still_scene()).bgr
    return picture


def test_new_pages_get_the_servers_defaults_and_follow_the_owners_new_default(still, pages):
    config, url = still(encoder={"palette": "white-hot", "isotherm": "above 40",
                                 "isotherm_colour": "ff00ff"},
                        server={"control_token": "steer"})
    port = int(viewer.setting(config, "server", "port"))
    page = pages(url)
    viewer.wait_for_palette(page, "white-hot")
    assert page.input_value("#palette") == "white-hot" and page.input_value("#iso-mode") == "above"
    page.wait_for_function(f"""() => {{ const f = {viewer.CANVAS_RGB};
        const [r, g, b] = f([{(HOT[0] + HOT[2]) / 2 + 0.5} / {COLS}, {(HOT[1] + HOT[3]) / 2 + 0.5} / {ROWS}]);
        return r > 250 && g < 5 && b > 250; }}""", timeout=WAIT_MS)  # the default isotherm
    # MJPEG shows the same defaults, isotherm included (painted by the encoder)
    white = reference(palette="white-hot", isotherm="above 40", isotherm_colour="ff00ff")
    picture = mjpeg_picture(port)
    assert psnr(picture, white) > 30
    x0, y0, x1, y1 = HOT
    assert np.abs(picture[(y0 + 5) * 4:(y1 - 5) * 4, (x0 + 5) * 4:(x1 - 5) * 4].astype(int)
                  - [255, 0, 255]).max() < 40  # BGR magenta, through JPEG

    # The owner makes jet without isotherm the default (with the control token)
    owner = pages(url + "?control_token=steer")
    owner.select_option("#palette", "jet")
    owner.select_option("#iso-mode", "off")
    viewer.wait_for_palette(owner, "jet")
    owner.click("#make-default")
    fresh = pages(url)
    viewer.wait_for_palette(fresh, "jet")
    assert fresh.input_value("#iso-mode") == "off"
    jet = reference(palette="jet")
    deadline = time.monotonic() + 10
    while psnr(mjpeg_picture(port), jet) < 30:  # MJPEG follows too
        assert time.monotonic() < deadline, "MJPEG did not follow the new default palette"
    # the page that never chose anything follows the new default as well; one that chose keeps it
    viewer.wait_for_palette(page, "jet")
    jet_lut = lut("jet")[:, 0, ::-1].tolist()
    page.wait_for_function("document.getElementById('colorbar').dataset.palette === 'jet'",
                           timeout=WAIT_MS)
    assert viewer.colorbar_ends(page) == [jet_lut[0], jet_lut[255]]


# ---------------------------------------------------------------- bytes per frame

FRAMES_TO_MEASURE = 60


def received_frame_bytes(page, cdp, count: int) -> list[int]:
    """Sizes of the next `count` binary websocket messages the page received (CDP events)."""
    sizes: list[int] = []

    def on_frame(event: dict) -> None:
        response = event["response"]
        if response.get("opcode") == 2:  # binary: payloadData is base64
            sizes.append(len(base64.b64decode(response["payloadData"])))

    cdp.on("Network.webSocketFrameReceived", on_frame)
    deadline = time.monotonic() + 60
    while len(sizes) < count:
        assert time.monotonic() < deadline, f"only {len(sizes)} frames in 60 s"
        page.wait_for_timeout(100)  # lets Playwright deliver the events
    return sizes[:count]


def measure_viewer_bytes(browser, url: str, errors: list) -> tuple[float, int]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=3,
                                  is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        page.goto(url)
        first = viewer.wait_for_frames(page)
        sizes = received_frame_bytes(page, cdp, FRAMES_TO_MEASURE)
        viewer.wait_for_frames(page, after=first + 10)  # and it drew them
        return sum(sizes) / len(sizes), max(sizes)
    finally:
        context.close()


def realdata() -> Path:
    path = Path(os.environ.get("FLIR_REALDATA") or REALDATA)
    if not path.is_file():
        pytest.fail(f"the real Lepton 3 recording is missing: {path} (expected shared/realdata/ "
                    f"next to the repository, or FLIR_REALDATA=/path/to/cacophony-v2.cptv)")
    return path


def test_real_recording_costs_at_most_15_kb_a_frame_in_the_real_viewer(tmp_path, stages, browser):
    replay = tmp_path / "real.vospi"
    done = run_script("cptv_to_vospi.py", realdata(), replay, timeout=120)
    assert done.returncode == 0, done.stderr
    pipeline_viewer_bytes(tmp_path, stages, browser, "real recording",
                          {"source": f"vospi-file:{replay}", "tlinear": "no", "replay": "realtime",
                           "loop": "yes"})


def test_simulator_costs_at_most_15_kb_a_frame_in_the_real_viewer(tmp_path, stages, browser):
    """The simulated Lepton (TLinear, 0.01 K a count, a real sensor's noise), every frame unique:
    lossless it would cost ~16.8 KB a frame; in steps of one count (0.01 K) it fits."""
    pipeline_viewer_bytes(tmp_path, stages, browser, "simulator",
                          {"source": "sim", "sim_unique_every": "1"})


def pipeline_viewer_bytes(tmp_path, stages, browser, what: str, capture: dict) -> None:
    """capture (as `capture` says) -> encoder -> server -> the real viewer: at most 15 KB a frame."""
    config = write_config(tmp_path, capture=capture)
    url = f"http://127.0.0.1:{viewer.setting(config, 'server', 'port')}/"
    stages("capture", config)
    stages("encoder", config)
    viewer.start_server(stages, config, url)
    errors: list[str] = []
    mean, biggest = measure_viewer_bytes(browser, url, errors)
    assert not errors, errors
    print(f"{what}: {mean:.0f} bytes a frame on average, {biggest} at most")
    assert mean <= GOAL_BYTES, f"{what}: {mean:.0f} bytes a frame on average"
