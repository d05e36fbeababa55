"""The recovery ladder (capture.reader): resync -> reboot -> reopen -> retry with growing delays,
driven by the real SpiSource reading the timing-faithful simulated Lepton, all on one manual
clock (device transfers, resync pauses and backoff waits advance it): exact and quick."""
from __future__ import annotations

import logging

from capture.cci import Lepton, LeptonCCI
from capture.cci_sim import ManualClock, SimulatedCCI
from capture.reader import Reader
from capture.sim import SimulatedLepton
from capture.spi import SpiSource
from capture.spi_sim import TimedLepton
from capture.vospi import FrameAssembler


class Rig:
    def __init__(self, broken=None, reboot="camera", cci=None, clock=None):
        self.clock = clock = clock or ManualClock()
        sim = SimulatedLepton("lepton3", unique_every=1, seed=5, cci=cci)
        self.camera = TimedLepton(sim, clock=clock, sleep=clock.sleep, broken=broken)
        self.source = SpiSource("/dev/spidev0.0", device_factory=self.camera.open, bufsiz=4096,
                                sleep=clock.sleep)
        hook = self.camera.reboot if reboot == "camera" else reboot
        self.reader = Reader(self.source, FrameAssembler("lepton3"), clock=clock,
                             sleep=clock.sleep, reboot=hook)
        self.states: list[tuple[str, str]] = []
        self.waits: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.advance(seconds)
        return False

    def run_until(self, condition, seconds: float = 120.0) -> list:
        """Poll until condition(frames) holds; at most `seconds` of camera time."""
        frames: list = []
        end = self.clock() + seconds
        while self.clock() < end:
            frames += self.reader.poll(wait=self.wait)
            state = (self.reader.state, self.reader.detail)
            if not self.states or self.states[-1] != state:
                self.states.append(state)
            if condition(frames):
                return frames
        raise AssertionError(f"not met in {seconds} s of camera time; states: "
                             f"{[s for s, _ in self.states]}; last: {self.reader.detail}")

    def state_names(self) -> list[str]:
        names: list[str] = []
        for name, _ in self.states:
            if not names or names[-1] != name:
                names.append(name)
        return names


def test_a_healthy_camera_streams_without_climbing_the_ladder():
    rig = Rig()
    rig.run_until(lambda f: len(f) >= 50)
    assert rig.state_names() == ["starting", "streaming"] or rig.state_names() == ["streaming"]
    assert rig.reader.reboots == rig.reader.reopens == 0
    assert rig.camera.segments_lost == 0


def test_a_camera_that_syncs_only_after_a_reboot_is_rebooted(caplog):
    rig = Rig(broken="until-reboot")
    with caplog.at_level(logging.INFO):
        rig.run_until(lambda f: len(f) >= 10)
    names = rig.state_names()
    assert names[-3:] == ["resyncing", "rebooting", "streaming"], names
    assert rig.reader.reboots == 1 and rig.camera.reboots == 1
    assert rig.reader.reopens == 0 and rig.camera.opens == 1
    rebooting = [d for s, d in rig.states if s == "rebooting"][0]
    assert "no frame after 3 resyncs" in rebooting and "rebooting the camera" in rebooting
    assert caplog.text.count("rebooting the camera") == 1  # one line for the step
    assert "frames again after 3 failed resyncs" in caplog.text
    assert rig.reader.failed_resyncs == 0  # a frame resets the ladder


def test_an_oem_reboot_over_cci_brings_the_stream_back():
    clock = ManualClock()
    cci_device = SimulatedCCI(clock=clock)
    rig = Rig(broken="until-reboot", reboot=None, cci=cci_device, clock=clock)
    lepton = Lepton(LeptonCCI(cci_device, clock=rig.clock, sleep=rig.clock.sleep))
    rig.reader.reboot = lepton.reboot
    rig.run_until(lambda f: len(f) >= 10)
    assert rig.reader.reboots == 1 and rig.camera.reboots == 1
    assert "rebooting" in rig.state_names()


def test_a_camera_that_never_syncs_is_reopened_then_retried_with_growing_delays(caplog):
    rig = Rig(broken="always")
    with caplog.at_level(logging.WARNING):
        rig.run_until(lambda f: rig.reader.reopens >= 4, seconds=600)
    names = rig.state_names()
    assert names[:6] == ["starting", "resyncing", "rebooting", "resyncing", "reopening",
                         "resyncing"], names
    assert names.count("retrying") >= 2
    retrying = [d for s, d in rig.states if s == "retrying"]
    assert "reboot and reopen again in 2 s" in retrying[0]
    assert "reboot and reopen again in 5 s" in retrying[1]
    # the waits between attempts grow (each sliced so status keeps flowing)
    assert max(rig.waits) <= 0.5
    assert sum(rig.waits) >= 2 + 5 + 10
    assert rig.camera.opens == 1 + rig.reader.reopens
    assert rig.reader.reboots == 1 + rig.reader.reopens - 1
    assert caplog.text.count("reopening spi:/dev/spidev0.0") == 1
    assert caplog.text.count("again in 2 s") == 1 and caplog.text.count("again in 5 s") == 1


def test_a_failing_reboot_is_told_and_the_ladder_goes_on():
    def reboot():
        raise OSError("I2C: Remote I/O error")

    rig = Rig(broken="always", reboot=reboot)
    rig.run_until(lambda f: rig.reader.reopens >= 1)
    details = [d for s, d in rig.states if s == "rebooting"]
    assert any("the reboot failed: I2C: Remote I/O error" in d for d in details)
    assert "reopening" in rig.state_names()


def test_without_a_reboot_hook_the_ladder_reopens_first():
    rig = Rig(broken="always", reboot=None)
    rig.run_until(lambda f: rig.reader.reopens >= 2, seconds=600)
    names = rig.state_names()
    assert "rebooting" not in names
    assert names[:4] == ["starting", "resyncing", "reopening", "resyncing"], names
    assert "retrying" in names
    retrying = [d for s, d in rig.states if s == "retrying"][0]
    assert "reopen again in 2 s" in retrying and "reboot" not in retrying.split(":")[-1]
