#!/usr/bin/env python3
"""Does camera control hold up the frame path? A real `flir-stream capture` (simulated Lepton with
its CCI device, every frame unique, no dedupe) is watched for a while idle and a while under a
stream of camera commands (info, gain, emissivity, FFC mode, as fast as they are answered): the
gaps between consecutive frames (capture's own timestamps) should not grow.

    scripts/bench_camera_control.py --seconds 10 --json camera_control.json

Prints the gap figures (median, p99, max, frames per second) of both phases and the commands
answered per second; writes them as JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flirstream import config as configuration, links, wire  # noqa: E402
from flirstream.testing import Stage, raw_frames, write_config  # noqa: E402

COMMANDS = [{"op": "camera"}, {"op": "gain", "mode": "low"}, {"op": "gain", "mode": "high"},
            {"op": "emissivity", "emissivity": 0.95, "background_c": 22.0},
            {"op": "ffc_mode", "mode": "manual"}, {"op": "ffc_mode", "mode": "auto"},
            {"op": "emissivity", "emissivity": 1.0}]


def gaps_ms(stamps: list[float]) -> dict:
    d = np.diff(np.asarray(stamps)) * 1000.0
    if d.size == 0:
        return {"frames": len(stamps)}
    return {"frames": len(stamps), "fps": round(len(stamps) / (stamps[-1] - stamps[0]), 2),
            "gap_median_ms": round(float(np.median(d)), 2),
            "gap_p99_ms": round(float(np.percentile(d, 99)), 2),
            "gap_max_ms": round(float(d.max()), 2)}


def watch(sock: zmq.Socket, seconds: float) -> list[float]:
    """Capture's timestamps of the frames received within `seconds`."""
    return [frame.t for frame in raw_frames(sock, seconds)]


def hammer(ctx: zmq.Context, endpoint: str, stop: threading.Event, answered: list) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    i = 0
    while not stop.is_set():
        sock.send(wire.pack_control({**COMMANDS[i % len(COMMANDS)], "id": i}))
        if sock.poll(5000):
            reply = json.loads(sock.recv())
            answered.append(bool(reply.get("ok")))
        i += 1
    sock.close(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp), capture={"source": "sim", "sim_unique_every": 1,
                                                "dedupe": "no"})
        cfg = configuration.load(path)
        capture = Stage("capture", path)
        ctx = zmq.Context()
        try:
            sock = links.subscriber(ctx, cfg.endpoints.frames, wire.RAW_TOPIC, hwm=1000)
            watch(sock, 2.0)  # start-up
            idle = gaps_ms(watch(sock, args.seconds))
            stop, answered = threading.Event(), []
            thread = threading.Thread(target=hammer, args=(ctx, cfg.endpoints.camera, stop,
                                                           answered))
            thread.start()
            busy = gaps_ms(watch(sock, args.seconds))
            stop.set()
            thread.join()
            busy["commands_per_s"] = round(len(answered) / args.seconds, 1)
            busy["commands_ok"] = sum(answered)
            sock.close(0)
        finally:
            capture.stop()
            ctx.destroy(linger=0)
    result = {"idle": idle, "with_commands": busy}
    for name, figures in result.items():
        print(f"{name:>14}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
