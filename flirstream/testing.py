"""Helpers for the test suite and the benchmark / soak scripts: stage processes and a whole
pipeline on free loopback ports (Stage; Pipeline: `flir-stream run` as a child, or each stage its
own; FrameClient: a websocket viewer that reconnects; FrameWatcher: the same in a thread, for
synchronous tests; measure_restart of a killed stage), a stand-in capture, a static site for web/,
the /metrics parser and TLinear counts from degrees C. Not used by the stages themselves.
Pipeline needs psutil and FrameClient websockets (both in the test extra)."""
from __future__ import annotations

import asyncio
import configparser
import json
import os
import platform
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import psutil
from tornado.websocket import websocket_connect

from . import radiometric
from .supervise import STAGES
from .wire import KELVIN_AT_0C


PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the checkout holding flirstream/

_given: set[int] = set()  # ports this process handed out already


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback), and never one this process handed out
    before: the kernel may offer a just-closed port again, and two settings of one config (or two
    tests' servers) must not get the same one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def write_config(directory: Path, extra: str = "", filename: str = "server.conf",
                 **sections: dict) -> Path:
    """A server.conf (named `filename` in `directory`) using free loopback ports everywhere and the
    simulated camera; `sections` add or replace keys, e.g.
    write_config(tmp_path, capture={"sensor": "lepton2"})."""
    values = {
        "endpoints": {"frames": f"tcp://127.0.0.1:{free_port()}",
                      "images": f"tcp://127.0.0.1:{free_port()}",
                      "control": f"tcp://127.0.0.1:{free_port()}",
                      "camera": f"tcp://127.0.0.1:{free_port()}"},
        "capture": {"source": "sim"},
        "state": {"dir": str(Path(directory) / "state")},  # never the user's own state files
        "encoder": {},
        "server": {"host": "127.0.0.1", "port": str(free_port())},
    }
    for name, keys in sections.items():
        values.setdefault(name, {}).update({k: str(v) for k, v in keys.items()})
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                   for name, keys in values.items())
    path = Path(directory) / filename
    path.write_text(text + extra)
    return path


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (each client connection is one descriptor); children
    inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def cpu_name() -> str:
    """The processor's model name (for a benchmark's JSON), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json(path: Any, result: Any) -> Path:
    """A benchmark's result as indented JSON at `path` (its directory made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def tlinear_counts(celsius: Any, kelvin_per_count: float = 0.01) -> Any:
    """TLinear counts of temperatures in degrees C (wire.KELVIN_AT_0C): an int for a number,
    uint16 pixels for an array."""
    counts = np.rint((np.asarray(celsius, dtype=np.float64) + KELVIN_AT_0C) * (1 / kelvin_per_count))
    return int(counts) if counts.ndim == 0 else counts.astype(np.uint16)


METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})?'
                         r' (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$')


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value}; ValueError naming a malformed line."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            if not re.match(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S", line):
                raise ValueError(f"not a metrics comment: {line!r}")
            continue
        if not METRIC_LINE.match(line):
            raise ValueError(f"not a metrics sample: {line!r}")
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


# ---------------------------------------------------------------- config and HTTP

def server_port(config: Path) -> int:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.read(config)
    return int(parser.get("server", "port", fallback="8080"))


def setting(config: Path, section: str, key: str) -> Any:
    """One value of a server.conf, as the stages read it."""
    from . import config as configuration
    return getattr(configuration.load(config).section(section), key)


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return 0, b""


# ---------------------------------------------------------------- the pipeline

def stage_of(proc: psutil.Process) -> Optional[str]:
    """Which stage a process runs, from its command line (None if it is not one)."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for i, arg in enumerate(cmdline[1:], 1):
        base = arg.rsplit("/", 1)[-1]
        if base in STAGES and (i == 1 or cmdline[i - 1] in ("-m", "flirstream") or
                               cmdline[i - 1].endswith(("flir-stream", "python", "python3"))
                               or "flirstream" in cmdline[i - 1]):
            return base
        if base in (f"{s}.app" for s in STAGES) or base in (f"{s}-stage" for s in STAGES):
            return base.split(".")[0].split("-")[0]
    return None


class Stage:
    """One stage (`capture`, `encoder`, `server` or `run`) as a real child process, in its own
    session, logging to a file; the children import this checkout of the package."""

    def __init__(self, command: str, config: Path, *args: str, log_dir: Optional[Path] = None,
                 wrap: Sequence[str] = (), log_path: Optional[Path] = None):
        """`wrap` goes before the command line, e.g. ("prlimit", "--nofile=1024") (it must exec)."""
        self.command, self.args = command, args
        self.log_path = log_path or (log_dir or config.parent) / f"{command}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "flirstream", command, "--config", str(config), *args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(config.parent), env=env,
            start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process, wait for it, and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class Pipeline:
    """The three stages on one config's ports: `flir-stream run --config CONFIG` as a child in its
    own session (the default), or with each=True each stage a Stage of its own, so that each one's
    CPU is measured and one can be restarted with other settings (the benchmarks)."""

    def __init__(self, config: Path, log_path: Optional[Path] = None, *args: str,
                 each: bool = False, wrap: Optional[dict[str, Sequence[str]]] = None):
        """`wrap` (each=True): a stage's Stage wrap, e.g. {"capture": ("prlimit", "--nofile=64")}."""
        self.config = Path(config)
        self.port = server_port(self.config)
        self.seen: dict[int, str] = {}  # every stage pid ever seen -> stage
        self.run: Optional[Stage] = None
        self.each: dict[str, Stage] = {}
        if each:
            self.each = {name: Stage(name, self.config, *args, wrap=(wrap or {}).get(name, ()))
                         for name in STAGES}
        else:
            self.run = Stage("run", self.config, *args, log_path=log_path)
            self.ps = self.run.ps

    # URLs
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        if self.run is not None:
            return self.run.log()
        return "".join(f"--- {name}\n{stage.log_tail()}\n" for name, stage in self.each.items())

    def alive(self) -> bool:
        if self.run is not None:
            return self.run.alive()
        return all(stage.alive() for stage in self.each.values())

    def check(self) -> None:
        """RuntimeError with its log's tail if a stage (or `run`) has exited."""
        for name, stage in (self.each or {"run": self.run}).items():
            if not stage.alive():
                raise RuntimeError(f"{name} exited with {stage.proc.returncode}:\n{stage.log_tail()}")

    def restart(self, name: str, *args: str) -> None:
        """(each=True) Stop one stage and start it again, with `args` (e.g. --set KEY=VALUE)."""
        self.each[name].stop()
        self.each[name] = Stage(name, self.config, *args)
        if name == "server":
            self.wait_listening()

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts connections (RuntimeError if a stage exits first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not listen on port {self.port} within {timeout:g} s:\n"
                           + self.log()[-4000:])

    def descendants(self) -> list[psutil.Process]:
        try:
            return self.ps.children(recursive=True) if self.run is not None else \
                [stage.ps for stage in self.each.values()]
        except psutil.NoSuchProcess:
            return []

    def stages(self) -> dict[str, psutil.Process]:
        """Stage name -> its live (non-zombie) process."""
        found: dict[str, psutil.Process] = {}
        for child in self.descendants():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                continue
            name = stage_of(child)
            if name:
                found[name] = child
                self.seen[child.pid] = name
        return found

    def zombies(self) -> list[int]:
        out = []
        for child in self.descendants():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    out.append(child.pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_stages(self, timeout: float = 20.0, exclude: dict[str, int] | None = None
                    ) -> dict[str, psutil.Process]:
        """Wait until all three stages run (and none of them has the pid in `exclude`)."""
        deadline = time.monotonic() + timeout
        found: dict[str, psutil.Process] = {}
        while time.monotonic() < deadline and self.alive():
            found = self.stages()
            if len(found) == 3 and not any(exclude and exclude.get(n) == p.pid
                                           for n, p in found.items()):
                return found
            time.sleep(0.1)
        raise AssertionError(f"stages running after {timeout} s: "
                             f"{ {n: p.pid for n, p in found.items()} }\n{self.log()[-4000:]}")

    def wait_healthy(self, timeout: float = 30.0) -> dict:
        """Wait for /healthz 200 and return its JSON."""
        deadline = time.monotonic() + timeout
        status, body = 0, b""
        while time.monotonic() < deadline and self.alive():
            status, body = http_get(self.base + "/healthz", timeout=2)
            if status == 200:
                try:
                    return json.loads(body)
                except ValueError:
                    return {"raw": body.decode(errors="replace")}
            time.sleep(0.2)
        raise AssertionError(f"/healthz not 200 after {timeout} s (last {status} {body[:300]!r}, "
                             f"run alive: {self.alive()})\n{self.log()[-4000:]}")

    def metrics(self) -> dict[str, float]:
        status, body = http_get(self.base + "/metrics")
        return parse_metrics(body.decode(errors="replace")) if status == 200 else {}

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        return list(self.stages().items()) + ([("run", self.ps)] if self.run is not None else [])

    def rss(self) -> dict[str, tuple[int, int]]:
        """Stage (and 'run') -> (pid, RSS bytes)."""
        out: dict[str, tuple[int, int]] = {}
        for name, proc in self._processes():
            try:
                out[name] = (proc.pid, proc.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
        return out

    def fds(self) -> dict[str, int]:
        """Stage (and 'run') -> open file descriptors."""
        out: dict[str, int] = {}
        for name, proc in self._processes():
            try:
                out[name] = proc.num_fds()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
        return out

    def stop(self, timeout: float = 15.0) -> tuple[Optional[int], list[str]]:
        """SIGTERM `run`, wait; return (its exit status, stage processes still alive afterwards).
        Any leftover is then killed by pid so nothing outlives the caller. (each=True: the stages
        are stopped server first; the status is the first non-zero one's.)"""
        if self.run is None:
            codes = [self.each[name].stop() for name in reversed(STAGES)]
            return next((c for c in codes if c), 0), []
        self.stages()  # note the current pids
        proc = self.run.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        code = proc.poll()
        leftovers = []
        deadline = time.monotonic() + 3.0
        for pid, name in self.seen.items():
            try:
                p = psutil.Process(pid)
                while p.is_running() and p.status() != psutil.STATUS_ZOMBIE \
                        and time.monotonic() < deadline:
                    time.sleep(0.05)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and stage_of(p) == name:
                    leftovers.append(f"{name} pid {pid}")
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        if code is None:  # run ignored SIGTERM: kill its whole session
            self.run.kill()
        self.run.stop()  # (closes its log)
        return code, leftovers


# ---------------------------------------------------------------- websocket clients

def frame_header(message: bytes, check_pixels: bool = False) -> dict:
    """The JSON header of a binary frame message of either mode (server.protocol owns the format;
    ProtocolError if the message does not match its header). `check_pixels`: a thermal-mode
    message's RAD2 payload is also decoded and must hold the header's shape (RadiometricError)."""
    # (imported here: the harness drives a whole pipeline, it is no part of one)
    from server.protocol import ProtocolError, split_frame, split_thermal
    try:
        header, payload = split_thermal(message)
    except ProtocolError:  # not a thermal-mode message: a JPEG-mode one, or a bad one
        try:
            return split_frame(message)[0]
        except KeyError as exc:
            raise ProtocolError(f"frame message header without {exc}") from None
    if check_pixels:
        shape = list(radiometric.decode(payload).shape)
        if shape != header.get("shape"):
            raise radiometric.RadiometricError(f"payload of {shape}, header says {header.get('shape')}")
    return header


@dataclass
class Received:
    frames: int = 0
    # (monotonic receive time, seq, capture t, stale): stale is the header's "stale" (a frame the
    # server held longer than stale_after_s, e.g. the newest one sent on connect after a pause)
    seqs: list = field(default_factory=list)
    texts: list = field(default_factory=list)  # decoded text messages
    connects: int = 0
    closes: list = field(default_factory=list)  # close codes / reasons seen
    errors: list = field(default_factory=list)


class FrameClient:
    """A websocket viewer that keeps reading frames and reconnects (bounded) when dropped."""

    def __init__(self, url: str, keep_seqs: bool = True, max_reconnects: int = 1000,
                 reconnect_every: Optional[tuple[float, float]] = None, headers: dict | None = None,
                 check_every: int = 0):
        """`check_every` N: decode the radiometric payload of every Nth thermal-mode frame (and
        its first) to check it against its header (0: headers only; decoding takes milliseconds)."""
        self.url = url
        self.check_every = check_every
        self.keep_seqs = keep_seqs
        self.max_reconnects = max_reconnects
        self.reconnect_every = reconnect_every
        self.headers = headers
        self.got = Received()
        self.stopping = False
        self.connected = asyncio.Event()
        self.new_frame = asyncio.Event()

    async def run(self, until: float) -> Received:
        """Read until time.monotonic() >= until (or stop())."""
        import websockets
        attempts = 0
        while not self.stopping and time.monotonic() < until and attempts <= self.max_reconnects:
            attempts += 1
            hold = (time.monotonic() + random.uniform(*self.reconnect_every)
                    if self.reconnect_every else until)
            try:
                async with websockets.connect(self.url, max_size=None, open_timeout=5,
                                              close_timeout=2, ping_interval=None,
                                              additional_headers=self.headers) as ws:
                    self.got.connects += 1
                    self.connected.set()
                    while not self.stopping:
                        left = min(hold, until) - time.monotonic()
                        if left <= 0:
                            break
                        try:
                            message = await asyncio.wait_for(ws.recv(), timeout=min(left, 1.0))
                        except asyncio.TimeoutError:
                            continue
                        self._take(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused while the server restarts, closed, etc.
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                self.got.closes.append(code if code is not None else type(exc).__name__)
                self.connected.clear()
                await asyncio.sleep(0.1)
            else:
                self.connected.clear()
        return self.got

    def _take(self, message) -> None:
        if isinstance(message, (bytes, bytearray, memoryview)):
            check = bool(self.check_every) and self.got.frames % self.check_every == 0
            try:
                header = frame_header(bytes(message), check_pixels=check)
            except ValueError as exc:  # ProtocolError, RadiometricError, bad JSON
                self.got.errors.append(f"bad frame message: {exc}"[:300])
                return
            self.got.frames += 1
            if self.keep_seqs:
                self.got.seqs.append((time.monotonic(), header.get("seq"), header.get("t"),
                                      bool(header.get("stale"))))
            self.new_frame.set()
        else:
            try:
                self.got.texts.append(json.loads(message))
            except ValueError:
                self.got.errors.append(f"text not JSON: {message[:100]!r}")

    def stop(self) -> None:
        self.stopping = True


# ---------------------------------------------------------------- a viewer in a thread, restarts

class FrameWatcher:
    """A websocket viewer in a thread: connects to /ws, connects again whenever the connection
    drops (as the viewer does), and records for every frame its arrival time, seq and capture
    time (header "t")."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[tuple[float, int, float]] = []  # (arrival, seq, t), Unix seconds
        self.connects = 0
        self.bad_messages = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> "FrameWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _main(self) -> None:
        while not self._stop.is_set():
            try:
                conn = await asyncio.wait_for(websocket_connect(self.url), 3)
            except Exception as exc:  # refused while the server restarts, timeouts, HTTP errors
                self.last_error = repr(exc)
                await asyncio.sleep(0.05)
                continue
            self.connects += 1
            try:
                while not self._stop.is_set():
                    try:
                        message = await asyncio.wait_for(conn.read_message(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if message is None:  # closed by the server
                        break
                    self._record(message)
            finally:
                conn.close()

    def _record(self, message: object) -> None:
        # One binary message per frame (server.protocol); text messages (hello, status, settings)
        # are not frames.
        if isinstance(message, str):
            return
        from server.protocol import split_frame
        try:
            header, jpeg, _ = split_frame(message)
            seq, captured = int(header["seq"]), float(header["t"])
        except (ValueError, KeyError, TypeError):  # (ProtocolError is a ValueError)
            self.bad_messages += 1
            return
        if jpeg[:2] != b"\xff\xd8":  # a JPEG starts with SOI
            self.bad_messages += 1
            return
        with self._lock:
            self.frames.append((time.time(), seq, captured))

    def count(self) -> int:
        with self._lock:
            return len(self.frames)

    def first_frame_captured_after(self, when: float, timeout: float) -> Optional[float]:
        """Arrival time of the first frame captured after `when` (Unix time), waiting up to
        `timeout` seconds for one; None if none came. Frames in flight when a stage was killed
        were captured before, so such a frame has been through the restarted stage."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                arrivals = [arrival for arrival, _, t in self.frames if t > when]
            if arrivals:
                return arrivals[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def wait_frames(self, n: int, timeout: float) -> list[tuple[float, int, float]]:
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            return list(self.frames)


# ---------------------------------------------------------------- stand-ins and a static site

def raw_frames(sock: Any, seconds: float) -> list:
    """The raw frames (wire.Frame) a SUB socket on capture's frames receives within `seconds`
    (other messages skipped)."""
    from . import wire
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(100):
            parts = sock.recv_multipart()
            if wire.topic_of(parts) == wire.RAW_TOPIC:
                frames.append(wire.unpack_raw(parts))
    return frames


class StandInCapture:
    """Plays capture for a real encoder: binds a real PUB on the frames endpoint and publishes, from
    its own thread until stopped, raw frames of make(seq) pixels `fps` times a second and capture's
    "streaming" status (with `detail`) once a second."""

    def __init__(self, endpoint: str, make: Callable[[int], np.ndarray], fps: float = 10.0,
                 detail: str = "", telemetry: Optional[Callable[[int], dict]] = None,
                 first_seq: int = 1):
        self.endpoint, self.make, self.fps, self.detail = endpoint, make, fps, detail
        self.telemetry = telemetry
        self.seq = first_seq - 1  # the last published
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "the stand-in capture did not bind"

    def _run(self) -> None:
        import zmq
        from . import wire
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 2)
        pub.bind(self.endpoint)
        self._ready.set()
        status_at = 0.0
        try:
            while not self._stop.is_set():
                seq = self.seq + 1
                raw = wire.Frame(seq=seq, t=time.time(), sensor="lepton3", pixels=self.make(seq),
                                 telemetry=self.telemetry(seq) if self.telemetry else None)
                pub.send_multipart(wire.pack_raw(raw))
                self.seq = seq
                if time.monotonic() - status_at >= 1.0:
                    status_at = time.monotonic()
                    pub.send_multipart(wire.pack_status("capture", "streaming", self.detail,
                                                        t=time.time(), source="test",
                                                        counters={"frames": seq}))
                self._stop.wait(1.0 / self.fps)
        finally:
            pub.close(0)
            ctx.term()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


CHROMIUM = "/usr/bin/chromium"  # Debian's, for Playwright (its own browsers are not installed)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class StaticSite:
    """A real Tornado static server on a free loopback port, in a thread: web/ under /web/ and
    tests/pages/ under /, for browser tests and benchmarks of web/ modules without the stages."""

    def __init__(self, pages: Path = PACKAGE_ROOT / "tests" / "pages"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._pages = pages
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the static site did not start within 10 s")

    def _run(self) -> None:
        import tornado.web
        asyncio.set_event_loop(self._loop)
        app = tornado.web.Application([
            (r"/web/(.*)", tornado.web.StaticFileHandler, {"path": str(PACKAGE_ROOT / "web")}),
            (r"/(.*)", tornado.web.StaticFileHandler, {"path": str(self._pages)}),
        ])
        self._server = app.listen(self.port, "127.0.0.1")
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    def close(self) -> None:
        def stop() -> None:
            self._server.stop()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
        self._loop.close()


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """predicate()'s first truthy value within timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def thread_policies(pid: int) -> dict[str, set[int]]:
    """A process's threads by name (comm: "python", "ZMQbg/IO/0" ...) -> their scheduling policies."""
    policies: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            policies.setdefault(name, set()).add(os.sched_getscheduler(int(task.name)))
        except (OSError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return policies


def live(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def measure_restart(watcher: FrameWatcher, stage: str, old_pid: int, current_pid,
                    bound_s: float = 10.0) -> float:
    """SIGKILL a stage, check that frames flow again and that a new process replaced it; return
    the seconds from the kill to the first frame captured after it reaching the viewer."""
    frames_before = watcher.count()
    assert wait_until(lambda: watcher.count() > frames_before, 10), \
        f"no frames before killing {stage}: {watcher.last_error}"
    killed = time.time()
    os.kill(old_pid, signal.SIGKILL)
    arrival = watcher.first_frame_captured_after(killed, bound_s)
    assert arrival is not None, (f"no frames within {bound_s} s of killing {stage} "
                                 f"(last websocket error: {watcher.last_error})")
    new_pid = wait_until(lambda: (lambda p: p if p and p != old_pid else None)(current_pid()),
                         bound_s)
    assert new_pid, f"{stage} (pid {old_pid}) was not replaced by a new process"
    took = arrival - killed
    print(f"{stage}: SIGKILL, restarted as pid {new_pid}, frames again after {took:.2f} s")
    return took
