"""The report: the goals, the summary of a run's figures, the printed tables, the PNG chart."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Optional

import psutil

from flirstream.testing import cpu_name, write_json

from .harness import SIM_FPS, rnd

# (summary key, label, goal text, check or None)
GOALS = [
    ("vospi_frame_ms", "parse + CRC one Lepton 3 frame (ms, best repeat)", "<= 0.15",
     lambda v: v <= 0.15),
    ("encode_fps", "encode 160x120 -> 640x480 q80 (fps, one core)", ">= 800", lambda v: v >= 800),
    ("encode_vs_bare_jpeg", "render time / bare JPEG encode time", "<= 1.4", lambda v: v <= 1.4),
    ("seed_speedup", "seed (matplotlib) time / ours", ">= 6", lambda v: v >= 6),
    ("fanout_u1_min_client_share", "fan-out N max, 26.5 fps: worst client's share of frames",
     ">= 0.95", lambda v: v >= 0.95),
    ("fanout_u1_server_cpu_percent", "fan-out N max, 26.5 fps: server CPU %", "<= 100",
     lambda v: v <= 100),
    ("fanout_u3_min_client_share", "fan-out N max, 8.8 fps: worst client's share of frames",
     ">= 0.95", lambda v: v >= 0.95),
    ("fanout_u3_server_cpu_percent", "fan-out N max, 8.8 fps: server CPU %", "<= 100",
     lambda v: v <= 100),
    ("latency_p50_ms", "latency capture -> viewer p50 (ms)", "<= 10", lambda v: v <= 10),
    ("latency_p99_ms", "latency capture -> viewer p99 (ms)", "<= 50", lambda v: v <= 50),
    ("slow_rss_growth_frames_per_client", "slow clients: server RSS growth per slow client (frames)",
     "-", None),
    ("slow_rss_excess_frames_per_client",
     "slow clients: RSS per slow client minus per reading viewer (frames)", "<= 1", lambda v: v <= 1),
    ("slow_normal_min_share", "slow clients: worst normal client's share of frames", ">= 0.95",
     lambda v: v >= 0.95),
    ("slow_normal_latency_p99_ms", "slow clients: normal clients' latency p99 (ms)", "<= 50",
     lambda v: v <= 50),
    ("pipeline_cpu_capture_percent", "pipeline 26.5 Hz, 1 viewer: capture CPU %", "-", None),
    ("pipeline_cpu_encoder_percent", "pipeline 26.5 Hz, 1 viewer: encoder CPU %", "-", None),
    ("pipeline_cpu_server_percent", "pipeline 26.5 Hz, 1 viewer: server CPU %", "-", None),
    ("pipeline_cpu_total_percent", "pipeline 26.5 Hz, 1 viewer: all three stages CPU %", "-", None),
]
SUMMARY_KEYS = [g[0] for g in GOALS] + [
    "fanout_clients", "latency_clients", "slow_clients", "slow_rss_growth_bytes_per_client",
    "slow_reader_rss_growth_bytes_per_client",
    "slow_normal_min_share_before", "slow_normal_latency_p99_ms_before", "frame_message_bytes",
    "latency_p90_ms", "vospi_frame_median_ms", "fanout_u1_loadgen_cpu_percent",
    "fanout_u3_loadgen_cpu_percent"]


def summarize(res: dict) -> dict:
    s: dict[str, Any] = {k: None for k in SUMMARY_KEYS}
    for sec in ("vospi", "encoder"):
        for k, v in (res.get(sec) or {}).items():
            if k in s:
                s[k] = rnd(v, 4)
    p = res.get("pipeline")
    if p:
        for stage in ("capture", "encoder", "server"):
            s[f"pipeline_cpu_{stage}_percent"] = p["cpu_percent"].get(stage)
        s["pipeline_cpu_total_percent"] = rnd(sum(p["cpu_percent"].values()), 1)
    sl = res.get("slow")
    if sl:
        b, w = sl["before"]["groups"][0], sl["with_slow"]["groups"][0]
        s.update(slow_clients=sl["slow_ready"]["connected"],
                 slow_rss_growth_bytes_per_client=sl["rss_growth_bytes_per_client"],
                 slow_rss_growth_frames_per_client=sl["rss_growth_frames_per_client"],
                 slow_rss_excess_frames_per_client=sl["rss_excess_frames_per_client"],
                 slow_reader_rss_growth_bytes_per_client=sl["reader_rss_growth_bytes_per_client"],
                 slow_normal_min_share=w["share_min"], slow_normal_min_share_before=b["share_min"],
                 slow_normal_latency_p99_ms=w["latency_ms"]["p99"],
                 slow_normal_latency_p99_ms_before=b["latency_ms"]["p99"],
                 frame_message_bytes=sl["frame_message_bytes"])
    fan = res.get("fanout") or []
    if fan:
        nmax = max(r["n"] for r in fan)
        s["fanout_clients"] = nmax
        for r in fan:
            if r["n"] == nmax:
                u = r["unique_every"]
                s[f"fanout_u{u}_min_client_share"] = r["groups"][0]["share_min"]
                s[f"fanout_u{u}_server_cpu_percent"] = r["cpu_percent"]["server"]
                s[f"fanout_u{u}_loadgen_cpu_percent"] = r["loadgen_cpu_percent"]
        lat_n = res.get("latency_clients")
        lat = [r for r in fan if r["unique_every"] == 1 and r["n"] == lat_n] or \
              [r for r in fan if r["unique_every"] == 1]
        if lat:
            g = lat[0]["groups"][0]["latency_ms"]
            s.update(latency_clients=lat[0]["n"], latency_p50_ms=g["p50"], latency_p90_ms=g["p90"],
                     latency_p99_ms=g["p99"])
        if s["frame_message_bytes"] is None:
            s["frame_message_bytes"] = fan[0]["groups"][0]["message_bytes_mean"]
    return s


def table(summary: dict) -> str:
    rows = [("figure", "measured", "goal", "")]
    for key, label, goal, check in GOALS:
        v = summary.get(key)
        verdict = "" if v is None or check is None else ("ok" if check(v) else "MISSED")
        rows.append((label, "-" if v is None else f"{v:g}", goal, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fanout_table(fan: list[dict]) -> str:
    head = ("fps", "N", "published/s", "share min", "share med", "p50 ms", "p99 ms", "server CPU %",
            "us/frame sent", "server RSS MB", "loadgen CPU %", "machine busy %")
    rows = [head]
    for r in fan:
        g = r["groups"][0]
        rows.append((f"{SIM_FPS / r['unique_every']:.1f}", str(r["n"]), f"{r['published_fps']:g}",
                     f"{g['share_min']}", f"{g['share_median']}", f"{g['latency_ms']['p50']}",
                     f"{g['latency_ms']['p99']}", f"{r['cpu_percent']['server']}",
                     f"{r['server_cpu_us_per_frame_sent']}", f"{r['server_rss_mb']}",
                     f"{r['loadgen_cpu_percent']}", f"{r['system_busy_percent']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def chart(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fan = res.get("fanout") or []
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax1, ax2), (ax3, ax4) = axes
    for u, style, color in ((1, "o-", "#1f77b4"), (3, "s--", "#2ca02c")):
        rs = sorted((r for r in fan if r["unique_every"] == u), key=lambda r: r["n"])
        if not rs:
            continue
        ns = [r["n"] for r in rs]
        label = f"{SIM_FPS / u:.1f} fps"
        ax1.plot(ns, [r["groups"][0]["share_min"] for r in rs], style, color=color,
                 label=f"{label} worst client")
        ax1.plot(ns, [r["groups"][0]["share_median"] for r in rs], style, color=color, alpha=0.4,
                 label=f"{label} median client")
        ax2.plot(ns, [r["cpu_percent"]["server"] for r in rs], style, color=color,
                 label=f"server, {label}")
        ax2.plot(ns, [r["loadgen_cpu_percent"] for r in rs], style, color=color, alpha=0.4,
                 label=f"load generators, {label}")
        ax2.plot(ns, [r["system_busy_percent"] for r in rs], ":", color=color, alpha=0.4,
                 label=f"whole machine, {label}")
        ax3.plot(ns, [r["groups"][0]["latency_ms"]["p50"] for r in rs], style, color=color,
                 label=f"p50, {label}")
        ax3.plot(ns, [r["groups"][0]["latency_ms"]["p99"] for r in rs], style, color=color,
                 alpha=0.4, label=f"p99, {label}")
    ax1.axhline(0.95, color="red", lw=0.8, ls=":", label="goal 0.95")
    ax1.set(xscale="log", xlabel="websocket viewers", ylabel="share of published frames received",
            title="Fan-out: frames received per viewer", ylim=(0, 1.05))
    ax2.axhline(100, color="red", lw=0.8, ls=":", label="one core")
    ax2.set(xscale="log", xlabel="websocket viewers", ylabel="CPU % (100 = one core, machine = 200)",
            title="Fan-out: CPU")
    ax3.axhline(10, color="red", lw=0.8, ls=":")
    ax3.axhline(50, color="red", lw=0.8, ls="-.")
    ax3.set(xscale="log", yscale="log", xlabel="websocket viewers", ylabel="ms",
            title="Latency: capture time -> viewer received (goals 10 / 50 ms)")
    for ax in (ax1, ax2, ax3):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    p = res.get("pipeline")
    if p:
        names = list(p["cpu_percent"])
        ax4.bar(names, [p["cpu_percent"][n] for n in names], color=["#4c72b0", "#dd8452", "#55a868"])
        for i, n in enumerate(names):
            ax4.text(i, p["cpu_percent"][n], f"{p['cpu_percent'][n]:.1f} %", ha="center",
                     va="bottom", fontsize=9)
    s = res.get("summary", {})
    notes = [f"{label}: {s[key]:g}" for key, label in (
        ("vospi_frame_ms", "VoSPI parse+CRC ms/frame"), ("encode_fps", "render fps"),
        ("encode_vs_bare_jpeg", "render / bare JPEG"), ("seed_speedup", "seed / ours"))
        if s.get(key) is not None]
    ax4.set(ylabel="CPU % (100 = one core)",
            title="Pipeline at 26.5 Hz (every frame unique), one viewer")
    if notes:
        ax4.text(0.98, 0.97, "\n".join(notes), transform=ax4.transAxes, ha="right", va="top",
                 fontsize=8, bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    fig.suptitle(f"flir-stream bench on {res['machine']['cpu']} x{res['machine']['cores']} "
                 f"({res['started']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> dict:
    """What the figures were measured on."""
    return {"cpu": cpu_name(), "cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total
                                                                          / 2**30, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def started(command: str, **settings: Any) -> dict:
    """The head of a run's JSON: the command, when, on what machine, with which settings."""
    return {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": machine(), **settings}


def finish(res: dict, json_path: Path, chart_path: Optional[Path]) -> int:
    """Summary into res; the table (and the fan-out's) printed; JSON and chart written. The exit
    status: 1 if a section failed."""
    res["summary"] = summarize(res)
    print(table(res["summary"]))
    for name, error in (res.get("errors") or {}).items():
        print(f"{name}: FAILED: {error}")
    if res.get("fanout"):
        print()
        print(fanout_table(res["fanout"]))
    print(f"\nJSON: {write_json(json_path, res)}")
    if chart_path is not None:
        chart(res, chart_path)
        print(f"chart: {chart_path}")
    return 1 if res.get("errors") else 0
