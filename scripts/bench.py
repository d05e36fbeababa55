#!/usr/bin/env python3
"""Benchmark every stage and the whole pipeline on this machine: table, JSON, chart.

    python scripts/bench.py                  # everything, 5 s per scenario (~5 minutes)
    python scripts/bench.py --quick          # 5 clients, 1 s per scenario, no chart (~20 s)
    python scripts/bench.py --only fanout --clients 100,1000 --duration 10

Figures (docs/PERFORMANCE.md has the goals and what limits each one):
  vospi     parse + CRC of one Lepton 3 frame            (runs scripts/bench_vospi.py)
  encoder   Renderer.render fps, vs bare JPEG, vs seed   (runs scripts/bench_encoder.py)
  pipeline  CPU % of capture, encoder, server: simulated camera at 26.5 Hz, every frame unique,
            one websocket viewer
  slow      10 normal viewers, then 100 viewers that never read: server RSS growth per slow client
            and the normal viewers' frames and latency before and with them
  fanout    N viewers (N = --clients) at 26.5 unique frames/s (sim_unique_every = 1) and at the real
            sensor's ~8.7 (= 3): per-client share of the frames published, server CPU and RSS,
            capture-to-viewer latency (the `latency` figure is the 100-client, 26.5 fps run)
  views     issue 15 (runs scripts/bench_views.py; not part of --quick unless --only names it):
            bytes per frame before/after on the real recording and the simulator, encoder and
            server CPU with 1/10/100 JPEG-mode and thermal-mode viewers on a vospi-file replay of
            the real recording, the pipeline's CPU share, the browser's per-frame time

The network figures run the real stages (`python -m flirstream capture|encoder|server`, simulated
camera) on free loopback ports, with the viewers in separate load-generator processes
(scripts/loadgen.py). "Published" frames are counted by a ZeroMQ subscriber of the encoder's images
(what the server is offered); a client's share is the frames it received with a capture time t
inside the window over the frames published with t inside the window. CPU % is psutil cpu_times
(user + system, the process and its children) over the window: 100 % = one core.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

from benchlib import ROOT
from benchlib.harness import (SIM_FPS, LoadGroup, Pipeline, ScriptRun, Tap, log,  # noqa: F401
                              measure, run_clients)
from benchlib.measurements import RATES, SECTIONS, Plan, run  # noqa: F401
from benchlib.report import GOALS, SUMMARY_KEYS, machine, started, finish  # noqa: F401
from flirstream.testing import raise_fd_limit

# (the names beyond main's stay for `import bench`)


def parse_args(argv: Optional[list[str]]) -> tuple[argparse.Namespace, Plan]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--quick", action="store_true",
                    help="5 viewers, 1 s per scenario, 5 slow clients, quick stage benches, no chart")
    ap.add_argument("--duration", type=float, help="seconds per measured window (default 5; quick 1)")
    ap.add_argument("--clients", help="fan-out viewer counts, comma separated (default 10,100,500,1000)")
    ap.add_argument("--procs", type=int, default=4, help="load-generator processes (default 4)")
    ap.add_argument("--slow", type=int, help="slow clients (default 100; quick 5)")
    ap.add_argument("--latency-clients", type=int, default=100,
                    help="which fan-out run gives the latency figure (default 100)")
    ap.add_argument("--only", help="comma separated sections: " + ", ".join(SECTIONS))
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "bench.json"), help="JSON output")
    ap.add_argument("--chart", help="PNG chart (default bench-results/bench.png; none with --quick)")
    ap.add_argument("--profile", metavar="DIR",
                    help="py-spy the server during the largest fan-out (raw stacks into DIR)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the stages' server.conf, e.g. --set encoder.size=160x120")
    ap.add_argument("--keep", action="store_true", help="keep the stage logs (the work directory)")
    args = ap.parse_args(argv)

    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; expected {', '.join(SECTIONS)}")
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        section, dot, key = name.partition(".")
        if not (sep and dot):
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides.setdefault(section.strip(), {})[key.strip()] = value.strip()
    plan = Plan(
        only=only, quick=args.quick, duration=args.duration or (1.0 if args.quick else 5.0),
        counts=[int(x) for x in (args.clients or ("5" if args.quick else "10,100,500,1000")).split(",")],
        procs=args.procs, slow=args.slow if args.slow is not None else (5 if args.quick else 100),
        profile_dir=Path(args.profile) if args.profile else None, overrides=overrides,
        keep=args.keep, views_in_quick=bool(args.only))
    return args, plan


def main(argv: Optional[list[str]] = None) -> int:
    args, plan = parse_args(argv)
    if plan.profile_dir:
        plan.profile_dir.mkdir(parents=True, exist_ok=True)
    fd_limit = raise_fd_limit()
    if max(plan.counts) + 200 > fd_limit:
        log(f"warning: open-file limit {fd_limit} is low for {max(plan.counts)} viewers")
    counts = plan.counts
    res: dict[str, Any] = started(
        "python scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        quick=args.quick, duration_s=plan.duration, clients=counts,
        latency_clients=min(counts, key=lambda n: abs(n - args.latency_clients)),
        fd_limit=fd_limit, overrides=plan.overrides)
    t_start = time.monotonic()
    run(res, plan)
    res["elapsed_s"] = round(time.monotonic() - t_start, 1)
    chart_path = Path(args.chart) if args.chart else (
        None if args.quick else ROOT / "bench-results" / "bench.png")
    return finish(res, Path(args.json), chart_path)


if __name__ == "__main__":
    sys.exit(main())
