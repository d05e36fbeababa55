"""What tests of the stages as processes share: a SUB socket watching capture's frames (Watcher)
and a pipeline replaying a recording of a camera with TLinear off (fixture tlinear_off)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from capture.cci_sim import SimulatedCCI
from capture.sim import SimulatedLepton
from conftest import write_config
from flirstream import config as configuration, links, wire
from server_support import wait_http


class Watcher:
    """A SUB socket on the frames endpoint collecting raw frames and capture status messages."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = links.subscriber(self.ctx, endpoint, b"", hwm=1000)
        self.frames: list[wire.Frame] = []
        self.status: list[dict] = []

    def until(self, condition, timeout: float = 15.0, stage=None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if stage is not None and stage.proc.poll() is not None:
                raise AssertionError(f"capture exited {stage.proc.returncode}: {stage.log()}")
            if self.sock.poll(100):
                parts = self.sock.recv_multipart(copy=False)
                if wire.topic_of(parts) == wire.RAW_TOPIC:
                    self.frames.append(wire.unpack_raw(parts))
                else:
                    self.status.append(wire.unpack_status(parts))
        log = stage.log() if stage is not None else ""
        raise AssertionError(f"timed out; {len(self.frames)} frames, status "
                             f"{self.status[-1:]}; log: {log}")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def tlinear_off_recording(path: Path, frames: int = 60) -> None:
    """A vospi-file recording of the simulated Lepton whose camera has TLinear off (raw counts),
    telemetry in the footer saying so."""
    dev = SimulatedCCI()
    dev.set_power_on(tlinear=False)
    sim = SimulatedLepton("lepton3", "footer", seed=2, cci=dev)
    path.write_bytes(b"".join(sim.next_period() for _ in range(frames)))


@pytest.fixture
def tlinear_off(tmp_path, stages):
    """capture replaying a TLinear-off recording -> encoder -> server: (config, port)."""
    recording = tmp_path / "tlinear-off.vospi"
    tlinear_off_recording(recording)
    # tlinear / tlinear_resolution are auto (the default): the telemetry decides.
    config = write_config(tmp_path, capture={"source": f"vospi-file:{recording}",
                                             "telemetry": "footer"})
    port = configuration.load(config).server.port
    stages("capture", config)
    stages("encoder", config)
    stages("server", config)
    wait_http(port)
    return config, port
