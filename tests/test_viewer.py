"""The browser viewer (web/) in real headless Chromium against a real `flir-stream server` process.

The server is fed by a real ZeroMQ publisher of wire.Frame messages (pictures) built here, so every frame
is known: a warm background, a hot square at a known place and temperature, and a bar that moves from
frame to frame so the picture visibly changes.
"""
from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import write_config
from encoder.palettes import lut
from flirstream.testing import tlinear_counts
from viewer_support import (BACKGROUND_C, CANVAS_SUM, COLS, HOT, HOT_C, ROWS, WAIT_MS,
                            camera, canvas_rgb, client_point, colorbar_ends, feed, page,
                            pipeline, scene, setting, shown_seq, start_server, wait_for_capture,
                            wait_for_frames, wait_for_palette)  # noqa: F401  (fixtures too)


def test_phone_sized_page_fits_and_a_finger_reads_temperatures(stages, feed, browser):
    config, url, _ = feed
    start_server(stages, config, url)
    context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(url)
        wait_for_frames(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
        box = page.locator("#view").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["width"] > 300
        assert abs(box["width"] / box["height"] - COLS / ROWS) < 0.02  # aspect kept
        x0, y0, x1, y1 = HOT
        page.touchscreen.tap(*client_point(page, (x0 + x1) / 2, (y0 + y1) / 2))
        page.wait_for_function("document.getElementById('spot').textContent === '45.0\u202f°C'",
                               timeout=WAIT_MS)
        page.touchscreen.tap(*client_point(page, 140, 100))
        page.wait_for_function("document.getElementById('spot').textContent === '24.0\u202f°C'",
                               timeout=WAIT_MS)
    finally:
        context.close()


def test_page_shows_the_live_changing_picture(stages, feed, page):
    config, url, _ = feed
    start_server(stages, config, url)
    page.goto(url)
    first = wait_for_frames(page)
    page.wait_for_function("document.getElementById('connection').dataset.state === 'connected'",
                           timeout=WAIT_MS)
    before = page.evaluate(CANVAS_SUM)
    assert before[1] > 0.01 * before[2] * before[3], "canvas is (nearly) black: no picture drawn"
    wait_for_frames(page, after=first + 2)
    after = page.evaluate(CANVAS_SUM)
    assert after[0] != before[0], "the canvas did not change between frames"
    # Status line from the frame headers; readouts from its stats.
    assert page.inner_text("#st-size") == "160×120"
    assert page.inner_text("#st-sensor") == "lepton3"
    page.wait_for_function("document.getElementById('st-fps').textContent !== '–'", timeout=WAIT_MS)
    assert page.inner_text("#rd-max") == "45.0\u202f°C"
    assert page.inner_text("#st-fpa") == "31.5\u202f°C"
    # The page paints with the server's default palette, which comes with the encoder's status
    # (about once a second), not with each frame.
    page.wait_for_function("document.getElementById('colorbar').dataset.palette === 'inferno'",
                           timeout=WAIT_MS)
    inferno = lut("inferno")[:, 0, ::-1].tolist()
    assert colorbar_ends(page) == [inferno[0], inferno[255]]
    assert page.inner_text("#bar-lo") == "24.0\u202f°C" and page.inner_text("#bar-hi") == "45.0\u202f°C"


def test_colour_bar_of_a_palette_the_page_does_not_know_is_sampled_from_the_picture(
        stages, feed, page):
    config, url, publisher = feed
    publisher.palette_name = "mystery"  # coloured like inferno, but the page cannot know that
    start_server(stages, config, url)
    page.goto(url + "?mode=jpeg")  # the server's JPEGs (in thermal mode the page paints its own)
    wait_for_frames(page)
    page.wait_for_function("document.getElementById('colorbar').dataset.palette === 'mystery'",
                           timeout=WAIT_MS)
    inferno = lut("inferno")[:, 0, ::-1].tolist()
    for got, want in zip(colorbar_ends(page), (inferno[0], inferno[255])):
        assert all(abs(a - b) <= 25 for a, b in zip(got, want)), (got, want)  # JPEG blurs a bit


def test_pointer_reads_the_temperature_under_it(stages, feed, page):
    config, url, _ = feed
    start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page)
    spot = page.locator("#spot")
    x0, y0, x1, y1 = HOT
    page.mouse.move(*client_point(page, (x0 + x1) / 2, (y0 + y1) / 2))
    page.wait_for_function("document.getElementById('spot').dataset.value !== undefined",
                           timeout=WAIT_MS)
    assert abs(float(spot.get_attribute("data-value")) - HOT_C) < 0.01
    assert spot.inner_text() == "45.0\u202f°C"
    page.mouse.move(*client_point(page, 140, 100))
    page.wait_for_function(
        f"Math.abs(Number(document.getElementById('spot').dataset.value) - {BACKGROUND_C}) < 0.01",
        timeout=WAIT_MS)
    assert spot.inner_text() == "24.0\u202f°C"
    # °F is a display choice, remembered across a reload.
    page.check("input[name=unit][value=F]")  # the mouse leaves the picture to click
    page.mouse.move(*client_point(page, 140, 100))
    assert spot.inner_text() == "75.2\u202f°F"
    page.reload()
    wait_for_frames(page)
    assert page.is_checked("input[name=unit][value=F]")
    page.mouse.move(*client_point(page, (x0 + x1) / 2, (y0 + y1) / 2))
    page.wait_for_function("document.getElementById('spot').textContent === '113.0\u202f°F'",
                           timeout=WAIT_MS)
    # Keyboard: arrows move the probe one raw pixel; from the square's left column, out of it.
    page.mouse.move(*client_point(page, x0, (y0 + y1) / 2))
    page.focus("#view")
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute("#spot", "data-x") == str(x0 - 1)
    assert page.inner_text("#spot") == "75.2\u202f°F"
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#spot") == "113.0\u202f°F"


LAYOUT = """() => ['#view', '.scale', '.readouts', '#controls', '#st-size', '#st-ffc'].map((s) => {
  const r = document.querySelector(s).getBoundingClientRect();
  return [s, Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)];
})"""


def test_page_reconnects_after_the_server_restarts(stages, feed, page):
    config, url, _ = feed
    server = start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page)
    page.wait_for_function("document.getElementById('st-fps').textContent !== '–'", timeout=WAIT_MS)
    streaming = page.evaluate(LAYOUT)
    server.stop()
    page.wait_for_function("document.getElementById('connection').dataset.state === 'reconnecting'",
                           timeout=WAIT_MS)
    page.wait_for_selector("#offline:not([hidden])", timeout=WAIT_MS)
    assert "unreachable" in page.inner_text("#offline").lower()
    assert page.evaluate(LAYOUT) == streaming  # nothing on the page moved or resized
    page.evaluate("document.getElementById('view').dataset.seq = '-1'")  # forget the old frames
    start_server(stages, config, url)
    page.wait_for_function("document.getElementById('connection').dataset.state === 'connected'",
                           timeout=WAIT_MS)
    wait_for_frames(page, after=0)
    page.wait_for_selector("#offline", state="hidden", timeout=WAIT_MS)


def test_camera_offline_is_shown_and_clears_when_frames_return(stages, feed, page):
    config, url, publisher = feed
    start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page)
    page.wait_for_selector("#offline", state="hidden", timeout=WAIT_MS)  # once capture reported
    publisher.camera_offline("cannot open /dev/spidev0.0: no such file")
    page.wait_for_selector("#offline:not([hidden])", timeout=WAIT_MS)
    assert "camera offline" in page.inner_text("#offline").lower()
    page.wait_for_function("document.getElementById('offline').textContent.includes('spidev0.0')",
                           timeout=WAIT_MS)
    assert "is-offline" in page.get_attribute("#stage", "class")  # the picture is greyed
    page.wait_for_function("document.getElementById('rd-max').textContent === '–'",
                           timeout=WAIT_MS)  # no stale temperatures beside a grey picture
    publisher.camera_online()
    page.wait_for_selector("#offline", state="hidden", timeout=WAIT_MS)
    assert "is-offline" not in page.get_attribute("#stage", "class")
    assert page.inner_text("#rd-max") == "45.0\u202f°C"


def test_no_frame_for_3_s_counts_as_offline(stages, feed, page):
    """The stages still say "streaming", but no frame came: the viewer must not show a frozen
    picture as if it were live."""
    config, url, publisher = feed
    start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page)
    # Statuses come once a second: stop the frames only once the page has heard capture streaming
    # (else the server has nothing to say but "starting", and the test would depend on timing).
    wait_for_capture(page, "streaming")
    publisher.frames_paused = True
    page.wait_for_selector("#offline:not([hidden])", timeout=WAIT_MS)
    assert "camera offline" in page.inner_text("#offline").lower()
    assert "no picture for" in page.inner_text("#offline-detail")
    assert "is-offline" in page.get_attribute("#stage", "class")
    assert page.inner_text("#st-fps") == "–"
    publisher.frames_paused = False
    page.wait_for_selector("#offline", state="hidden", timeout=WAIT_MS)


def test_live_picture_before_any_status_is_not_called_offline(stages, feed, page):
    """Just after a (server) restart frames arrive before the first status does (statuses come once
    a second): the page must show the live picture, not "camera offline" over it."""
    config, url, publisher = feed
    publisher.statuses = False
    start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page, after=2)  # several live frames, and the server has said what it knows
    assert page.get_attribute("#stage", "data-capture") == "unknown"  # no status has come
    assert page.get_attribute("#stage", "data-camera") == "online"  # frames are arriving
    assert page.is_hidden("#offline")
    assert "is-offline" not in page.get_attribute("#stage", "class")
    publisher.statuses = True
    wait_for_capture(page, "streaming")
    assert page.is_hidden("#offline")


def test_page_says_starting_before_any_frame_or_status(stages, feed, page):
    config, url, publisher = feed
    publisher.statuses = False
    publisher.frames_paused = True
    start_server(stages, config, url)
    page.goto(url)
    page.wait_for_function("document.getElementById('connection').dataset.state === 'connected'",
                           timeout=WAIT_MS)
    page.wait_for_function("document.getElementById('stage').dataset.camera === 'starting'",
                           timeout=WAIT_MS)
    assert page.is_hidden("#offline")  # not "camera offline": nobody has said so
    assert "is-waiting" in page.get_attribute("#stage", "class")
    assert page.get_attribute("#stage", "data-waiting") == "starting…"


def _healthz(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for_health(url: str, until, timeout: float = 20.0) -> dict:
    """Poll /healthz until until(report) is true; the report."""
    deadline = time.monotonic() + timeout
    while True:
        status, report = _healthz(url)
        if until(report):
            return report
        assert time.monotonic() < deadline, (status, report)
        time.sleep(0.1)


@pytest.mark.parametrize("silent, title", [("encoder", "encoder not responding"),
                                           ("capture", "capture not responding")])
def test_a_stalled_stage_is_named_in_the_page_and_healthz(tmp_path, stages, page, silent, title):
    """A real pipeline; one stage is frozen with SIGSTOP. The page and /healthz must name that
    stage, not call the camera offline (capture's status reaches the server through the encoder,
    so a stalled encoder silences capture too)."""
    config = write_config(tmp_path, capture={"source": "sim"})
    url = f"http://127.0.0.1:{setting(config, 'server', 'port')}/"
    procs = {"capture": stages("capture", config), "encoder": stages("encoder", config)}
    start_server(stages, config, url)
    page.goto(url)
    wait_for_frames(page)
    wait_for_capture(page, "streaming")
    wait_for_health(url, lambda r: r["healthy"])
    frozen = procs[silent].proc
    frozen.send_signal(signal.SIGSTOP)
    try:
        report = wait_for_health(url, lambda r: r["fault"] is not None)
        assert report["fault"]["stage"] == silent, report
        assert report["reason"].startswith(f"{silent} silent: no status from {silent} for"), report
        assert report[silent]["state"] == "silent", report
        if silent == "encoder":
            assert report["capture"]["state"] == "unknown", report  # not blamed: it cannot be seen
        assert report["camera"] == "unknown", report
        page.wait_for_function(
            f"document.getElementById('offline-title').textContent.toLowerCase() === '{title}'",
            timeout=WAIT_MS)
        assert page.is_visible("#offline")
        assert f"no status from {silent} for" in page.inner_text("#offline-detail")
        assert page.get_attribute("#stage", "data-fault") == silent
    finally:
        frozen.send_signal(signal.SIGCONT)
    wait_for_health(url, lambda r: r["healthy"])
    page.wait_for_selector("#offline", state="hidden", timeout=WAIT_MS)


def test_a_cached_frame_from_before_a_pause_is_shown_as_stale_without_latency(stages, feed, page):
    """The frame a viewer gets on connect may be the one the server kept from before a pause: it
    must be marked stale, shown as such, and give no latency (it once read 17 s and crept down)."""
    config, url, publisher = feed
    start_server(stages, config, url)
    wait_for_health(url, lambda r: r["healthy"])
    publisher.frames_paused = True  # the stages still say streaming: a pause, or a stall
    stale_after_s = float(setting(config, "server", "stale_after_s"))
    wait_for_health(url, lambda r: r["frame_age_s"] is not None and r["frame_age_s"] > stale_after_s)
    page.goto(url)
    wait_for_frames(page)  # the cached frame, drawn
    assert page.get_attribute("#view", "data-stale") == "true"
    assert "is-stale" in page.get_attribute("#stage", "class")
    assert page.get_attribute("#stage", "data-waiting").startswith("last picture, from ")
    assert page.inner_text("#st-latency") == "–" and page.inner_text("#rd-max") == "–"
    # With the page's clock offset known, have the server send the cached frame again (a pointer
    # on the picture asks for raw pixels, and the server resends the newest frame with them).
    page.wait_for_function("window.flirstream.link.offset !== null", timeout=WAIT_MS)
    box = page.locator("#view").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("window.flirstream.state.frame.raw !== null", timeout=WAIT_MS)
    assert page.get_attribute("#view", "data-stale") == "true"
    assert page.evaluate("window.flirstream.state.latency") is None
    stale_seq = shown_seq(page)
    publisher.frames_paused = False
    wait_for_frames(page, after=stale_seq)
    assert page.get_attribute("#view", "data-stale") == "false"
    page.wait_for_function("window.flirstream.state.latency !== null", timeout=WAIT_MS)
    assert "is-stale" not in page.get_attribute("#stage", "class")
    # the first latency comes from a live frame, not from the cached one's age
    assert page.evaluate("window.flirstream.state.latency") < stale_after_s


def adjacent_spots(seq: int) -> np.ndarray:
    """The coldest and hottest pixels right beside the centre one, so all three markers touch."""
    pixels = np.full((ROWS, COLS), tlinear_counts(BACKGROUND_C), dtype=np.uint16)
    pixels[ROWS // 2, COLS // 2 + 1] = tlinear_counts(HOT_C)
    pixels[ROWS // 2 + 1, COLS // 2 - 1] = tlinear_counts(10.0)
    return pixels


LABEL_BOXES = """() => {
  const v = window.flirstream.view;
  return {boxes: v.labelBoxes, width: v.cssWidth, height: v.cssHeight};
}"""


@pytest.mark.parametrize("viewport, mobile", [((1000, 700), False), ((360, 740), True),
                                              ((844, 390), True)])
def test_min_max_and_centre_labels_never_overlap(stages, feed, browser, viewport, mobile):
    config, url, publisher = feed
    publisher.scene = adjacent_spots
    start_server(stages, config, url)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  device_scale_factor=2 if mobile else 1, is_mobile=mobile,
                                  has_touch=mobile)
    try:
        page = context.new_page()
        page.goto(url)
        wait_for_frames(page)
        drawn = page.evaluate(LABEL_BOXES)
        boxes = drawn["boxes"]
        assert sorted(b["name"] for b in boxes) == ["centre", "max", "min"], drawn
        for b in boxes:  # each wholly on the picture
            assert 0 <= b["x"] and b["x"] + b["w"] <= drawn["width"], drawn
            assert 0 <= b["y"] and b["y"] + b["h"] <= drawn["height"], drawn
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or
                         a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
                assert apart, f"labels {a['name']} and {b['name']} overlap: {drawn}"
    finally:
        context.close()


@pytest.mark.parametrize("width, height", [(844, 390), (667, 375), (568, 320)])  # phones on their side
def test_phone_in_landscape_shows_the_picture_as_large_as_the_screen_allows(stages, feed, browser,
                                                                             width, height):
    config, url, _ = feed
    start_server(stages, config, url)
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=3,
                                  is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(url)
        wait_for_frames(page)
        box = page.locator("#view").bounding_box()
        assert abs(box["width"] / box["height"] - COLS / ROWS) < 0.02, box  # aspect kept
        # The whole height (4:3 in 844x390 is bound by it), or on a small phone more than half the
        # width, the rest being the column of readouts and controls beside it. (It was 278x209.)
        assert box["height"] >= 0.95 * height or box["width"] >= 0.55 * width, box
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width, box
        assert box["y"] + box["height"] <= height, box
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
        controls = page.locator("#controls").bounding_box()
        assert controls["x"] >= box["x"] + box["width"] - 1, (box, controls)  # beside, not over it
        # Every control can be reached (the column beside the picture scrolls), and the picture
        # stays in full view meanwhile.
        page.locator("#save-csv").scroll_into_view_if_needed()
        assert page.locator("#save-csv").bounding_box()["y"] + 10 < height
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        moved = page.locator("#view").bounding_box()
        assert moved["y"] >= -1 and moved["y"] + moved["height"] <= height + 1, moved  # subpixels
        assert moved["x"] >= -1 and abs(moved["height"] - box["height"]) < 1, moved
    finally:
        context.close()


def test_palette_rotate_and_range_controls_change_the_picture(pipeline, page):
    config, url = pipeline
    page.goto(url)
    wait_for_frames(page)
    page.wait_for_function("document.getElementById('palette').value === 'ironbow'", timeout=WAIT_MS)
    wait_for_palette(page, "ironbow")
    background = canvas_rgb(page, 140, 100)  # the coldest pixels: ironbow's black end
    assert sum(background) < 90, background

    page.select_option("#palette", "jet")
    wait_for_palette(page, "jet")
    background = canvas_rgb(page, 140, 100)  # jet's cold end is dark blue
    assert background[2] > 90 and background[2] > background[0] + 60, background
    page.wait_for_function("document.getElementById('colorbar').dataset.palette === 'jet'",
                           timeout=WAIT_MS)
    jet = lut("jet")[:, 0, ::-1].tolist()  # BGR -> RGB
    assert colorbar_ends(page) == [jet[0], jet[255]]  # exactly the encoder's colours

    # Rotate 90° clockwise: the frame is 120 wide and 160 high, and the pointer still finds the
    # hot square where the rotation put it (raw (x, y) -> (rows - 1 - y, x)).
    page.click("#rotate")
    page.wait_for_function("document.getElementById('st-size').textContent === '120×160'",
                           timeout=WAIT_MS)
    box = page.locator("#view").bounding_box()
    assert box["height"] > box["width"]
    x0, y0, x1, y1 = HOT
    hx, hy = (x0 + x1) / 2, (y0 + y1) / 2
    rx, ry = ROWS - 1 - hy, hx
    page.mouse.move(box["x"] + (rx + 0.5) / ROWS * box["width"],
                    box["y"] + (ry + 0.5) / COLS * box["height"])
    page.wait_for_function(
        f"Math.abs(Number(document.getElementById('spot').dataset.value) - {HOT_C}) < 0.01",
        timeout=WAIT_MS)
    assert page.inner_text("#rotate-value") == "90°"

    # A fixed range: the AGC becomes "fixed" and the colour bar shows the range.
    page.fill("#range-lo", "20")
    page.fill("#range-hi", "30")
    page.click("#range-apply")
    page.wait_for_function("document.getElementById('agc').value === 'fixed'", timeout=WAIT_MS)
    page.wait_for_function("document.getElementById('bar-hi').textContent === '30.0\u202f°C'",
                           timeout=WAIT_MS)
    assert page.inner_text("#bar-lo") == "20.0\u202f°C"
    assert page.inner_text("#message") == ""


def test_tokens_reach_the_socket_the_links_and_the_controls(tmp_path, stages, page):
    config = write_config(tmp_path, server={"token": "look", "control_token": "steer"})
    capture = camera(setting(config, "endpoints", "frames"))
    try:
        url = f"http://127.0.0.1:{setting(config, 'server', 'port')}/"
        stages("encoder", config)
        start_server(stages, config, url)
        page.goto(url + "?token=look")
        wait_for_frames(page)  # the websocket URL carried the token
        for link, kind in (("#save-jpg", "image/jpeg"), ("#save-csv", "text/csv")):
            href = page.get_attribute(link, "href")
            assert "token=look" in href
            got = page.evaluate("async (h) => { const r = await fetch(h, {credentials: 'omit'});"
                                " return [r.status, r.headers.get('content-type')]; }", href)
            assert got[0] == 200 and got[1].startswith(kind), (link, got)
        # A palette is this viewer's own choice: no token needed.
        page.select_option("#palette", "jet")
        wait_for_palette(page, "jet")
        # Making it the server's default needs the control token: the page asks for it, and the
        # server refuses without it.
        assert page.is_visible("#token")
        page.click("#make-default")
        page.wait_for_function("document.getElementById('message').textContent.includes('token')",
                               timeout=WAIT_MS)
        assert setting_of_encoder(page) != "jet"
        page.fill("#token", "steer")
        page.select_option("#palette", "rainbow")
        page.click("#make-default")
        page.wait_for_function("document.getElementById('message').textContent === ''",
                               timeout=WAIT_MS)
        other = page.context.new_page()  # a new viewer starts from the new default
        other.goto(url + "?token=look")
        wait_for_palette(other, "rainbow")
        other.close()
    finally:
        capture.stop()


def setting_of_encoder(page) -> str:
    """The palette the server's default view has (what a new page would get), via the page."""
    return page.evaluate("""() => new Promise((done) => {
      const ws = new WebSocket(new URL('ws', location.href).href.replace('http', 'ws') + location.search);
      ws.onmessage = (ev) => { const m = JSON.parse(ev.data);
        if (m.type === 'hello') { done(m.settings && m.settings.palette); ws.close(); } };
    })""")


def test_whole_pipeline_from_the_simulated_camera(tmp_path, stages, page):
    """capture (sim) -> encoder -> server, all real: the page streams, reads temperatures under the
    pointer that lie within the frame's min..max, and shows the sensor's telemetry."""
    config = write_config(tmp_path, capture={"source": "sim", "telemetry": "footer"})
    url = f"http://127.0.0.1:{setting(config, 'server', 'port')}/"
    stages("capture", config)
    stages("encoder", config)
    start_server(stages, config, url)
    page.goto(url)
    first = wait_for_frames(page)
    before = page.evaluate(CANVAS_SUM)
    wait_for_frames(page, after=first + 2)
    assert page.evaluate(CANVAS_SUM)[0] != before[0]
    page.wait_for_function("document.getElementById('offline').hidden", timeout=WAIT_MS)
    page.wait_for_function("document.getElementById('st-fpa').textContent.endsWith('°C')",
                           timeout=WAIT_MS)
    assert page.inner_text("#st-size") == "160×120"
    box = page.locator("#view").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("document.getElementById('spot').dataset.value !== undefined",
                           timeout=WAIT_MS)
    value = float(page.get_attribute("#spot", "data-value"))
    low = float(page.inner_text("#rd-min").split("\u202f")[0])
    high = float(page.inner_text("#rd-max").split("\u202f")[0])
    assert low - 1 <= value <= high + 1, (low, value, high)  # readouts may be a frame apart


PARSE_CASES = """async () => {
  const { parseFrame, rawAt, rawToUnit } = await import('./frame.js');
  const enc = new TextEncoder();
  const message = (header, jpeg, raw) => {
    const head = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
    const out = new Uint8Array(4 + head.length + jpeg.length + raw.length);
    new DataView(out.buffer).setUint32(0, head.length, false);
    out.set(head, 4); out.set(jpeg, 4 + head.length); out.set(raw, 4 + head.length + jpeg.length);
    return out.buffer;
  };
  const jpeg = new Uint8Array([0xff, 0xd8, 1, 2, 0xff, 0xd9]);
  const raw = new Uint8Array(new Uint16Array([29315, 31815, 0, 65535]).buffer);  // 2x2, LE
  const good = {shape: [2, 2], jpeg_bytes: 6, raw_bytes: 8, unit: 'C', kelvin_per_count: 0.01};
  const results = {};
  results.ok = (() => { const f = parseFrame(message(good, jpeg, raw));
    return [f.jpeg.length, rawToUnit(f.header, rawAt(f.raw, 0, 0)), rawToUnit(f.header, rawAt(f.raw, 1, 0)),
            rawAt(f.raw, 1, 1), rawAt(f.raw, 2, 0)]; })();
  const { formatValue } = await import('./units.js');
  const counts = parseFrame(message({...good, unit: 'counts', kelvin_per_count: 0.01}, jpeg, raw));
  results.counts = [rawToUnit(counts.header, rawAt(counts.raw, 1, 0)),
                    formatValue(rawToUnit(counts.header, rawAt(counts.raw, 1, 0)), 'counts')];
  results.noRaw = parseFrame(message({...good, raw_bytes: 0}, jpeg, new Uint8Array())).raw;
  results.wrongRawSize = parseFrame(message({...good, raw_bytes: 6}, jpeg, raw.slice(0, 6))).raw;
  results.badShape = parseFrame(message({...good, shape: 'x'}, jpeg, raw)).raw;
  results.rejected = [
    parseFrame(new ArrayBuffer(0)), parseFrame(new ArrayBuffer(3)), parseFrame('text'),
    parseFrame(message('{not json', jpeg, raw)), parseFrame(message('[1, 2]', jpeg, raw)),
    parseFrame(message({...good, jpeg_bytes: 600}, jpeg, raw)),
    parseFrame(message({...good, jpeg_bytes: -1}, jpeg, raw)),
    parseFrame(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2]).buffer),
  ];
  let thrown = 0;
  for (let i = 0; i < 2000; i++) {  // random bytes: refused or parsed, never an exception
    const b = new Uint8Array(Math.floor(Math.random() * 64));
    crypto.getRandomValues(b);
    if (i % 2 && b.length >= 4) new DataView(b.buffer).setUint32(0, Math.min(b.length - 4, 12));
    try { parseFrame(b.buffer); } catch (e) { thrown++; }
  }
  results.thrown = thrown;
  return results;
}"""


def test_frame_parser_refuses_malformed_messages_without_throwing(stages, feed, page):
    config, url, _ = feed
    start_server(stages, config, url)
    page.goto(url)
    results = page.evaluate(PARSE_CASES)
    jpeg_len, first_c, second_c, corner, outside = results["ok"]
    assert jpeg_len == 6 and corner == 65535 and outside is None
    assert abs(first_c - 20.0) < 1e-9 and abs(second_c - 45.0) < 1e-9
    assert results["counts"] == [31815, "31815"]  # not radiometric: plain sensor counts
    assert results["noRaw"] is None and results["wrongRawSize"] is None
    assert results["badShape"] is None
    assert results["rejected"] == [None] * 8
    assert results["thrown"] == 0
