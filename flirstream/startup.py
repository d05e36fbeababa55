"""What every stage does once its start-up is done: take what start-up made out of the GC's reach.

Python's cyclic GC can stop a stage's loop for milliseconds when it walks every object (a full
collection): numpy, OpenCV, pyzmq and Tornado leave tens of thousands of them. gc.freeze() moves
everything made so far out of its reach, and a higher first threshold makes the young collections
of the per-frame loop rarer (each frame's headers make dozens of dicts and lists, none of them in
cycles; at Python's default of 700 allocations a collection came every few frames).
"""
from __future__ import annotations

import gc

GC_THRESHOLD0 = 10_000  # objects allocated between young collections (Python's default: 700)


def freeze_startup() -> int:
    """Collect once, freeze what start-up made, make young collections rarer; returns how many
    objects were frozen."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, second, third)
    return gc.get_freeze_count()
