"""The simulated Lepton obeys its simulated CCI device: the real CCI client changes settings and
the VoSPI bytes (decoded by the real FrameAssembler and capture.telemetry) show the camera's
behaviour: FFC, gain, emissivity, AGC, TLinear, telemetry layout, reboot."""
from __future__ import annotations

import numpy as np
import pytest

from capture import cci, telemetry as tm, vospi
from capture.cci import Lepton, LeptonCCI
from capture.cci_sim import ManualClock, SimulatedCCI
from capture.sim import SimulatedLepton, camera_output
from flirstream.wire import KELVIN_AT_0C



def telemetry_of(data: bytes, sensor: str, mode: str) -> tm.Telemetry:
    """Rows A, B, C of the one frame in `data`, read straight from the packets."""
    packets = np.frombuffer(data, dtype=np.uint8).reshape(-1, vospi.PACKET_BYTES)
    real = packets[(packets[:, 0] & 0x0F) != 0x0F]
    words = real[:, 4:].copy().view(">u2").astype(np.uint16)
    video = 60 if sensor == "lepton2" else 240
    first = 0 if mode == "header" else video
    return tm.parse(words[first:first + 3].ravel())


def frame_packets(data: bytes) -> int:
    first = np.frombuffer(data, dtype=np.uint8)[::vospi.PACKET_BYTES]
    return int(np.count_nonzero((first & 0x0F) != 0x0F))


class Rig:
    def __init__(self, sensor: str = "lepton3", telemetry: str = "footer", **scene):
        self.clock = ManualClock()
        self.dev = SimulatedCCI(clock=self.clock)
        self.sim = SimulatedLepton(sensor, telemetry, unique_every=1, seed=3, cci=self.dev,
                                   **scene)
        self.lepton = Lepton(LeptonCCI(self.dev, clock=self.clock, sleep=self.clock.sleep))

    def period(self) -> bytes:
        self.clock.advance(1 / self.sim.fps)
        return self.sim.next_period()

    def frame(self):
        """(image, telemetry, layout) of the next frame, decoded as capture would."""
        data = self.period()
        mode = self.dev.telemetry_mode
        frames = vospi.FrameAssembler(self.sim.sensor, mode).feed(data)
        assert len(frames) == 1, f"no frame decoded with telemetry = {mode}"
        tel = telemetry_of(data, self.sim.sensor, mode) if mode != "off" else None
        return frames[0].image, tel, mode

    def kelvin(self, image: np.ndarray, t: tm.Telemetry) -> np.ndarray:
        meaning = tm.pixel_meaning(t)
        assert meaning in tm.KELVIN_PER_COUNT, meaning
        return image * tm.KELVIN_PER_COUNT[meaning]


# ---------------------------------------------------------------- FFC

def test_ffc_freezes_the_picture_and_walks_the_states():
    r = Rig()
    _, t0, _ = r.frame()
    assert t0.ffc_state == "complete"
    ran_at_ms = r.dev.uptime_ms()
    r.lepton.run_ffc()
    seen = []
    for _ in range(30):  # ~1.1 s
        image, t, _ = r.frame()
        seen.append((t.ffc_state, image, r.sim.last_true_k.copy(), t))
    states = [s for s, *_ in seen]
    walk = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert walk == ["imminent", "in progress", "complete"]
    frozen = [(img, true) for s, img, true, _ in seen if s == "in progress"]
    # ~0.3 s of frames at 26.5 Hz, all the same picture while the scene went on changing.
    assert 7 <= len(frozen) <= 9
    assert all(np.array_equal(img, frozen[0][0]) for img, _ in frozen)
    assert not np.array_equal(frozen[0][1], frozen[-1][1])
    after = [img for s, img, _, _ in seen if s == "complete"]
    assert not np.array_equal(after[-1], frozen[0][0])
    t_last = seen[-1][3]
    assert t_last.time_at_ffc_ms > t0.time_at_ffc_ms
    assert ran_at_ms + 100 <= t_last.time_at_ffc_ms <= ran_at_ms + 110  # after 0.1 s imminent
    assert t_last.fpa_temp_at_ffc_k == pytest.approx(r.dev.fpa_temp_k(), abs=0.05)


def test_auto_ffc_comes_every_period_and_manual_mode_asks_for_it():
    r = Rig()
    r.clock.advance(298.5)
    assert r.frame()[1].ffc_state == "imminent"  # 52 frames (~2 s) before the 300 s period
    r.clock.advance(1.6)
    assert r.frame()[1].ffc_state == "in progress"
    r.clock.advance(0.4)
    _, t, _ = r.frame()
    assert t.ffc_state == "complete" and 299900 <= t.time_at_ffc_ms <= 300100
    r.lepton.set_ffc_mode("manual")
    r.clock.advance(301.0)
    _, t, _ = r.frame()
    assert t.ffc_state == "complete" and t.ffc_desired  # no FFC by itself; it asks for one
    r.lepton.run_ffc()
    r.clock.advance(0.5)
    assert not r.frame()[1].ffc_desired


# ---------------------------------------------------------------- gain

def test_low_gain_widens_the_range_at_0_1_k_with_right_temperatures():
    r = Rig(hot_c=290.0)  # a hot spot at 280..300 C
    image, t, _ = r.frame()
    true = r.sim.last_true_k
    assert t.effective_gain_mode == "high" and tm.pixel_meaning(t) == tm.KELVIN_X100
    k = r.kelvin(image, t)
    assert k.max() - KELVIN_AT_0C == pytest.approx(140.0, abs=0.01)  # high gain tops out
    assert true.max() - KELVIN_AT_0C > 270.0
    cool = true < 130 + KELVIN_AT_0C
    assert np.abs(k[cool] - true[cool]).max() <= 0.006

    r.lepton.set_gain_mode("low")
    image, t, _ = r.frame()
    true = r.sim.last_true_k
    assert t.gain_mode == "low" and t.effective_gain_mode == "low"
    assert t.tlinear_resolution == 0.1 and tm.pixel_meaning(t) == tm.KELVIN_X10
    assert r.lepton.tlinear_resolution() == 0.1
    k = r.kelvin(image, t)
    assert np.abs(k - true).max() <= 0.051  # every pixel right, the hot spot too
    assert k.max() - KELVIN_AT_0C > 270.0

    r.lepton.set_gain_mode("high")
    _, t, _ = r.frame()
    assert t.tlinear_resolution == 0.01 and r.lepton.tlinear_resolution() == 0.01


def test_auto_gain_follows_the_scene():
    clock = ManualClock()
    dev = SimulatedCCI(clock=clock)
    Lepton(LeptonCCI(dev, clock=clock, sleep=clock.sleep)).set_gain_mode("auto")
    hot = np.full((120, 160), 200 + KELVIN_AT_0C)
    out = camera_output(hot, dev)
    assert dev.effective_gain == 1 and dev.kelvin_per_count == 0.1
    assert out.max() == round((200 + KELVIN_AT_0C) / 0.1)
    camera_output(np.full((120, 160), 100 + KELVIN_AT_0C), dev)  # between the thresholds: stays low
    assert dev.effective_gain == 1
    camera_output(np.full((120, 160), 30 + KELVIN_AT_0C), dev)
    assert dev.effective_gain == 0 and dev.kelvin_per_count == 0.01


# ---------------------------------------------------------------- emissivity

def test_the_right_emissivity_gives_the_true_temperature_back():
    r = Rig(scene_emissivity=0.9, scene_reflected_k=295.15)
    image, t, _ = r.frame()
    true = r.sim.last_true_k
    body = true > 30 + KELVIN_AT_0C
    assert (r.kelvin(image, t)[body] < true[body] - 0.3).all()  # e = 1 reads a grey body low
    r.lepton.set_emissivity(0.9, background_k=295.15)
    image, t, _ = r.frame()
    true = r.sim.last_true_k
    assert t.emissivity == pytest.approx(0.9, abs=1 / 8192) and t.background_k == 295.15
    assert np.abs(r.kelvin(image, t) - true).max() <= 0.02


def test_emissivity_changes_reported_temperatures_by_the_radiometric_model():
    r = Rig()  # a blackbody scene
    r.lepton.set_emissivity(0.5, background_k=295.15)
    image, t, _ = r.frame()
    true = r.sim.last_true_k

    def w(kelvin):  # band radiance, Planck at 10 um (c2 / lambda = 1438.8 K)
        return 1 / (np.exp(1438.8 / kelvin) - 1)

    expected = 1438.8 / np.log1p(1 / ((w(true) - 0.5 * w(295.15)) / 0.5))
    k = r.kelvin(image, t)
    assert np.abs(k - expected).max() <= 0.006
    warm = true > 300
    assert (k[warm] > true[warm] + 1.0).all()


# ---------------------------------------------------------------- what the pixels are

def test_agc_on_gives_8_bit_values_and_says_so():
    r = Rig()
    r.lepton.set_agc(True)
    image, t, _ = r.frame()
    assert t.agc_on and tm.pixel_meaning(t) == tm.AGC_8BIT
    assert image.max() <= 255 and image.max() >= 250 and image.min() == 0
    r.lepton.cci.set_u32(cci.AGC_POLICY, 0)  # linear AGC
    image, t, _ = r.frame()
    assert image.min() == 0 and image.max() == 255
    r.lepton.set_agc(False)
    image, t, _ = r.frame()
    assert not t.agc_on and tm.pixel_meaning(t) == tm.KELVIN_X100
    assert np.abs(r.kelvin(image, t) - r.sim.last_true_k).max() <= 0.006


@pytest.mark.parametrize("switch", ["tlinear", "radiometry"])
def test_tlinear_or_radiometry_off_gives_raw_counts(switch):
    r = Rig()
    getattr(r.lepton, f"set_{switch}")(False)
    image, t, _ = r.frame()
    true = r.sim.last_true_k
    assert not t.tlinear_enabled and tm.pixel_meaning(t) == tm.RAW_COUNTS
    assert image.max() < 1 << 14
    # Relative values: hotter is more counts, ~20 counts per kelvin in high gain.
    hot, cold = np.unravel_index(true.argmax(), true.shape), np.unravel_index(true.argmin(),
                                                                              true.shape)
    assert int(image[hot]) - int(image[cold]) == pytest.approx(20 * (true[hot] - true[cold]),
                                                               rel=0.05)


# ---------------------------------------------------------------- telemetry

@pytest.mark.parametrize("sensor, video", [("lepton3", 240), ("lepton2", 60)])
def test_telemetry_on_off_and_location_change_the_packet_layout(sensor, video):
    r = Rig(sensor, telemetry="off")
    assert frame_packets(r.period()) == video
    r.frame()
    r.lepton.set_telemetry(True)  # header by default
    data = r.period()
    assert frame_packets(data) == video + (4 if sensor == "lepton3" else 3)
    stale = vospi.FrameAssembler(sensor, "off").feed(data)  # the old layout no longer fits:
    if sensor == "lepton3":
        assert stale == []  # 61-packet segments are not frames
    else:
        assert stale[0].image[0, 0] == 14  # rows A, B, C read as picture (revision 14 first)
    image, t, mode = r.frame()
    assert mode == "header" and t.revision == 14 and t.serial == r.dev.serial
    data = r.period()  # the assembler hands out the same rows A, B, C
    frame = vospi.FrameAssembler(sensor, "header").feed(data)[0]
    assert tm.parse(frame.telemetry_rows.ravel()) == telemetry_of(data, sensor, "header")
    r.lepton.set_telemetry_location("footer")
    image, t, mode = r.frame()
    assert mode == "footer" and t.revision == 14
    r.lepton.set_telemetry(False)
    assert frame_packets(r.period()) == video


def test_telemetry_carries_the_camera_state():
    r = Rig()
    image, t1, _ = r.frame()
    image, t2, _ = r.frame()
    assert t2.frame_counter == t1.frame_counter + 1
    assert t2.uptime_ms - t1.uptime_ms == pytest.approx(1000 / 26.5, abs=2)
    assert t2.fpa_temp_k == pytest.approx(r.dev.fpa_temp_k(), abs=0.01)
    assert t2.housing_temp_k == pytest.approx(r.dev.housing_temp_k(), abs=0.01)
    assert t2.serial == r.dev.serial and t2.software_revision == (794, 3, 794, 3)
    assert t2.gain_mode == "high" and t2.tlinear_enabled and t2.tlinear_resolution == 0.01
    assert t2.spotmeter_population == 4 and t2.spotmeter_roi == (59, 79, 60, 80)
    assert t2.spotmeter_mean == int(image[59:61, 79:81].mean())
    assert t2.spotmeter_max == image[59:61, 79:81].max()
    assert t2.frame_mean == int(image.mean())


def test_a_reboot_brings_back_the_power_on_picture():
    r = Rig()
    r.lepton.set_agc(True)
    assert tm.pixel_meaning(r.frame()[1]) == tm.AGC_8BIT
    r.lepton.reboot()
    image, t, mode = r.frame()
    assert mode == "footer"  # the simulator's power-on telemetry (its constructor's)
    assert tm.pixel_meaning(t) == tm.KELVIN_X100 and t.uptime_ms < 200
