"""`flir-stream run`: capture, encoder and server as three supervised child processes.

Processes, not threads: each child is exactly what supervisord or systemd would run in production, a
crash or a hung SPI read in one stage cannot take the others down, and any stage can be restarted
alone (publishers bind, subscribers reconnect within half a second).

The parent only starts children, forwards their output line by line to its stderr (their lines
already name the stage), restarts a child that dies, prints the viewer's URL on stdout once the server
answers, and stops everything on Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Optional

from . import binding, config as configuration

log = logging.getLogger("supervise")

STAGES = ("capture", "encoder", "server")  # start order; any order works, this one wastes least
BACKOFF_FIRST_S = 0.25   # delay before restarting a child that died
BACKOFF_MAX_S = 10.0     # the delay doubles on each quick death up to this
# A child that ran this long had started properly (supervisord's startsecs, as in
# scripts/supervisord.conf): its death is not a crash loop, so it starts again after BACKOFF_FIRST_S
# and the stream is back within ~1.5 s however often a stage is killed.
STABLE_AFTER_S = 2.0
STOP_WAIT_S = 5.0        # SIGTERM, then this long, then SIGKILL
CONFIG_ERROR = 2         # the exit status every stage uses for a configuration error
# A restarted child keeps trying to bind its port this long (flirstream.binding), then exits 1 and
# is restarted again: a port taken for a moment while a stage restarts is a runtime fault.
RESTART_BIND_RETRY_S = 30.0
PR_SET_PDEATHSIG = 1     # <linux/prctl.h>


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=_seconds, default=30.0, metavar="SECONDS",
                        help="how long to wait for the server to answer before warning that it "
                             "does not (it is still waited for afterwards)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 3600, got {text!r}")
    return value


def run(config: configuration.Config, args: argparse.Namespace) -> int:
    path = os.path.abspath(args.config or str(config.path))
    # Checked before any child starts: otherwise another program on the port would answer the
    # probe, we would print its URL, and only then would our server fail.
    for key in ("port", "websocket_port"):
        port = getattr(config.server, key)
        why = port_unavailable(config.server.host, port) if port else None
        if why:
            raise configuration.ConfigError(f"[server] {key} = {port}: {why}")
    children = [Child(stage, child_argv(stage, path, args.overrides, args.log_level))
                for stage in STAGES]
    return Supervisor(children, config.server, args.wait, path).serve()


def child_argv(stage: str, config_path: str, overrides: list[str], log_level: str) -> list[str]:
    """The command line of one stage: the same interpreter, config file, overrides and log level."""
    argv = [sys.executable, "-m", "flirstream", stage, "--config", config_path]
    for item in overrides:
        argv += ["--set", item]
    return argv + ["--log-level", log_level]


# ---------------------------------------------------------------- restart delays

class Backoff:
    """Delay before restarting a child: doubles on each quick death, resets after a long run."""

    def __init__(self, first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S,
                 stable_after: float = STABLE_AFTER_S) -> None:
        self.first, self.most, self.stable_after = first, most, stable_after
        self._next = first

    def after_exit(self, ran_s: float) -> float:
        """The delay before starting again a child that ran `ran_s` seconds."""
        if ran_s >= self.stable_after:
            self._next = self.first
        delay = self._next
        self._next = min(self._next * 2, self.most)
        return delay


def describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


# ---------------------------------------------------------------- the viewer's URL

def probe_hosts(host: str) -> list[str]:
    """Addresses to try to reach a server listening on `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return ["127.0.0.1"]
    if host == "::":
        return ["127.0.0.1", "::1"]  # the server binds both families for ::
    return [host]


def _url(scheme: str, host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}{'' if port == default else f':{port}'}/"


def viewer_urls(server: Any, reached: str, hostname: Optional[str] = None) -> list[str]:
    """The viewer's URLs: the one reached locally, and the machine's name when the server listens
    on every interface. With a token, a ?token= placeholder (the secret itself stays out of logs)."""
    scheme = "https" if server.tls_cert else "http"
    hosts = [reached]
    if server.host in ("0.0.0.0", "::", ""):
        name = hostname if hostname is not None else socket.gethostname()
        if name and name != "localhost" and name not in hosts:
            hosts.append(name)
    suffix = "?token=<token>" if server.token else ""
    return [_url(scheme, h, server.port) + suffix for h in hosts]


def announcement(urls: list[str], token_set: bool, config_path: str) -> str:
    lines = [f"flir-stream is running: {urls[0]}"]
    lines += [f"  from other machines:  {u}" for u in urls[1:]]
    if token_set:
        lines.append(f"  (replace <token> with [server] token from {config_path})")
    lines.append("  Stop with Ctrl-C.")
    return "\n".join(lines)


def port_unavailable(host: str, port: int) -> Optional[str]:
    """Why the server could not listen on host:port right now (e.g. 'already in use'), or None."""
    try:
        infos = socket.getaddrinfo(None if host == "::" else host, port, socket.AF_UNSPEC,
                                   socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            # As the server does: SO_REUSEADDR, so a port left in TIME_WAIT counts as free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"[{address[0]}]:{port}" if family == socket.AF_INET6 else f"{address[0]}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    return f"{where} is already in use (another flir-stream running?)"
                if exc.errno == errno.EACCES:
                    return f"{where} needs privileges (ports below 1024: see docs/OPERATIONS.md)"
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                    continue  # no IPv6 on this machine: the server binds the other families
                return f"cannot listen on {where}: {exc.strerror}"
    return None


def answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- one child

def _die_with_parent_hook() -> Any:
    """A preexec_fn that asks Linux to SIGTERM the child when `flir-stream run` dies, even by
    SIGKILL, so no stage outlives it. None where prctl does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: not after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return hook


class Child:
    """One stage's process, its output and its restart delay."""

    def __init__(self, stage: str, argv: list[str]) -> None:
        self.stage = stage
        self.argv = argv
        self.proc: Optional[subprocess.Popen] = None
        self.started = 0.0
        self.restart_at: Optional[float] = 0.0  # monotonic time of the next start; None: running
        self.backoff = Backoff()
        self._partial = b""
        self.last_line = ""
        self.starts = 0

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # a print() shows up at once, not at exit
        if self.starts:  # a restart: its ports were bound before, a bind failure is passing
            env[binding.RETRY_ENV] = f"{RESTART_BIND_RETRY_S:g}"
        # Its own session: a terminal's Ctrl-C reaches only the parent, which stops the children in
        # order; killpg() then reaches anything the child started.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent_hook())
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.started = time.monotonic()
        self.starts += 1
        self.restart_at = None
        log.info("started %s (pid %d)", self.stage, self.proc.pid)

    @property
    def fd(self) -> Optional[int]:
        if self.proc is None or self.proc.stdout is None or self.proc.stdout.closed:
            return None
        return self.proc.stdout.fileno()

    def forward(self) -> bool:
        """Copy what the child wrote to our stderr, whole lines only; False at end of output."""
        fd = self.fd
        if fd is None:
            return False
        for _ in range(16):  # bounded: a child that writes without pause cannot starve the others
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                self._flush_partial()
                return False
            *lines, self._partial = (self._partial + data).split(b"\n")
            if len(self._partial) > 65536:  # no newline in sight: pass it on as it is
                lines.append(self._partial)
                self._partial = b""
            if lines:
                self._write(b"\n".join(lines) + b"\n")
        return True

    def _flush_partial(self) -> None:
        if self._partial:
            self._write(self._partial + b"\n")
            self._partial = b""

    def _write(self, data: bytes) -> None:
        for line in reversed(data.splitlines()):
            if line.strip():
                self.last_line = line.decode("utf-8", "replace").strip()
                break
        sys.stderr.flush()  # keep our own log lines and the child's in order
        sys.stderr.buffer.write(data)
        sys.stderr.buffer.flush()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)  # its own process group (start_new_session)
            except ProcessLookupError:
                pass

    def reap(self) -> int:
        """After the process ended: read the rest of its output, close the pipe, return its status."""
        assert self.proc is not None
        self.forward()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        status = self.proc.wait()
        self.proc = None
        return status


# ---------------------------------------------------------------- the three together

class Supervisor:
    def __init__(self, children: list[Child], server: Any, wait_s: float, config_path: str) -> None:
        self.children = children
        self.server = server
        self.wait_s = wait_s
        self.config_path = config_path
        self.stop_signal: Optional[int] = None
        self.hurry = False
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()

    # Signals only set flags; the wake-up fd makes select() return at once, also on SIGCHLD, so a
    # dead child is noticed immediately without a busy loop.
    def _on_stop(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None:
            self.hurry = True  # a second Ctrl-C: SIGKILL what is left
        self.stop_signal = signum

    def _install_signals(self) -> dict[int, Any]:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # started with nohup: a closed terminal must not stop us
            previous[sig] = signal.signal(sig, self._on_stop)
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _start(self, child: Child) -> None:
        try:
            child.start()
        except OSError as exc:  # e.g. out of processes or memory: try again later, like a death
            delay = child.backoff.after_exit(0.0)
            child.restart_at = time.monotonic() + delay
            log.error("cannot start %s: %s; trying again in %.1f s", child.stage, exc, delay)
            return
        self.selector.register(child.fd, selectors.EVENT_READ, child)

    def _reap(self, child: Child) -> int:
        fd = child.fd
        if fd is not None:
            self.selector.unregister(fd)
        return child.reap()

    def _wait(self, timeout: float) -> None:
        for key, _ in self.selector.select(max(0.0, timeout)):
            if key.data is None:
                try:
                    self._wake_r.recv(512)
                except BlockingIOError:
                    pass
            elif not key.data.forward():
                self.selector.unregister(key.fd)
                key.data.proc.stdout.close()

    def serve(self) -> int:
        previous = self._install_signals()
        try:
            status = self._loop()
        finally:
            self._stop_all()
            self._restore_signals(previous)
        if status == 0:
            log.info("stopped (%s)", signal.Signals(self.stop_signal).name if self.stop_signal
                     else "done")
        return status

    def _loop(self) -> int:
        begun = time.monotonic()
        announced = warned = False
        next_probe = begun
        while self.stop_signal is None:
            now = time.monotonic()
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    if self._died(child, now) == CONFIG_ERROR:
                        return CONFIG_ERROR
                if child.proc is None and child.restart_at is not None and child.restart_at <= now:
                    self._start(child)
            if not announced and now >= next_probe:
                announced = self._announce()
                next_probe = now + (0.1 if now - begun < self.wait_s else 1.0)
                if not announced and not warned and now - begun >= self.wait_s:
                    warned = True
                    log.warning("the server does not answer on port %d after %.0f s (see its log "
                                "above); still waiting", self.server.port, self.wait_s)
            deadlines = [c.restart_at for c in self.children if c.restart_at is not None]
            if not announced:
                deadlines.append(next_probe)
            self._wait(min(deadlines, default=now + 1.0) - time.monotonic())
        return 0

    def _died(self, child: Child, now: float) -> int:
        assert child.proc is not None
        pid = child.proc.pid
        status = self._reap(child)
        ran = now - child.started
        if status == CONFIG_ERROR:
            # A configuration error does not go away by retrying (e.g. server.conf was edited badly
            # while running): stop everything rather than loop.
            log.error("%s (pid %d) exited with status 2 after %.1f s: a configuration error: %s; "
                      "stopping", child.stage, pid, ran, child.last_line or "(no message)")
            return CONFIG_ERROR
        delay = child.backoff.after_exit(ran)
        child.restart_at = now + delay
        log.warning("%s (pid %d) %s after %.1f s; restarting it in %.2f s",
                    child.stage, pid, describe_status(status), ran, delay)
        return status

    def _announce(self) -> bool:
        for host in probe_hosts(self.server.host):
            if answers(host, self.server.port):
                urls = viewer_urls(self.server, host)
                print(announcement(urls, bool(self.server.token), self.config_path), flush=True)
                return True
        return False

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.proc is not None]
        if not running:
            return
        log.info("stopping %s", ", ".join(f"{c.stage} (pid {c.proc.pid})" for c in running))
        for child in running:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while not self.hurry and time.monotonic() < deadline:
            running = [c for c in running if c.proc is not None and c.proc.poll() is None]
            if not running:
                break
            self._wait(min(0.1, deadline - time.monotonic()))
        for child in self.children:
            if child.proc is None:
                continue
            if child.proc.poll() is None:
                log.warning("%s (pid %d) did not stop within %.0f s; killing it",
                            child.stage, child.proc.pid, STOP_WAIT_S)
                child.signal(signal.SIGKILL)
            status = self._reap(child)
            if status not in (0, -signal.SIGTERM, -signal.SIGKILL):
                log.warning("%s %s while stopping", child.stage, describe_status(status))
