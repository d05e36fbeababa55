"""The server's protections, each against a real server process: token, control token, TLS,
max_clients, slow and oversized requests, port clashes, IPv6, the seed's second port, health."""
from __future__ import annotations

import datetime
import ipaddress
import json
import re
import socket
import ssl
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import free_port, write_config
from server.protocol import split_frame
from server_support import Live, basic_auth, frames, http_get, json_messages, raw_request, \
    read_mjpeg_parts, wait_http

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def live_factory(tmp_path):
    started = []

    def start(*args: str, **kw) -> Live:
        server = Live(tmp_path / f"s{len(started)}", *args, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.close() == 0, server.stage.log_path.read_text()


# ---------------------------------------------------------------- viewing token

def test_token_guards_every_endpoint(live_factory):
    live = live_factory(token="s3cret")
    port = live.port
    status, headers, body = http_get(port, "/")
    assert status == 401 and b"Token needed" in body
    assert headers["www-authenticate"].startswith("Basic")
    for path in ("/", "/sub/x.js", "/stream.mjpg", "/snapshot.jpg", "/snapshot.csv",
                 "/snapshot.tiff", "/healthz", "/metrics", "/ws"):
        assert http_get(port, path)[0] == 401, path
        assert http_get(port, path + "?token=wrong")[0] == 401, path
        assert http_get(port, path, headers=basic_auth("wrong"))[0] == 401, path
    assert http_get(port, "/", headers={"Authorization": "Basic !!!"})[0] == 401
    assert http_get(port, "/", headers={"Authorization": "Bearer s3cret"})[0] == 401

    status, headers, body = http_get(port, "/?token=s3cret")
    assert status == 200 and b"test viewer" in body
    cookie = headers["set-cookie"].split(";")[0]
    assert "s3cret" not in cookie and "HttpOnly" in headers["set-cookie"]
    assert http_get(port, "/snapshot.jpg", headers={"Cookie": cookie})[0] == 200
    assert http_get(port, "/healthz", headers=basic_auth("s3cret"))[0] == 200
    assert http_get(port, "/metrics?token=s3cret")[0] == 200

    with pytest.raises(InvalidStatus) as info:
        live.ws()
    assert info.value.response.status_code == 401
    with live.ws("/ws?token=s3cret") as ws:
        assert json_messages(ws, 1)[0]["type"] == "hello"
        frames(ws, 2)
    with live.ws(additional_headers=basic_auth("s3cret")) as ws:
        frames(ws, 1)


def test_control_token_needed_for_settings_only(live_factory):
    live = live_factory(control_token="ctl")
    with live.ws() as ws:  # viewing is open
        hello = json_messages(ws, 2)[0]
        assert hello["control"] == "token"
        frames(ws, 1)
        for message in ({"op": "set", "settings": {"palette": "jet"}},
                        {"op": "set", "settings": {"palette": "jet"}, "token": "nope"},
                        {"op": "set", "settings": {"palette": "jet"}, "token": 5}):
            ws.send(json.dumps(message))
            assert json_messages(ws, 1)[0]["type"] == "error"
        assert not [r for r in live.encoder.requests if r["op"] == "set"]
        ws.send(json.dumps({"op": "set", "settings": {"palette": "jet"}, "token": "ctl"}))
        reply = json_messages(ws, 1)[0]
        assert reply["type"] == "settings" and reply["settings"]["palette"] == "jet"
    with live.ws("/ws?token=ctl") as ws:  # the connection's own token counts too
        json_messages(ws, 2)
        ws.send(json.dumps({"op": "set", "settings": {"palette": "turbo"}}))
        assert json_messages(ws, 1)[0]["settings"]["palette"] == "turbo"


# ---------------------------------------------------------------- TLS

def _self_signed(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flir-stream test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_https_and_wss(live_factory, tmp_path):
    cert, key = _self_signed(tmp_path)
    live = live_factory(tls_cert=str(cert), tls_key=str(key))
    client = ssl.create_default_context(cafile=str(cert))
    wait_http(live.port, tls=client, want=200)
    status, _, body = http_get(live.port, "/", tls=client)
    assert status == 200 and b"test viewer" in body
    status, _, jpeg = http_get(live.port, "/snapshot.jpg", tls=client)
    assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    with connect(f"wss://127.0.0.1:{live.port}/ws", ssl=client, open_timeout=5) as ws:
        assert json_messages(ws, 1)[0]["type"] == "hello"
        frames(ws, 2)
    # plain HTTP on the TLS port gets no page
    answer = raw_request(live.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert b"test viewer" not in answer


# ---------------------------------------------------------------- limits

def test_max_clients_answers_503(live_factory):
    live = live_factory(max_clients="2")
    with live.ws() as first, live.ws() as second:
        frames(first, 1)
        frames(second, 1)
        with pytest.raises(InvalidStatus) as info:
            live.ws()
        assert info.value.response.status_code == 503
        status, _, body = http_get(live.port, "/stream.mjpg")
        assert status == 503 and b"max_clients" in body
        assert http_get(live.port, "/snapshot.jpg")[0] == 200  # snapshots are not streams
    deadline = time.monotonic() + 5
    while True:  # the server notices the closed clients, then admits again
        try:
            with live.ws() as again:
                frames(again, 1)
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _closed_by_server(sock: socket.socket, trickle: bytes, within: float) -> bool:
    """Send `trickle` a byte at a time (slowloris); True if the server closes the connection."""
    deadline = time.monotonic() + within
    sock.settimeout(0.3)
    for i in range(10_000):
        if time.monotonic() > deadline:
            return False
        try:
            if i < len(trickle):
                sock.send(trickle[i:i + 1])
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:  # reset or broken pipe: closed too
            return True
    return False


def test_slow_and_oversized_requests_are_cut_off(live_factory):
    live = live_factory("--request-timeout", "1")
    slow_headers = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    slow_body = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"b" * 200
    connections = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(3)]
    try:
        assert _closed_by_server(connections[0], slow_headers, within=8)
        assert _closed_by_server(connections[1], slow_body, within=8)
        assert _closed_by_server(connections[2], b"", within=8)  # idle, never a request
    finally:
        for c in connections:
            c.close()
    huge_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 40_000 + b"\r\n\r\n"
    assert not raw_request(live.port, huge_header).startswith(b"HTTP/1.1 200")
    huge_body = (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                 + b"x" * 10_000)
    assert not raw_request(live.port, huge_body).startswith(b"HTTP/1.1 200")
    assert http_get(live.port, "/healthz")[0] == 200  # and the server is fine
    # the timeout is for requests: streams that last much longer go on
    with live.ws() as ws:
        got = frames(ws, 50, timeout=20)  # 2.5 s at 20 frames/s
    assert got[-1][0]["seq"] - got[0][0]["seq"] >= 49
    assert len(read_mjpeg_parts(live.port, 50, timeout=20)[1]) == 50


def test_port_in_use_is_a_config_error_naming_it(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        conf = write_config(tmp_path, server={"port": port})
        result = subprocess.run([sys.executable, "-m", "flirstream", "server", "--config", str(conf)],
                                capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_ipv6_loopback(live_factory):
    live = live_factory(host="::1")
    status, _, body = http_get(live.port, "/", host="::1")
    assert status == 200 and b"test viewer" in body
    with live.ws() as ws:
        frames(ws, 2)
    with pytest.raises(OSError):  # IPv6 only: nothing on 127.0.0.1
        http_get(live.port, "/", host="127.0.0.1", timeout=2)


def test_websocket_port_serves_ws_for_the_page_on_port(live_factory):
    ws_port = free_port()
    live = live_factory(websocket_port=str(ws_port))
    page = f"http://127.0.0.1:{live.port}"
    with connect(f"ws://127.0.0.1:{ws_port}/ws", origin=page, open_timeout=5) as ws:
        assert json_messages(ws, 1)[0]["type"] == "hello"
        frames(ws, 2)
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{ws_port}/ws", origin="http://127.0.0.1:9", open_timeout=5)


# ---------------------------------------------------------------- health

def _health(live) -> tuple[int, dict]:
    status, _, body = http_get(live.port, "/healthz")
    return status, json.loads(body)


def _wait_health(live, want: int, timeout: float = 8.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, report = _health(live)
        if status == want:
            return report
        assert time.monotonic() < deadline, (want, status, report)
        time.sleep(0.1)


def test_healthz_follows_frames_and_stage_status(live_factory):
    live = live_factory(stale_after_s="0.5")
    assert _wait_health(live, 200)["reason"] == "frames are flowing"
    with live.ws() as ws:
        json_messages(ws, 2)
        live.encoder.send_frames = False  # frames stop while the encoder says it is encoding
        assert "old" in _wait_health(live, 503)["reason"]
        live.encoder.encoder_state = "paused"  # nobody watching: no frames is fine
        assert "paused" in _wait_health(live, 200)["reason"]
        live.encoder.capture_state = "offline"
        report = _wait_health(live, 503)
        assert report["camera"] == "offline" and "camera offline" in report["reason"]
        deadline = time.monotonic() + 5
        while True:  # viewers hear of it
            message = json_messages(ws, 1)[0]
            if message["type"] == "status" and message["camera"] == "offline":
                assert message["capture"]["state"] == "offline"
                break
            assert time.monotonic() < deadline
        live.encoder.capture_state = "streaming"
        live.encoder.encoder_state = "encoding"
        live.encoder.send_frames = True
        _wait_health(live, 200)


def test_healthz_503_without_any_stage(tmp_path):
    from conftest import Stage
    conf = write_config(tmp_path)
    stage = Stage("server", conf)
    try:
        port = int(conf.read_text().split("port = ")[-1].split()[0])
        assert wait_http(port, want=503) == 503
        status, _, body = http_get(port, "/healthz")
        report = json.loads(body)
        assert report["healthy"] is False and report["capture"]["state"] == "unknown"
        status, _, body = http_get(port, "/snapshot.jpg")  # waits ~2 s, then says why
        assert status == 503 and b"no fresh frame" in body
    finally:
        assert stage.stop() == 0
    log = stage.log()
    assert "503 GET /healthz" in log
    assert " ERROR " not in log, log  # an expected 503 is news, not an error


def test_snapshot_wakes_a_paused_encoder(live_factory):
    live = live_factory(encoder={"pause_when_unwatched": True})
    assert "paused" in _wait_health(live, 200)["reason"]
    assert live.encoder.seq == 0  # nothing encoded yet
    status, headers, body = http_get(live.port, "/snapshot.jpg")
    assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) is not None
    counts = live.encoder.viewer_counts()
    assert 1 in counts
    deadline = time.monotonic() + 5
    while live.encoder.viewer_counts()[-1] != 0:  # the snapshot stopped counting as a viewer
        assert time.monotonic() < deadline
        time.sleep(0.05)


# ---------------------------------------------------------------- stopping

@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_with_viewers_connected(live_factory, sig):
    import http.client
    import signal
    from websockets.exceptions import ConnectionClosed
    live = live_factory()
    mjpeg = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    mjpeg.request("GET", "/stream.mjpg")
    stream = mjpeg.getresponse()
    assert stream.status == 200 and stream.read1(65536)
    with live.ws() as ws:
        frames(ws, 1)
        live.stage.proc.send_signal(getattr(signal, sig))
        assert live.stage.proc.wait(15) == 0
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(1000):
                ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    deadline = time.monotonic() + 5
    while stream.read1(65536):  # the MJPEG response ends too
        assert time.monotonic() < deadline
    mjpeg.close()
    log = live.stage.log_path.read_text()
    assert "stopped" in log and "Traceback" not in log


# ---------------------------------------------------------------- hostile input (issue 11)

class _Watcher:
    """A websocket viewer reading in its own thread, recording (arrival time, seq) of each frame."""

    def __init__(self, live) -> None:
        import threading
        self.ws = live.ws().__enter__()  # connect() objects are meant for `with`
        self.got: list[tuple[float, int]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            while True:
                message = self.ws.recv()
                if isinstance(message, bytes):
                    self.got.append((time.monotonic(), split_frame(message)[0]["seq"]))
        except ConnectionClosed:
            pass

    def seqs_between(self, start: float, end: float) -> list[int]:
        return [seq for t, seq in list(self.got) if start <= t <= end]

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


def test_idle_connection_flood_under_1024_files(live_factory):
    """Issue 11 defect 1: 1,100 idle TCP connections under a 1024 open-file limit (soft and hard)
    must neither busy-loop the server nor flood its log, and a viewer keeps its frames."""
    import psutil
    live = live_factory(wrap=("prlimit", "--nofile=1024"), max_clients="200")
    server = psutil.Process(live.stage.pid)
    assert server.rlimit(psutil.RLIMIT_NOFILE)[0] == 1024
    flood: list[socket.socket] = []
    try:
        watcher = _Watcher(live)
        try:
            deadline = time.monotonic() + 10
            while len(watcher.got) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            lines_before = live.stage.log().count("\n")
            flood_start = time.monotonic()
            refused_in_a_row = 0
            while len(flood) < 1100 and refused_in_a_row < 3:
                # one at a time, as the server takes them: a burst of 1,100 SYNs would mostly
                # be dropped at the listen backlog and never reach it
                s = socket.socket()
                s.settimeout(0.3)
                try:
                    s.connect(("127.0.0.1", live.port))
                    refused_in_a_row = 0
                except OSError:
                    refused_in_a_row += 1
                flood.append(s)
            assert server.num_fds() > 400, server.num_fds()  # the server did take a crowd
            cpu_before, start = sum(server.cpu_times()[:2]), time.monotonic()
            deadline = start + 3.0
            while time.monotonic() < deadline:  # the flood is held open for 3 s
                time.sleep(0.1)
            end = time.monotonic()
            cpu = sum(server.cpu_times()[:2]) - cpu_before
            wall = end - start
            deadline = time.monotonic() + 5
            while watcher.got[-1][0] < end:  # frames sent before `end` have arrived
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            watcher.close()
        seqs = watcher.seqs_between(start, end)  # while the flood is held open
        assert len(seqs) >= 20, seqs
        assert len(seqs) >= 0.95 * (seqs[-1] - seqs[0] + 1), seqs
        arriving = watcher.seqs_between(flood_start, start)  # while 1,100 connections arrive
        print(f"flood: {len(flood)} connections tried, server holds {server.num_fds()} files; "
              f"viewer got {len(arriving)} of {arriving[-1] - arriving[0] + 1} frames while they "
              f"arrived, {len(seqs)} of {seqs[-1] - seqs[0] + 1} while they stayed; server CPU "
              f"{cpu:.2f} s in {wall:.1f} s")
        assert cpu < 0.4 * wall, (cpu, wall)
        added = live.stage.log().splitlines()[lines_before:]
        assert len(added) <= 5, added[:10]
        assert "Traceback" not in live.stage.log()
    finally:
        for s in flood:
            s.close()
    assert wait_http(live.port, want=200) == 200  # and it serves as before


VIEW_SECRET = "ViewSecret-4f1c9a"
CONTROL_SECRET = "CtlSecret-77b2e0"


def _get_some(port: int, path: str, headers: dict) -> int:
    """Status of a GET, reading at most 64 KiB of the body (for endpoints that stream forever)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read1(65536) if response.status == 200 else response.read()
        return response.status
    finally:
        conn.close()


def test_tokens_never_reach_any_log(tmp_path, stages):
    """Issue 11 defect 2: every endpoint, with right and nearly right tokens in the query, basic
    auth, cookies and paths, against the whole pipeline; no stage's log may contain either token."""
    from urllib.parse import quote
    conf = write_config(tmp_path, server={"token": VIEW_SECRET, "control_token": CONTROL_SECRET})
    port = int(conf.read_text().split("port = ")[-1].split()[0])
    started = [stages(name, conf, "--log-level", "debug") for name in ("capture", "encoder", "server")]
    wait_http(port, want=200, headers=basic_auth(VIEW_SECRET), timeout=30)
    near = [VIEW_SECRET[:-1], VIEW_SECRET + "x", VIEW_SECRET.upper(), CONTROL_SECRET[:-1],
            CONTROL_SECRET + "0", quote(VIEW_SECRET + "/")]
    paths = ["/", "/index.html", "/viewer.js", "/stream.mjpg", "/snapshot.jpg", "/snapshot.tiff",
             "/snapshot.csv", "/healthz", "/metrics", "/ws", "/missing.html", "/index.html%00.js"]
    for path in paths:
        for token in [VIEW_SECRET, CONTROL_SECRET, *near]:
            _get_some(port, f"{path}?token={token}", {})
            _get_some(port, f"{path}?a=1&token={quote(token)}&b=2", {})
            _get_some(port, path, basic_auth(token))
            _get_some(port, path, {"Cookie": f"flirstream_session={token}"})
        _get_some(port, f"/{VIEW_SECRET}{path}", {})
    with connect(f"ws://127.0.0.1:{port}/ws?token={VIEW_SECRET}", open_timeout=5) as ws:
        json_messages(ws, 2)
        for token in (CONTROL_SECRET + "x", CONTROL_SECRET):
            ws.send(json.dumps({"op": "set", "settings": {"palette": "jet"}, "token": token}))
            json_messages(ws, 1)
    for name in (VIEW_SECRET + "x", VIEW_SECRET, CONTROL_SECRET):
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{port}/ws?token={name}", open_timeout=5,
                    origin="http://evil.example")
    for stage in started:
        assert stage.stop() == 0, stage.log()
    logs = "".join(stage.log() for stage in started)
    assert "401 GET" in logs and "200 GET" in logs  # requests were logged...
    for secret in ("viewsecret", "ctlsecret", "4f1c9a", "77b2e0"):  # ...but no token, right or not
        assert secret not in logs.lower(), [line for line in logs.splitlines()
                                            if secret in line.lower()][:5]


def test_a_lone_surrogate_token_is_refused_cleanly(live_factory):
    """Issue 11 defect 7: a token "\\ud800" (legal in JSON, not in UTF-8) raised UnicodeEncodeError
    in the token comparison."""
    live = live_factory(token="view", control_token="ctl")
    with live.ws("/ws?token=view") as ws:
        json_messages(ws, 2)
        ws.send('{"op": "set", "settings": {"palette": "jet"}, "token": "\\ud800"}')
        reply = json_messages(ws, 1)[0]
        assert reply["type"] == "error" and "control token" in reply["error"]
        frames(ws, 1)
    assert http_get(live.port, "/?token=%ED%A0%80")[0] in (400, 401)
    assert http_get(live.port, "/?token=%80")[0] in (400, 401)
    assert http_get(live.port, "/", headers={"Authorization": "Basic 7aCA"})[0] == 401
    log = live.stage.log()
    assert "Traceback" not in log and "Uncaught" not in log and " ERROR " not in log, log[-2000:]


def test_malformed_headers_and_arguments_get_a_plain_refusal(live_factory):
    """Reviewed: a non-ASCII basic auth header, a broken IPv6 literal in Origin or Host, and a /ws
    mode that is not UTF-8 were each a 500 with a traceback in the log."""
    for token in ("", "view"):
        live = live_factory(token=token)
        answer = raw_request(live.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        b"Authorization: Basic \xff\xfe\r\nConnection: close\r\n\r\n")
        assert answer.split(b"\r\n", 1)[0] == (b"HTTP/1.1 401 Unauthorized" if token
                                                else b"HTTP/1.1 200 OK"), answer[:200]
        upgrade = ("GET /ws{query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n")
        query = f"?token={token}&" if token else "?"
        own = f"127.0.0.1:{live.port}"
        for q, host, origin, status, says in [
                (query, own, "http://[", 403, b"Origin 'http://[' is not a URL"),
                (query, own, "http://[::1", 403, b"is not a URL"),
                (query, "[::1", f"http://{own}", 403, b""),
                (query + "mode=%ff", own, f"http://{own}", 400, b"mode is not valid UTF-8"),
                (query + "mode=raw", own, f"http://{own}", 400, b"expected one of"),
                (query, own, f"http://{own}", 101, b"")]:
            head, body = _answer(live.port, upgrade.format(query=q, host=host, origin=origin))
            answer = head + b"\r\n\r\n" + body
            assert head.startswith(b"HTTP/1.1 %d " % status), (q, host, origin, answer[:300])
            assert says in body, (q, host, origin, answer[:300])
            assert status == 101 or b"text/plain" in head, (q, host, origin, answer[:300])
        log = live.stage.log()
        assert "Traceback" not in log and "Uncaught" not in log and " ERROR " not in log, log[-3000:]


def _answer(port: int, request: str) -> tuple[bytes, bytes]:
    """(head, body) of the answer to a raw request: the body by its Content-Length, none for 101
    (the connection stays open either way: keep-alive, or the websocket)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)):
            chunk = s.recv(4096)
            assert chunk, data
            body += chunk
    return head, body


def _status_with_host(port: int, request: str) -> int:
    """The status of a raw request (only the status line is read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request.encode())
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def test_dns_rebinding_host_header_is_refused(live_factory):
    """Issue 11 defect 11: a page on evil.example (resolving to 127.0.0.1) must not watch a
    loopback camera: Host must be a name the server is reachable under."""
    live = live_factory(allowed_hosts="camera.example, proxy.example.org")
    port = live.port

    def http(host: str, path: str = "/") -> int:
        return _status_with_host(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")

    def ws(host: str) -> int:
        return _status_with_host(
            port, f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n")

    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}",
                 f"127.0.0.1.nip.io:{port}", "camera.example.evil", f"{socket.gethostname()}x"):
        assert ws(host) == 400, host
        for path in ("/", "/healthz", "/snapshot.jpg", "/stream.mjpg", "/metrics", "/sub/x.js"):
            assert http(host, path) == 400, (host, path)
    good = [f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}",
            f"app.localhost:{port}", f"camera.example:{port}", "Proxy.Example.Org",
            f"{socket.gethostname()}:{port}", "192.0.2.7"]
    for host in good:
        assert ws(host) == 101, host
        assert http(host) == 200, host
    samples = http_get(port, "/metrics")[2].decode()
    assert 'flirstream_rejected_total{reason="host"} 42' in samples
    assert "allowed_hosts" in live.stage.log()


def test_any_host_with_a_star(live_factory):
    live = live_factory(allowed_hosts="*")
    assert _status_with_host(live.port, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n") == 200
