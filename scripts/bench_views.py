#!/usr/bin/env python3
"""Issue 15's figures: each viewer its own view, in a stream that fits a phone.

    scripts/bench_views.py [--realdata ../shared/realdata/cacophony-v2.cptv] [--quick]

  bytes     per frame per viewer, on the real Lepton 3 recording and on the simulator: before (the
            /ws JPEG message: header + 640x480 q80 JPEG) and after (the /ws?mode=thermal message:
            header + lossless RAD2), plus RAD2 with step 2 / 3 for comparison; and the JPEG's PSNR
            against the exact picture (the thermal-mode canvas IS the exact picture: tests/
            test_thermal_js.py checks it pixel for pixel)
  cpu       capture (vospi-file replay of the real recording at 26.5 Hz, every frame unique),
            encoder and server CPU with 1, 10 and 100 viewers, in JPEG mode (the encoder encodes,
            one palette for all) and thermal mode (each viewer its own palette - any of the 4 it
            likes: the server's work does not depend on it - and the encoder measures and makes
            the RAD2 payload, no JPEG); the 1-thermal-viewer run is the whole pipeline's CPU share,
            goal <= 5 % of one core; then this machine's wake-up floor (benchlib/floor.py).
            --modes thermal runs the thermal mode only; --stage-cpus 0 runs the three stages
            under taskset -c 0 (docs/OPERATIONS.md, "CPU: the stages on one core")
  browser   decode + paint + draw per frame in Chromium at a phone viewport, CPU throttled 1x and
            4x (runs scripts/bench_browser.py), goal < 10 ms at 4x
  picture   the same real frame on a phone-sized canvas (390x292 CSS px at 3x) as the thermal-mode
            viewer draws it and as the JPEG-mode viewer did, each against the reference (the exact
            640x480 picture before JPEG, drawn like the JPEG-mode viewer draws): PSNR, and PNG
            screenshots in bench-results/ to judge by eye

Viewers are scripts/loadgen.py websocket clients (they read each message's header and skip the
rest, as bench.py's fan-out does). CPU % = the time the stage's threads ran in the window
(benchlib.harness.cpu_seconds), 100 % = one core; each figure is the median of --windows windows.
Writes bench-results/views.json; scripts/bench.py --only views runs it too.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchlib import ROOT  # (first: it puts the checkout on sys.path for the stages' packages)
from benchlib.floor import wake_floor
from benchlib.harness import (LoadGroup, add_realdata_argument, log, make_replay, measure,
                              replay_config)
from benchlib.report import machine
from encoder.measure import Meter
from encoder.render import Renderer
from flirstream import wire
from flirstream.testing import CHROMIUM_ARGS, CHROMIUM, STAGES, Pipeline, StaticSite, write_json
from recordings import load
from flirstream import radiometric
from server import protocol

GOAL_BYTES = 15_000
GOAL_PIPELINE_PERCENT = 5.0
GOAL_BROWSER_MS = 10.0
PALETTES = ("ironbow", "white-hot", "jet", "inferno")  # what the viewers "choose" (browser-side)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ---------------------------------------------------------------- bytes per frame

def message_sizes(spec: str) -> dict:
    frames = load(spec)
    renderer = Renderer()  # server.conf's defaults: ironbow, linear, 640x480 (auto), q80
    meter = Meter()
    jpeg, thermal, steps, quality = [], [], {2: [], 3: []}, []
    for i, pixels in enumerate(frames.pixels):
        frame = wire.Frame(seq=i, t=time.time(), sensor="lepton3", pixels=pixels,
                           tlinear=frames.tlinear)
        r = frame.picture = renderer.render_frame(frame)
        frame.measurement = meter.measure(frame)
        jpeg.append(len(protocol.frame_payloads(frame, frame.t).plain))
        thermal.append(len(protocol.thermal_payload(frame, frame.t, 1)))
        for step in steps:
            steps[step].append(len(radiometric.encode(pixels, step=step)) + thermal[-1]
                               - len(radiometric.encode(pixels)))
        shown = cv2.imdecode(np.frombuffer(r.jpeg, np.uint8), cv2.IMREAD_COLOR)
        quality.append(psnr(shown, r.bgr))
    mean = lambda v: round(sum(v) / len(v))  # noqa: E731
    out = {"frames": len(jpeg), "tlinear": frames.tlinear, "fps": round(frames.fps, 2),
           "before_jpeg_message_bytes": mean(jpeg), "after_thermal_message_bytes": mean(thermal),
           "after_thermal_message_bytes_max": max(thermal),
           "thermal_step2_message_bytes": mean(steps[2]),
           "thermal_step3_message_bytes": mean(steps[3]),
           "jpeg_psnr_db_vs_exact": round(float(np.mean(quality)), 2),
           "thermal_psnr_db_vs_exact": "inf (identical: tests/test_thermal_js.py)"}
    out["ratio"] = round(out["before_jpeg_message_bytes"] / out["after_thermal_message_bytes"], 2)
    out["goal_met"] = out["after_thermal_message_bytes"] <= GOAL_BYTES
    out["mbit_s_before_at_8_7_fps"] = round(out["before_jpeg_message_bytes"] * 8 * 8.7 / 1e6, 2)
    out["mbit_s_after_at_8_7_fps"] = round(out["after_thermal_message_bytes"] * 8 * 8.7 / 1e6, 2)
    return out


# ---------------------------------------------------------------- CPU per viewer

MODES = {"thermal": "/ws?mode=thermal", "jpeg": "/ws"}


def cpu_runs(replay: Path, clients: list[int], duration: float, workdir: Path,
             windows: int = 1, modes: tuple[str, ...] = tuple(MODES),
             stage_cpus: Optional[str] = None) -> dict:
    """Each mode and viewer count: `windows` windows in a row; the figures are the median
    window's (by the three stages' total), and every window's total is listed next to them.
    `stage_cpus`: the three stages run under `taskset -c stage_cpus` (the viewers do not)."""
    out: dict = {}
    wrap = {name: ("taskset", "-c", stage_cpus) for name in STAGES} if stage_cpus else None
    for mode in modes:
        path = MODES[mode]
        config = replay_config(workdir, replay)
        runs = []
        pipe = Pipeline(config, each=True, wrap=wrap)
        try:
            pipe.wait_listening()
            for n in clients:
                log(f"cpu: {mode} mode, {n} viewers")
                group = LoadGroup(pipe.base, n, max(1, min(4, n // 25 + 1)), path=path)
                try:
                    group.wait_ready()
                    ms = [measure(pipe, None, [group], duration)  # no tap: see measure()
                          for _ in range(windows)]
                finally:
                    group.stop()
                totals = [round(sum(w["cpu_percent"].values()), 2) for w in ms]
                m = sorted(ms, key=lambda w: sum(w["cpu_percent"].values()))[len(ms) // 2]
                g = m["groups"][0]
                cpu = m["cpu_percent"]
                runs.append({
                    "viewers": n, "published_fps": m["published_fps"],
                    "cpu_percent": cpu, "total_percent": round(sum(cpu.values()), 2),
                    "windows_total_percent": totals,
                    "server_percent_per_viewer": round(cpu["server"] / n, 3),
                    "encoder_percent_per_viewer": round(cpu["encoder"] / n, 3),
                    "share_min": g["share_min"], "message_bytes_mean": g["message_bytes_mean"],
                    "latency_ms_p50": g["latency_ms"]["p50"], "latency_ms_p99": g["latency_ms"]["p99"],
                    "loadgen_cpu_percent": m["loadgen_cpu_percent"],
                    "system_busy_percent": m["system_busy_percent"]})
                log(f"  {json.dumps(runs[-1])}")
        finally:
            pipe.stop()
        out[mode] = runs
    return out


# ---------------------------------------------------------------- browser

def browser(sources: list[str], rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "browser.json"
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_browser.py"), *sources,
                               "--rates", "1", "4", "--rounds", str(rounds), "--json", str(out)],
                              capture_output=True, text=True, timeout=900)
        sys.stderr.write(done.stdout)
        if done.returncode != 0:
            raise RuntimeError(f"bench_browser.py failed: {done.stderr[-1500:]}")
        data = json.loads(out.read_text())
    return {key: {"total_ms_median": r["total"]["median"], "total_ms_p95": r["total"]["p95"],
                  "decode_ms_median": r["decode"]["median"], "paint_ms_median": r["paint"]["median"],
                  "draw_ms_median": r["draw"]["median"], "jpeg_640x480_ms_median": r["jpeg"]["median"],
                  "goal_met": r["total"]["p95"] < GOAL_BROWSER_MS if key.endswith("cpu/4") else None}
            for key, r in data.items()}


# ---------------------------------------------------------------- the picture on a phone

PICTURE_JS = """async ([payloads, jpeg, exact, meta, w, h]) => {
    const canvas = (smooth) => { const c = document.createElement("canvas"); c.width = w; c.height = h;
                                 const x = c.getContext("2d"); x.imageSmoothingEnabled = smooth; return c; };
    const view = new thermal.ThermalView({palette: "ironbow", agc: "linear"});
    let out;
    for (const p of payloads) out = view.render(await thermal.decode(page.bytes(p)), meta);
    const shown = canvas(false);
    thermal.draw(shown, out.image);                         // what the thermal-mode viewer shows
    const old = canvas(true);                               // what the JPEG-mode viewer showed
    const bitmap = await createImageBitmap(new Blob([page.bytes(jpeg)], {type: "image/jpeg"}));
    old.getContext("2d").drawImage(bitmap, 0, 0, w, h);
    const ref = canvas(true);                               // the exact picture, drawn the same way
    const px = page.bytes(exact);
    const img = new ImageData(new Uint8ClampedArray(px.buffer), 640, 480);
    const s = document.createElement("canvas"); s.width = 640; s.height = 480;
    s.getContext("2d").putImageData(img, 0, 0);
    ref.getContext("2d").drawImage(s, 0, 0, w, h);
    const data = (c) => c.getContext("2d").getImageData(0, 0, w, h).data;
    const r = data(ref);
    const psnr = (c) => { const d = data(c); let e = 0, n = 0;
        for (let i = 0; i < d.length; i += 4)
            for (let k = 0; k < 3; k++) { const x = d[i + k] - r[i + k]; e += x * x; n++; }
        return e === 0 ? Infinity : 10 * Math.log10(255 * 255 / (e / n)); };
    return {thermal_psnr_db: psnr(shown), jpeg_psnr_db: psnr(old),
            png: {thermal: shown.toDataURL(), jpeg: old.toDataURL(), reference: ref.toDataURL()}};
}"""


def picture(real: Path, outdir: Path) -> dict:
    from playwright.sync_api import sync_playwright
    import base64
    frames = load(str(real))
    renderer = Renderer()
    for pixels in frames.pixels[:30]:
        r = renderer.render_pixels(pixels, tlinear=False)
    rgba = np.dstack([r.bgr[..., ::-1], np.full(r.bgr.shape[:2], 255, np.uint8)])
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    site = StaticSite()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(site.url + "/thermal.html")
            page.wait_for_function("window.ready === true", timeout=15_000)
            got = page.evaluate(PICTURE_JS, [[b64(radiometric.encode(x)) for x in frames.pixels[:30]],
                                             b64(r.jpeg), b64(rgba.tobytes()),
                                             {"tlinear": False, "kelvin_per_count": 0.01}, 1170, 876])
            browser.close()
    finally:
        site.close()
    outdir.mkdir(parents=True, exist_ok=True)
    shots = {}
    for name, url in got.pop("png").items():
        path = outdir / f"views-phone-{name}.png"
        path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
        shots[name] = str(path)
    return {k: (round(v, 2) if isinstance(v, float) and v != float("inf") else "inf")
            for k, v in got.items()} | {"screenshots": shots, "canvas": "1170x876 (390x292 CSS px, 3x)"}


# ---------------------------------------------------------------- main

def table(res: dict) -> str:
    lines = []
    for label, b in (res.get("bytes") or {}).items():
        lines.append(f"bytes/frame {label:28} before {b['before_jpeg_message_bytes']:6d}  after "
                     f"{b['after_thermal_message_bytes']:6d} (x{b['ratio']:.1f} less; step 2: "
                     f"{b['thermal_step2_message_bytes']}, step 3: {b['thermal_step3_message_bytes']})"
                     f"  goal <= {GOAL_BYTES}: {'ok' if b['goal_met'] else 'MISSED'}   JPEG PSNR "
                     f"{b['jpeg_psnr_db_vs_exact']} dB vs exact, thermal identical")
    for mode, runs in (res.get("cpu") or {}).items():
        for r in runs:
            c = r["cpu_percent"]
            lines.append(f"cpu {mode:7} {r['viewers']:4d} viewers: capture {c['capture']:5.1f} "
                         f"encoder {c['encoder']:5.1f} server {c['server']:5.1f} = "
                         f"{r['total_percent']:5.1f} %  (server {r['server_percent_per_viewer']:.3f} "
                         f"%/viewer)  {r['message_bytes_mean']} B/msg, share min {r['share_min']}"
                         + (f"  (median of {'/'.join(map(str, r['windows_total_percent']))})"
                            if len(r.get("windows_total_percent", ())) > 1 else ""))
    pipe = res.get("pipeline_share")
    if pipe:
        lines.append(f"pipeline (real replay 26.5 Hz, 1 thermal viewer): {pipe['total_percent']} % "
                     f"of one core, goal <= {GOAL_PIPELINE_PERCENT}: "
                     f"{'ok' if pipe['goal_met'] else 'MISSED'}")
    floor = res.get("floor")
    if floor:
        lines.append(f"this machine's wake-up floor at {floor['fps']} Hz: a timer loop "
                     f"{floor['timer_percent']} %, a PUB -> SUB hop of raw frames "
                     f"{floor['hop_percent']} % (both ends; benchlib/floor.py)")
    pic = res.get("picture")
    if pic:
        lines.append(f"picture on a phone canvas vs the exact picture: thermal mode "
                     f"{pic['thermal_psnr_db']} dB, JPEG mode {pic['jpeg_psnr_db']} dB "
                     f"(screenshots: {', '.join(pic['screenshots'].values())})")
    for key, r in (res.get("browser") or {}).items():
        lines.append(f"browser {key:34} decode+paint+draw {r['total_ms_median']:.2f} ms median, p95 "
                     f"{r['total_ms_p95']:.2f} (JPEG path {r['jpeg_640x480_ms_median']:.2f})")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_realdata_argument(ap)
    ap.add_argument("--quick", action="store_true", help="2 s windows, 1 and 10 viewers, 1 round")
    ap.add_argument("--duration", type=float, help="seconds per CPU window (default 5; quick 2)")
    ap.add_argument("--clients", help="viewer counts (default 1,10,100)")
    ap.add_argument("--windows", type=int, help="CPU windows per run, the median reported "
                                                "(default 3; quick 1)")
    ap.add_argument("--only", default="bytes,cpu,browser,picture", help="bytes, cpu, browser, picture")
    ap.add_argument("--modes", default="thermal,jpeg", help="cpu: the /ws modes to run (thermal, jpeg)")
    ap.add_argument("--stage-cpus", metavar="CPUS",
                    help="cpu: run the three stages under taskset -c CPUS, e.g. 0 (the viewers "
                         "and the floor's programs stay unpinned)")
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "views.json"))
    args = ap.parse_args()
    real = Path(args.realdata)
    if not real.is_file():
        print(f"bench_views: the real recording {real} is missing (--realdata PATH or "
              f"FLIR_REALDATA)", file=sys.stderr)
        return 2
    duration = args.duration or (2.0 if args.quick else 5.0)
    clients = [int(c) for c in (args.clients or ("1,10" if args.quick else "1,10,100")).split(",")]
    only = set(args.only.split(","))
    windows = args.windows or (1 if args.quick else 3)
    modes = tuple(args.modes.split(","))
    if not set(modes) <= set(MODES):
        ap.error(f"--modes {args.modes}: expected thermal and/or jpeg, comma-separated")
    if args.stage_cpus and not shutil.which("taskset"):
        ap.error("--stage-cpus needs taskset (util-linux)")
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                 "machine": machine(), "realdata": str(real), "duration_s": duration,
                 "palettes": PALETTES}
    if "bytes" in only:
        log("bytes per frame")
        res["bytes"] = {f"real ({real.name})": message_sizes(str(real)),
                        "simulator (TLinear 0.01 K)": message_sizes("sim")}
    if "cpu" in only:
        workdir = Path(tempfile.mkdtemp(prefix="flir-views-"))
        try:
            replay = make_replay(real, workdir / "real.vospi")
            res["cpu"] = cpu_runs(replay, clients, duration, workdir, windows, modes,
                                  args.stage_cpus)
            res["stage_cpus"] = args.stage_cpus
            log("cpu: this machine's wake-up floor")
            res["floor"] = wake_floor(duration)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        one = next((r for r in res["cpu"]["thermal"] if r["viewers"] == 1), None)
        if one:
            res["pipeline_share"] = {"cpu_percent": one["cpu_percent"],
                                     "total_percent": one["total_percent"],
                                     "windows_total_percent": one["windows_total_percent"],
                                     "goal_met": one["total_percent"] <= GOAL_PIPELINE_PERCENT}
    if "browser" in only:
        log("browser: decode + paint + draw")
        res["browser"] = browser([str(real), "sim"], 1 if args.quick else 2)
    if "picture" in only:
        log("picture: the real frame on a phone canvas")
        res["picture"] = picture(real, ROOT / "bench-results")
    print(table(res))
    print(f"wrote {write_json(args.json, res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
