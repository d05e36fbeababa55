#!/usr/bin/env python3
"""Benchmark every stage and the whole pipeline on this machine: table, JSON, chart.

    python scripts/bench.py                  # everything, 5 s per scenario (~3 minutes)
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
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402

from flirstream.testing import free_port, raise_fd_limit  # noqa: E402

SIM_FPS = 26.5
LINGER_S = 1.0  # how long viewers keep counting after a window, for its late frames (quick: 0.5)
RATES = {1: "26.5 fps (sim_unique_every = 1)", 3: "8.8 fps (sim_unique_every = 3)"}

# (summary key, label, goal text, check or None)
GOALS = [
    ("vospi_frame_ms", "parse + CRC one Lepton 3 frame (ms, best repeat)", "<= 0.15",
     lambda v: v <= 0.15),
    ("encode_fps", "encode 160x120 -> 640x480 q80 (fps, one core)", ">= 800", lambda v: v >= 800),
    ("encode_vs_bare_jpeg", "render time / bare JPEG encode time", "<= 1.4", lambda v: v <= 1.4),
    ("seed_speedup", "seed (matplotlib) time / ours", ">= 6", lambda v: v >= 6),
    ("fanout_u1_min_client_share", "fan-out N max, 26.5 fps: worst client's share of frames",
     ">= 0.95", lambda v: v >= 0.95),
    ("fanout_u1_server_cpu_percent", "fan-out N max, 26.5 fps: server CPU %", "<= 100",
     lambda v: v <= 100),
    ("fanout_u3_min_client_share", "fan-out N max, 8.8 fps: worst client's share of frames",
     ">= 0.95", lambda v: v >= 0.95),
    ("fanout_u3_server_cpu_percent", "fan-out N max, 8.8 fps: server CPU %", "<= 100",
     lambda v: v <= 100),
    ("latency_p50_ms", "latency capture -> viewer p50 (ms)", "<= 10", lambda v: v <= 10),
    ("latency_p99_ms", "latency capture -> viewer p99 (ms)", "<= 50", lambda v: v <= 50),
    ("slow_rss_growth_frames_per_client", "slow clients: server RSS growth per slow client (frames)",
     "-", None),
    ("slow_rss_excess_frames_per_client",
     "slow clients: RSS per slow client minus per reading viewer (frames)", "<= 1", lambda v: v <= 1),
    ("slow_normal_min_share", "slow clients: worst normal client's share of frames", ">= 0.95",
     lambda v: v >= 0.95),
    ("slow_normal_latency_p99_ms", "slow clients: normal clients' latency p99 (ms)", "<= 50",
     lambda v: v <= 50),
    ("pipeline_cpu_capture_percent", "pipeline 26.5 Hz, 1 viewer: capture CPU %", "-", None),
    ("pipeline_cpu_encoder_percent", "pipeline 26.5 Hz, 1 viewer: encoder CPU %", "-", None),
    ("pipeline_cpu_server_percent", "pipeline 26.5 Hz, 1 viewer: server CPU %", "-", None),
    ("pipeline_cpu_total_percent", "pipeline 26.5 Hz, 1 viewer: all three stages CPU %", "-", None),
]
SUMMARY_KEYS = [g[0] for g in GOALS] + [
    "fanout_clients", "latency_clients", "slow_clients", "slow_rss_growth_bytes_per_client",
    "slow_reader_rss_growth_bytes_per_client",
    "slow_normal_min_share_before", "slow_normal_latency_p99_ms_before", "frame_message_bytes",
    "latency_p90_ms", "vospi_frame_median_ms", "fanout_u1_loadgen_cpu_percent",
    "fanout_u3_loadgen_cpu_percent"]


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- helpers

def percentile(values: list, q: float) -> Optional[float]:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rnd(v: Optional[float], digits: int = 3) -> Optional[float]:
    return None if v is None else round(float(v), digits)


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system seconds of a process and its live children."""
    total = 0.0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def rss_bytes(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def system_busy() -> tuple[float, float]:
    t = psutil.cpu_times()
    return (t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0),
            t.idle + getattr(t, "iowait", 0.0))


def sleep_until(t: float) -> None:
    while True:
        left = t - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.25))


# ---------------------------------------------------------------- the pipeline

class StageProc:
    """One stage as a child process: `python -m flirstream STAGE --config PATH`."""

    def __init__(self, stage: str, config: Path, workdir: Path) -> None:
        self.stage = stage
        self.log_path = workdir / f"{stage}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flirstream", stage, "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(workdir), env=env,
            start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


class Pipeline:
    """capture (simulated camera) -> encoder -> server on free loopback ports."""

    def __init__(self, workdir: Path, unique_every: int = 1,
                 overrides: Optional[dict[str, dict[str, str]]] = None) -> None:
        self.workdir = workdir
        self.overrides = overrides or {}
        self.port = free_port()
        self.endpoints = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("frames", "images", "control",
                                                                             "camera")}
        self.unique_every = unique_every
        self.stages: dict[str, StageProc] = {}

    def config(self, unique_every: int) -> Path:
        sections = {
            "endpoints": self.endpoints,
            "capture": {"source": "sim", "sensor": "lepton3", "sim_fps": SIM_FPS,
                        "sim_unique_every": unique_every, "dedupe": "yes"},
            "encoder": {"size": "auto", "quality": 80},
            "server": {"host": "127.0.0.1", "port": self.port, "max_clients": 5000,
                       "backlog": 2048},
        }
        for name, keys in self.overrides.items():
            sections.setdefault(name, {}).update(keys)
        text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                       for name, keys in sections.items())
        path = self.workdir / f"bench-u{unique_every}.conf"
        path.write_text(text)
        return path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.config(self.unique_every)
        for stage in ("capture", "encoder", "server"):
            self.stages[stage] = StageProc(stage, config, self.workdir)
        self.wait_http()

    def wait_http(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, st in self.stages.items():
                if not st.alive():
                    raise RuntimeError(f"{name} exited with {st.proc.returncode}:\n{st.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not listen on port {self.port} within {timeout:g} s:\n"
                           + self.stages["server"].log_tail())

    def restart(self, stage: str, unique_every: Optional[int] = None) -> None:
        if unique_every is not None:
            self.unique_every = unique_every
        self.stages[stage].stop()
        self.stages[stage] = StageProc(stage, self.config(self.unique_every), self.workdir)
        if stage == "server":
            self.wait_http()

    def check(self) -> None:
        for name, st in self.stages.items():
            if not st.alive():
                raise RuntimeError(f"{name} exited with {st.proc.returncode}:\n{st.log_tail()}")

    def check_or_restart(self) -> None:
        """After a failed section: start again any stage that died (its log tail is printed)."""
        for name, st in list(self.stages.items()):
            if not st.alive():
                log(f"{name} had exited with {st.proc.returncode}:\n{st.log_tail()}\nrestarting it")
                self.restart(name)

    def metrics(self) -> dict:
        """Numeric samples of /metrics (name{labels} -> value); {} if it does not answer."""
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=3) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    def stop(self) -> None:
        for stage in ("server", "encoder", "capture"):
            if stage in self.stages:
                self.stages[stage].stop()


class Tap(threading.Thread):
    """Subscribes to the encoder's images: the frames published to the server, by capture time."""

    def __init__(self, endpoint: str, topic: bytes = b"image") -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.topic = topic  # b"thermal": the measured frames (what thermal-mode viewers get)
        self.frames: list[tuple[float, int, int]] = []  # (t, seq, jpeg bytes)
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100)
        sock.setsockopt(zmq.SUBSCRIBE, self.topic)
        sock.connect(self.endpoint)
        try:
            while not self.stopping.is_set():
                if not sock.poll(100):
                    continue
                parts = sock.recv_multipart()
                if len(parts) < 3:
                    continue
                try:
                    header = json.loads(parts[1])
                    item = (float(header["t"]), int(header["seq"]), len(parts[2]))
                except (ValueError, KeyError, TypeError):
                    continue
                with self.lock:
                    self.frames.append(item)
                    if len(self.frames) > 200_000:
                        del self.frames[:100_000]
        finally:
            sock.close()

    def window(self, t0: float, t1: float) -> list[tuple[float, int, int]]:
        with self.lock:
            return [f for f in self.frames if t0 <= f[0] < t1]


class LoadGroup:
    """k load-generator processes holding n viewers between them."""

    def __init__(self, url: str, n: int, procs: int, mode: str = "normal",
                 connect_timeout: float = 20.0, max_seconds: float = 600.0,
                 path: str = "/ws") -> None:
        self.n = n
        self.mode = mode
        k = max(1, min(procs, n))
        counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
        ws = url.replace("http://", "ws://") + path  # e.g. /ws?mode=thermal
        self.procs = [subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "loadgen.py"), "--url", ws, "--clients", str(c),
             "--mode", mode, "--connect-timeout", str(connect_timeout),
             "--max-seconds", str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
            for c in counts if c > 0]
        self.ps = [psutil.Process(p.pid) for p in self.procs]
        self.ready: list[dict] = []
        self.timeout = connect_timeout * 4 + 10

    def _line(self, proc: subprocess.Popen, timeout: float) -> dict:
        box: list = []
        t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            raise RuntimeError(f"load generator {proc.pid} did not answer within {timeout:g} s")
        return json.loads(box[0])

    def wait_ready(self) -> dict:
        self.ready = [self._line(p, self.timeout) for p in self.procs]
        return {"connected": sum(r["connected"] for r in self.ready),
                "failed": sum(r["failed"] for r in self.ready),
                "with_frame": sum(r["with_frame"] for r in self.ready),
                "connect_s": max(r["connect_s"] for r in self.ready),
                "errors": [e for r in self.ready for e in r["errors"]][:5]}

    def send_window(self, t0: float, t1: float, linger: float) -> None:
        line = json.dumps({"t0": t0, "t1": t1, "linger": linger}) + "\n"
        for p in self.procs:
            p.stdin.write(line)
            p.stdin.flush()

    def results(self, timeout: float) -> list[dict]:
        return [self._line(p, timeout) for p in self.procs]

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.ps)

    def stop(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
                p.stdin.close()
            except (OSError, ValueError):
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


# ---------------------------------------------------------------- one measured window

def measure(pipe: Pipeline, tap: Tap, groups: list[LoadGroup], duration: float,
            profile: Optional[Path] = None) -> dict:
    """Run one window over every group; return the window's figures."""
    linger = LINGER_S
    t0 = time.time() + 0.3
    t1 = t0 + duration
    for g in groups:
        g.send_window(t0, t1, linger)
    stage_ps = {name: st.ps for name, st in pipe.stages.items()}
    spy = None
    sleep_until(t0)
    cpu0 = {name: cpu_seconds(p) for name, p in stage_ps.items()}
    load0 = sum(g.cpu() for g in groups)
    sys0 = system_busy()
    rss0 = rss_bytes(stage_ps["server"])
    w0 = time.time()
    if profile is not None and shutil.which("py-spy"):
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(stage_ps["server"].pid),
                                "--duration", str(max(1, int(duration))), "--format", "raw",
                                "--output", str(profile), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss_max = rss0
    while time.time() < t1:
        time.sleep(min(0.25, max(0.0, t1 - time.time())))
        rss_max = max(rss_max, rss_bytes(stage_ps["server"]))
    wall = time.time() - w0
    cpu1 = {name: cpu_seconds(p) for name, p in stage_ps.items()}
    load1 = sum(g.cpu() for g in groups)
    sys1 = system_busy()
    rss1 = rss_bytes(stage_ps["server"])
    results = [(g, g.results(linger + 30)) for g in groups]
    if spy is not None:
        try:
            spy.wait(duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    pipe.check()
    published = tap.window(t0, t1)
    busy = sys1[0] - sys0[0]
    idle = sys1[1] - sys0[1]
    out = {
        "t0": t0, "duration_s": round(wall, 3),
        "published": len(published),
        "published_fps": round(len(published) / duration, 2),
        "jpeg_bytes_mean": round(sum(f[2] for f in published) / len(published)) if published else None,
        "cpu_percent": {name: round((cpu1[name] - cpu0[name]) / wall * 100, 1) for name in cpu0},
        "loadgen_cpu_percent": round((load1 - load0) / wall * 100, 1),
        "system_busy_percent": round(busy / max(1e-9, busy + idle) * psutil.cpu_count() * 100, 1),
        "server_rss_mb": round(rss1 / 2**20, 2), "server_rss_max_mb": round(rss_max / 2**20, 2),
        "server_rss_start_mb": round(rss0 / 2**20, 2),
        "server_rss_bytes": {"start": rss0, "end": rss1, "max": rss_max},
        "groups": [],
    }
    for g, rs in results:
        clients = [c for r in rs for c in r["clients"]]
        shares = [min(c[0] / len(published), 1.0) if published else 0.0 for c in clients]
        lat = [x for r in rs for x in r["latency_ms"]]
        frames = sum(c[1] for c in clients)
        entry = {
            "mode": g.mode, "clients": g.n,
            "open": sum(r.get("open", 0) for r in rs),
            "client_errors": sorted({e for r in rs for e in r.get("client_errors", [])})[:5],
        }
        if g.mode == "normal":
            entry.update({
                "share_min": rnd(min(shares)) if shares else None,
                "share_p5": rnd(percentile(shares, 5)),
                "share_median": rnd(percentile(shares, 50)),
                "share_mean": rnd(sum(shares) / len(shares)) if shares else None,
                "clients_at_95": sum(1 for s in shares if s >= 0.95),
                "frames_in_window_total": sum(c[0] for c in clients),
                "message_bytes_mean": round(sum(c[2] for c in clients) / frames) if frames else None,
                "received_mbit_s": round(sum(c[2] for c in clients) * 8 / (duration + linger) / 1e6, 1),
                "skipped_seq": sum(r.get("gaps", 0) for r in rs),
                "latency_samples": len(lat),
            })
            for name in ("latency_ms", "encode_ms", "server_ms", "net_ms"):
                vals = [x for r in rs for x in r.get(name, [])]
                entry[name] = {q: rnd(percentile(vals, p), 2)
                               for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}
        else:
            entry.update({"slow_open": sum(r.get("slow_open", 0) for r in rs),
                          "slow_closed_by_server": sum(r.get("slow_closed_by_server", 0) for r in rs)})
        out["groups"].append(entry)
    sent = sum(g.get("frames_in_window_total", 0) for g in out["groups"])
    # server CPU per frame delivered to a viewer (the fan-out's unit cost; includes its fixed costs)
    out["server_cpu_us_per_frame_sent"] = (
        round((cpu1["server"] - cpu0["server"]) / sent * 1e6, 1) if sent else None)
    return out


def run_clients(pipe: Pipeline, tap: Tap, n: int, procs: int, duration: float,
                profile: Optional[Path] = None) -> dict:
    group = LoadGroup(pipe.url, n, procs)
    try:
        ready = group.wait_ready()
        log(f"  {n} viewers: {ready['connected']} connected, {ready['with_frame']} got a frame "
            f"({ready['connect_s']:.1f} s)" + (f", errors {ready['errors']}" if ready["failed"] else ""))
        result = measure(pipe, tap, [group], duration, profile=profile)
        result["ready"] = ready
        result["metrics"] = {k: v for k, v in pipe.metrics().items()
                             if re.search(r"frame|skip|sent|viewer|client", k)}
        return result
    finally:
        group.stop()


# ---------------------------------------------------------------- the sections

class ScriptRun:
    """scripts/<script> run as a child process writing JSON to a temporary file."""

    def __init__(self, script: str, args: list[str]) -> None:
        self.script = script
        self.proc: Optional[subprocess.Popen] = None
        path = ROOT / "scripts" / script
        if not path.exists():
            log(f"  {script} is not there: skipped")
            return
        self.tmp = tempfile.TemporaryDirectory()
        self.out = Path(self.tmp.name) / "out.json"
        cmd = [sys.executable, str(path), *args, "--json", str(self.out)]
        log("  $ python " + " ".join(str(Path(c).relative_to(ROOT)) if c == str(path) else c
                                     for c in cmd[1:]))
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float) -> Optional[dict]:
        """Wait for it (bounded); the parsed JSON, or None if it failed."""
        if self.proc is None:
            return None
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            log(f"  {self.script} took longer than {timeout:g} s: skipped")
            return None
        try:
            if self.proc.returncode != 0:
                log(f"  {self.script} failed ({self.proc.returncode}): {stderr.strip()[-800:]}")
                return None
            sys.stderr.write(stdout)
            return json.loads(self.out.read_text())
        except (OSError, ValueError) as exc:
            log(f"  {self.script} wrote no JSON: {exc}")
            return None
        finally:
            self.tmp.cleanup()


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


def section_pipeline(pipe: Pipeline, tap: Tap, duration: float) -> dict:
    log("pipeline: 26.5 Hz, every frame unique, 1 viewer")
    return run_clients(pipe, tap, 1, 1, duration)


def section_slow(pipe: Pipeline, tap: Tap, normal: int, slow: int, duration: float,
                 settle: float) -> dict:
    """Server RSS with `slow` viewers that never read, against the same number that do read.

    1. fresh server, `normal` viewers: window "before" (their share and latency, the RSS baseline);
    2. + `slow` clients that stop reading after the handshake; after `settle` s (their kernel
       buffers are full by then) window "with_slow": the normal viewers' share and latency, and
       the server's largest RSS;
    3. control: fresh server, `normal` viewers, + `slow` viewers that DO read: window "control".
    A slow client's RSS cost minus a reading viewer's is what stalling costs the server; the
    goal is at most one frame (a stalled viewer keeps only a reference to the frame in flight)."""
    log(f"slow clients: {normal} normal viewers, then {slow} that never read")
    pipe.restart("server")  # a fresh server: its RSS has not been grown by earlier scenarios
    normal_g = LoadGroup(pipe.url, normal, 1)
    slow_g = None
    try:
        ready = normal_g.wait_ready()
        time.sleep(0.5)
        before = measure(pipe, tap, [normal_g], duration)
        slow_g = LoadGroup(pipe.url, slow, 1, mode="slow")
        slow_ready = slow_g.wait_ready()
        log(f"  {slow_ready['connected']} slow clients connected; letting their buffers fill "
            f"for {settle:g} s")
        time.sleep(settle)
        with_slow = measure(pipe, tap, [normal_g, slow_g], duration)
    finally:
        normal_g.stop()
        if slow_g is not None:
            slow_g.stop()

    log(f"  control: {normal} normal viewers, then {slow} more that read")
    pipe.restart("server")
    normal_g = LoadGroup(pipe.url, normal, 1)
    readers = None
    try:
        normal_g.wait_ready()
        time.sleep(0.5)
        control_before = measure(pipe, tap, [normal_g], min(duration, 1.0))
        readers = LoadGroup(pipe.url, slow, 1)
        readers.wait_ready()
        time.sleep(settle)
        control = measure(pipe, tap, [normal_g, readers], duration)
    finally:
        normal_g.stop()
        if readers is not None:
            readers.stop()

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


def section_fanout(pipe: Pipeline, tap: Tap, counts: list[int], procs: int, duration: float,
                   unique_every: int, profile_dir: Optional[Path]) -> list[dict]:
    out = []
    log(f"fan-out at {RATES[unique_every]}")
    for n in counts:
        profile = (profile_dir / f"server-u{unique_every}-n{n}.txt"
                   if profile_dir is not None and n == max(counts) else None)
        r = run_clients(pipe, tap, n, procs, duration, profile=profile)
        r["n"] = n
        r["unique_every"] = unique_every
        g = r["groups"][0]
        log(f"  -> published {r['published_fps']} fps; share min {g['share_min']} median "
            f"{g['share_median']}; latency p50 {g['latency_ms']['p50']} p99 {g['latency_ms']['p99']} "
            f"ms; server {r['cpu_percent']['server']} % CPU, {r['server_rss_mb']} MB; load "
            f"generators {r['loadgen_cpu_percent']} %; machine {r['system_busy_percent']} % busy")
        out.append(r)
    return out


# ---------------------------------------------------------------- summary, table, chart

def summarize(res: dict) -> dict:
    s: dict[str, Any] = {k: None for k in SUMMARY_KEYS}
    for sec in ("vospi", "encoder"):
        for k, v in (res.get(sec) or {}).items():
            if k in s:
                s[k] = rnd(v, 4)
    p = res.get("pipeline")
    if p:
        for stage in ("capture", "encoder", "server"):
            s[f"pipeline_cpu_{stage}_percent"] = p["cpu_percent"].get(stage)
        s["pipeline_cpu_total_percent"] = rnd(sum(p["cpu_percent"].values()), 1)
    sl = res.get("slow")
    if sl:
        b, w = sl["before"]["groups"][0], sl["with_slow"]["groups"][0]
        s.update(slow_clients=sl["slow_ready"]["connected"],
                 slow_rss_growth_bytes_per_client=sl["rss_growth_bytes_per_client"],
                 slow_rss_growth_frames_per_client=sl["rss_growth_frames_per_client"],
                 slow_rss_excess_frames_per_client=sl["rss_excess_frames_per_client"],
                 slow_reader_rss_growth_bytes_per_client=sl["reader_rss_growth_bytes_per_client"],
                 slow_normal_min_share=w["share_min"], slow_normal_min_share_before=b["share_min"],
                 slow_normal_latency_p99_ms=w["latency_ms"]["p99"],
                 slow_normal_latency_p99_ms_before=b["latency_ms"]["p99"],
                 frame_message_bytes=sl["frame_message_bytes"])
    fan = res.get("fanout") or []
    if fan:
        nmax = max(r["n"] for r in fan)
        s["fanout_clients"] = nmax
        for r in fan:
            if r["n"] == nmax:
                u = r["unique_every"]
                s[f"fanout_u{u}_min_client_share"] = r["groups"][0]["share_min"]
                s[f"fanout_u{u}_server_cpu_percent"] = r["cpu_percent"]["server"]
                s[f"fanout_u{u}_loadgen_cpu_percent"] = r["loadgen_cpu_percent"]
        lat_n = res.get("latency_clients")
        lat = [r for r in fan if r["unique_every"] == 1 and r["n"] == lat_n] or \
              [r for r in fan if r["unique_every"] == 1]
        if lat:
            g = lat[0]["groups"][0]["latency_ms"]
            s.update(latency_clients=lat[0]["n"], latency_p50_ms=g["p50"], latency_p90_ms=g["p90"],
                     latency_p99_ms=g["p99"])
        if s["frame_message_bytes"] is None:
            s["frame_message_bytes"] = fan[0]["groups"][0]["message_bytes_mean"]
    return s


def table(summary: dict) -> str:
    rows = [("figure", "measured", "goal", "")]
    for key, label, goal, check in GOALS:
        v = summary.get(key)
        verdict = "" if v is None or check is None else ("ok" if check(v) else "MISSED")
        rows.append((label, "-" if v is None else f"{v:g}", goal, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fanout_table(fan: list[dict]) -> str:
    head = ("fps", "N", "published/s", "share min", "share med", "p50 ms", "p99 ms", "server CPU %",
            "us/frame sent", "server RSS MB", "loadgen CPU %", "machine busy %")
    rows = [head]
    for r in fan:
        g = r["groups"][0]
        rows.append((f"{SIM_FPS / r['unique_every']:.1f}", str(r["n"]), f"{r['published_fps']:g}",
                     f"{g['share_min']}", f"{g['share_median']}", f"{g['latency_ms']['p50']}",
                     f"{g['latency_ms']['p99']}", f"{r['cpu_percent']['server']}",
                     f"{r['server_cpu_us_per_frame_sent']}", f"{r['server_rss_mb']}",
                     f"{r['loadgen_cpu_percent']}", f"{r['system_busy_percent']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def chart(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fan = res.get("fanout") or []
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax1, ax2), (ax3, ax4) = axes
    for u, style, color in ((1, "o-", "#1f77b4"), (3, "s--", "#2ca02c")):
        rs = sorted((r for r in fan if r["unique_every"] == u), key=lambda r: r["n"])
        if not rs:
            continue
        ns = [r["n"] for r in rs]
        label = f"{SIM_FPS / u:.1f} fps"
        ax1.plot(ns, [r["groups"][0]["share_min"] for r in rs], style, color=color,
                 label=f"{label} worst client")
        ax1.plot(ns, [r["groups"][0]["share_median"] for r in rs], style, color=color, alpha=0.4,
                 label=f"{label} median client")
        ax2.plot(ns, [r["cpu_percent"]["server"] for r in rs], style, color=color,
                 label=f"server, {label}")
        ax2.plot(ns, [r["loadgen_cpu_percent"] for r in rs], style, color=color, alpha=0.4,
                 label=f"load generators, {label}")
        ax2.plot(ns, [r["system_busy_percent"] for r in rs], ":", color=color, alpha=0.4,
                 label=f"whole machine, {label}")
        ax3.plot(ns, [r["groups"][0]["latency_ms"]["p50"] for r in rs], style, color=color,
                 label=f"p50, {label}")
        ax3.plot(ns, [r["groups"][0]["latency_ms"]["p99"] for r in rs], style, color=color,
                 alpha=0.4, label=f"p99, {label}")
    ax1.axhline(0.95, color="red", lw=0.8, ls=":", label="goal 0.95")
    ax1.set(xscale="log", xlabel="websocket viewers", ylabel="share of published frames received",
            title="Fan-out: frames received per viewer", ylim=(0, 1.05))
    ax2.axhline(100, color="red", lw=0.8, ls=":", label="one core")
    ax2.set(xscale="log", xlabel="websocket viewers", ylabel="CPU % (100 = one core, machine = 200)",
            title="Fan-out: CPU")
    ax3.axhline(10, color="red", lw=0.8, ls=":")
    ax3.axhline(50, color="red", lw=0.8, ls="-.")
    ax3.set(xscale="log", yscale="log", xlabel="websocket viewers", ylabel="ms",
            title="Latency: capture time -> viewer received (goals 10 / 50 ms)")
    for ax in (ax1, ax2, ax3):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    p = res.get("pipeline")
    if p:
        names = list(p["cpu_percent"])
        ax4.bar(names, [p["cpu_percent"][n] for n in names], color=["#4c72b0", "#dd8452", "#55a868"])
        for i, n in enumerate(names):
            ax4.text(i, p["cpu_percent"][n], f"{p['cpu_percent'][n]:.1f} %", ha="center",
                     va="bottom", fontsize=9)
    s = res.get("summary", {})
    notes = [f"{label}: {s[key]:g}" for key, label in (
        ("vospi_frame_ms", "VoSPI parse+CRC ms/frame"), ("encode_fps", "render fps"),
        ("encode_vs_bare_jpeg", "render / bare JPEG"), ("seed_speedup", "seed / ours"))
        if s.get(key) is not None]
    ax4.set(ylabel="CPU % (100 = one core)",
            title="Pipeline at 26.5 Hz (every frame unique), one viewer")
    if notes:
        ax4.text(0.98, 0.97, "\n".join(notes), transform=ax4.transAxes, ha="right", va="top",
                 fontsize=8, bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    fig.suptitle(f"flir-stream bench on {res['machine']['cpu']} x{res['machine']['cores']} "
                 f"({res['started']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total
                                                                          / 2**30, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


# ---------------------------------------------------------------- main

SECTIONS = ("vospi", "encoder", "pipeline", "slow", "fanout", "views")


def main(argv: Optional[list[str]] = None) -> int:
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

    duration = args.duration or (1.0 if args.quick else 5.0)
    global LINGER_S
    LINGER_S = 0.5 if args.quick else 1.0
    counts = [int(x) for x in (args.clients or ("5" if args.quick else "10,100,500,1000")).split(",")]
    slow = args.slow if args.slow is not None else (5 if args.quick else 100)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; expected {', '.join(SECTIONS)}")
    chart_path = Path(args.chart) if args.chart else (
        None if args.quick else ROOT / "bench-results" / "bench.png")
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        section, dot, key = name.partition(".")
        if not (sep and dot):
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides.setdefault(section.strip(), {})[key.strip()] = value.strip()
    fd_limit = raise_fd_limit()
    if max(counts) + 200 > fd_limit:
        log(f"warning: open-file limit {fd_limit} is low for {max(counts)} viewers")

    res: dict[str, Any] = {
        "command": "python scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(), "quick": args.quick, "duration_s": duration, "clients": counts,
        "latency_clients": args.latency_clients if args.latency_clients in counts else
        min(counts, key=lambda n: abs(n - args.latency_clients)),
        "fd_limit": fd_limit, "overrides": overrides,
    }
    t_start = time.monotonic()
    # Full runs measure one thing at a time. --quick (a smoke test of the harness, whose figures
    # mean little) runs the two single-stage benchmarks alongside the pipeline to save time.
    background: dict[str, ScriptRun] = {}
    if "vospi" in only:
        log("vospi: parse + CRC")
        background["vospi"] = start_vospi(args.quick)
        if not args.quick:
            res["vospi"] = section_vospi(background.pop("vospi"))
    if "encoder" in only:
        log("encoder: Renderer.render")
        background["encoder"] = start_encoder(args.quick)
        if not args.quick:
            res["encoder"] = section_encoder(background.pop("encoder"))

    if only & {"pipeline", "slow", "fanout"}:
        workdir = Path(tempfile.mkdtemp(prefix="flir-bench-"))
        pipe = Pipeline(workdir, unique_every=1, overrides=overrides)
        tap = Tap(pipe.endpoints["images"])
        tap.start()
        try:
            pipe.start()
            def attempt(name: str, fn: Any) -> None:
                """One section; a failure is logged and recorded, and the others still run."""
                try:
                    res[name] = fn()
                except Exception as exc:  # noqa: BLE001 - reported in the JSON and the log
                    log(f"{name}: FAILED: {type(exc).__name__}: {exc}")
                    res.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                    pipe.check_or_restart()

            if "pipeline" in only:
                attempt("pipeline", lambda: section_pipeline(pipe, tap, duration))
            if "slow" in only:
                attempt("slow", lambda: section_slow(pipe, tap, 2 if args.quick else 10, slow,
                                                     duration, settle=0.5 if args.quick else 3.0))
            if "fanout" in only:
                def fanout() -> list:
                    fan = section_fanout(pipe, tap, counts, args.procs, duration, 1, profile_dir)
                    pipe.restart("capture", unique_every=3)
                    time.sleep(0.3 if args.quick else 1.0)
                    return fan + section_fanout(pipe, tap, counts, args.procs, duration, 3,
                                                profile_dir)
                attempt("fanout", fanout)
        finally:
            tap.stopping.set()
            pipe.stop()
            tap.join(2)
            if args.keep:
                log(f"stage logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    if "vospi" in background:
        res["vospi"] = section_vospi(background.pop("vospi"))
    if "encoder" in background:
        res["encoder"] = section_encoder(background.pop("encoder"))
    if "views" in only and (not args.quick or args.only):
        log("views: bytes per frame, CPU per viewer, browser (scripts/bench_views.py)")
        res["views"] = section_views(start_views(args.quick, duration))
    res["elapsed_s"] = round(time.monotonic() - t_start, 1)
    res["summary"] = summarize(res)

    print(table(res["summary"]))
    for name, error in (res.get("errors") or {}).items():
        print(f"{name}: FAILED: {error}")
    if res.get("fanout"):
        print()
        print(fanout_table(res["fanout"]))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"\nJSON: {out}")
    if chart_path is not None:
        chart(res, chart_path)
        print(f"chart: {chart_path}")
    return 1 if res.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
