"""capture.realtime: SCHED_FIFO / nice / CPU affinity applied where permitted, refusals said in the
one line and capture goes on. Each case runs in a child process (a SCHED_FIFO test runner would
be a hazard to the machine), as root when the tests run as root and as an unprivileged user."""
from __future__ import annotations

import os
import subprocess
import time
import sys

import pytest

from conftest import ROOT
from flirstream import config as configuration
from flirstream.config import ConfigError

CHILD = """
import gc, os, sys
from capture import realtime
if {drop}:  # (after the imports: the unprivileged user may not read the installation)
    os.setgid(65534); os.setuid(65534)
line = realtime.apply({policy!r}, {priority}, {nice}, {cpus!r})
print(line)
print(os.sched_getscheduler(0) == os.SCHED_FIFO, sorted(os.sched_getaffinity(0)))
print(realtime.tune_gc(), gc.get_threshold()[0], gc.get_freeze_count() > 0)
"""


def child(policy="off", priority=10, nice=0, cpus=None, drop=False) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(policy=policy, priority=priority, nice=nice,
                                            cpus=cpus, drop=drop)],
        capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_off_is_normal_scheduling_and_the_gc_is_frozen():
    line, fifo, gc_line = child()
    assert line.startswith("normal scheduling, nice 0, CPU ")
    assert fifo.startswith("False")
    assert "gc frozen" in gc_line and gc_line.endswith("10000 True")


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO granted needs root here")
def test_fifo_and_cpu_affinity_are_granted_to_root():
    cpu = min(os.sched_getaffinity(0))
    line, fifo, _ = child("fifo", 7, 0, (cpu,))
    assert line == f"SCHED_FIFO priority 7, CPU {cpu}"
    assert fifo == f"True [{cpu}]"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_refused_settings_say_eperm_and_capture_goes_on():
    line, fifo, _ = child("fifo", 10, -5, None, drop=True)
    assert line.startswith("normal scheduling, nice 0, CPU ")
    assert "nice -5 refused: not permitted (EACCES)" in line
    assert "SCHED_FIFO 10 refused: not permitted (EPERM)" in line and "LimitRTPRIO" in line
    assert fifo.startswith("False")


def test_a_cpu_that_does_not_exist_is_refused_with_the_reason():
    line, _, _ = child("off", 10, 0, (1023,))
    assert "CPU 1023 refused: Invalid argument" in line


def test_the_config_keys_parse_and_refuse_bad_values():
    cap = configuration.loads("[capture]\nrealtime = fifo\npriority = 20\nnice = -5\n"
                              "cpu = 3, 1\n").capture
    assert (cap.realtime, cap.priority, cap.nice, cap.cpu) == ("fifo", 20, -5, (1, 3))
    defaults = configuration.loads("").capture
    assert (defaults.realtime, defaults.priority, defaults.nice, defaults.cpu) == \
        ("off", 10, 0, None)
    with pytest.raises(ConfigError, match=r"\[capture\] cpu = 'x': expected CPU numbers"):
        configuration.loads("[capture]\ncpu = x\n")


def test_the_capture_process_reports_its_scheduling_in_the_log_and_status(tmp_path, stages):
    import zmq

    from conftest import write_config
    from flirstream import links, wire

    cpu = max(os.sched_getaffinity(0))
    config = write_config(tmp_path, capture={"source": "sim", "realtime": "fifo",
                                             "priority": "3", "cpu": str(cpu)})
    endpoint = next(line.split("=", 1)[1].strip() for line in config.read_text().splitlines()
                    if line.startswith("frames"))
    ctx = zmq.Context()
    sock = links.subscriber(ctx, endpoint, wire.STATUS_TOPIC, hwm=100)
    stage = stages("capture", config)
    try:
        status = None
        deadline = time.monotonic() + 20
        while status is None and time.monotonic() < deadline and stage.proc.poll() is None:
            if sock.poll(100):
                status = wire.unpack_status(sock.recv_multipart())
        assert status is not None, stage.log()
    finally:
        sock.close(0)
        ctx.term()
    expected = (f"SCHED_FIFO priority 3, CPU {cpu}" if os.geteuid() == 0
                else "SCHED_FIFO 3 refused: not permitted")
    assert expected in status["scheduling"] and "gc frozen" in status["scheduling"]
    assert stage.stop() == 0
    log = stage.log_path.read_text()
    assert log.count("scheduling: ") == 1 and expected in log


def test_the_status_schema_takes_the_scheduling_line_within_its_limit():
    from flirstream import wire

    line = "SCHED_FIFO priority 10, CPU 3; gc frozen (24557 objects), threshold 10000"
    parts = wire.pack_status("capture", "streaming", "", 1.0, scheduling=line)
    assert wire.unpack_status(parts)["scheduling"] == line
    with pytest.raises(wire.WireError):
        wire.unpack_status(wire.pack_status("capture", "streaming", "", 1.0,
                                            scheduling="x" * 501))
