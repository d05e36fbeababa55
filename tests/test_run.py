"""`flir-stream run`: the three stages as real child processes, their URL, restarts and clean stop.

Every test starts the real command on free loopback ports with the simulated camera, talks to it over
HTTP and the real /ws websocket, and checks the processes with psutil.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

import psutil
import pytest

from conftest import free_port, started, write_config
from flirstream.testing import STAGES, FrameWatcher, live, measure_restart, stage_of, wait_until

URL = re.compile(r"https?://\S+")


# ---------------------------------------------------------------- `flir-stream run` as a process

class Run:
    """`python -m flirstream run --config ...` with stdout and stderr in separate files."""

    def __init__(self, config: Path, *args: str) -> None:
        self.out_path = config.parent / f"run-{time.monotonic_ns()}.out"
        self.err_path = self.out_path.with_suffix(".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flirstream", "run", "--config", str(config), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=str(config.parent),
                start_new_session=True)
        self.seen: set[int] = set()  # every child pid ever seen, for the cleanup

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_url(self, timeout: float = 60) -> str:
        def url() -> Optional[str]:
            match = URL.search(self.stdout())
            if match is None and self.proc.poll() is not None:
                pytest.fail(f"flir-stream run exited with {self.proc.returncode} before printing "
                            f"a URL:\n{self.stderr()[-3000:]}")
            return match.group(0) if match else None
        found = wait_until(url, timeout, 0.1)
        assert found, f"no URL on stdout within {timeout} s:\n{self.stderr()[-3000:]}"
        return found

    def children(self) -> dict[str, int]:
        """stage -> pid of the children running now."""
        found = {}
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                stage = stage_of(child)
                if stage and child.status() != psutil.STATUS_ZOMBIE:
                    found[stage] = child.pid
                    self.seen.add(child.pid)
        except psutil.NoSuchProcess:
            pass
        return found

    def wait_children(self, timeout: float = 30) -> dict[str, int]:
        found = wait_until(lambda: (lambda c: c if len(c) == 3 else None)(self.children()),
                           timeout)
        assert found, f"not all three stages running: {self.children()}\n{self.stderr()[-3000:]}"
        return found

    def cleanup(self) -> None:
        """Whatever a failed test left behind: SIGKILL the run and every child seen."""
        self.children()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for pid in live(list(self.seen)):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def run_flir_stream():
    """run_flir_stream(config, *args) -> Run; whatever is left is killed after the test."""
    yield from started(Run, "cleanup")


# ---------------------------------------------------------------- tests

def test_run_prints_the_url_serves_frames_and_stops_every_child(tmp_path, run_flir_stream):
    # --set reaches the children: the server must listen on the overridden port, not the file's.
    port = free_port()
    config = write_config(tmp_path)
    run = run_flir_stream(config, "--set", f"server.port={port}", "--log-level", "info")

    url = run.wait_url()
    assert url == f"http://127.0.0.1:{port}/"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert b"<html" in response.read().lower()

    with FrameWatcher(f"ws://127.0.0.1:{port}/ws") as watcher:
        frames = watcher.wait_frames(3, 30)
        assert len(frames) >= 3, f"/ws sent {len(frames)} frames: {watcher.last_error}"
        seqs = [seq for _, seq, _ in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert watcher.bad_messages == 0

    children = run.wait_children()
    for stage, pid in children.items():  # processes of their own, started by run itself
        assert psutil.Process(pid).ppid() == run.proc.pid, stage
    # Only the URL goes to stdout; every log line goes to stderr.
    assert "INFO" not in run.stdout()
    assert "started capture" in run.stderr()

    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(15) == 0, run.stderr()[-3000:]
    assert wait_until(lambda: not live(list(children.values())), 5), \
        f"children left running after run exited: {live(list(children.values()))}"


def test_run_restarts_each_killed_stage_and_the_viewer_gets_frames_again(tmp_path, run_flir_stream):
    config = write_config(tmp_path)
    port = int(re.search(r"^port = (\d+)$", config.read_text(), re.M).group(1))
    run = run_flir_stream(config)
    run.wait_url()
    run.wait_children()

    figures = {}
    with FrameWatcher(f"ws://127.0.0.1:{port}/ws") as watcher:
        assert watcher.wait_frames(1, 30), f"no frames: {watcher.last_error}"
        for stage in ("encoder", "capture", "server"):
            old = run.children()[stage]
            connects = watcher.connects
            figures[stage] = measure_restart(watcher, stage, old,
                                             lambda: run.children().get(stage))
            assert f"{stage} (pid {old}) was killed by SIGKILL" in run.stderr()
            if stage == "server":
                assert watcher.connects > connects, "the websocket client did not reconnect"
        assert watcher.bad_messages == 0
    print("flir-stream run: seconds from SIGKILL to frames again:",
          ", ".join(f"{s} {t:.2f}" for s, t in figures.items()))

    children = run.children()
    run.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert run.proc.wait(15) == 0, run.stderr()[-3000:]
    assert wait_until(lambda: not live(list(run.seen)), 5), \
        f"processes left after Ctrl-C: {live(list(run.seen))} (children were {children})"


def test_run_stops_with_status_2_when_a_restarted_stage_meets_a_config_error(tmp_path,
                                                                              run_flir_stream):
    config = write_config(tmp_path)
    run = run_flir_stream(config)
    run.wait_url()
    children = run.wait_children()

    # server.conf edited badly while running: the next stage to start refuses it with status 2,
    # and run must stop everything instead of restarting it forever.
    text = config.read_text()
    config.write_text(re.sub(r"^port = \d+$", "port = eighty", text, flags=re.M))
    os.kill(children["capture"], signal.SIGKILL)

    try:
        status = run.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail("run kept going after a stage's configuration error:\n" + run.stderr()[-3000:])
    assert status == 2
    err = run.stderr()
    # One line of run's own says which stage failed and repeats the stage's message.
    assert any("capture (pid" in line and "exited with status 2" in line
               and "[server] port = 'eighty'" in line for line in err.splitlines()), err[-3000:]
    assert wait_until(lambda: not live(list(run.seen)), 5), f"left running: {live(list(run.seen))}"


def test_run_reports_a_config_error_before_starting_anything(tmp_path, run_flir_stream):
    config = write_config(tmp_path, server={"port": "99999"})
    run = run_flir_stream(config)
    assert run.proc.wait(30) == 2
    err = run.stderr()
    assert "[server] port = '99999'" in err and "expected an integer from 1 to 65535" in err
    assert "started" not in err
    assert run.stdout() == ""


def test_stages_started_in_reverse_order_stream_frames(tmp_path, stages):
    # Start order must not matter: server first, capture last.
    config = write_config(tmp_path)
    port = int(re.search(r"^port = (\d+)$", config.read_text(), re.M).group(1))
    started = [stages(stage, config) for stage in reversed(STAGES)]
    with FrameWatcher(f"ws://127.0.0.1:{port}/ws") as watcher:
        frames = watcher.wait_frames(3, 30)
        assert len(frames) >= 3, (f"no frames: {watcher.last_error}\n"
                                  + "\n".join(s.log()[-1500:] for s in started))


def test_run_refuses_a_port_in_use_before_starting_anything(tmp_path, run_flir_stream):
    # Another program on the port must not be taken for our server (no URL printed for it).
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = write_config(tmp_path, server={"port": port})
        run = run_flir_stream(config)
        assert run.proc.wait(30) == 2
    err = run.stderr()
    assert f"[server] port = {port}: 127.0.0.1:{port} is already in use" in err, err
    assert "started" not in err
    assert run.stdout() == ""


def test_stages_stop_when_run_itself_is_killed(tmp_path, run_flir_stream):
    # SIGKILL gives run no chance to stop its children: the kernel tells them (parent-death signal).
    run = run_flir_stream(write_config(tmp_path))
    run.wait_url()
    children = list(run.wait_children().values())
    run.proc.kill()
    run.proc.wait(5)
    assert wait_until(lambda: not live(children), 15), f"orphans left running: {live(children)}"


@pytest.mark.parametrize("stage", ["capture", "server"])
def test_a_port_taken_while_a_stage_restarts_is_retried_not_a_config_error(tmp_path,
                                                                           run_flir_stream, stage):
    # The audit: kill capture and bind its frames port within 5 ms: the restarted capture exited 2
    # ("cannot bind") and run took that for a configuration error and stopped everything.
    config = write_config(tmp_path)
    text = config.read_text()
    http_port = int(re.search(r"^port = (\d+)$", text, re.M).group(1))
    frames_port = int(re.search(r"^frames = tcp://127.0.0.1:(\d+)$", text, re.M).group(1))
    port = frames_port if stage == "capture" else http_port
    run = run_flir_stream(config)
    run.wait_url()
    old = run.wait_children()[stage]

    # Deterministic race: run is stopped while the stage dies and the port is taken.
    os.kill(run.proc.pid, signal.SIGSTOP)
    try:
        os.kill(old, signal.SIGKILL)
        assert wait_until(lambda: psutil.Process(old).status() == psutil.STATUS_ZOMBIE, 10)
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def squat() -> bool:  # as soon as the dead stage's last thread let go of the port
            try:
                squatter.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False
        assert wait_until(squat, 10), f"port {port} still held after {stage} died"
        squatter.listen()
    finally:
        os.kill(run.proc.pid, signal.SIGCONT)
    try:
        def attempts() -> int:
            return run.stderr().count("a restarted stage retries")
        assert wait_until(lambda: attempts() >= 3, 30), run.stderr()[-3000:]
        assert run.proc.poll() is None, run.stderr()[-3000:]
        assert "exited with status 2" not in run.stderr()
        line = next(l for l in run.stderr().splitlines() if "a restarted stage retries" in l)
        assert f"127.0.0.1:{port}" in line and stage in line, line  # says which port and why
    finally:
        squatter.close()
    with FrameWatcher(f"ws://127.0.0.1:{http_port}/ws") as watcher:
        released = time.time()
        assert watcher.first_frame_captured_after(released, 30) is not None, \
            f"no frames after the port was released: {watcher.last_error}\n{run.stderr()[-3000:]}"
    assert run.children()[stage] != old
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(15) == 0, run.stderr()[-3000:]


def test_a_second_instance_needs_only_another_port(tmp_path, run_flir_stream, monkeypatch):
    # The endpoints are left to their default: each instance's own ipc:// sockets under its port.
    monkeypatch.setenv("FLIRSTREAM_RUNTIME_DIR", str(tmp_path / "runtime"))
    first, second = free_port(), free_port()
    config = tmp_path / "server.conf"
    config.write_text(f"[capture]\nsource = sim\n\n[server]\nhost = 127.0.0.1\nport = {first}\n")
    one = run_flir_stream(config)
    assert one.wait_url() == f"http://127.0.0.1:{first}/"
    two = run_flir_stream(config, "--set", f"server.port={second}")
    assert two.wait_url() == f"http://127.0.0.1:{second}/"
    for port in (first, second):
        with FrameWatcher(f"ws://127.0.0.1:{port}/ws") as watcher:
            assert len(watcher.wait_frames(3, 30)) >= 3, f"{port}: {watcher.last_error}"
    for run in (one, two):
        assert run.proc.poll() is None and "exited with status" not in run.stderr(), \
            run.stderr()[-3000:]
    assert (tmp_path / "runtime" / str(first) / "frames").exists()
    assert (tmp_path / "runtime" / str(second) / "images").exists()
    for run in (one, two):
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(15) == 0, run.stderr()[-3000:]
