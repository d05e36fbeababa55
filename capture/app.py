"""`flir-stream capture`: read the Lepton (or a stand-in) and publish raw frames on ZeroMQ.

Thin process around capture.reader: source bytes -> FrameAssembler -> (dedupe) -> wire.pack_raw
on [endpoints] frames, plus a capture status message about once a second and on every change.
SIGINT / SIGTERM stop it cleanly (exit 0).
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

import zmq

from flirstream import config as configuration, links, wire

from . import realtime
from .reader import Deduper, Reader
from .sources import make_source
from .vospi import FrameAssembler

log = logging.getLogger("capture")

STATUS_EVERY_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="SOURCE",
                        help="override [capture] source: auto, sim, spi:/dev/spidevB.D, "
                             "vospi-file:PATH or image:PATH")
    parser.add_argument("--record", metavar="PATH",
                        help="also write the raw VoSPI bytes read to PATH (replay them with "
                             "--source vospi-file:PATH); overrides [capture] record")


def run(config: configuration.Config, args: argparse.Namespace) -> int:
    cap = config.capture
    spec = cap.source
    if getattr(args, "source", None):
        spec = configuration.parse_value("capture", "source", args.source, where="--source")
    record = getattr(args, "record", None) or cap.record
    endpoint = config.endpoints.frames
    source = make_source(spec, cap, record=record)  # ConfigError: one line, exit 2
    ctx = zmq.Context()
    try:
        sock = links.publisher(ctx, "frames", endpoint)  # ConfigError if it cannot bind
        log.info("publishing frames on %s; source=%s record=%s; [capture] %s", endpoint,
                 source.name, record or "-", configuration.describe(config, "capture"))
        try:
            _loop(config, source, sock, scheduling=tune(cap))
        finally:
            sock.close(linger=0)
    finally:
        source.close()
        ctx.destroy(linger=0)
    log.info("stopped")
    return 0


def tune(cap) -> str:
    """Real-time scheduling, nice and CPU affinity as [capture] asks, and the GC frozen after
    start-up: the one line saying what capture got (logged; also in its status)."""
    got = realtime.apply(cap.realtime, cap.priority, cap.nice, cap.cpu)
    got = f"{got}; {realtime.tune_gc()}"
    log.info("scheduling: %s", got)
    return got


def sim_reboot(source):
    """The recovery ladder's reboot for a simulated camera with a simulated CCI device: an OEM
    reboot through the real CCI client (None when the source has none)."""
    device = getattr(getattr(source, "sim", None), "cci", None)
    if device is None:
        return None
    from .cci import Lepton, LeptonCCI

    return Lepton(LeptonCCI(device)).reboot


def _loop(config: configuration.Config, source, sock: zmq.Socket, *, scheduling: str = "",
          reboot=None) -> None:
    cap = config.capture
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    assembler = FrameAssembler(cap.sensor, cap.telemetry)
    reader = Reader(source, assembler, reboot=reboot or sim_reboot(source))
    dedupe = Deduper() if cap.dedupe else None
    kelvin_per_count = float(cap.tlinear_resolution)
    seq = 0
    published = 0
    status_at = 0.0
    changes_seen = -1

    def counters() -> dict:
        c = assembler.counters_dict()
        c["published"] = published
        c["duplicates"] = dedupe.duplicates if dedupe else 0
        return c

    while not stop.is_set():
        frames = reader.poll(wait=stop.wait)
        for frame in frames:
            if dedupe and dedupe.is_duplicate(frame.image):
                continue
            seq += 1
            published += 1
            message = wire.pack_raw(wire.RawFrame(
                seq=seq, t=time.time(), sensor=cap.sensor, pixels=frame.image,
                tlinear=cap.tlinear, kelvin_per_count=kelvin_per_count,
                telemetry=frame.telemetry, counters=counters()))
            try:
                sock.send_multipart(message, copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass  # nobody keeps up: the newest frame wins, this one is skipped
        now = time.monotonic()
        if reader.changes != changes_seen or now - status_at >= STATUS_EVERY_S:
            changes_seen = reader.changes
            status_at = now
            try:
                sock.send_multipart(wire.pack_status(
                    "capture", reader.state, reader.detail, time.time(), source=source.name,
                    sensor=cap.sensor, counters=counters(),
                    scheduling=scheduling[:500]),  # (wire's limit for this text)
                    flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
