"""Server counters and their Prometheus text exposition (format 0.0.4), without a client library."""
from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Iterable, Mapping

# capture t -> server send, seconds; a Lepton frame is ~37 ms apart, a Pi pipeline ~50-200 ms.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
TRANSPORTS = ("websocket", "mjpeg")


class Histogram:
    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1  # cumulative is computed in the exposition
                break


class Metrics:
    """The server's own counters; stage counters are passed in for the exposition."""

    def __init__(self) -> None:
        self.frames_received = 0  # pictures (image frames)
        self.measured_received = 0  # measured (thermal) frames: every frame, even while paused
        self.frames_bad = 0  # messages that did not unpack
        self.drained = 0  # frames replaced by a newer one before the server handled them
        self.seq_gaps = 0  # frames missing between consecutive seqs (dropped before the server)
        self.sent: dict[str, int] = defaultdict(int)
        self.skipped: dict[str, int] = defaultdict(int)  # latest-wins skips of slow clients
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)  # by reason
        self.snapshots = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self._last_seq: int | None = None

    def reject(self, reason: str) -> None:
        """A request or message refused (host, token, origin, control_token, max_clients)."""
        self.rejected[reason] += 1

    def sent_to(self, transport: str, nbytes: int) -> None:
        self.sent[transport] += 1
        self.bytes_sent[transport] += nbytes

    def skipped_for(self, transport: str) -> None:
        """A slow client of `transport` never got a frame: a newer one replaced it."""
        self.skipped[transport] += 1

    def snapshot_served(self) -> None:
        self.snapshots += 1

    def frame_bad(self) -> None:
        """A message from the encoder that did not unpack."""
        self.frames_bad += 1

    def observe_latency(self, seconds: float) -> None:
        """Capture time to the time the server sends the frame out."""
        self.latency.observe(seconds)

    def measured_in(self) -> None:
        self.measured_received += 1

    def frame_in(self, seq: int, skipped_in_drain: int) -> None:
        self.frames_received += 1
        self.drained += skipped_in_drain
        if self._last_seq is not None:  # a lower seq means capture restarted: no gap
            missing = seq - self._last_seq - 1
            self.seq_gaps += max(0, missing - skipped_in_drain)
        self._last_seq = seq

    def exposition(self, viewers: Mapping[str, int], stage_counters: Mapping[str, Mapping],
                   stage_states: Mapping[str, str], extra: Iterable[tuple] = ()) -> str:
        """The exposition; `extra` = more (name, type, help, samples) metrics (the monitor's)."""
        out = Exposition()
        out.metric("flirstream_frames_received_total", "counter",
                   "frames the server received from the encoder", [({}, self.frames_received)])
        out.metric("flirstream_measured_frames_received_total", "counter",
                   "measured frames (temperatures; every frame, also while the picture is paused) "
                   "the server received from the encoder", [({}, self.measured_received)])
        out.metric("flirstream_frames_sent_total", "counter", "frames sent to viewers",
                   [({"transport": t}, self.sent[t]) for t in TRANSPORTS])
        out.metric("flirstream_bytes_sent_total", "counter", "frame bytes sent to viewers",
                   [({"transport": t}, self.bytes_sent[t]) for t in TRANSPORTS])
        drops = [({"stage": "server", "reason": "newer_frame_waiting"}, self.drained),
                 ({"stage": "server", "reason": "bad_message"}, self.frames_bad),
                 ({"stage": "upstream", "reason": "seq_gap"}, self.seq_gaps)]
        drops += [({"stage": "server", "reason": f"slow_{t}_client"}, self.skipped[t])
                  for t in TRANSPORTS]
        out.metric("flirstream_frames_dropped_total", "counter",
                   "frames not delivered, by stage and reason", drops)
        out.metric("flirstream_viewers", "gauge", "connected viewers",
                   [({"transport": t}, n) for t, n in viewers.items()])
        out.metric("flirstream_rejected_total", "counter", "requests refused, by reason",
                   [({"reason": r}, n) for r, n in sorted(self.rejected.items())])
        out.metric("flirstream_snapshots_total", "counter", "snapshots served", [({}, self.snapshots)])
        out.metric("flirstream_stage_up", "gauge",
                   "1 for each stage's current state (streaming, paused, offline, silent, ...)",
                   [({"stage": s, "state": st}, 1) for s, st in stage_states.items()])
        samples = []
        for stage, counters in stage_counters.items():
            for name, value in sorted(counters.items()):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    samples.append(({"stage": stage, "event": name}, value))
        # A counter (they only grow; a restarted stage starts again at 0, which Prometheus'
        # rate() handles). promtool: a counter's name ends in _total and does not say "counter".
        out.metric("flirstream_stage_events_total", "counter",
                   "events each stage counts in its status (frames, discards, crc_errors, ...)",
                   samples)
        out.histogram("flirstream_frame_latency_seconds",
                      "capture time to server send, per frame", self.latency)
        for metric in extra:
            out.metric(*metric)
        return out.text()


_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, hist: Histogram) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        cumulative = 0
        for bound, n in zip(hist.bounds, hist.counts):
            cumulative += n
            self.lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {hist.count}')
        self.lines.append(f"{name}_sum {_number(hist.sum)}")
        self.lines.append(f"{name}_count {hist.count}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{_NAME.sub("_", k)}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"
