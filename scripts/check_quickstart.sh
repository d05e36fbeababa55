#!/usr/bin/env bash
# Check the README's quick start the way a newcomer meets it: clone this repository (its committed
# HEAD) into a temporary directory, run the README's first command there in the background (it makes
# a fresh .venv and installs the project), wait for the viewer's URL, fetch / and one /ws frame,
# stop it with SIGTERM and check that it exits 0 leaving no process behind.
#
# Usage: scripts/check_quickstart.sh [SECONDS]   (how long to wait for the URL; default 900, as the
# first install downloads numpy, OpenCV, pyzmq and tornado). Ports are free loopback ones, passed
# with --set after the README's command, so a running flir-stream is not disturbed.
set -euo pipefail

wait_s="${1:-900}"
repo="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
work="$(mktemp -d /tmp/flir-quickstart.XXXXXX)"
clone="$work/flir-stream"
pid=""

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "check_quickstart: FAILED: $*" >&2
    if [ -f "$work/err" ]; then
        echo "--- last lines of its stderr:" >&2
        tail -n 30 "$work/err" >&2
    fi
    exit 1
}

git clone -q "$repo" "$clone"
# The first command of the README's first ```sh block, without its comment.
command="$(awk '/^```sh/ {inside=1; next} inside && /^```/ {exit} inside && NF {print; exit}' \
    "$clone/README.md" | sed 's/[[:space:]]*#.*$//')"
[ -n "$command" ] || fail "no command found in the first \`\`\`sh block of README.md"

ports="$(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
read -r http frames images control camera <<<"$ports"
overrides="--set server.port=$http --set endpoints.frames=tcp://127.0.0.1:$frames"
overrides="$overrides --set endpoints.images=tcp://127.0.0.1:$images"
overrides="$overrides --set endpoints.control=tcp://127.0.0.1:$control"
overrides="$overrides --set endpoints.camera=tcp://127.0.0.1:$camera"

echo "check_quickstart: in a fresh clone ($clone): $command $overrides"
started=$(date +%s)
# setsid: its own process group, so the cleanup can reach everything it started.
(cd "$clone" && exec setsid bash -c "exec $command $overrides" >"$work/out" 2>"$work/err" \
    </dev/null) &
pid=$!

url=""
for _ in $(seq 1 "$((wait_s * 2))"); do
    url="$(grep -Eo 'https?://[^ ]+' "$work/out" 2>/dev/null | head -n 1 || true)"
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || fail "'$command' exited before printing a URL"
    sleep 0.5
done
[ -n "$url" ] || fail "no URL on stdout within $wait_s s"
echo "check_quickstart: URL $url printed after $(( $(date +%s) - started )) s"

# Fetch the page and one frame with the Python the quick start installed.
"$clone/.venv/bin/python" - "$url" <<'EOF' || fail "the viewer or /ws did not answer as expected"
import asyncio, json, struct, sys, urllib.request
from tornado.websocket import websocket_connect

url = sys.argv[1]
with urllib.request.urlopen(url, timeout=20) as response:
    page = response.read()
    assert response.status == 200 and b"<html" in page.lower(), "no viewer page at " + url
print(f"check_quickstart: GET {url} -> 200, {len(page)} bytes")

async def one_frame() -> None:
    conn = await asyncio.wait_for(websocket_connect(url.replace("http", "ws", 1) + "ws"), 20)
    while True:
        message = await asyncio.wait_for(conn.read_message(), 30)
        assert message is not None, "the websocket closed before a frame came"
        if isinstance(message, bytes):
            break
    (n,) = struct.unpack(">I", message[:4])
    header = json.loads(message[4:4 + n])
    assert message[4 + n:6 + n] == b"\xff\xd8", "the frame holds no JPEG"
    print(f"check_quickstart: /ws frame seq {header['seq']}, {len(message) - 4 - n} bytes after the header")
    conn.close()

asyncio.run(one_frame())
EOF

children="$(ps -o pid= --ppid "$pid" | tr -s ' \n' ' ')"
kill -TERM "$pid"
status=""
for _ in $(seq 1 30); do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" && status=0 || status=$?
        break
    fi
    sleep 0.5
done
[ -n "$status" ] || fail "still running 15 s after SIGTERM"
[ "$status" = 0 ] || fail "exited with status $status after SIGTERM"
for child in $children; do
    ! kill -0 "$child" 2>/dev/null || fail "child $child still running after the stop"
done
pid=""
echo "check_quickstart: OK: stopped with status 0, children ($children) gone"
