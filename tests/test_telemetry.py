"""capture.telemetry: rows A, B, C parse to what real Lepton 3.5s sent (numbers typed from
../shared/realdata/README.md), build is its inverse, pixel_meaning follows the camera;
scripts/check_realdata.py prints a .tjsn file the test writes."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capture import telemetry as tm

ROOT = Path(__file__).resolve().parent.parent


def split(words: np.ndarray, at: int, value: int) -> None:
    words[at], words[at + 1] = value & 0xFFFF, value >> 16


def fox_words() -> np.ndarray:
    """tCam's fox.tjsn telemetry, the words its README lists (the rest zero)."""
    w = np.zeros(240, dtype=np.uint16)
    w[0] = 14
    split(w, 1, 56767)
    split(w, 3, 0x0830)
    split(w, 20, 499)
    w[24], w[26] = 29428, 29355
    w[99] = 8192
    w[165] = 2
    w[208], w[209] = 1, 1
    w[210:214] = [26640, 26666, 26607, 4]
    return w


def agc_on_words() -> np.ndarray:
    w = np.zeros(240, dtype=np.uint16)
    w[0] = 14
    split(w, 1, 6786699)
    split(w, 3, 0x1830)
    split(w, 20, 59505)
    w[24], w[26] = 30631, 30522
    w[99] = 8028
    w[165] = 0
    w[208], w[209] = 0, 1
    w[210:214] = [29507, 29513, 29498, 4]
    return w


def test_fox_rows_parse_to_what_the_camera_said():
    t = tm.parse(fox_words())
    assert t.revision == 14
    assert t.uptime_ms == 56767
    assert t.frame_counter == 499
    assert t.fpa_temp_k == pytest.approx(294.28)
    assert t.housing_temp_k == pytest.approx(293.55)
    assert t.ffc_state == "complete"
    assert not t.agc_on and not t.ffc_desired
    assert t.tlinear_enabled and t.tlinear_resolution == 0.01
    assert t.gain_mode == "auto"
    assert t.emissivity == 1.0
    assert (t.spotmeter_mean, t.spotmeter_max, t.spotmeter_min, t.spotmeter_population) == (
        26640, 26666, 26607, 4)
    assert tm.pixel_meaning(t) == tm.KELVIN_X100


def test_agc_on_rows_say_agc_on_and_tlinear_off():
    t = tm.parse(agc_on_words())
    assert t.agc_on
    assert not t.tlinear_enabled
    assert t.uptime_ms == 6786699 and t.frame_counter == 59505
    assert t.emissivity == pytest.approx(0.98, abs=0.001)
    assert t.gain_mode == "high"
    assert tm.pixel_meaning(t) == tm.AGC_8BIT


def test_row_b_order_differs_from_the_flux_struct():
    w = np.zeros(240, dtype=np.uint16)
    w[80 + 19:80 + 27] = [4096, 29000, 8000, 28000, 7000, 500, 27000, 26000]
    t = tm.parse(w)
    assert t.emissivity == 0.5 and t.background_k == 290.0
    assert t.atmosphere_transmission == pytest.approx(8000 / 8192) and t.atmosphere_k == 280.0
    assert t.window_transmission == pytest.approx(7000 / 8192)
    assert t.window_reflection == pytest.approx(500 / 8192)
    assert t.window_k == 270.0 and t.window_reflected_k == 260.0


def test_build_is_the_inverse_of_parse():
    t = tm.Telemetry(uptime_ms=0x12345678, status=tm.status_word("in progress", True, True),
                     serial=0x0123456789ABCDEF, software_revision=(794, 3, 794, 3),
                     frame_counter=70000, frame_mean=3000, fpa_temp_k=301.25,
                     housing_temp_k=300.5, fpa_temp_at_ffc_k=300.75, time_at_ffc_ms=123456,
                     housing_temp_at_ffc_k=300.0, emissivity=0.5, background_k=290.0,
                     atmosphere_transmission=0.75, atmosphere_k=280.0,
                     window_transmission=0.875, window_reflection=0.125, window_k=270.0,
                     window_reflected_k=260.0, gain_mode="auto", effective_gain_mode="low",
                     gain_mode_desired=True, tlinear_enabled=True, tlinear_resolution=0.1,
                     spotmeter_mean=3000, spotmeter_max=3100, spotmeter_min=2900,
                     spotmeter_population=4, spotmeter_roi=(59, 79, 60, 80))
    rows = tm.build(t)
    assert rows.shape == (3, 80)
    back = tm.parse(rows.ravel())
    assert back == t
    assert back.ffc_state == "in progress" and back.ffc_desired and back.agc_on
    assert rows[0, 3] == (2 << 4) | (1 << 3) | (1 << 12)
    assert tm.pixel_meaning(back) == tm.AGC_8BIT


def test_pixel_meaning_from_cci_facts():
    assert tm.pixel_meaning(agc_on=False, tlinear_enabled=True, tlinear_resolution=0.01) == \
        tm.KELVIN_X100
    assert tm.pixel_meaning(agc_on=False, tlinear_enabled=True, tlinear_resolution=0.1) == \
        tm.KELVIN_X10
    assert tm.pixel_meaning(agc_on=False, tlinear_enabled=False) == tm.RAW_COUNTS
    assert tm.pixel_meaning(agc_on=True, tlinear_enabled=True, tlinear_resolution=0.01) == \
        tm.AGC_8BIT
    with pytest.raises(ValueError, match="resolution"):
        tm.pixel_meaning(agc_on=False, tlinear_enabled=True)
    with pytest.raises(ValueError):
        tm.pixel_meaning()


def test_non_radiometric_rows_mean_raw_counts():
    w = np.zeros(240, dtype=np.uint16)
    split(w, 3, 0x0030)
    assert tm.pixel_meaning(tm.parse(w)) == tm.RAW_COUNTS


def test_short_telemetry_is_refused():
    with pytest.raises(ValueError, match="80 words|240"):
        tm.parse(np.zeros(80, dtype=np.uint16))


def test_check_realdata_prints_a_tjsn_file(tmp_path):
    pixels = np.full(19200, 29815, dtype="<u2")  # 25.00 C
    doc = {"metadata": {"Camera": "test"},
           "radiometric": base64.b64encode(pixels.tobytes()).decode(),
           "telemetry": base64.b64encode(fox_words().astype("<u2").tobytes()).decode()}
    (tmp_path / "x.tjsn").write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_realdata.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.stdout.splitlines()[1:]}
    assert lines["frame_counter"] == "499"
    assert lines["fpa_temp_k"] == "294.28"
    assert lines["ffc_state"] == "complete"
    assert lines["pixels"] == "kelvin_x100"
    assert "25.00..25.00 C" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_realdata.py"),
                          str(tmp_path / "missing.tjsn")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "cannot read" in bad.stderr
