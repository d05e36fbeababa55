"""The viewer's Camera panel in real headless Chromium against the real pipeline (simulated Lepton
with its CCI device -> capture -> encoder -> server): FFC from the viewer shows the freeze and the
new FFC time; low gain changes the resolution to 0.1 K and temperatures stay right; a TLinear-off
recording shows relative values, never degrees."""
from __future__ import annotations

import pytest

from conftest import write_config
from stage_support import tlinear_off  # noqa: F401  (fixture)
from viewer_support import WAIT_MS, page, setting, start_server, wait_for_frames  # noqa: F401

# The simulated scene's hot spot: 70 C +- 10 C over time (capture.sim.SimulatedLepton hot_c).
HOT_LO_C, HOT_HI_C = 59.0, 81.0


@pytest.fixture
def live_camera(tmp_path, stages):
    config = write_config(tmp_path, capture={"source": "sim"})  # telemetry auto: footer
    url = f"http://127.0.0.1:{setting(config, 'server', 'port')}/"
    stages("capture", config)
    stages("encoder", config)
    start_server(stages, config, url)
    return config, url


def text(page, selector: str) -> str:
    return page.inner_text(selector)


def celsius(page, selector: str) -> float:
    value = text(page, selector)
    assert value.endswith("°C"), value
    return float(value.split("\u202f")[0])


def test_panel_shows_the_camera_and_ffc_from_the_viewer_freezes_and_restamps(live_camera, page):
    _, url = live_camera
    page.goto(url)
    wait_for_frames(page)
    page.wait_for_function("document.getElementById('cam-model').textContent === 'Lepton 3.5'",
                           timeout=WAIT_MS)
    assert text(page, "#cam-serial") == "0123456789ABCDEF"
    assert text(page, "#cam-firmware") == "gpp 3.3.26 dsp 3.3.26"
    assert 20 < celsius(page, "#cam-fpa") < 35
    assert text(page, "#cam-meaning") == "temperatures, 0.01 K"
    assert page.input_value("#cam-gain") == "high"
    # Let the time since the power-on FFC grow, then run an FFC from the panel.
    page.wait_for_function("Number(document.getElementById('cam-ffc-state').dataset.since) > 2",
                           timeout=WAIT_MS)
    page.click("#cam-ffc")
    page.wait_for_function(
        "(document.getElementById('cam-ffc-state').dataset.seen || '').includes('in progress')",
        timeout=WAIT_MS)
    page.wait_for_function(
        "document.getElementById('cam-ffc-state').dataset.state === 'complete'"
        " && Number(document.getElementById('cam-ffc-state').dataset.since) < 1.5",
        timeout=WAIT_MS)
    seen = page.get_attribute("#cam-ffc-state", "data-seen").split(",")
    walk = seen[seen.index("in progress") - 1:]
    assert walk[:3] in (["imminent", "in progress", "complete"], ["complete", "in progress",
                                                                   "complete"]), seen
    assert text(page, "#cam-ffc-state").startswith("last FFC ")
    assert text(page, "#message") == ""


def test_low_gain_changes_the_resolution_and_temperatures_stay_right(live_camera, page):
    _, url = live_camera
    page.goto(url)
    wait_for_frames(page)
    page.wait_for_function("document.getElementById('cam-meaning').textContent"
                           " === 'temperatures, 0.01 K'", timeout=WAIT_MS)
    before = celsius(page, "#rd-max")
    assert HOT_LO_C < before < HOT_HI_C  # the hot spot, read at 0.01 K
    page.select_option("#cam-gain", "low")
    page.wait_for_function("document.getElementById('cam-meaning').textContent"
                           " === 'temperatures, 0.1 K'", timeout=WAIT_MS)
    seq = wait_for_frames(page)
    wait_for_frames(page, after=seq + 1)  # a frame that surely came after the switch
    after = celsius(page, "#rd-max")
    assert HOT_LO_C < after < HOT_HI_C, after  # the same hot spot, read at 0.1 K
    page.wait_for_function("document.getElementById('cam-gain').value === 'low'", timeout=WAIT_MS)
    # Emissivity and reflected temperature from the panel: the camera's telemetry (row B) then
    # carries them, and the panel shows what the camera has.
    page.fill("#cam-emissivity", "0.90")  # typed so; the camera's value reads "0.9", "25.0"
    page.fill("#cam-background", "25")
    page.click("#cam-emissivity-set")
    page.wait_for_function("document.getElementById('cam-emissivity').value === '0.9'"
                           " && document.getElementById('cam-background').value === '25.0'",
                           timeout=WAIT_MS)
    assert text(page, "#message") == ""


def test_tlinear_off_recording_shows_relative_values_never_degrees(tlinear_off, page):  # noqa: F811
    _, port = tlinear_off
    page.goto(f"http://127.0.0.1:{port}/")
    wait_for_frames(page)
    page.wait_for_function("!document.getElementById('relative').hidden", timeout=WAIT_MS)
    assert text(page, "#relative") == "relative values (TLinear off)"
    page.wait_for_function("document.getElementById('cam-meaning').textContent"
                           " === 'relative values (TLinear off)'", timeout=WAIT_MS)
    box = page.locator("#view").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("document.getElementById('spot').dataset.value !== undefined",
                           timeout=WAIT_MS)
    for selector in ("#spot", "#rd-min", "#rd-max", "#rd-centre", "#rd-mean", "#bar-lo",
                     "#bar-hi", "#bar-mid"):
        shown = text(page, selector)
        assert "°" not in shown, (selector, shown)
    assert float(text(page, "#rd-max")) > 1000  # counts, not degrees
