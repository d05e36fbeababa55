"""The last ten minutes of readings, for the viewer's chart: frame max / min / centre and each
region's max / min / mean, at most one sample per `every_s`. A new viewer gets `snapshot()`; after
that, each sample `add` returns can be sent on as it is.
"""
from __future__ import annotations

from collections import deque
from typing import Mapping, Optional

SECONDS = 600.0
EVERY_S = 1.0
FRAME_STATS = ("max", "min", "centre")
REGION_STATS = ("max", "min", "mean")


class History:
    def __init__(self, seconds: float = SECONDS, every_s: float = EVERY_S) -> None:
        self.seconds = seconds
        self.every_s = every_s
        # bounded even if timestamps misbehave; old samples normally leave by age first
        self.samples: deque[dict] = deque(maxlen=int(seconds / every_s) + 2)

    def add(self, t: float, reading: Mapping) -> Optional[dict]:
        """Offer one frame's readings (regions.measure) taken at t (Unix seconds). Returns the sample
        kept, or None when the previous one is younger than every_s."""
        if self.samples:
            newest = self.samples[-1]["t"]
            if t < newest:  # the clock stepped back (NTP at boot): start again
                self.samples.clear()
            elif t - newest < self.every_s:
                return None
        sample = {"t": round(t, 3),
                  "frame": {k: reading["frame"][k] for k in FRAME_STATS},
                  "regions": {name: {k: values[k] for k in REGION_STATS}
                              for name, values in reading["regions"].items()}}
        self.samples.append(sample)
        while self.samples and t - self.samples[0]["t"] > self.seconds:
            self.samples.popleft()
        return sample

    def snapshot(self) -> dict:
        """JSON-able columns: {"seconds", "t": [...], "frame": {stat: [...]}, "regions": {name:
        {stat: [...]}}}; a region that did not exist at a sample has null there."""
        samples = list(self.samples)
        names: dict[str, None] = {}
        for sample in samples:
            names.update(dict.fromkeys(sample["regions"]))
        regions = {}
        for name in names:
            regions[name] = {k: [s["regions"][name][k] if name in s["regions"] else None
                                 for s in samples] for k in REGION_STATS}
        return {"seconds": self.seconds, "t": [s["t"] for s in samples],
                "frame": {k: [s["frame"][k] for s in samples] for k in FRAME_STATS},
                "regions": regions}
