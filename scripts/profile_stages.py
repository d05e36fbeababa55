#!/usr/bin/env python3
"""Where each stage's CPU goes per frame, in the running pipeline: the per-frame functions timed
with their thread's CPU clock (benchlib/stage_profile.py), cold caches and all.

    scripts/profile_stages.py [--realdata ../shared/realdata/cacophony-v2.cptv] [--duration 20]
    scripts/profile_stages.py --replay RECORDING.vospi    (a VoSPI recording as it is)

The pipeline is bench_views.py's CPU share setup: capture replays the real recording (vospi-file,
26.5 Hz, every frame unique), the encoder measures and makes RAD2, the server sends it to one
thermal-mode viewer (--mode jpeg: a JPEG-mode viewer instead). For each stage it prints its main
thread's CPU in the window (% of one core, microseconds per frame) and for each timed function its
microseconds per call, calls per frame and microseconds per frame (inclusive of the timed functions
it calls). --functions STAGE=MODULE:QUALNAME,... replaces a stage's list. Writes
bench-results/profile_stages.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT  # (first: it puts the checkout on sys.path for the stages' packages)
from benchlib.harness import (RECEIVED, LoadGroup, add_realdata_argument, log, make_replay, metrics,
                              replay_config)
from flirstream.testing import Pipeline, write_json

# Each stage's per-frame path, outermost first.
FUNCTIONS = {
    "capture": ["capture.reader:Reader.poll", "capture.sources:FileSource.read",
                "capture.vospi:FrameAssembler.feed", "capture.vospi:packet_crcs",
                "capture.reader:Deduper.is_duplicate", "capture.camera:Camera.meaning",
                "flirstream.wire:pack_raw", "flirstream.links:publish"],
    "encoder": ["encoder.app:Encoder._frames", "flirstream.links:drain",
                "flirstream.links:has_message", "encoder.app:Encoder._encode",
                "flirstream.wire:unpack_raw", "encoder.app:Encoder._measure",
                "encoder.measure:Meter.measure", "flirstream.radiometric:encode_frame",
                "flirstream.wire:pack_thermal", "encoder.app:Encoder._send",
                "encoder.app:Encoder._publish"],
    "server": ["server.feed:Feed._readable", "flirstream.links:drain_by_topic",
               "flirstream.links:has_message", "flirstream.wire:unpack_thermal",
               "server.hub:Hub.on_thermal", "server.protocol:thermal_payload",
               "server.fanout:Fanout.publish", "server.hub:Hub.on_image"],
}


def profile(replay: Path, workdir: Path, duration: float, mode: str,
            functions: dict[str, list[str]]) -> dict:
    config = replay_config(workdir, replay)
    outs = {name: workdir / f"profile-{name}.json" for name in functions}
    wrap = {name: (sys.executable, "-m", "scripts.benchlib.stage_profile", str(outs[name]),
                   ",".join(names), "--") for name, names in functions.items()}
    pipe = Pipeline(config, each=True, wrap=wrap)
    try:
        pipe.wait_listening()
        group = LoadGroup(pipe.base, 1, 1, path="/ws?mode=thermal" if mode == "thermal" else "/ws")
        try:
            group.wait_ready()
            time.sleep(2.0)  # past start-up: the encoder knows of the viewer, caches are filled
            # The server's frame count is read inside the stages' windows, so that every frame
            # it counts went through each stage within its window (and "per frame" means per
            # frame the viewer got; under load capture may make frames the others skip).
            for stage in pipe.each.values():
                os.kill(stage.pid, signal.SIGUSR1)
            received0 = metrics(pipe).get(RECEIVED)
            time.sleep(duration)
            received1 = metrics(pipe).get(RECEIVED)
            for stage in pipe.each.values():
                os.kill(stage.pid, signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while not all(p.exists() for p in outs.values()) and time.monotonic() < deadline:
                time.sleep(0.05)  # (each stage writes its file from its signal handler)
            pipe.check()
        finally:
            group.stop()
    finally:
        pipe.stop()
    if received0 is None or received1 is None or received1 <= received0:
        raise RuntimeError(f"no frames counted by the server ({RECEIVED}: {received0} -> {received1})")
    frames = received1 - received0
    result: dict = {"mode": mode, "duration_s": duration, "frames": frames, "stages": {}}
    for name, path in outs.items():
        data = json.loads(path.read_text())
        stage = {"main_thread_percent": round(data["thread_cpu_ns"] / 1e9 / duration * 100, 2),
                 "main_thread_us_per_frame": round(data["thread_cpu_ns"] / 1e3 / frames, 1),
                 "functions": {}}
        for function, counts in data["functions"].items():
            calls = counts["calls"]
            stage["functions"][function] = {
                "us_per_call": round(counts["ns"] / 1e3 / calls, 1) if calls else None,
                "calls_per_frame": round(calls / frames, 2),
                "us_per_frame": round(counts["ns"] / 1e3 / frames, 1)}
        result["stages"][name] = stage
    return result


def table(result: dict) -> str:
    lines = [f"{result['frames']:.0f} frames in {result['duration_s']:g} s, one {result['mode']}-mode "
             f"viewer; microseconds of the calling thread's CPU (inclusive)"]
    for name, stage in result["stages"].items():
        lines.append(f"{name}: main thread {stage['main_thread_percent']} % of a core, "
                     f"{stage['main_thread_us_per_frame']} us a frame")
        for function, f in stage["functions"].items():
            per_call = "-" if f["us_per_call"] is None else f"{f['us_per_call']:8.1f}"
            lines.append(f"  {function:44} {per_call:>8} us/call x {f['calls_per_frame']:5.2f} "
                         f"= {f['us_per_frame']:7.1f} us/frame")
    return "\n".join(lines)


def parse_functions(specs: list[str]) -> dict[str, list[str]]:
    functions = {name: list(names) for name, names in FUNCTIONS.items()}
    for spec in specs:
        stage, _, names = spec.partition("=")
        if stage not in functions or not names:
            raise ValueError(f"--functions {spec!r}: expected STAGE=MODULE:QUALNAME,... with STAGE "
                             f"one of {', '.join(functions)}")
        functions[stage] = names.split(",")
    return functions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_realdata_argument(ap)
    ap.add_argument("--replay", help="a VoSPI recording (capture --record, scripts/cptv_to_vospi.py) "
                                     "to replay instead of converting --realdata")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds in the measured window")
    ap.add_argument("--mode", choices=("thermal", "jpeg"), default="thermal",
                    help="the viewer's /ws mode")
    ap.add_argument("--functions", action="append", default=[], metavar="STAGE=NAMES",
                    help="replace a stage's timed functions (MODULE:QUALNAME, comma-separated)")
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "profile_stages.json"))
    args = ap.parse_args()
    real = Path(args.realdata)
    if args.replay and not Path(args.replay).is_file():
        ap.error(f"--replay {args.replay}: no such file")
    if not args.replay and not real.is_file():
        ap.error(f"the real recording {real} is missing (--realdata PATH or FLIR_REALDATA)")
    if not 1 <= args.duration <= 3600:
        ap.error(f"--duration {args.duration:g}: expected 1 to 3600 seconds")
    try:
        functions = parse_functions(args.functions)
    except ValueError as exc:
        ap.error(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="flir-profile-"))
    try:
        replay = (Path(args.replay).resolve() if args.replay
                  else make_replay(real, workdir / "real.vospi"))
        log(f"profiling the stages for {args.duration:g} s")
        result = profile(replay, workdir, args.duration, args.mode, functions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(result))
    print(f"wrote {write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
