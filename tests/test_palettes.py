"""Palettes: one 256-entry BGR table per name in server.conf, and a ramp through the renderer
comes out coloured exactly by that table."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from encoder import palettes
from encoder.render import Renderer
from flirstream.config import PALETTES


def ramp_frame(rows: int = 16) -> np.ndarray:
    """256 columns holding 1000..1255: linear AGC over the whole range maps column i to index i."""
    return np.tile(np.arange(1000, 1256, dtype=np.uint16), (rows, 1))


def test_every_configured_palette_has_a_table():
    assert set(palettes.tables()) == set(PALETTES)
    for name in PALETTES:
        table = palettes.lut(name)
        assert table.shape == (256, 1, 3) and table.dtype == np.uint8, name
        # a palette must tell temperatures apart: many distinct colours
        assert len({tuple(c) for c in table[:, 0]}) >= 200, name


def test_unknown_palette_is_named():
    with pytest.raises(ValueError, match="unknown palette 'purple'.*ironbow"):
        palettes.lut("purple")


@pytest.mark.parametrize("name,code,backwards", [
    ("jet", cv2.COLORMAP_JET, False), ("inferno", cv2.COLORMAP_INFERNO, False),
    ("turbo", cv2.COLORMAP_TURBO, False),
    ("rainbow", cv2.COLORMAP_RAINBOW, True)])  # OpenCV's runs red -> violet: hot would be violet
def test_opencv_palettes_are_opencvs_maps(name, code, backwards):
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
    expected = cv2.applyColorMap(ramp, code)[0]
    assert np.array_equal(palettes.lut(name)[:, 0], expected[::-1] if backwards else expected)


def _warmth(rgb: np.ndarray) -> float:
    """Red minus blue: > 0 for warm colours (red, orange, yellow), < 0 for cold ones (blue, violet)."""
    return float(rgb[0]) - float(rgb[2])


@pytest.mark.parametrize("name", PALETTES)
def test_the_hot_end_of_every_palette_with_a_warm_end_is_the_warm_one(name):
    rgb = palettes.lut(name)[:, 0, ::-1].astype(float)  # BGR -> RGB; index 255 is the hottest
    cold, hot = rgb[:26].mean(axis=0), rgb[-26:].mean(axis=0)  # the outer tenth at each end
    if max(abs(_warmth(cold)), abs(_warmth(hot))) < 20:  # no hue at either end: a grey scale
        assert name in ("white-hot", "black-hot"), (name, cold, hot)
        assert np.ptp(rgb, axis=1).max() == 0  # truly grey
        return
    assert _warmth(hot) > 0 and _warmth(hot) > _warmth(cold), (name, cold, hot)


def test_rainbow_is_red_when_hot_and_violet_when_cold():
    rgb = palettes.lut("rainbow")[:, 0, ::-1].astype(int)
    r, g, b = rgb[255]
    assert r > 200 and g < 60 and b < 60, rgb[255]  # hottest: red
    r, g, b = rgb[0]
    assert b > 200 and r < 200 and g < 60, rgb[0]  # coldest: violet / blue


def test_thermal_classics_have_their_look():
    grey = np.arange(256)
    white = palettes.lut("white-hot")[:, 0]
    black = palettes.lut("black-hot")[:, 0]
    assert np.array_equal(white, np.stack([grey] * 3, axis=1))
    assert np.array_equal(black, white[::-1])

    iron = palettes.lut("ironbow")[:, 0].astype(int)  # BGR
    assert iron[0].tolist() == [0, 0, 0] and iron[255].tolist() == [255, 255, 255]
    b, g, r = iron[:, 0], iron[:, 1], iron[:, 2]
    assert b[40] > r[40] and b[40] > g[40]           # cold end is blue
    assert r[85] > 100 and b[85] > 100 and g[85] < 40  # then purple
    assert r[135] > 180 and g[135] < 80               # then red
    assert r[175] > 230 and 60 < g[175] < 160 and b[175] < 40  # orange
    assert r[215] > 240 and g[215] > 180 and b[215] < 60       # yellow
    luminance = 0.114 * b + 0.587 * g + 0.299 * r
    assert np.all(np.diff(luminance) >= -0.5)  # brighter means hotter, all the way

    contrast = palettes.lut("contrast")[:, 0].astype(int)
    jumps = np.abs(np.diff(contrast, axis=0)).sum(axis=1)
    assert (jumps > 100).sum() >= 10  # clear band edges (isotherm-like contours)


@pytest.mark.parametrize("name", PALETTES)
def test_ramp_through_each_palette_matches_its_table(name):
    renderer = Renderer(palette=name, agc="linear", clip_percent=(0, 100), smoothing=0,
                        size=(256, 16), quality=100)
    jpeg = renderer.render(ramp_frame(), tlinear=False)
    table = palettes.lut(name)[:, 0]
    # the coloured image is exactly the table, column by column
    assert np.array_equal(renderer.last.bgr, np.broadcast_to(table, (16, 256, 3)))
    # and the JPEG shows it, within what JPEG's colour subsampling costs on a sharp ramp
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (16, 256, 3)
    error = np.abs(decoded[4:12].astype(int) - table.astype(int)).mean()
    assert error < 6, f"{name}: mean JPEG error {error:.1f}"
