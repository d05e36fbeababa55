"""The parts of `flir-stream run` that decide something without processes (the URL it prints, the
restart delays, each child's command line) and the systemd unit that runs it."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT
from flirstream import config as configuration
from flirstream.supervise import (Backoff, announcement, child_argv, describe_status,
                                  port_unavailable, probe_hosts, viewer_urls)


def server(**keys: str):
    text = "[server]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    return configuration.loads(text).server


def test_loopback_host_gives_one_url():
    assert viewer_urls(server(host="127.0.0.1", port="8080"), "127.0.0.1") == \
        ["http://127.0.0.1:8080/"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_every_interface_gives_the_local_url_and_the_machine_name(host):
    assert probe_hosts(host)[0] == "127.0.0.1"
    urls = viewer_urls(server(host=host, port="8081"), "127.0.0.1", hostname="thermalpi")
    assert urls == ["http://127.0.0.1:8081/", "http://thermalpi:8081/"]


def test_an_ipv6_address_is_bracketed():
    assert viewer_urls(server(host="::1", port="8081"), "::1") == ["http://[::1]:8081/"]


def test_default_ports_are_left_out_and_tls_gives_https(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    tls = server(host="127.0.0.1", port="443", tls_cert=str(cert), tls_key=str(key))
    assert viewer_urls(tls, "127.0.0.1") == ["https://127.0.0.1/"]
    tls_other = server(host="127.0.0.1", port="8443", tls_cert=str(cert), tls_key=str(key))
    assert viewer_urls(tls_other, "127.0.0.1") == ["https://127.0.0.1:8443/"]
    assert viewer_urls(server(host="127.0.0.1", port="80"), "127.0.0.1") == ["http://127.0.0.1/"]


def test_a_token_gives_a_hint_but_never_the_secret():
    srv = server(host="127.0.0.1", port="8080", token="s3cret-value")
    urls = viewer_urls(srv, "127.0.0.1")
    assert urls == ["http://127.0.0.1:8080/?token=<token>"]
    text = announcement(urls, True, "/etc/flir-stream/server.conf")
    assert "s3cret-value" not in text
    assert "[server] token from /etc/flir-stream/server.conf" in text


def test_backoff_doubles_to_ten_seconds_on_quick_deaths_and_resets_after_a_proper_start():
    backoff = Backoff()
    assert [backoff.after_exit(1.0) for _ in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.after_exit(2.0) == 0.25  # it had run 2 s: a fresh death, not a crash loop
    assert backoff.after_exit(0.2) == 0.5
    assert backoff.after_exit(5.0) == 0.25


def test_children_get_the_same_interpreter_config_overrides_and_log_level():
    argv = child_argv("encoder", "/srv/server.conf", ["encoder.palette=jet", "server.port=81"],
                      "debug")
    assert argv == [sys.executable, "-m", "flirstream", "encoder", "--config", "/srv/server.conf",
                    "--set", "encoder.palette=jet", "--set", "server.port=81", "--log-level", "debug"]


def test_a_port_in_use_is_named_and_a_free_one_is_not():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_unavailable("127.0.0.1", port) == \
            f"127.0.0.1:{port} is already in use (another flir-stream running?)"
    assert port_unavailable("127.0.0.1", port) is None


def test_exit_status_is_described_for_people():
    assert describe_status(-9) == "was killed by SIGKILL"
    assert describe_status(1) == "exited with status 1"


def test_the_systemd_unit_is_valid_for_systemd(tmp_path):
    # systemd-analyze checks every directive; only ExecStart is pointed at this machine's program.
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed: apt-get install systemd"
    program = Path(sysconfig.get_path("scripts")) / "flir-stream"
    unit = (ROOT / "scripts" / "flir-stream.service").read_text()
    assert "ExecStart=/opt/flir-stream/.venv/bin/flir-stream run --config " in unit
    directives = [line.strip() for line in unit.splitlines() if not line.startswith("#")]
    # [capture] realtime = fifo needs LimitRTPRIO=, and RestrictRealtime=yes would refuse it anyway
    assert "LimitRTPRIO=20" in directives and "RestrictRealtime=yes" not in directives
    copy = tmp_path / "flir-stream.service"
    copy.write_text(unit.replace("/opt/flir-stream/.venv/bin/flir-stream", str(program)))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "flir-stream.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
