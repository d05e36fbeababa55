"""Hypothesis strategies for the stages' fuzz tests: frame headers near a good one."""
from __future__ import annotations

import json

from hypothesis import strategies as st

from flirstream import wire


def json_values():
    """Any JSON value (finite numbers), nested a few levels."""
    scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def frame_headers(good: bytes, topic: bytes):
    """Headers of `topic` near `good`: bytes of it changed, cut short or run on, its block with any
    JSON tail or with a tail of its own fields set to anything, and bytes of any kind."""
    size = wire.FRAME_BLOCKS[topic].size
    block = good[:size]

    def changed(edits: list) -> bytes:
        head = bytearray(good)
        for at, byte in edits:
            head[at % len(head)] = byte
        return bytes(head)

    fields = st.sampled_from(["telemetry", "regions", "palette", "agc", "x"])
    return st.one_of(
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)
        .map(changed),
        st.integers(0, len(good)).map(lambda n: good[:n]),
        st.binary(max_size=40).map(lambda extra: good + extra),
        json_values().map(lambda value: block + json.dumps(value).encode()),
        st.dictionaries(fields, json_values(), max_size=3)
        .map(lambda tail: block + json.dumps(tail).encode()),
        st.binary(max_size=200))
