"""scripts/supervisord.conf, exactly as shipped, included from a main config by a real supervisord.

The main config lives in a temporary directory (its unix socket too) and sets the four variables the
include needs the two documented ways: FLIR_STREAM_BIN, FLIR_STREAM_CONFIG and FLIR_STREAM_USER in
supervisord's environment, FLIR_STREAM_LOG_DIR with [supervisord] environment=.
"""
from __future__ import annotations

import configparser
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, started, write_config
from flirstream.testing import FrameWatcher, live, measure_restart, wait_until

INCLUDE = ROOT / "scripts" / "supervisord.conf"
PROGRAMS = {"capture": "flir-capture", "encoder": "flir-encoder", "server": "flir-server"}


def test_the_include_file_defines_the_three_programs_and_their_group_only():
    parser = configparser.RawConfigParser()
    parser.read(INCLUDE)
    assert set(parser.sections()) == {f"program:{p}" for p in PROGRAMS.values()} | {
        "group:flir-stream"}
    assert parser.get("group:flir-stream", "programs").split(",") == list(PROGRAMS.values())
    priorities = [int(parser.get(f"program:{p}", "priority")) for p in PROGRAMS.values()]
    assert priorities == sorted(priorities)  # capture starts first
    for stage, program in PROGRAMS.items():
        command = parser.get(f"program:{program}", "command")
        assert command == (f"%(ENV_FLIR_STREAM_BIN)s/flir-stream {stage} "
                           f"--config %(ENV_FLIR_STREAM_CONFIG)s")


class Supervisord:
    """supervisord -n with a main config in a short temporary directory that includes ours."""

    def __init__(self, stage_config: Path, log_dir: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fs-sv-"))  # unix socket paths must stay short
        self.main = self.dir / "supervisord.conf"
        self.main.write_text(f"""\
[unix_http_server]
file={self.dir}/supervisor.sock

[supervisord]
logfile={self.dir}/supervisord.log
pidfile={self.dir}/supervisord.pid
childlogdir={self.dir}
nodaemon=true
environment=FLIR_STREAM_LOG_DIR="{log_dir}"

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{self.dir}/supervisor.sock

[include]
files = {INCLUDE}
""")
        bin_dir = sysconfig.get_path("scripts")
        assert (Path(bin_dir) / "flir-stream").exists(), \
            f"{bin_dir}/flir-stream is missing: install the project first (pip install -e .)"
        env = dict(os.environ, FLIR_STREAM_BIN=bin_dir, FLIR_STREAM_CONFIG=str(stage_config),
                   FLIR_STREAM_USER=pwd.getpwuid(os.getuid()).pw_name)
        self.log = open(self.dir / "supervisord.out", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(self.main)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        self.seen: set[int] = set()

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.main), *args],
            capture_output=True, text=True, timeout=20)
        return result.stdout + result.stderr

    def pid(self, stage: str) -> int:
        """The stage's pid while supervisord says it is RUNNING, else 0."""
        status = self.ctl("status", f"flir-stream:{PROGRAMS[stage]}")
        if "FATAL" in status:  # supervisord gave up: waiting longer cannot help
            pytest.fail(f"{status}\n{self.output()[-3000:]}")
        match = re.search(r"RUNNING\s+pid (\d+)", status)
        if not match:
            return 0
        self.seen.add(int(match.group(1)))
        return int(match.group(1))

    def output(self) -> str:
        self.log.flush()
        return (self.dir / "supervisord.out").read_text(errors="replace")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in live(list(self.seen)):
            os.kill(pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def supervisord(tmp_path):
    """supervisord(stage_config, log_dir) -> Supervisord; cleaned up after the test."""
    yield from started(Supervisord, "cleanup")


def test_supervisord_runs_the_stages_and_restarts_each_one_killed(tmp_path, supervisord):
    config = write_config(tmp_path)
    port = int(re.search(r"^port = (\d+)$", config.read_text(), re.M).group(1))
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    sup = supervisord(config, log_dir)

    pids = wait_until(lambda: (lambda p: p if all(p.values()) else None)(
        {stage: sup.pid(stage) for stage in PROGRAMS}), 40, 0.3)
    assert pids, f"not all RUNNING:\n{sup.ctl('status')}\n{sup.output()[-3000:]}"

    figures = {}
    with FrameWatcher(f"ws://127.0.0.1:{port}/ws") as watcher:
        assert watcher.wait_frames(3, 30), f"no frames: {watcher.last_error}"
        for stage in ("encoder", "capture", "server"):
            connects = watcher.connects
            figures[stage] = measure_restart(watcher, stage, pids[stage],
                                             lambda: sup.pid(stage))
            if stage == "server":
                assert watcher.connects > connects, "the websocket client did not reconnect"
        assert watcher.bad_messages == 0
    print("supervisord: seconds from SIGKILL to frames again:",
          ", ".join(f"{s} {t:.2f}" for s, t in figures.items()))

    # Each stage logged to its own file in FLIR_STREAM_LOG_DIR, one line per event naming it.
    for stage in PROGRAMS:
        text = (log_dir / f"{stage}.log").read_text(errors="replace")
        assert re.search(rf"^\S+ {stage} INFO ", text, re.M), f"{stage}.log:\n{text[-2000:]}"

    running = [sup.pid(stage) for stage in PROGRAMS]
    assert "Shut down" in sup.ctl("shutdown")
    assert sup.proc.wait(30) == 0, sup.output()[-3000:]
    assert wait_until(lambda: not live(running + list(sup.seen)), 5), \
        f"stages left after supervisord shut down: {live(running + list(sup.seen))}"
    log = (sup.dir / "supervisord.log").read_text()
    for program in PROGRAMS.values():
        assert f"exited: {program} (terminated by SIGKILL" in log
        assert f"stopped: {program} (exit status 0)" in log
