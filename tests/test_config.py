"""server.conf: the shipped file, the seed's file, and one clear line for every kind of bad value."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flirstream import config
from flirstream.config import SCHEMA, ConfigError

ROOT = Path(__file__).resolve().parent.parent

SEED_CONF = """\
[Server-Configurations]
HTTP_Interface = 0.0.0.0
HTTP_Port = 80
HTTP_Listen = 5
HTTP_Recieve = 4096
Websocket_Interface = 0.0.0.0
Websocket_Port = 9876
Image = thermal.jpg
"""

# A wrong value for every key of the schema (keys that take free text are listed apart).
BAD_VALUES = {
    ("endpoints", "frames"): "localhost:5560",
    ("endpoints", "images"): "tcp://127.0.0.1:99999",
    ("endpoints", "control"): "udp://127.0.0.1:5562",
    ("endpoints", "camera"): "tcp://127.0.0.1",
    ("endpoints", "allow_public"): "perhaps",
    ("endpoints", "curve_key"): "/nonexistent/flir-stream.key_secret",
    ("capture", "source"): "usb:/dev/video0",
    ("capture", "sensor"): "lepton9",
    ("capture", "telemetry"): "middle",
    ("capture", "tlinear"): "2",
    ("capture", "tlinear_resolution"): "0.05",
    ("capture", "i2c"): "/dev/spidev0.0",
    ("capture", "spi_speed_hz"): "100",
    ("capture", "dedupe"): "maybe",
    ("capture", "replay"): "slow",
    ("capture", "loop"): "twice",
    ("capture", "sim_unique_every"): "0",
    ("capture", "sim_fps"): "1000",
    ("capture", "realtime"): "rr",
    ("capture", "priority"): "100",
    ("capture", "nice"): "20",
    ("capture", "cpu"): "first",
    ("encoder", "palette"): "sepia",
    ("encoder", "agc"): "auto",
    ("encoder", "clip_percent"): "99, 1",
    ("encoder", "smoothing"): "1.5",
    ("encoder", "range_c"): "40",
    ("encoder", "size"): "640by480",
    ("encoder", "interpolation"): "bilinear",
    ("encoder", "rotate"): "45",
    ("encoder", "flip"): "diagonal",
    ("encoder", "quality"): "150",
    ("encoder", "isotherm"): "between 40 30",
    ("encoder", "isotherm_colour"): "green",
    ("encoder", "pause_when_unwatched"): "sometimes",
    ("server", "host"): "not a host!",
    ("server", "port"): "http",
    ("server", "websocket_port"): "70000",
    ("server", "backlog"): "0",
    ("server", "max_clients"): "-1",
    ("server", "allowed_origins"): "example.org",
    ("server", "allowed_hosts"): "http://camera.example:8080",
    ("server", "tls_cert"): "/nonexistent/cert.pem",
    ("server", "tls_key"): "/nonexistent/key.pem",
    ("server", "stale_after_s"): "0",
    ("monitor", "alarm_max_count"): "0",
    ("monitor", "alarm_max_mb"): "lots",
    ("mqtt", "host"): "broker with spaces",
    ("mqtt", "port"): "0",
    ("mqtt", "tls"): "sometimes",
    ("mqtt", "ca_file"): "/nonexistent/ca.pem",
    ("mqtt", "topic"): "home/#",
    ("mqtt", "interval_s"): "0.1",
    ("mqtt", "discovery"): "perhaps",
    ("mqtt", "discovery_prefix"): "home assistant",
    ("mqtt", "image_interval_s"): "-1",
}
FREE_TEXT = {("capture", "record"), ("server", "token"), ("server", "control_token"),
             ("server", "static_dir"), ("state", "dir"), ("monitor", "alarm_dir"),
             ("mqtt", "username"), ("mqtt", "password")}


def test_every_key_has_a_bad_value_case():
    keys = {(s, k) for s, section in SCHEMA.items() for k in section}
    assert keys == set(BAD_VALUES) | FREE_TEXT


@pytest.mark.parametrize("section,key", sorted(BAD_VALUES))
def test_bad_value_is_one_line_naming_everything(section, key):
    value = BAD_VALUES[(section, key)]
    extra = ""
    if key in ("tls_cert", "tls_key"):  # the pair check must not hide the file check
        other = "tls_key" if key == "tls_cert" else "tls_cert"
        extra = f"{other} = {ROOT / 'setup.cfg'}\n"
    with pytest.raises(ConfigError) as info:
        config.loads(f"[{section}]\n{key} = {value}\n{extra}", name="my.conf")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("my.conf")
    assert f"[{section}]" in message and key in message and value in message
    assert "expected" in message


def test_shipped_config_loads_and_documents_every_key():
    cfg = config.load(ROOT / "server.conf")
    assert cfg.capture.source == "auto"
    assert cfg.server.host == "127.0.0.1"
    text = (ROOT / "server.conf").read_text()
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        body = text.split(f"\n[{section}]\n", 1)[1].split("\n[", 1)[0]  # the section's own lines
        for key, spec in keys.items():
            line = re.search(rf"^{key} =(.*)$", body, re.M)
            assert line, f"server.conf does not document [{section}] {key}"
            # the shipped file shows the defaults
            assert SCHEMA[section][key].parse(line.group(1)) == spec.parse(spec.default)


def test_packaged_default_is_the_shipped_file():
    assert config.PACKAGED_CONFIG.read_text() == (ROOT / "server.conf").read_text()


def test_seed_config_is_mapped_and_dead_keys_are_named(caplog):
    with caplog.at_level(logging.INFO, logger="config"):
        cfg = config.loads(SEED_CONF, name="seed.conf")
    assert (cfg.server.host, cfg.server.port, cfg.server.backlog) == ("0.0.0.0", 80, 5)
    assert cfg.server.websocket_port == 9876
    assert cfg.capture.source == "image:thermal.jpg"
    dead = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("HTTP_Recieve".lower() in m.lower() and "no longer does anything" in m for m in dead)
    assert any("Websocket_Interface".lower() in m.lower() for m in dead)


def test_new_keys_win_over_the_seed_keys():
    cfg = config.loads(SEED_CONF + "\n[server]\nport = 8088\n")
    assert cfg.server.port == 8088


@pytest.mark.parametrize("content,needle", [
    ("[cameras]\nx = 1\n", "[cameras]: unknown section"),
    ("[encoder]\ncolour = red\n", "[encoder] colour: unknown key"),
    ("[Server-Configurations]\nHTTP_Timeout = 3\n", "HTTP_Timeout".lower()),
    ("[server]\nport = 5560\n[endpoints]\nframes = tcp://127.0.0.1:5560\n", "already used"),
    ("[server]\nport = 9000\nwebsocket_port = 9000\n", None),  # same port twice is fine
    ("[endpoints]\nframes = tcp://0.0.0.0:5560\n", "allow_public"),
    ("[server]\ntls_cert = /etc/hostname\n", "both or neither"),
    ("[encoder\npalette = jet\n", "not a valid INI file"),
    ("palette = jet\n", "not a valid INI file"),
])
def test_whole_file_checks(content, needle):
    if needle is None:
        config.loads(content)
        return
    with pytest.raises(ConfigError) as info:
        config.loads(content, name="x.conf")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_public_endpoints_allowed_when_asked():
    cfg = config.loads("[endpoints]\nframes = tcp://0.0.0.0:5560\nallow_public = yes\n")
    assert cfg.endpoints.frames == "tcp://0.0.0.0:5560"


def test_overrides_are_checked_like_the_file():
    cfg = config.loads("", overrides=["encoder.palette=jet", "server.port = 8123"])
    assert cfg.encoder.palette == "jet" and cfg.server.port == 8123
    for bad, needle in [("encoder.palette", "SECTION.KEY=VALUE"), ("encoder.hue=1", "unknown key"),
                        ("encoder.quality=0", "expected an integer from 1 to 100")]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            config.loads("", overrides=[bad])


def test_typed_values():
    cfg = config.loads("[encoder]\nsize = 320x240\nrange_c = -10, 120.5\nrotate = 270\n")
    assert cfg.encoder.size == (320, 240)
    assert cfg.encoder.range_c == (-10.0, 120.5)
    assert cfg.encoder.rotate == 270


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flirstream", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["capture", "encoder", "server", "run"])
def test_cli_refuses_a_bad_file_with_one_line_and_status_2(tmp_path, command):
    conf = tmp_path / "bad.conf"
    conf.write_text("[encoder]\nquality = 150\n")
    result = run_cli(command, "--config", str(conf), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines == [f"flir-stream {command}: error: {conf}: [encoder] quality = '150': "
                     f"expected an integer from 1 to 100"]


def test_cli_names_a_missing_file(tmp_path):
    result = run_cli("capture", "--config", str(tmp_path / "nope.conf"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.conf: no such file" in result.stderr and "Traceback" not in result.stderr


def test_cli_help_lists_every_stage(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("capture", "encoder", "server", "run"):
        assert command in result.stdout


def test_readme_reference_lists_every_key():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\w+) \| ([\w, ]+) \|", readme, re.M)
    listed = {(section, key.strip()) for section, keys in rows for key in keys.split(",")}
    for section, keys in SCHEMA.items():
        for key in keys:
            assert (section, key) in listed, f"README's configuration table lacks [{section}] {key}"


def _ini_examples(path: Path) -> list[str]:
    """The ```ini blocks of a Markdown file that configure flir-stream (not supervisord, systemd)."""
    blocks = re.findall(r"^ *```ini\n(.*?)^ *```", path.read_text(), re.M | re.S)
    foreign = ("[supervisord]", "[include]", "[Service]", "[program:")
    return [textwrap.dedent(b) for b in blocks if not any(f in b for f in foreign)]


def test_the_docs_ini_examples_work_when_pasted():
    # server.conf has no comments after a value (see below): an example that puts one there is
    # refused (`above = 250 ; °C`) or, worse, taken whole (`token = s3cret ; note` is that token).
    examples = {path.name: _ini_examples(path) for path in [ROOT / "README.md",
                                                             *sorted((ROOT / "docs").glob("*.md"))]}
    assert len(examples["README.md"]) >= 2 and len(examples["SECURITY.md"]) >= 3
    for name, blocks in examples.items():
        for block in blocks:
            for line in block.splitlines():
                if "=" in line and not line.lstrip().startswith(("#", ";")):
                    value = line.split("=", 1)[1]
                    assert not re.search(r"\s[;#]", value), f"{name}: comment after a value: {line}"
    # The README's regions and alarm, as written, are a configuration the loader takes.
    cfg = config.loads("".join(examples["README.md"]), name="README.md")
    assert cfg.alarms["nozzle-hot"].threshold == 250.0 and cfg.alarms["nozzle-hot"].for_s == 10.0


def test_region_and_alarm_sections_come_through_the_loader():
    cfg = config.loads("[capture]\nsensor = lepton2\n[roi:bed]\nbox = 0, 0, 79, 59\n"
                       "[alarm:bed-hot]\nroi = bed\nabove = 60\nfor_s = 2\n")
    assert cfg.regions["bed"].as_dict() == {"name": "bed", "kind": "box", "box": [0, 0, 79, 59]}
    assert cfg.alarms["bed-hot"].threshold == 60.0 and cfg.alarms["bed-hot"].for_s == 2.0
    for content, needle in [
            ("[capture]\nsensor = lepton2\n[roi:bed]\nspot = 80, 10\n",
             "my.conf: [roi:bed] spot = '80, 10': expected 'X, Y' with X from 0 to 79"),
            ("[alarm:hot]\nroi = nowhere\nabove = 50\n",
             "my.conf: [alarm:hot] roi = 'nowhere': no such region"),
            ("[alarm:hot]\nabove = warm\n", "my.conf: [alarm:hot] above = 'warm': expected degrees C"),
            ("[mqtt]\nhost = broker\npassword = secret\n", "my.conf: [mqtt] password: expected username")]:
        with pytest.raises(ConfigError) as info:
            config.loads(content, name="my.conf")
        assert str(info.value).startswith(needle) and "\n" not in str(info.value)


# ---------------------------------------------------------------- messages about the file itself

@pytest.mark.parametrize("content,line,what", [
    ("[server]\nport = 8080\nthis is not a setting\n", 3, "expected 'key = value'"),
    ("# a comment\nport = 8080\n", 2, "expected a [section] header first"),
    ("[server]\nport = 8080\nport = 8081\n", 3, "[server] port is set twice"),
    ("[server]\n[encoder]\n[server]\n", 3, "[server] appears twice"),
])
def test_an_ini_syntax_error_names_its_line(tmp_path, content, line, what):
    path = tmp_path / "server.conf"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line {line}: ") and what in message, message
    assert "\n" not in message


def test_a_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "server.conf"
    path.write_bytes("\ufeff[server]\nport = 8090\n".encode("utf-8"))
    assert config.load(path).server.port == 8090
    assert config.loads("\ufeff[server]\nport = 8091\n").server.port == 8091


def test_a_hash_in_a_value_is_kept_not_an_inline_comment(tmp_path):
    path = tmp_path / "server.conf"
    path.write_text("[server]\ntoken = pass #word\ncontrol_token = a;b ; c\n# a comment line\n")
    cfg = config.load(path)
    assert cfg.server.token == "pass #word"
    assert cfg.server.control_token == "a;b ; c"
    text = (ROOT / "server.conf").read_text()
    assert "no comments after a value" in text  # and the shipped file says so


def test_an_unknown_key_is_named_without_its_value(tmp_path):
    # A misspelt `tokn = Secret` must not print the secret.
    path = tmp_path / "server.conf"
    path.write_text("[server]\ntokn = VerySecret\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "tokn" in str(info.value) and "VerySecret" not in str(info.value)
    path.write_text("[Server-Configurations]\nHTTP_Pasword = VerySecret\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "VerySecret" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        config.load(None, ["server.tokn=VerySecret"])
    assert "VerySecret" not in str(info.value)
    result = run_cli("server", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "VerySecret" not in result.stderr + result.stdout


def test_cli_alone_lists_its_commands_and_exits_2(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    for command in ("capture", "encoder", "server", "run"):
        assert re.search(rf"^\s+{command}\s+\w", result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["capture", "encoder", "server", "run"])
def test_cli_help_shows_each_default_once(tmp_path, command):
    result = run_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "(default: info)" in text and text.count("(default: info)") == 1, text
    assert "(default: None)" not in text and "(default: [])" not in text
