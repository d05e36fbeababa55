"""capture.sources, capture.spi and capture.reader: every source, and the SPI logic with a stand-in
device that serves simulator bytes (there is no SPI hardware here)."""
from __future__ import annotations

import errno
import logging
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from capture import spi, vospi
from capture.reader import Deduper, Reader
from capture.sim import SimulatedLepton
from capture.sources import (FileSource, ImageSource, Recorder, SimSource, SourceOffline,
                             make_source)
from capture.spi import SpiSource
from capture.vospi import FrameAssembler
from flirstream import config as configuration
from flirstream.config import ConfigError


class StandInLepton:
    """Behaves like /dev/spidevB.D with a Lepton on it: read(n) gives the sensor's next n bytes.

    Like the real sensor it can be out of sync (sending garbage) until chip select stays
    deasserted (no reads) for 185 ms, after which it starts again at a frame boundary.
    """

    def __init__(self, sensor: str = "lepton3", max_read: int = 1 << 20,
                 out_of_sync: bool = False, stuck_on_discards: bool = False):
        self.sim = SimulatedLepton(sensor, unique_every=1, seed=1)
        self.max_read = max_read
        self.out_of_sync = out_of_sync
        self.stuck_on_discards = stuck_on_discards  # out of sync the quiet way
        self.gone = False
        self.closed = False
        self.read_sizes: list[int] = []
        self.gaps: list[float] = []
        self._last_read = None
        self._buffer = bytearray()
        self._rng = np.random.default_rng(2)

    def read(self, size: int) -> bytes:
        now = time.monotonic()
        if self._last_read is not None:
            self.gaps.append(now - self._last_read)
            if now - self._last_read >= vospi.RESYNC_MIN_S:
                self.out_of_sync = False
                self._buffer.clear()  # restart at a frame boundary
        self._last_read = now
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        if size > self.max_read:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.read_sizes.append(size)
        if self.out_of_sync:
            if self.stuck_on_discards:
                return vospi.discard_packets(size // vospi.PACKET_BYTES)
            return self._rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        while len(self._buffer) < size:
            self._buffer += self.sim.next_period()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def close(self) -> None:
        self.closed = True


class Factory:
    """Opens stand-in devices; `missing` > 0 makes that many opens fail as if unplugged."""

    def __init__(self, **device_options):
        self.options = device_options
        self.devices: list[StandInLepton] = []
        self.missing = 0

    def __call__(self, path: str) -> StandInLepton:
        if self.missing:
            self.missing -= 1
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        device = StandInLepton(**self.options)
        self.devices.append(device)
        return device


def poll_until(reader: Reader, condition, timeout: float = 10.0, **kw) -> list:
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames += reader.poll(**kw)
        if condition(frames):
            return frames
    raise AssertionError(f"condition not met in {timeout} s; state {reader.state}: {reader.detail}")


# ---------------------------------------------------------------- SPI

@pytest.mark.parametrize("bufsiz, packets", [(4096, 24), (65536, 128), (100, 1)])
def test_spi_reads_a_whole_segment_in_whole_packets_within_bufsiz(bufsiz, packets):
    factory = Factory()
    source = SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=bufsiz)
    assert source.read_size == packets * vospi.PACKET_BYTES  # the largest transfer
    data = source.read()
    sizes = factory.devices[0].read_sizes
    assert max(sizes) <= packets * vospi.PACKET_BYTES
    assert all(size % vospi.PACKET_BYTES == 0 for size in sizes)
    # one read() = one Lepton 3 segment with telemetry (61 packets), in as few transfers as fit
    assert len(data) == sum(sizes) == spi.SEGMENT_READ_PACKETS * vospi.PACKET_BYTES
    assert len(sizes) == -(-spi.SEGMENT_READ_PACKETS // packets)


def test_spidev_bufsiz_is_read_from_sysfs_with_a_default(tmp_path):
    path = tmp_path / "bufsiz"
    path.write_text("65536\n")
    assert spi.spidev_bufsiz(str(path)) == 65536
    assert spi.spidev_bufsiz(str(tmp_path / "missing")) == 4096


def test_spi_stream_gives_frames_through_the_assembler():
    factory = Factory()
    reader = Reader(SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=4096),
                    FrameAssembler("lepton3"))
    frames = poll_until(reader, lambda f: len(f) >= 3)
    assert frames[0].image.shape == (120, 160)
    assert reader.state == "streaming"
    assert all(size % vospi.PACKET_BYTES == 0 for size in factory.devices[0].read_sizes)


def test_lost_sync_pauses_at_least_185_ms_then_streams_again():
    factory = Factory(out_of_sync=True)
    reader = Reader(SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=4096),
                    FrameAssembler("lepton3"))
    states = []
    deadline = time.monotonic() + 10
    frames = []
    while time.monotonic() < deadline and not frames:
        frames = reader.poll()
        if not states or states[-1] != reader.state:
            states.append(reader.state)
    assert frames, reader.detail
    assert "resyncing" in states and states[-1] == "streaming"
    device = factory.devices[0]
    assert max(device.gaps) >= vospi.RESYNC_MIN_S
    assert reader.assembler.counters.resyncs >= 1


def test_a_sensor_sending_only_discards_is_resynced_by_the_watchdog():
    factory = Factory(out_of_sync=True, stuck_on_discards=True)
    reader = Reader(SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=4096),
                    FrameAssembler("lepton3"), watchdog_s=0.3)
    seen = {}

    def streaming(frames):
        seen[reader.state] = reader.detail
        return bool(frames)

    poll_until(reader, streaming)
    assert "no frame for" in seen["resyncing"]
    assert reader.state == "streaming"
    assert max(factory.devices[0].gaps) >= vospi.RESYNC_MIN_S
    assert reader.assembler.counters.discards > 0


def test_device_that_disappears_is_reopened_with_growing_delays():
    factory = Factory()
    source = SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=4096)
    reader = Reader(source, FrameAssembler("lepton3"))
    poll_until(reader, lambda f: len(f) >= 1)
    factory.devices[0].gone = True
    factory.missing = 3
    details: list[str] = []
    waits: list[float] = []
    clock = [time.monotonic()]

    def wait(seconds: float) -> bool:  # a clock that jumps instead of sleeping
        details.append(reader.detail)
        waits.append(seconds)
        clock[0] += seconds
        return False

    reader._clock = lambda: clock[0]
    frames = poll_until(reader, lambda f: len(f) >= 1, wait=wait)
    assert frames and reader.state == "streaming"
    assert factory.devices[0].closed
    assert len(factory.devices) == 2 and source.opens == 2
    assert max(waits) <= 0.5  # status keeps flowing during a long backoff
    assert sum(waits) == pytest.approx(0.5 + 1.0 + 2.0 + 4.0)  # growing delays between attempts
    assert "reading /dev/spidev0.0 failed: No such device" in details[0]
    assert "cannot open /dev/spidev0.0: no such device" in details[-1]


def test_errno_90_names_the_kernel_parameter_and_reads_less(caplog):
    factory = Factory(max_read=1000)
    source = SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=4096)
    reader = Reader(source, FrameAssembler("lepton3"))
    with caplog.at_level(logging.WARNING):
        frames = poll_until(reader, lambda f: len(f) >= 1)
    assert frames
    assert source.read_size <= 1000 and source.read_size % vospi.PACKET_BYTES == 0
    assert "spidev.bufsiz=65536" in caplog.text and "Errno 90" in caplog.text


def test_errno_90_even_for_one_packet_is_offline_with_the_message():
    source = SpiSource("/dev/spidev0.0", device_factory=Factory(max_read=100), bufsiz=164)
    with pytest.raises(SourceOffline, match=r"spidev\.bufsiz=65536 to the kernel command line"):
        source.read()


def test_spi_without_the_spidev_module_is_offline_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "spidev", None)  # makes `import spidev` fail
    source = SpiSource("/dev/spidev0.0")
    with pytest.raises(SourceOffline, match=r"/dev/spidev0.0: the Python module spidev is not "
                                            r"installed: pip install flir-stream\[spi\]"):
        source.read()


def test_spi_device_missing_or_not_a_spidev_is_offline_with_the_reason(tmp_path):
    with pytest.raises(SourceOffline, match="cannot open /dev/spidev-missing: no such device"):
        SpiSource("/dev/spidev-missing").read()
    other = tmp_path / "ttyUSB0"
    other.write_text("")
    with pytest.raises(SourceOffline, match="ttyUSB0: not a spidev device"):
        SpiSource(str(other)).read()


# ---------------------------------------------------------------- other sources

def capture_section(**values) -> SimpleNamespace:
    text = "[capture]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    return configuration.loads(text).capture


def test_auto_without_spi_device_uses_the_simulator(caplog):
    with caplog.at_level(logging.INFO):
        source = make_source("auto", capture_section())
    assert source.name == "sim" and isinstance(source, SimSource)
    assert "no /dev/spidev0.0, using the simulated Lepton" in caplog.text


def test_sim_source_is_paced_to_the_frame_rate():
    source = make_source("sim", capture_section(sim_fps="50"))
    start = time.monotonic()
    for _ in range(11):
        source.read()
    assert time.monotonic() - start >= 0.19  # ten periods of 20 ms at least (never faster)


def test_recorded_file_replays_to_the_same_frames(tmp_path):
    path = tmp_path / "rec.vospi"
    sim = SimSource(SimulatedLepton("lepton2", "header", unique_every=1, seed=4), realtime=False)
    recorder = Recorder(sim, str(path))
    live = FrameAssembler("lepton2", "header")
    recorded = []
    for _ in range(10):
        recorded += live.feed(recorder.read())
    recorder.close()
    source = FileSource(str(path), "lepton2", "header", realtime=False, loop=False)
    replay = FrameAssembler("lepton2", "header")
    frames = []
    with pytest.raises(SourceOffline, match="end of .*rec.vospi"):
        while True:
            frames += replay.feed(source.read())
    assert len(frames) == len(recorded) == 10
    for a, b in zip(frames, recorded):
        assert np.array_equal(a.image, b.image) and a.telemetry == b.telemetry


def test_file_source_loops(tmp_path):
    path = tmp_path / "one.vospi"
    path.write_bytes(vospi.encode_frame(np.full((60, 80), 30000, np.uint16), "lepton2"))
    source = FileSource(str(path), "lepton2", "off", realtime=False, loop=True)
    asm = FrameAssembler("lepton2")
    frames = []
    for _ in range(20):
        frames += asm.feed(source.read())
    assert len(frames) >= 3


def test_missing_or_empty_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"vospi-file:.*nope.vospi: no such file"):
        make_source(f"vospi-file:{tmp_path}/nope.vospi", capture_section())
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds no VoSPI packet"):
        make_source(f"vospi-file:{tmp_path}/empty", capture_section())


def test_image_source_maps_grey_to_20_to_40_celsius(tmp_path):
    picture = np.zeros((240, 320), np.uint8)
    picture[:, 160:] = 255
    path = tmp_path / "half.png"
    assert cv2.imwrite(str(path), picture)
    source = ImageSource(str(path), "lepton3", "off", 0.01, fps=100)
    asm = FrameAssembler("lepton3")
    frames = []
    while len(frames) < 2:
        frames += asm.feed(source.read())
    image = frames[0].image
    assert image.shape == (120, 160)
    assert image[:, 0].tolist() == [29315] * 120       # 20.00 C in kelvin x 100
    assert image[:, -1].tolist() == [31315] * 120      # 40.00 C
    assert np.array_equal(frames[0].image, frames[1].image)


def test_unreadable_or_missing_image_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    with pytest.raises(ConfigError, match="bad.png: not a picture OpenCV can read"):
        make_source(f"image:{bad}", capture_section())
    with pytest.raises(ConfigError, match="gone.png: no such file"):
        make_source(f"image:{tmp_path}/gone.png", capture_section())


def test_record_to_an_unwritable_place_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot write"):
        make_source("sim", capture_section(), record=str(tmp_path / "no" / "such" / "dir"))


# ---------------------------------------------------------------- dedupe

def test_deduper_drops_repeats_but_lets_one_through_each_second():
    d = Deduper(keepalive_s=1.0)
    a = np.zeros((2, 2), np.uint16)
    b = np.ones((2, 2), np.uint16)
    assert not d.is_duplicate(a, now=0.0)
    assert d.is_duplicate(a.copy(), now=0.1)
    assert d.is_duplicate(a.copy(), now=0.9)
    assert not d.is_duplicate(b, now=0.95)
    assert d.is_duplicate(b.copy(), now=1.5)
    assert not d.is_duplicate(b.copy(), now=2.0)  # a still scene still ticks once a second
    assert d.duplicates == 3


def test_reader_puts_the_settings_hint_in_its_detail(caplog):
    # A Lepton 3 read as a Lepton 2: "frames" come (one per segment) but the hint says why
    # they look wrong.
    factory = Factory(sensor="lepton3")
    reader = Reader(SpiSource("/dev/spidev0.0", device_factory=factory, bufsiz=4096),
                    FrameAssembler("lepton2"))
    with caplog.at_level(logging.WARNING):
        poll_until(reader, lambda f: len(f) >= 3)
    assert reader.state == "streaming"
    assert "set [capture] sensor = lepton3" in reader.detail
    assert caplog.text.count("set [capture] sensor = lepton3") == 1


def test_recording_that_cannot_be_written_stops_but_streaming_goes_on(caplog):
    # /dev/full: every write fails with ENOSPC, like a full disk
    recorder = Recorder(SimSource(SimulatedLepton("lepton2", unique_every=1), realtime=False),
                        "/dev/full")
    asm = FrameAssembler("lepton2")
    with caplog.at_level(logging.ERROR):
        frames = asm.feed(recorder.read()) + asm.feed(recorder.read())
    assert len(frames) == 2
    assert caplog.text.count("recording to /dev/full stopped: No space left on device") == 1
    recorder.close()


def test_spi_reads_a_segment_with_one_readv_into_its_own_buffer():
    class VectoredDevice:
        def __init__(self):
            self.calls: list[list[int]] = []
            self.data = vospi.encode_frame(np.full((120, 160), 30000, np.uint16), "lepton3")

        def readv(self, buffers):
            self.calls.append([len(b) for b in buffers])
            at = 0
            for b in buffers:
                b[:] = self.data[at:at + len(b)]
                at += len(b)
            return at

        def read(self, size):
            raise AssertionError("read() used although readv() is there")

        def close(self):
            pass

    device = VectoredDevice()
    source = SpiSource("/dev/spidev0.0", device_factory=lambda p: device, bufsiz=4096)
    first = source.read()
    second = source.read()
    assert device.calls == [[24 * 164, 24 * 164, 13 * 164]] * 2  # one system call per segment
    assert first == second == device.data[:61 * 164]
    assert source._views[0].obj is source._views[1].obj  # the same preallocated buffer each time
