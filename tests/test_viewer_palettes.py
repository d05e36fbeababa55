"""web/palettes.js is the encoder's palette tables, copied for the viewer's colour bar."""
from __future__ import annotations

import re

from encoder.palettes import lut
from flirstream.config import PALETTES
from web import make_palettes


def test_palettes_js_is_up_to_date_with_the_encoder():
    text = make_palettes.TARGET.read_text(encoding="utf-8")
    assert text == make_palettes.source(), \
        "web/palettes.js is out of date: run `python -m web.make_palettes`"


def test_palettes_js_holds_every_palette_as_256_rgb_colours():
    text = make_palettes.TARGET.read_text(encoding="utf-8")
    tables = dict(re.findall(r'"([a-z-]+)": "([0-9a-f]+)"', text))
    assert sorted(tables) == sorted(PALETTES)
    for name, hexes in tables.items():
        assert len(hexes) == 256 * 6, name
        b, g, r = lut(name)[200, 0]  # the encoder's table is BGR
        assert hexes[200 * 6:201 * 6] == f"{r:02x}{g:02x}{b:02x}", name
