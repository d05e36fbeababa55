"""The capture stage as a real `flir-stream capture` process, watched through a real ZeroMQ SUB."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from capture import vospi
from capture.vospi import FrameAssembler
from flirstream.wire import KELVIN_AT_0C

from conftest import write_config
from stage_support import Watcher


@pytest.fixture
def watch():
    made = []

    def make(config: Path) -> Watcher:
        endpoint = next(line.split("=", 1)[1].strip() for line in config.read_text().splitlines()
                        if line.startswith("frames"))
        w = Watcher(endpoint)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def run_to_exit(config: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flirstream", "capture", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(config.parent))


def test_sim_lepton3_frames_and_status_then_sigterm_exits_0(tmp_path, stages, watch):
    config = write_config(tmp_path, capture={"source": "sim", "telemetry": "off"})
    w = watch(config)
    stage = stages("capture", config)
    w.until(lambda: len(w.frames) >= 5 and any(s["state"] == "streaming" for s in w.status),
            stage=stage)
    frames = w.frames
    assert all(f.sensor == "lepton3" and f.pixels.shape == (120, 160) for f in frames)
    assert all(f.tlinear and f.kelvin_per_count == 0.01 and f.telemetry is None for f in frames)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    celsius = frames[-1].pixels / 100.0 - KELVIN_AT_0C
    assert 15 < np.median(celsius) < 40 and celsius.max() > 50  # room, body and hot spot
    # dedupe: the simulator sends each scene 3 times, consecutive published frames differ
    assert all(not np.array_equal(a.pixels, b.pixels) for a, b in zip(frames, frames[1:]))
    status = [s for s in w.status if s["state"] == "streaming"][-1]
    assert status["stage"] == "capture" and status["source"] == "sim"
    counters = status["counters"]  # (frames carry none: the status has them, once a second)
    assert {"packets", "crc_errors", "frames", "published"} <= set(counters)
    assert counters["frames"] >= counters["published"]  # (duplicates are not published)
    assert stage.stop(signal.SIGTERM) == 0
    log = stage.log_path.read_text()  # (Stage.log() needs the process running)
    assert "capture INFO capture: stopped" in log
    assert "publishing frames on tcp://127.0.0.1:" in log


def test_lepton2_with_telemetry(tmp_path, stages, watch):
    config = write_config(tmp_path, capture={"source": "sim", "sensor": "lepton2",
                                             "telemetry": "footer", "dedupe": "no",
                                             # the counter counts unique frames (as a 3.5's)
                                             "sim_unique_every": "1"})
    w = watch(config)
    stage = stages("capture", config)
    w.until(lambda: len(w.frames) >= 4, stage=stage)
    frames = w.frames
    assert all(f.sensor == "lepton2" and f.pixels.shape == (60, 80) for f in frames)
    counters = [f.telemetry["frame_counter"] for f in frames]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    assert 20 < frames[0].telemetry["fpa_temp_c"] < 35
    assert frames[0].telemetry["ffc_state"] == "complete"
    assert stage.stop(signal.SIGINT) == 0


def test_recording_replays_to_the_frames_it_recorded(tmp_path, stages, watch):
    record = tmp_path / "rec.vospi"
    config = write_config(tmp_path, capture={"source": "sim", "replay": "realtime", "loop": "no",
                                             "telemetry": "off"})
    w = watch(config)
    stage = stages("capture", config, "--record", str(record))
    w.until(lambda: len(w.frames) >= 8, stage=stage)
    assert stage.stop() == 0
    live = [f.pixels.tobytes() for f in w.frames]

    in_file = [f.image.tobytes() for f in FrameAssembler("lepton3").feed(record.read_bytes())]
    assert is_subsequence(live, in_file)

    w2 = watch(config)
    replay = stages("capture", config, "--source", f"vospi-file:{record}")
    w2.until(lambda: any(s["state"] == "offline" for s in w2.status), stage=replay)
    replayed = [f.pixels.tobytes() for f in w2.frames]
    assert len(replayed) >= 5
    assert is_subsequence(replayed, in_file)
    assert len(set(replayed) & set(live)) >= 5
    offline = [s for s in w2.status if s["state"] == "offline"][-1]
    assert "end of" in offline["detail"] and offline["source"] == f"vospi-file:{record}"
    assert replay.stop() == 0


def is_subsequence(items: list, sequence: list) -> bool:
    it = iter(sequence)
    return all(any(x == y for y in it) for x in items)


def test_auto_picks_the_simulator_here_and_says_so(tmp_path, stages, watch):
    config = write_config(tmp_path, capture={"source": "auto"})
    w = watch(config)
    stage = stages("capture", config)
    w.until(lambda: len(w.frames) >= 2 and w.status, stage=stage)
    assert w.status[-1]["source"] == "sim"
    assert stage.stop() == 0
    assert "source auto: no /dev/spidev0.0, using the simulated Lepton" in stage.log_path.read_text()


def test_image_source_publishes_the_picture(tmp_path, stages, watch):
    picture = np.tile(np.linspace(0, 255, 320).astype(np.uint8), (240, 1))
    cv2.imwrite(str(tmp_path / "ramp.png"), picture)
    config = write_config(tmp_path, capture={"source": f"image:{tmp_path / 'ramp.png'}"})
    w = watch(config)
    stage = stages("capture", config)
    w.until(lambda: len(w.frames) >= 2, stage=stage)  # a still picture still ticks each second
    celsius = w.frames[0].pixels / 100.0 - KELVIN_AT_0C
    assert celsius[:, 0].max() < 20.5 and celsius[:, -1].min() > 39.5
    assert stage.stop() == 0


def test_spi_without_device_stays_offline_says_why_and_keeps_reporting(tmp_path, stages, watch):
    config = write_config(tmp_path, capture={"source": "spi:/dev/spidev9.9"})
    w = watch(config)
    stage = stages("capture", config)
    # Long enough for the retry delay to grow past the status interval (0.5+1+2+4 s).
    w.until(lambda: len(w.status) >= 9, timeout=30, stage=stage)
    assert all(s["state"] == "offline" for s in w.status)
    assert "cannot open /dev/spidev9.9: no such device" in w.status[-1]["detail"]
    times = [s["t"] for s in w.status]
    assert max(b - a for a, b in zip(times, times[1:])) < 3.0  # never silent while retrying
    assert stage.proc.poll() is None
    assert stage.stop() == 0


@pytest.mark.parametrize("source, message", [
    ("vospi-file:{tmp}/missing.vospi", "missing.vospi: no such file"),
    ("image:{tmp}/missing.png", "missing.png: no such file"),
])
def test_missing_file_is_one_line_and_exit_2(tmp_path, source, message):
    config = write_config(tmp_path, capture={"source": source.format(tmp=tmp_path)})
    done = run_to_exit(config)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_bad_source_option_is_one_line_and_exit_2(tmp_path):
    done = run_to_exit(write_config(tmp_path), "--source", "webcam")
    assert done.returncode == 2
    assert "--source: [capture] source = 'webcam': expected auto, sim" in done.stderr


def test_endpoint_in_use_is_one_line_and_exit_2(tmp_path, stages, watch):
    config = write_config(tmp_path, capture={"source": "sim"})
    w = watch(config)
    first = stages("capture", config)
    w.until(lambda: len(w.frames) >= 1, stage=first)
    done = run_to_exit(config)
    assert done.returncode == 2
    assert "[endpoints] frames = tcp://127.0.0.1:" in done.stderr and "cannot bind" in done.stderr
    assert first.stop() == 0


def _cpu_percent(pid: int, seconds: float = 2.0) -> float:
    """Share of one core the process used over `seconds`."""
    process = psutil.Process(pid)
    before = process.cpu_times()
    time.sleep(seconds)  # a measurement window, not a wait for something to happen
    after = process.cpu_times()
    return 100.0 * ((after.user - before.user) + (after.system - before.system)) / seconds


def test_replaying_a_file_of_discard_packets_in_realtime_does_not_spin(tmp_path, stages, watch):
    # The audit: 93-98 % CPU forever, as pacing counted only non-discard packets.
    path = tmp_path / "discards.vospi"
    path.write_bytes(vospi.discard_packets(2000))
    config = write_config(tmp_path, capture={"source": f"vospi-file:{path}", "replay": "realtime"})
    watcher = watch(config)
    stage = stages("capture", config)
    watcher.until(lambda: watcher.status, stage=stage)  # running, publishing status
    cpu = _cpu_percent(stage.pid)
    print(f"capture on a file of discard packets: {cpu:.0f} % of a core")
    assert cpu < 40, f"capture used {cpu:.0f} % of a core"
    assert stage.proc.poll() is None


def test_a_file_truncated_while_replaying_waits_and_says_so(tmp_path, stages, watch):
    path = tmp_path / "rec.vospi"
    frame = np.full((120, 160), 30000, np.uint16)
    path.write_bytes(b"".join(vospi.encode_frame(frame, "lepton3", frame_counter=i)
                              for i in range(5)))
    config = write_config(tmp_path, capture={"source": f"vospi-file:{path}", "replay": "realtime"})
    watcher = watch(config)
    stage = stages("capture", config)
    watcher.until(lambda: watcher.frames, stage=stage)
    path.write_bytes(b"")  # truncated to 0 bytes under the replaying capture
    watcher.until(lambda: watcher.status and "is empty" in watcher.status[-1]["detail"],
                  stage=stage)
    cpu = _cpu_percent(stage.pid)
    print(f"capture on a truncated file: {cpu:.0f} % of a core")
    assert cpu < 40, f"capture used {cpu:.0f} % of a core"
    assert watcher.status[-1]["state"] == "offline"
