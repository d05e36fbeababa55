#!/usr/bin/env python3
"""Soak test: the whole pipeline (`flir-stream run`, simulated camera, free loopback ports) under many
websocket clients for a while, watching memory and lost frames.

    python scripts/soak.py --duration 600 --clients 50

Clients are of three kinds, each split between the two /ws modes (--thermal-fraction of them in
thermal mode, the browser viewer's: the radiometric frame, checked against its header and, every
CHECK_EVERY frames, decoded; the others in the plain JPEG mode):
  normal        read every message as fast as they can; their frames are counted and their seq gaps
                are compared with the frames the server published meanwhile (/metrics)
  slow          complete the websocket handshake, then never read a byte (the server must drop
                frames for them, not queue them, and not slow anybody else down)
  reconnecting  read for a few seconds, close, connect again, over and over

Every second the resident memory (RSS) of each stage and of `run` itself is sampled with psutil; a
stage whose pid changes has died and been restarted by `run`, which the soak reports as a failure.
Prints a table and writes JSON (default bench-results/soak.json). Exit status 0 when no stage died,
every normal client received frames and no RSS grew beyond the bound (--rss-factor x the first
reading after warm-up + --rss-slack-mb); 1 otherwise.

Pipeline (starts and inspects `flir-stream run`) and FrameClient (a websocket viewer that
reconnects) are flirstream.testing's, which the chaos / offline / hostile-client tests use too.
Everything talks to 127.0.0.1 only, and every loop is bounded in count and time.
Needs psutil and websockets (both in the test extra: pip install -e ".[test]").
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from flirstream.testing import STAGES, FrameClient, Pipeline, http_get, write_config

ROOT = Path(__file__).resolve().parent.parent


class SlowClient:
    """Completes the websocket handshake on a raw socket with a tiny receive buffer, never reads."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def dropped_by_server(clients: list, budget_s: float = 3.0) -> int:
    """Read what each slow client never read, until the server's EOF (bounded): how many of them
    the server had closed."""
    import selectors
    sel = selectors.DefaultSelector()
    for c in clients:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
    closed = 0
    deadline = time.monotonic() + budget_s
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                sel.unregister(key.fileobj)
    sel.close()
    return closed


# ---------------------------------------------------------------- the soak

def seq_gaps(seqs: list) -> int:
    """Frames missing between consecutive seqs (FrameClient's). Not after a stale frame: that is
    the newest frame the server held when the client connected, not a live one (e.g. from before
    the encoder paused for want of viewers), so the frames between it and the next were never made."""
    gaps = 0
    for (_, a, _, stale), (_, b, _, _) in zip(seqs, seqs[1:]):
        if not stale and isinstance(a, int) and isinstance(b, int) and b > a:
            gaps += b - a - 1
    return gaps


def published_counter(metrics: dict[str, float]) -> Optional[float]:
    """The server's count of frames it took from the encoder (and sent on to viewers)."""
    for name in ("flirstream_frames_received_total", "flirstream_server_frames_received_total"):
        if name in metrics:
            return metrics[name]
    return None


CHECK_EVERY = 100  # a thermal-mode client decodes one frame in this many (a few ms each)


def modes(count: int, thermal_fraction: float) -> list[str]:
    """The /ws mode of each of `count` clients: the thermal share first, then JPEG."""
    thermal = int(round(count * thermal_fraction))
    return ["thermal"] * thermal + ["jpeg"] * (count - thermal)


def bad_frames(got) -> dict:
    """A client's bad messages for its row: how many, and the first one's reason."""
    return {"bad_frames": len(got.errors), "first_bad": got.errors[0] if got.errors else None}


def _client(pipe: Pipeline, mode: str, **kwargs) -> FrameClient:
    url = pipe.ws_url + ("?mode=thermal" if mode == "thermal" else "")
    client = FrameClient(url, check_every=CHECK_EVERY if mode == "thermal" else 0, **kwargs)
    client.mode = mode
    return client


async def _soak_clients(pipe: Pipeline, duration: float, n_clients: int, n_slow: int,
                        n_reconnect: int, sample_every: float, rss_log: list,
                        metrics_log: list, thermal_fraction: float = 0.5) -> dict:
    start = time.monotonic()
    until = start + duration
    normal = [_client(pipe, mode, keep_seqs=True, max_reconnects=20)
              for mode in modes(n_clients - n_slow - n_reconnect, thermal_fraction)]
    reconnecting = [_client(pipe, mode, keep_seqs=False, max_reconnects=10_000,
                            reconnect_every=(1.0, 4.0))
                    for mode in modes(n_reconnect, thermal_fraction)]
    slow = []
    for _ in range(n_slow):
        try:
            slow.append(SlowClient(pipe.port))
        except OSError as exc:
            print(f"soak: slow client could not connect: {exc}", file=sys.stderr)
    tasks = [asyncio.ensure_future(c.run(until)) for c in normal + reconnecting]

    m0 = pipe.metrics()
    metrics_log.append((0.0, m0))
    fds_before = pipe.fds()
    next_sample = start
    while time.monotonic() < until:
        now = time.monotonic()
        if now >= next_sample:
            viewers = pipe.metrics().get('flirstream_viewers{transport="websocket"}')
            rss_log.append((round(now - start, 2), pipe.rss(), viewers))
            next_sample += sample_every
        await asyncio.sleep(min(0.2, max(0.0, until - time.monotonic())))
    rss_log.append((round(time.monotonic() - start, 2), pipe.rss(),
                    pipe.metrics().get('flirstream_viewers{transport="websocket"}')))
    m1 = pipe.metrics()
    metrics_log.append((round(time.monotonic() - start, 2), m1))
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=15)
    slow_dropped = dropped_by_server(slow)
    for s in slow:
        s.close()
    # Every client has gone: the server's sockets must be closed again (bounded wait).
    fds_after: dict = {}
    for _ in range(50):
        fds_after = pipe.fds()
        if fds_after.get("server", 0) <= fds_before.get("server", 0) + 5:
            break
        await asyncio.sleep(0.1)

    published = None
    p0, p1 = published_counter(m0), published_counter(m1)
    if p0 is not None and p1 is not None:
        published = p1 - p0
    rows = []
    for i, c in enumerate(normal):
        got = c.got
        span = (got.seqs[-1][1] - got.seqs[0][1] + 1) if got.seqs and all(
            isinstance(s[1], int) for s in (got.seqs[0], got.seqs[-1])) else 0
        rows.append({"client": f"normal-{i}", "mode": c.mode, "frames": got.frames,
                     "connects": got.connects, **bad_frames(got),
                     "seq_first": got.seqs[0][1] if got.seqs else None,
                     "seq_last": got.seqs[-1][1] if got.seqs else None,
                     "seq_gaps": seq_gaps(got.seqs), "seq_span": span,
                     "missed_vs_server": (max(0, int(published) - got.frames)
                                          if published is not None else None),
                     "fps": round(got.frames / duration, 2)})
    return {"normal": rows,
            "reconnecting": [{"client": f"reconnecting-{i}", "mode": c.mode,
                              "frames": c.got.frames, "connects": c.got.connects,
                              "failures": len(c.got.closes), **bad_frames(c.got)}
                             for i, c in enumerate(reconnecting)],
            "slow": len(slow), "slow_dropped_by_server": slow_dropped,
            "server_published": published,
            "fds_before": fds_before, "fds_after": fds_after}


def soak(duration: float, clients: int, workdir: Path, warmup: float = 3.0,
         sample_every: float = 1.0, slow_fraction: float = 0.2,
         reconnect_fraction: float = 0.2, unique_every: int = 3, thermal_fraction: float = 0.5,
         source: str = "sim") -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    capture = {"source": source, "sim_unique_every": unique_every}
    if source.startswith("vospi-file:"):  # a recording: replayed at the sensor's pace, looped
        capture.update(replay="realtime", loop="yes")
    config = write_config(workdir, capture=capture)
    pipe = Pipeline(config, workdir / "run.log")
    result: dict = {"duration_s": duration, "clients": clients, "config": str(config),
                    "source": source, "thermal_fraction": thermal_fraction}
    try:
        first = {n: p.pid for n, p in pipe.wait_stages(30).items()}
        pipe.wait_healthy(30)
        time.sleep(warmup)
        n_slow = int(round(clients * slow_fraction))
        n_reconnect = int(round(clients * reconnect_fraction))
        if clients - n_slow - n_reconnect < 1:
            n_slow = max(0, clients - n_reconnect - 1)
        rss_log: list = []
        metrics_log: list = []
        result.update(asyncio.run(_soak_clients(pipe, duration, clients, n_slow, n_reconnect,
                                                sample_every, rss_log, metrics_log,
                                                thermal_fraction)))
        last = {n: p.pid for n, p in pipe.stages().items()}
        result["stage_pids_start"] = first
        result["stage_pids_end"] = last
        result["died"] = sorted(n for n in STAGES if first.get(n) != last.get(n))
        result["healthz_end"] = http_get(pipe.base + "/healthz")[0]
        result["rss_mb"] = [{"t": t, **{n: round(v[1] / 2**20, 1) for n, v in s.items()}}
                            for t, s, _ in rss_log]
        result["viewers"] = [{"t": t, "websocket": v} for t, _, v in rss_log]
        result["metrics_start"] = metrics_log[0][1] if metrics_log else {}
        result["metrics_end"] = metrics_log[-1][1] if metrics_log else {}
    finally:
        code, leftovers = pipe.stop()
        result["run_exit"] = code
        result["leftover_processes"] = leftovers
    return result


def check(result: dict, rss_factor: float, rss_slack_mb: float) -> list[str]:
    problems = []
    if result.get("died"):
        problems.append(f"stages died and were restarted: {result['died']}")
    if result.get("leftover_processes"):
        problems.append(f"stage processes left after run stopped: {result['leftover_processes']}")
    starved = [r["client"] for r in result.get("normal", []) if r["frames"] == 0]
    if starved or not result.get("normal"):
        problems.append(f"normal clients without frames: {starved or 'no normal clients'}")
    for row in result.get("normal", []) + result.get("reconnecting", []):
        if row.get("bad_frames"):
            problems.append(f"{row['client']} ({row['mode']} mode) got {row['bad_frames']} bad frame "
                            f"messages, the first: {row['first_bad']}")
    before, after = result.get("fds_before", {}), result.get("fds_after", {})
    for name in before:
        if after.get(name, 0) > before[name] + 5:
            problems.append(f"{name} holds {after[name]} file descriptors after every client left, "
                            f"{before[name]} before they came")
    samples = result.get("rss_mb", [])
    if samples:
        first, last = samples[0], samples[-1]
        for name in list(STAGES) + ["run"]:
            if name in first and name in last:
                bound = first[name] * rss_factor + rss_slack_mb
                if last[name] > bound:
                    problems.append(f"{name} RSS grew from {first[name]} MB to {last[name]} MB "
                                    f"(bound {bound:.0f} MB)")
    else:
        problems.append("no RSS samples")
    return problems


def print_table(result: dict) -> None:
    samples = result.get("rss_mb", [])
    names = list(STAGES) + ["run"]
    print(f"\nRSS (MB) over {result['duration_s']} s with {result['clients']} clients")
    print("   t(s) " + "".join(f"{n:>10}" for n in names))
    step = max(1, len(samples) // 12)
    for s in samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else []):
        print(f"{s['t']:7.1f} " + "".join(f"{s.get(n, float('nan')):10.1f}" for n in names))
    normal = result.get("normal", [])
    print(f"\nnormal clients (server published {result.get('server_published')} frames meanwhile)")
    print(f"{'client':>12} {'mode':>8} {'frames':>7} {'fps':>6} {'seq gaps':>9} {'missed':>7} "
          f"{'connects':>9}")
    shown = normal if len(normal) <= 10 else normal[:5] + normal[-3:]
    for r in shown:
        if len(normal) > 10 and r is normal[-3]:
            print(f"{'...':>12}")
        print(f"{r['client']:>12} {r['mode']:>8} {r['frames']:7d} {r['fps']:6.1f} {r['seq_gaps']:9d} "
              f"{str(r['missed_vs_server']):>7} {r['connects']:9d}")
    if normal:
        frames = sorted(r["frames"] for r in normal)
        missed = [r["missed_vs_server"] for r in normal if r["missed_vs_server"] is not None]
        print(f"{len(normal)} normal clients: frames min {frames[0]} median {frames[len(frames) // 2]} "
              f"max {frames[-1]}; seq gaps max {max(r['seq_gaps'] for r in normal)}; "
              f"missed vs server max {max(missed) if missed else None}")
        for mode in ("thermal", "jpeg"):
            got = sorted(r["frames"] for r in normal if r["mode"] == mode)
            if got:
                print(f"  {mode} mode: {len(got)} clients, frames min {got[0]} median "
                      f"{got[len(got) // 2]}, bad frame messages "
                      f"{sum(r['bad_frames'] for r in normal if r['mode'] == mode)}")
    m = result.get("metrics_end", {})
    slow_drops = m.get('flirstream_frames_dropped_total{stage="server",reason="slow_websocket_client"}')
    count = m.get("flirstream_frame_latency_seconds_count")
    latency = (m.get("flirstream_frame_latency_seconds_sum", 0) / count * 1000) if count else None
    print(f"server: frames skipped for slow websocket clients {slow_drops}, mean capture->send "
          f"latency {latency:.0f} ms" if latency is not None else
          f"server: frames skipped for slow websocket clients {slow_drops}")
    rec = result.get("reconnecting", [])
    if rec:
        print(f"reconnecting clients: {len(rec)}, connects {sum(r['connects'] for r in rec)}, "
              f"frames {sum(r['frames'] for r in rec)}, failed attempts "
              f"{sum(r['failures'] for r in rec)}")
    print(f"slow clients (never read): {result.get('slow')}, of which the server had closed "
          f"{result.get('slow_dropped_by_server')} by the end")
    viewers = result.get("viewers", [])
    if viewers:
        counts = [v["websocket"] for v in viewers if v["websocket"] is not None]
        if counts:
            print(f"websocket viewers the server counted: min {min(counts):.0f}, "
                  f"max {max(counts):.0f}, at the end {counts[-1]:.0f}")
    print(f"open fds before the clients came {result.get('fds_before')}, after they left "
          f"{result.get('fds_after')}")
    print(f"stages died: {result.get('died')}; /healthz at the end: {result.get('healthz_end')}; "
          f"run exit status {result.get('run_exit')}; leftovers {result.get('leftover_processes')}")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=50, help="websocket clients in all")
    parser.add_argument("--slow-fraction", type=float, default=0.2, help="share that never read")
    parser.add_argument("--reconnect-fraction", type=float, default=0.2,
                        help="share that reconnect every 1-4 s")
    parser.add_argument("--unique-every", type=int, default=3,
                        help="sim_unique_every (1 = every frame new, the highest frame rate)")
    parser.add_argument("--thermal-fraction", type=float, default=0.5,
                        help="share of the normal and of the reconnecting clients in thermal mode "
                             "(/ws?mode=thermal, the browser viewer's), the rest in JPEG mode")
    parser.add_argument("--source", default="sim",
                        help="[capture] source, e.g. vospi-file:PATH for a recording (replayed at "
                             "26.5 Hz, looped; scripts/cptv_to_vospi.py makes one from a CPTV file)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the first sample")
    parser.add_argument("--sample-every", type=float, default=1.0, help="RSS sampling period")
    parser.add_argument("--rss-factor", type=float, default=2.0)
    parser.add_argument("--rss-slack-mb", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "soak.json")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the config and run.log go (default: a temporary directory)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 1000 or not 0 < args.duration <= 7 * 86400:
        parser.error("--clients from 1 to 1000 and --duration up to a week")
    if not 0 <= args.thermal_fraction <= 1:
        parser.error(f"--thermal-fraction {args.thermal_fraction}: expected 0 to 1")
    if args.source.startswith("vospi-file:") and not Path(args.source[11:]).is_file():
        parser.error(f"--source {args.source}: no such file")

    import tempfile
    with tempfile.TemporaryDirectory(prefix="flir-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        try:
            result = soak(args.duration, args.clients, workdir, args.warmup, args.sample_every,
                          args.slow_fraction, args.reconnect_fraction, args.unique_every,
                          args.thermal_fraction, args.source)
        except AssertionError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 1
    problems = check(result, args.rss_factor, args.rss_slack_mb)
    result["problems"] = problems
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {args.json}")
    for p in problems:
        print(f"soak: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
