"""The figures: one function per section of the benchmark (bench.py's --only names them)."""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from flirstream.testing import Pipeline, setting

from .harness import (LINGER_S, LoadGroup, ScriptRun, Tap, bench_config, log, measure, restart_dead,
                      rnd, run_clients)

RATES = {1: "26.5 fps (sim_unique_every = 1)", 3: "8.8 fps (sim_unique_every = 3)"}
SECTIONS = ("vospi", "encoder", "pipeline", "slow", "fanout", "views")


@dataclass
class Plan:
    """What one run measures, and how long (bench.py's options after their defaults)."""
    only: set
    quick: bool = False
    duration: float = 5.0
    counts: list = field(default_factory=lambda: [10, 100, 500, 1000])
    procs: int = 4
    slow: int = 100
    profile_dir: Optional[Path] = None
    overrides: dict = field(default_factory=dict)
    keep: bool = False
    views_in_quick: bool = False  # --only named the sections: views runs even with --quick

    @property
    def linger(self) -> float:
        """Seconds viewers keep counting after a window, for its late frames."""
        return 0.5 if self.quick else LINGER_S


def find_number(data: Any, *names: str) -> Optional[float]:
    """The first numeric value under any of `names` (searched depth-first in nested dicts)."""
    if isinstance(data, dict):
        for name in names:
            v = data.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
        for v in data.values():
            found = find_number(v, *names)
            if found is not None:
                return found
    return None


def start_vospi(quick: bool) -> ScriptRun:
    return ScriptRun("bench_vospi.py", ["--quick"] if quick else [])


def section_vospi(run: ScriptRun) -> dict:
    data = run.result(300)
    frame = ((data or {}).get("results") or {}).get("lepton3_frame") or {}
    # The figure is the fastest repeat (what the code costs, as timeit advises); the median also
    # shows what other processes on the machine added.
    return {"raw": data, "vospi_frame_ms": find_number(frame, "best_ms"),
            "vospi_frame_median_ms": find_number(frame, "median_ms")}


def start_encoder(quick: bool) -> ScriptRun:
    return ScriptRun("bench_encoder.py", ["--quick"] if quick else [])


def section_encoder(run: ScriptRun) -> dict:
    data = run.result(600)
    return {"raw": data,
            "encode_fps": find_number(data, "render_fps"),
            "encode_vs_bare_jpeg": find_number(data, "vs_bare_jpeg"),
            "seed_speedup": find_number(data, "seed_speedup")}


def start_views(quick: bool, duration: float) -> ScriptRun:
    return ScriptRun("bench_views.py", ["--quick"] if quick else ["--duration", f"{duration:g}"])


def section_views(run: ScriptRun) -> dict:
    return {"raw": run.result(1800)}


def section_pipeline(pipe: Pipeline, tap: Tap, duration: float, linger: float = LINGER_S) -> dict:
    log("pipeline: 26.5 Hz, every frame unique, 1 viewer")
    return run_clients(pipe, tap, 1, 1, duration, linger=linger)


def section_slow(pipe: Pipeline, tap: Tap, normal: int, slow: int, duration: float,
                 settle: float, linger: float = LINGER_S) -> dict:
    """Server RSS with `slow` viewers that never read, against the same number that do read.

    1. fresh server, `normal` viewers: window "before" (their share and latency, the RSS baseline);
    2. + `slow` clients that stop reading after the handshake; after `settle` s (their kernel
       buffers are full by then) window "with_slow": the normal viewers' share and latency, and
       the server's largest RSS;
    3. control: fresh server, `normal` viewers, + `slow` viewers that DO read: window "control".
    A slow client's RSS cost minus a reading viewer's is what stalling costs the server; the
    goal is at most one frame (a stalled viewer keeps only a reference to the frame in flight)."""
    log(f"slow clients: {normal} normal viewers, then {slow} that never read")
    ready, slow_ready, before, with_slow = joined_windows(
        pipe, tap, normal, slow, "slow", duration, duration, settle, linger)
    log(f"  control: {normal} normal viewers, then {slow} more that read")
    _, _, control_before, control = joined_windows(
        pipe, tap, normal, slow, "normal", min(duration, 1.0), duration, settle, linger)

    n = max(1, slow_ready["connected"])
    growth = with_slow["server_rss_bytes"]["max"] - before["server_rss_bytes"]["end"]
    reader_growth = control["server_rss_bytes"]["max"] - control_before["server_rss_bytes"]["end"]
    frame = with_slow["groups"][0]["message_bytes_mean"] or before["groups"][0]["message_bytes_mean"]
    per_client = growth / n
    per_reader = reader_growth / n
    return {"ready": ready, "slow_ready": slow_ready, "before": before, "with_slow": with_slow,
            "control_before": control_before, "control": control,
            "rss_growth_bytes": round(growth), "rss_growth_bytes_per_client": round(per_client),
            "reader_rss_growth_bytes_per_client": round(per_reader),
            "frame_message_bytes": frame,
            "rss_growth_frames_per_client": rnd(per_client / frame) if frame else None,
            "rss_excess_frames_per_client": rnd((per_client - per_reader) / frame) if frame else None,
            "rss_growth_while_stalled_bytes": with_slow["server_rss_bytes"]["end"]
            - with_slow["server_rss_bytes"]["start"]}


def joined_windows(pipe: Pipeline, tap: Tap, normal: int, extra: int, mode: str,
                   before_s: float, duration: float, settle: float, linger: float
                   ) -> tuple[dict, dict, dict, dict]:
    """On a fresh server (its RSS not grown by earlier scenarios): `normal` viewers, a window of
    `before_s`; then `extra` viewers of `mode` join and, `settle` s later (a slow client's kernel
    buffers are full by then), a window over both. Returns both groups' readiness and windows."""
    pipe.restart("server")
    normal_g = LoadGroup(pipe.base, normal, 1)
    extra_g = None
    try:
        ready = normal_g.wait_ready()
        time.sleep(0.5)
        before = measure(pipe, tap, [normal_g], before_s, linger=linger)
        extra_g = LoadGroup(pipe.base, extra, 1, mode=mode)
        extra_ready = extra_g.wait_ready()
        log(f"  {extra_ready['connected']} more clients ({mode}) connected; waiting {settle:g} s")
        time.sleep(settle)
        joined = measure(pipe, tap, [normal_g, extra_g], duration, linger=linger)
    finally:
        normal_g.stop()
        if extra_g is not None:
            extra_g.stop()
    return ready, extra_ready, before, joined


def section_fanout(pipe: Pipeline, tap: Tap, counts: list[int], procs: int, duration: float,
                   unique_every: int, profile_dir: Optional[Path],
                   linger: float = LINGER_S) -> list[dict]:
    out = []
    log(f"fan-out at {RATES[unique_every]}")
    for n in counts:
        profile = (profile_dir / f"server-u{unique_every}-n{n}.txt"
                   if profile_dir is not None and n == max(counts) else None)
        r = run_clients(pipe, tap, n, procs, duration, profile=profile, linger=linger)
        r["n"] = n
        r["unique_every"] = unique_every
        g = r["groups"][0]
        log(f"  -> published {r['published_fps']} fps; share min {g['share_min']} median "
            f"{g['share_median']}; latency p50 {g['latency_ms']['p50']} p99 {g['latency_ms']['p99']} "
            f"ms; server {r['cpu_percent']['server']} % CPU, {r['server_rss_mb']} MB; load "
            f"generators {r['loadgen_cpu_percent']} %; machine {r['system_busy_percent']} % busy")
        out.append(r)
    return out


def network_sections(res: dict, plan: Plan) -> None:
    """pipeline, slow and fanout on one pipeline of real stages; a failed section is logged and
    recorded in res["errors"], its dead stages restarted, and the others still run."""
    workdir = Path(tempfile.mkdtemp(prefix="flir-bench-"))
    config = bench_config(workdir, plan.overrides)
    tap = Tap(setting(config, "endpoints", "images"))
    tap.start()
    pipe = Pipeline(config, each=True)
    try:
        pipe.wait_listening()

        def attempt(name: str, fn: Any) -> None:
            try:
                res[name] = fn()
            except Exception as exc:  # noqa: BLE001 - reported in the JSON and the log
                log(f"{name}: FAILED: {type(exc).__name__}: {exc}")
                res.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                restart_dead(pipe)

        if "pipeline" in plan.only:
            attempt("pipeline", lambda: section_pipeline(pipe, tap, plan.duration, plan.linger))
        if "slow" in plan.only:
            attempt("slow", lambda: section_slow(pipe, tap, 2 if plan.quick else 10, plan.slow,
                                                 plan.duration, settle=0.5 if plan.quick else 3.0,
                                                 linger=plan.linger))
        if "fanout" in plan.only:
            def fanout() -> list:
                fan = section_fanout(pipe, tap, plan.counts, plan.procs, plan.duration, 1,
                                     plan.profile_dir, plan.linger)
                pipe.restart("capture", "--set", "capture.sim_unique_every=3")
                time.sleep(0.3 if plan.quick else 1.0)
                return fan + section_fanout(pipe, tap, plan.counts, plan.procs, plan.duration, 3,
                                            plan.profile_dir, plan.linger)
            attempt("fanout", fanout)
    finally:
        tap.stopping.set()
        pipe.stop()
        tap.join(2)
        if plan.keep:
            log(f"stage logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(res: dict, plan: Plan) -> None:
    """Every section the plan names, into res. Full runs measure one thing at a time; --quick (a
    smoke test of the harness, whose figures mean little) runs the two single-stage benchmarks
    alongside the pipeline to save time."""
    background: dict[str, ScriptRun] = {}
    if "vospi" in plan.only:
        log("vospi: parse + CRC")
        background["vospi"] = start_vospi(plan.quick)
        if not plan.quick:
            res["vospi"] = section_vospi(background.pop("vospi"))
    if "encoder" in plan.only:
        log("encoder: Renderer.render")
        background["encoder"] = start_encoder(plan.quick)
        if not plan.quick:
            res["encoder"] = section_encoder(background.pop("encoder"))
    if plan.only & {"pipeline", "slow", "fanout"}:
        network_sections(res, plan)
    if "vospi" in background:
        res["vospi"] = section_vospi(background.pop("vospi"))
    if "encoder" in background:
        res["encoder"] = section_encoder(background.pop("encoder"))
    if "views" in plan.only and (not plan.quick or plan.views_in_quick):
        log("views: bytes per frame, CPU per viewer, browser (scripts/bench_views.py)")
        res["views"] = section_views(start_views(plan.quick, plan.duration))
