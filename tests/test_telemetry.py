"""capture.telemetry: rows A, B, C parse to what real Lepton 3.5s sent (numbers typed from
../shared/realdata/README.md), build is its inverse, pixel_meaning follows the camera;
scripts/check_realdata.py prints a .tjsn file the test writes."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from capture import telemetry as tm
from conftest import run_script

ROOT = Path(__file__).resolve().parent.parent


# What two real Lepton 3.5s sent (the rest zero): word (or (first, last) range) -> value; a
# 32-bit value at a word is split over it and the next one, low half first.
FOX = {0: 14, "uptime": 56767, "status": 0x0830, "frames": 499, 24: 29428, 26: 29355, 99: 8192,
       165: 2, 208: 1, 209: 1, (210, 214): [26640, 26666, 26607, 4]}  # tCam's fox.tjsn (README)
AGC_ON = {0: 14, "uptime": 6786699, "status": 0x1830, "frames": 59505, 24: 30631, 26: 30522,
          99: 8028, 165: 0, 208: 0, 209: 1, (210, 214): [29507, 29513, 29498, 4]}
WIDE = {"uptime": 1, "status": 3, "frames": 20}  # the 32-bit words


def words(table: dict) -> np.ndarray:
    w = np.zeros(240, dtype=np.uint16)
    for at, value in table.items():
        if at in WIDE:
            w[WIDE[at]], w[WIDE[at] + 1] = value & 0xFFFF, value >> 16
        elif isinstance(at, tuple):
            w[at[0]:at[1]] = value
        else:
            w[at] = value
    return w


def test_fox_rows_parse_to_what_the_camera_said():
    t = tm.parse(words(FOX))
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
    t = tm.parse(words(AGC_ON))
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
    assert tm.pixel_meaning(tm.parse(words({"status": 0x0030}))) == tm.RAW_COUNTS


def test_short_telemetry_is_refused():
    with pytest.raises(ValueError, match="80 words|240"):
        tm.parse(np.zeros(80, dtype=np.uint16))


def test_check_realdata_prints_a_tjsn_file(tmp_path):
    pixels = np.full(19200, 29815, dtype="<u2")  # 25.00 C
    doc = {"metadata": {"Camera": "test"},
           "radiometric": base64.b64encode(pixels.tobytes()).decode(),
           "telemetry": base64.b64encode(words(FOX).astype("<u2").tobytes()).decode()}
    (tmp_path / "x.tjsn").write_text(json.dumps(doc))
    out = run_script("check_realdata.py", tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.stdout.splitlines()[1:]}
    assert lines["frame_counter"] == "499"
    assert lines["fpa_temp_k"] == "294.28"
    assert lines["ffc_state"] == "complete"
    assert lines["pixels"] == "kelvin_x100"
    assert "25.00..25.00 C" in out.stdout
    bad = run_script("check_realdata.py", tmp_path / "missing.tjsn")
    assert bad.returncode == 1 and "cannot read" in bad.stderr
