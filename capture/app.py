"""`flir-stream capture`: read the Lepton (or a stand-in) and publish raw frames on ZeroMQ.

Thin process around capture.reader: source bytes -> FrameAssembler -> (dedupe) -> wire.pack_raw
on [endpoints] frames, plus a capture status message (with the camera dict) about once a second
and on every change. Camera control (capture.camera, capture.control) runs on its own thread,
answering [endpoints] camera; the frame loop only reads what it caches.
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
from flirstream.state import StateFile

from . import control, realtime
from .camera import Camera, frame_fields, open_lepton, telemetry_mode
from .cci import Lepton, LeptonCCI
from .cci_sim import SimulatedCCI
from .reader import Deduper, Reader
from .sources import make_source, source_kind
from .vospi import CRC_CHECK, FrameAssembler

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
    camera, sim_cci = make_camera(config, spec)
    ctx = zmq.Context()
    try:
        sock = links.publisher(ctx, "frames", endpoint)  # ConfigError if it cannot bind
        try:
            control_sock = control.bind(ctx, config.endpoints.camera)
        except configuration.ConfigError:
            sock.close(linger=0)
            raise
        stop = threading.Event()
        try:
            camera.start()  # identify the camera: its model decides the sensor layout
            section = configuration.Section(**{**cap.as_dict(), "sensor": camera.sensor,
                                               "telemetry": camera.telemetry})
            source = make_source(spec, section, record=record, cci=sim_cci)  # ConfigError
        except BaseException:
            sock.close(linger=0)
            control_sock.close(linger=0)
            raise
        log.info("publishing frames on %s, camera control on %s; source=%s record=%s; camera: %s; "
                 "packet CRCs: %s; [capture] %s", endpoint, config.endpoints.camera, source.name,
                 record or "-", camera.identity["model"] or camera.why, CRC_CHECK,
                 configuration.describe(config, "capture"))
        thread = control.ControlThread(control_sock, camera, stop)
        thread.start()
        try:
            _loop(section, source, sock, camera, stop, scheduling=tune(cap))
        finally:
            stop.set()
            thread.wake()
            thread.join(5.0)
            sock.close(linger=0)
            source.close()
    finally:
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


def make_camera(config: configuration.Config, spec: str) -> tuple[Camera, object]:
    """The Camera for this source (with its CCI: a SimulatedCCI for the simulator, /dev/i2c-N
    for a real camera, none for a recording or a picture) and the simulated device if any."""
    cap = config.capture
    kind = source_kind(spec)
    sim_cci = None
    if kind == "sim":
        part = "500-0763-01" if cap.sensor == "lepton2" else "500-0771-01"  # 2.5 / 3.5
        sim_cci = SimulatedCCI(part_number=part)
        lepton, why = Lepton(LeptonCCI(sim_cci)), ""
    elif kind == "spi":
        lepton, why = open_lepton(cap.i2c)
    else:
        what = {"vospi-file": "a recording", "image": "a picture"}.get(kind, kind)
        lepton, why = None, f"no camera control: the source is {what} ({kind}:)"
    mode = telemetry_mode(cap.telemetry, lepton is not None, kind == "sim")
    return Camera(lepton, why, cap, StateFile(config.state.dir, "capture"), mode), sim_cci


def _reader(source, assembler, camera: Camera) -> Reader:
    """The reader, with the camera's CCI reboot as its recovery ladder's reboot step."""
    return Reader(source, assembler, reboot=camera.recovery_reboot if camera.available else None)


def _loop(cap, source, sock: zmq.Socket, camera: Camera, stop: threading.Event,
          scheduling: str = "") -> None:
    def on_signal(signum, _frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    assembler = FrameAssembler(cap.sensor, cap.telemetry)
    reader = _reader(source, assembler, camera)
    dedupe = Deduper() if cap.dedupe else None
    last_meaning = None
    last_ffc = None
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
            t = camera.observe(frame.telemetry_rows)  # the camera's word on this frame
            # A frozen picture (FFC) repeats the image, but the FFC state it carries is news.
            ffc = (t.ffc_state, t.ffc_desired) if t is not None else None
            duplicate = dedupe.is_duplicate(frame.image) if dedupe else False
            if duplicate and ffc == last_ffc:
                continue
            last_ffc = ffc
            meaning, source_of = camera.meaning(t)
            if meaning != last_meaning:
                log.info("pixels are %s (from %s)", meaning, source_of)
                last_meaning = meaning
            tlinear, kelvin_per_count = frame_fields(meaning)
            seq += 1
            published += 1
            telemetry = frame.telemetry
            if t is not None:
                telemetry = {**(telemetry or {}), **t.as_dict()}
            message = wire.pack_raw(wire.Frame(
                seq=seq, t=time.time(), sensor=cap.sensor, pixels=frame.image,
                tlinear=tlinear, kelvin_per_count=kelvin_per_count, meaning=meaning,
                telemetry=telemetry))
            try:
                links.publish(sock, message)  # (copied either way: < copy_threshold)
            except zmq.Again:
                pass  # nobody keeps up: the newest frame wins, this one is skipped
        now = time.monotonic()
        if reader.changes != changes_seen or now - status_at >= STATUS_EVERY_S:
            changes_seen = reader.changes
            status_at = now
            detail = reader.detail
            if not camera.available and reader.state == "streaming":
                detail = camera.why
            try:
                sock.send_multipart(wire.pack_status(
                    "capture", reader.state, detail, time.time(), source=source.name,
                    sensor=cap.sensor, counters=counters(), camera=camera.status(),
                    scheduling=scheduling[:500]),  # (wire's limit for this text)
                    flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
