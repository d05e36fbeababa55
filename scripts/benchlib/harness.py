"""The benchmark harness: the stages' config (bench_config, for flirstream.testing.Pipeline with
each=True; replay_config on the real recording, made a VoSPI replay by make_replay), a tap of the
encoder's images (Tap), load-generator processes holding viewers (LoadGroup), one measured window
over them (measure) and a benchmark script run as a child (ScriptRun)."""
from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import os
import re
from pathlib import Path
from typing import Any, Optional

import psutil
import zmq

from flirstream import links, wire
from flirstream.testing import Pipeline, write_config

from . import ROOT

SIM_FPS = 26.5
# The real Lepton 3 recording the CPU-share figures are measured on (../shared/realdata/README.md).
REALDATA = ROOT.parent / "shared" / "realdata" / "cacophony-v2.cptv"
LINGER_S = 1.0  # how long viewers keep counting after a window, for its late frames


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


def run_seconds(pid: int) -> Optional[float]:
    """The CPU seconds a process's threads ran, to the nanosecond (Linux: each thread's
    /proc/PID/task/TID/schedstat); None where there is no such file. user + system time
    (psutil) counts in 10 ms ticks: a stage at 2 % of one core gets 20 of them in a 10 s window,
    so a tick either way moves a figure by 0.1 point."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            if tid == str(pid):
                return None  # no schedstat here at all (not Linux, or a kernel without it)
    return total / 1e9


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU seconds of a process and its live children (run_seconds where the system has it,
    else user + system)."""
    total = 0.0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0.0
    for p in procs:
        precise = run_seconds(p.pid)
        if precise is not None:
            total += precise
            continue
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

def bench_config(workdir: Path, overrides: Optional[dict[str, dict[str, str]]] = None) -> Path:
    """server.conf for the benchmarked pipeline: the simulated camera at 26.5 Hz, every frame
    unique (a restart with --set capture.sim_unique_every=3 gives the real sensor's rate)."""
    sections: dict[str, dict] = {
        # empty: the defaults a user gets (ipc:// in the runtime directory), not the tests' TCP
        "endpoints": {key: "" for key in ("frames", "images", "control", "camera")},
        "capture": {"source": "sim", "sensor": "lepton3", "sim_fps": SIM_FPS,
                    "sim_unique_every": 1, "dedupe": "yes"},
        "encoder": {"size": "auto", "quality": 80},
        "server": {"max_clients": 5000, "backlog": 2048},
    }
    for name, keys in (overrides or {}).items():
        sections.setdefault(name, {}).update(keys)
    return write_config(workdir, filename="bench.conf", **sections)


def add_realdata_argument(parser: Any) -> None:
    """--realdata: the real CPTV recording, default REALDATA or $FLIR_REALDATA."""
    parser.add_argument("--realdata", default=os.environ.get("FLIR_REALDATA") or str(REALDATA),
                        help="the real CPTV recording (default ../shared/realdata/cacophony-v2.cptv, "
                             "or $FLIR_REALDATA)")


def make_replay(recording: Path, out: Path) -> Path:
    """A CPTV recording as a VoSPI recording at `out` (scripts/cptv_to_vospi.py), for vospi-file:."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "cptv_to_vospi.py"), str(recording),
                    str(out)], check=True, capture_output=True, timeout=120)
    return out


def replay_config(workdir: Path, replay: Path) -> Path:
    """bench_config with capture replaying `replay` at the sensor's pace, looped, every frame
    unique: the pipeline of the CPU-share figure (raw counts: a CPTV file holds no TLinear)."""
    return bench_config(workdir, {"capture": {"source": f"vospi-file:{replay}", "tlinear": "no",
                                              "replay": "realtime", "loop": "yes"}})


def restart_dead(pipe: Pipeline) -> None:
    """After a failed section: start again any stage that died (its log tail is printed)."""
    for name, st in list(pipe.each.items()):
        if not st.alive():
            log(f"{name} had exited with {st.proc.returncode}:\n{st.log_tail()}\nrestarting it")
            pipe.restart(name, *st.args)


def metrics(pipe: Pipeline) -> dict:
    """Numeric samples of /metrics (name{labels} -> value); {} if it does not answer."""
    try:
        return pipe.metrics()
    except ValueError as exc:
        log(f"/metrics: {exc}")
        return {}


class Tap(threading.Thread):
    """Subscribes to the encoder's images: the frames published to the server, by capture time."""

    def __init__(self, endpoint: str, topic: bytes = b"image") -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.topic = topic  # b"thermal": the measured frames (what thermal-mode viewers get)
        self.frames: list[tuple[float, int, int]] = []  # (t, seq, JPEG or pixel bytes)
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        # wire.py owns the format: the frame as the server gets it, and its payload's size (a
        # thermal frame's pixels, from its shape: decoding them would be work the server does not do)
        unpack, size = {wire.IMAGE_TOPIC: (wire.unpack_image, lambda f: len(f.picture.jpeg)),
                        wire.THERMAL_TOPIC: (wire.unpack_thermal,
                                             lambda f: 2 * f.shape[0] * f.shape[1])
                        }[self.topic]
        sock = links.subscriber(zmq.Context.instance(), self.endpoint, self.topic, hwm=100)
        try:
            while not self.stopping.is_set():
                if not sock.poll(100):
                    continue
                try:
                    frame = unpack(sock.recv_multipart())
                except (ValueError, KeyError, TypeError):  # (a WireError is a ValueError)
                    continue
                with self.lock:
                    self.frames.append((frame.t, frame.seq, size(frame)))
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

RECEIVED = "flirstream_measured_frames_received_total"  # every frame, whatever the viewers watch


def measure(pipe: Pipeline, tap: Optional[Tap], groups: list[LoadGroup], duration: float,
            profile: Optional[Path] = None, linger: float = LINGER_S) -> dict:
    """Run one window over every group; return the window's figures. With no tap the frames
    published are counted by the server (its /metrics, read just outside the CPU window): a
    tap is one more subscriber the encoder sends every frame to, which a user's pipeline
    does not have, so the CPU figures are taken without one."""
    t0 = time.time() + 0.3
    t1 = t0 + duration
    for g in groups:
        g.send_window(t0, t1, linger)
    stage_ps = {name: st.ps for name, st in pipe.each.items()}
    spy = None
    sleep_until(t0)
    received0 = None if tap is not None else metrics(pipe).get(RECEIVED)
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
    received1 = None if tap is not None else metrics(pipe).get(RECEIVED)
    results = [(g, g.results(linger + 30)) for g in groups]
    if spy is not None:
        try:
            spy.wait(duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    pipe.check()
    if tap is not None:
        published = tap.window(t0, t1)
        n_published = len(published)
        payload_mean = round(sum(f[2] for f in published) / n_published) if published else None
    else:
        if received0 is None or received1 is None:
            raise RuntimeError(f"the server's /metrics has no {RECEIVED}: cannot count frames")
        n_published, payload_mean = int(received1 - received0), None
    busy = sys1[0] - sys0[0]
    idle = sys1[1] - sys0[1]
    out = {
        "t0": t0, "duration_s": round(wall, 3),
        "published": n_published,
        "published_fps": round(n_published / duration, 2),
        "jpeg_bytes_mean": payload_mean,
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
        shares = [min(c[0] / n_published, 1.0) if n_published else 0.0 for c in clients]
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
                profile: Optional[Path] = None, linger: float = LINGER_S) -> dict:
    group = LoadGroup(pipe.base, n, procs)
    try:
        ready = group.wait_ready()
        log(f"  {n} viewers: {ready['connected']} connected, {ready['with_frame']} got a frame "
            f"({ready['connect_s']:.1f} s)" + (f", errors {ready['errors']}" if ready["failed"] else ""))
        result = measure(pipe, tap, [group], duration, profile=profile, linger=linger)
        result["ready"] = ready
        result["metrics"] = {k: v for k, v in metrics(pipe).items()
                             if re.search(r"frame|skip|sent|viewer|client", k)}
        return result
    finally:
        group.stop()


# ---------------------------------------------------------------- benchmark scripts as children

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
