"""capture.spi_sim: the timing-faithful simulated Lepton, on a manual clock (its reads advance the
clock by their bus time, so every test is exact and takes no real time)."""
from __future__ import annotations

import time

import pytest

from capture import vospi
from capture.cci import Lepton, LeptonCCI
from capture.cci_sim import ManualClock, SimulatedCCI
from capture.sim import SimulatedLepton
from capture.spi_sim import INTRA_PACKET_TIMEOUT_S, TimedLepton, stamp_frame_counter
from capture.vospi import FrameAssembler

P = vospi.PACKET_BYTES


def camera(sensor="lepton3", telemetry="header", clock=None, **options):
    clock = clock or ManualClock()
    sim = SimulatedLepton(sensor, telemetry, unique_every=1, seed=3,
                          cci=options.pop("cci", None))
    return TimedLepton(sim, clock=clock, sleep=clock.sleep, **options), clock


class Reader:
    """Reads a device in whole-segment transfers and assembles what comes."""

    def __init__(self, cam, packets=61):
        self.cam = cam
        self.device = cam.open()
        self.assembler = FrameAssembler(cam.sim.sensor, cam.sim.telemetry)
        self.buffer = bytearray(packets * P)
        self.counters: list[int] = []

    def read(self, count=1):
        for _ in range(count):
            self.device.readinto(self.buffer)
            for frame in self.assembler.feed(bytes(self.buffer)):
                self.counters.append(frame.telemetry["frame_counter"])
        return self.counters

    def read_for(self, seconds):
        end = self.cam._clock() + seconds
        while self.cam._clock() < end:
            self.read()
        return self.counters


def test_a_reader_that_keeps_up_gets_every_frame_at_the_cameras_rate():
    cam, clock = camera()
    reader = Reader(cam)
    start = clock()
    counters = reader.read_for(2.0)
    # 26.5 frames/s: the first (under way when reading began) is not sent, every later one is
    assert 51 <= len(counters) <= 53
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert cam.segments_lost == 0 and cam.sync_losses == 0
    assert cam.segment_s == pytest.approx(1 / 106)  # datasheet: ~106 segments/s
    assert clock() - start == pytest.approx(2.0, abs=0.01)


def test_lepton2_sends_one_frame_per_frame_period():
    cam, _ = camera("lepton2", "off")
    reader = Reader(cam, packets=63)
    frames = []
    end = cam._clock() + 1.0
    while cam._clock() < end:
        reader.device.readinto(reader.buffer)
        frames += reader.assembler.feed(bytes(reader.buffer))
    assert 25 <= len(frames) <= 27 and frames[0].image.shape == (60, 80)


def test_every_read_takes_its_bus_time():
    cam, clock = camera(speed_hz=8_000_000)
    device = cam.open()
    before = clock()
    device.read(10 * P)
    assert clock() - before == pytest.approx(10 * P * 8 / 8_000_000)


def test_a_segment_not_read_in_time_is_lost_and_the_stream_goes_on():
    cam, clock = camera()
    reader = Reader(cam)
    reader.read_for(0.2)
    got = len(reader.counters)
    clock.advance(1.5 * cam.segment_s)  # shorter than a frame: segments lost, sync kept
    reader.read_for(0.5)
    assert cam.in_sync and cam.sync_losses == 0
    assert cam.segments_lost >= 1
    counters = reader.counters
    assert len(counters) > got + 5
    gaps = [b - a for a, b in zip(counters, counters[1:])]
    assert max(gaps) == 2 and gaps.count(2) == 1  # exactly the frame with the lost segment


def test_a_long_stall_loses_sync_until_chip_select_stays_high_185_ms():
    cam, clock = camera()
    reader = Reader(cam)
    reader.read_for(0.2)
    clock.advance(0.05)  # more than a frame period (37.7 ms), less than 185 ms
    got = len(reader.counters)
    reader.read_for(1.0)
    assert not cam.in_sync and cam.sync_losses == 1
    assert len(reader.counters) == got  # garbage: no frame at all
    assert reader.assembler.counters.crc_errors > 0
    clock.advance(0.184)  # not quite long enough
    reader.read_for(0.3)
    assert not cam.in_sync and len(reader.counters) == got
    clock.advance(vospi.RESYNC_MIN_S + 0.001)  # "> 185 msec"
    reader.assembler.resync()
    reader.read_for(0.5)
    assert cam.in_sync and cam.resyncs == 1
    assert len(reader.counters) > got + 8


def test_out_of_sync_can_be_discards_only():
    cam, clock = camera(out_of_sync="discards")
    reader = Reader(cam)
    reader.read(3)
    clock.advance(0.1)
    data = reader.device.read(20 * P)
    assert not cam.in_sync
    assert all(data[i] & 0x0F == 0x0F for i in range(0, len(data), P))


def test_a_read_that_stops_inside_a_packet_goes_on_with_its_rest():
    cam, _ = camera()
    device = cam.open()
    whole = FrameAssembler("lepton3", "header")
    cut = FrameAssembler("lepton3", "header")
    other, _ = camera()
    reference = other.open()
    frames_whole, frames_cut = [], []
    for _ in range(60):
        frames_whole += whole.feed(reference.read(61 * P))
        frames_cut += cut.feed(device.read(30 * P + 100) + device.read(31 * P - 100))
    assert len(frames_cut) == len(frames_whole) > 5
    assert cut.counters.crc_errors == 0 and cam.sync_losses == 0


def test_stopping_inside_a_packet_longer_than_the_intra_packet_timeout_loses_sync():
    cam, clock = camera()
    device = cam.open()
    device.read(30 * P + 100)
    clock.advance(INTRA_PACKET_TIMEOUT_S / 2)
    device.read(64)
    assert cam.in_sync
    clock.advance(INTRA_PACKET_TIMEOUT_S * 1.5)
    device.read(P)
    assert not cam.in_sync and cam.sync_losses == 1


def test_a_camera_broken_until_reboot_syncs_after_its_own_reboot():
    cam, clock = camera(broken="until-reboot")
    reader = Reader(cam)
    for _ in range(3):  # resyncs do not help
        reader.read_for(0.3)
        clock.advance(0.2)
    assert reader.counters == []
    cam.reboot()
    reader.read_for(2.0)  # ~0.8 s of booting (discards), then frames
    assert len(reader.counters) > 20 and cam.reboots == 1


def test_a_camera_broken_until_reboot_syncs_after_an_oem_reboot_over_cci():
    clock = ManualClock()
    cci_device = SimulatedCCI(clock=clock)
    cam, _ = camera(broken="until-reboot", clock=clock, cci=cci_device)
    reader = Reader(cam)
    reader.read_for(0.5)
    assert reader.counters == []
    Lepton(LeptonCCI(cci_device, clock=clock, sleep=clock.sleep)).reboot()
    reader.read_for(1.0)
    assert len(reader.counters) > 20 and cam.reboots == 1


def test_a_camera_broken_for_good_never_syncs():
    cam, clock = camera(broken="always")
    reader = Reader(cam)
    cam.reboot()
    for _ in range(3):
        reader.read_for(1.0)
        clock.advance(0.2)
    assert reader.counters == [] and not cam.in_sync


def test_a_closed_device_cannot_be_read_and_the_camera_runs_on():
    cam, clock = camera()
    device = cam.open()
    device.close()
    with pytest.raises(OSError):
        device.read(P)
    assert cam.open_devices == 0
    clock.advance(1.0)
    assert cam.produced() >= 106


def test_a_pool_of_frames_carries_the_true_frame_counter():
    cam, _ = camera(pool=4)
    reader = Reader(cam)
    counters = reader.read_for(0.5)
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert max(counters) > 4
    frame = vospi.encode_frame(cam.sim.scene(0), "lepton3", "header", frame_counter=1)
    stamped = stamp_frame_counter(frame, 70_000, "lepton3", "header")
    (decoded,) = FrameAssembler("lepton3", "header").feed(stamped)
    assert decoded.telemetry["frame_counter"] == 70_000


def test_the_real_clock_makes_a_read_block_for_its_bus_time():
    sim = SimulatedLepton("lepton3", unique_every=1)
    cam = TimedLepton(sim, speed_hz=1_000_000)
    device = cam.open()
    start = time.monotonic()
    device.read(61 * P)  # 80 ms of bus at 1 MHz
    assert time.monotonic() - start >= 61 * P * 8 / 1_000_000 * 0.99
