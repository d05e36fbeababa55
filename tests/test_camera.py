"""capture.camera against the simulated CCI device through the real CCI client: identity, the
meaning of frames (telemetry, CCI, server.conf, assumed), commands and their errors, settings
saved in the state file and applied again after a reboot and after the camera restarted itself;
and the camera control messages of flirstream/wire.py."""
from __future__ import annotations

import json

import pytest

from capture import telemetry as tm, vospi
from capture.camera import Camera, CommandRefused, reply_for, resolve_i2c, telemetry_mode
from capture.cci import Lepton, LeptonCCI
from capture.cci_sim import ManualClock, SimulatedCCI
from capture.sim import SimulatedLepton
from flirstream import config as configuration, wire
from flirstream.state import StateFile


def capture_section(**values):
    cfg = configuration.loads("[capture]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return cfg.capture


class Rig:
    """A simulated Lepton 3.5 with its CCI device on a manual clock, and a Camera on it."""

    def __init__(self, tmp_path, telemetry: str = "footer", part: str = "500-0771-01", **cap):
        self.clock = ManualClock()
        self.dev = SimulatedCCI(part_number=part, clock=self.clock)
        sensor = "lepton2" if part == "500-0763-01" else "lepton3"
        self.sim = SimulatedLepton(sensor, telemetry, unique_every=1, seed=1, cci=self.dev)
        self.state = StateFile(tmp_path, "capture")
        self.lepton = Lepton(LeptonCCI(self.dev, clock=self.clock, sleep=self.clock.sleep))
        self.camera = Camera(self.lepton, "", capture_section(**cap), self.state, telemetry)
        self.telemetry = telemetry

    def frame(self):
        """(image, parsed telemetry or None) of the next frame, as capture's loop decodes it."""
        self.clock.advance(1 / self.sim.fps)
        data = self.sim.next_period()
        frames = vospi.FrameAssembler(self.sim.sensor, self.dev.telemetry_mode).feed(data)
        assert len(frames) == 1
        return frames[0].image, self.camera.observe(frames[0].telemetry_rows)


def test_start_identifies_the_camera_and_the_model_decides_the_sensor(tmp_path):
    rig = Rig(tmp_path, part="500-0763-01", telemetry="off", sensor="lepton3")
    rig.camera.start()
    status = rig.camera.status()
    assert status["model"] == "Lepton 2.5" and status["part_number"] == "500-0763-01"
    assert status["serial"] == "0123456789ABCDEF" and status["firmware"] == "gpp 3.3.26 dsp 3.3.26"
    assert rig.camera.sensor == "lepton2"  # server.conf said lepton3: the camera wins
    assert status["control"] == "available" and status["radiometric"] is True


def test_meaning_follows_telemetry_then_cci_then_config(tmp_path):
    rig = Rig(tmp_path)
    rig.camera.start()
    _, t = rig.frame()
    assert rig.camera.meaning(t) == (tm.KELVIN_X100, "telemetry")
    rig.lepton.set_gain_mode("low")  # auto resolution: 0.1 K in low gain
    rig.frame()
    _, t = rig.frame()
    assert rig.camera.meaning(t) == (tm.KELVIN_X10, "telemetry")
    rig.lepton.set_tlinear(False)
    _, t = rig.frame()
    assert rig.camera.meaning(t) == (tm.RAW_COUNTS, "telemetry")
    rig.lepton.set_agc(True)
    _, t = rig.frame()
    assert rig.camera.meaning(t) == (tm.AGC_8BIT, "telemetry")
    # Telemetry off: the state read over CCI says the same.
    rig.camera.poll()
    assert rig.camera.meaning(None) == (tm.AGC_8BIT, "cci")
    rig.lepton.set_agc(False)
    rig.lepton.set_tlinear(True)
    rig.camera.poll()
    assert rig.camera.meaning(None) == (tm.KELVIN_X10, "cci")


def test_config_can_force_the_meaning_and_is_applied_to_the_camera(tmp_path):
    rig = Rig(tmp_path, tlinear="yes", tlinear_resolution="0.1")
    rig.dev.set_power_on(tlinear=False, tlinear_auto_resolution=False)
    rig.camera.start()
    assert rig.lepton.tlinear_enabled() and rig.lepton.tlinear_resolution() == 0.1
    _, t = rig.frame()
    assert rig.camera.meaning(t) == (tm.KELVIN_X10, "telemetry")
    rig.lepton.set_tlinear_resolution(0.01)  # someone else changed it: config still wins
    _, t = rig.frame()
    assert rig.camera.meaning(t) == (tm.KELVIN_X10, "config")
    off = Camera(None, "no camera control: the source is a recording (vospi-file:)",
                 capture_section(tlinear="no"), None)
    assert off.meaning(None) == (tm.RAW_COUNTS, "config")


def test_without_telemetry_or_cci_kelvin_is_assumed_and_said(tmp_path):
    camera = Camera(None, "camera control unavailable: no /dev/i2c-1", capture_section(), None)
    assert camera.meaning(None) == (tm.KELVIN_X100, "assumed")
    status = camera.status()
    assert status["control"] == "camera control unavailable: no /dev/i2c-1"
    assert status["model"] is None and status["meaning_from"] == "assumed"
    with pytest.raises(CommandRefused) as info:
        camera.command({"op": "ffc"})
    assert info.value.reason == "unavailable" and "no /dev/i2c-1" in str(info.value)
    assert camera.command({"op": "camera"})["control"].startswith("camera control unavailable")


def test_ffc_command_walks_the_telemetry_ffc_state_and_stamps_the_time(tmp_path):
    rig = Rig(tmp_path)
    rig.camera.start()
    for _ in range(30):
        rig.frame()
    before = rig.camera.status()["since_ffc_s"]
    assert before > 0.5
    rig.camera.command({"op": "ffc"})
    states = []
    for _ in range(20):
        _, t = rig.frame()
        states.append(rig.camera.status(t)["ffc_state"])
    assert states.index("imminent") < states.index("in progress") < len(states) - 1
    assert states[-1] == "complete"
    assert rig.camera.status()["since_ffc_s"] < before


def test_settings_are_saved_and_applied_again_after_reboot_and_restart(tmp_path):
    rig = Rig(tmp_path)
    rig.camera.start()
    rig.camera.command({"op": "gain", "mode": "low"})
    rig.camera.command({"op": "emissivity", "emissivity": 0.95, "background_c": 30.0})
    rig.camera.command({"op": "ffc_mode", "mode": "manual"})
    saved = json.loads((tmp_path / "capture.json").read_text())["camera"]
    assert saved == {"gain_mode": "low", "emissivity": 0.95, "background_k": 303.15,
                     "ffc_mode": "manual"}
    # Reboot: the camera forgets everything; the command sets it up again.
    rig.camera.command({"op": "reboot"})
    assert rig.lepton.gain_mode() == "low" and rig.lepton.ffc_mode() == "manual"
    flux = rig.lepton.flux_parameters()
    assert abs(flux.emissivity - 0.95) < 1e-3 and abs(flux.background_k - 303.15) < 0.01
    assert rig.lepton.telemetry_enabled() and rig.lepton.telemetry_location() == "footer"
    # The camera restarts by itself (power glitch): telemetry uptime goes back, capture notices.
    rig.frame()
    rig.clock.advance(10)
    rig.frame()
    with rig.dev.lock:
        rig.dev._power_up(rig.clock())
    assert rig.lepton.gain_mode() == "high"
    rig.frame()
    assert rig.camera.reapply_needed
    assert rig.camera.reapply_if_needed()
    assert rig.lepton.gain_mode() == "low" and rig.lepton.ffc_mode() == "manual"
    # A new Camera (capture restarted) on the state file applies the same settings at start.
    fresh = Rig(tmp_path)
    fresh.camera.start()
    assert fresh.lepton.gain_mode() == "low"
    assert abs(fresh.lepton.flux_parameters().emissivity - 0.95) < 1e-3


def test_reboot_for_the_recovery_ladder_sets_telemetry_again(tmp_path):
    rig = Rig(tmp_path)
    rig.dev.set_power_on(telemetry_enabled=False)  # a real Lepton's power-on state
    rig.camera.start()
    assert rig.lepton.telemetry_enabled()
    assert rig.camera.reboot() is True
    assert rig.lepton.telemetry_enabled() and rig.dev.telemetry_mode == "footer"
    assert Camera(None, "no", capture_section(), None).reboot() is False
    bus = UnpluggableBus(rig.dev)
    bus.plugged = False  # the hook says why it failed, for the ladder's status line
    unplugged = Camera(Lepton(LeptonCCI(bus)), "", capture_section(), None, "footer")
    with pytest.raises(CommandRefused, match="I2C: Remote I/O error"):
        unplugged.recovery_reboot()


def test_replies_to_good_bad_and_refused_requests(tmp_path):
    rig = Rig(tmp_path, part="500-0726-01")  # Lepton 3.0: not radiometric
    rig.camera.start()

    def reply(message):
        return json.loads(reply_for(rig.camera, message))

    good = reply({"op": "gain", "mode": "auto", "id": 7})
    assert good["ok"] is True and good["id"] == 7 and good["camera"]["gain_mode"] == "auto"
    for message, text in [
            ({"op": "gain", "mode": "medium"}, "gain: mode 'medium': expected high, low, auto"),
            ({"op": "emissivity", "emissivity": 1.5}, "emissivity 1.5: expected a number from 0.01"),
            ({"op": "emissivity", "emissivity": 0.9, "background_c": 900},
             "background_c 900: expected a number from -50 to 400"),
            ({"op": "ffc", "now": True}, "ffc: unexpected field now"),
            ({"op": "selfdestruct"}, "unknown camera op 'selfdestruct'"),
            ("ffc", "not a JSON object")]:
        r = reply(message)
        assert r["ok"] is False and r["reason"] == "bad_request" and text in r["error"], r
    r = reply({"op": "emissivity", "emissivity": 0.9})
    assert r["ok"] is False and r["reason"] == "bad_request" and "not radiometric" in r["error"]


def test_wire_camera_requests_have_one_constructor_and_validator():
    assert wire.camera_request("emissivity", emissivity=0.9, background_c=21.5) == {
        "op": "emissivity", "emissivity": 0.9, "background_c": 21.5}
    assert wire.camera_request("ffc_mode", mode="manual") == {"op": "ffc_mode", "mode": "manual"}
    for op in ("camera", "ffc", "reboot"):
        assert wire.camera_request(op) == {"op": op}
    with pytest.raises(wire.WireError, match="mode 'auto-ish'"):
        wire.camera_request("ffc_mode", mode="auto-ish")
    with pytest.raises(wire.WireError, match="emissivity True"):
        wire.camera_request("emissivity", emissivity=True)


def test_i2c_and_telemetry_settings():
    assert resolve_i2c("off") is None
    assert resolve_i2c("auto", exists=lambda p: False) is None
    assert resolve_i2c("auto", exists=lambda p: p == "/dev/i2c-1") == "/dev/i2c-1"
    assert resolve_i2c("/dev/i2c-3") == "/dev/i2c-3"
    assert telemetry_mode("auto", controllable=False, simulated=True) == "footer"
    assert telemetry_mode("auto", controllable=True, simulated=False) == "footer"
    assert telemetry_mode("auto", controllable=False, simulated=False) == "off"
    assert telemetry_mode("header", controllable=False, simulated=False) == "header"


class UnpluggableBus:
    """The simulated device behind a connector that can be pulled (every transfer: EREMOTEIO)."""

    def __init__(self, device):
        self.device = device
        self.plugged = True

    def i2c_rdwr(self, *msgs):
        if not self.plugged:
            raise OSError(121, "Remote I/O error")
        self.device.i2c_rdwr(*msgs)


def test_a_camera_that_answers_only_later_or_again_is_identified_and_set_up(tmp_path):
    rig = Rig(tmp_path, telemetry="off")
    bus = UnpluggableBus(rig.dev)
    lepton = Lepton(LeptonCCI(bus, clock=rig.clock, sleep=rig.clock.sleep))
    StateFile(tmp_path, "capture").save({"camera": {"gain_mode": "low"}})
    camera = Camera(lepton, "", capture_section(), StateFile(tmp_path, "capture"), "footer")
    bus.plugged = False  # not powered yet when capture starts
    camera.start()
    assert camera.status()["model"] is None and not camera.reapply_if_needed()
    bus.plugged = True
    camera.poll()
    assert camera.reapply_needed and camera.reapply_if_needed()
    assert camera.status()["model"] == "Lepton 3.5"
    assert rig.lepton.gain_mode() == "low" and rig.lepton.telemetry_enabled()
    # Unplugged and plugged again (a fresh camera at power-on values): set up again.
    bus.plugged = False
    camera.poll()
    with rig.dev.lock:
        rig.dev._power_up(rig.clock())
    bus.plugged = True
    camera.poll()
    assert camera.reapply_if_needed()
    assert rig.lepton.gain_mode() == "low" and rig.lepton.telemetry_enabled()


def test_the_camera_asking_for_an_ffc_shows_in_its_status(tmp_path):
    rig = Rig(tmp_path)
    rig.dev.set_power_on(ffc_period_ms=2000)
    rig.camera.start()
    rig.camera.command({"op": "ffc_mode", "mode": "manual"})
    _, t = rig.frame()
    assert rig.camera.status(t)["ffc_desired"] is False and rig.camera.status()["ffc_mode"] == "manual"
    rig.clock.advance(2.5)  # manual FFC and the desired period passed: the camera asks for one
    _, t = rig.frame()
    assert rig.camera.status(t)["ffc_desired"] is True
    rig.camera.command({"op": "ffc"})
    for _ in range(15):
        _, t = rig.frame()
    assert rig.camera.status(t)["ffc_desired"] is False and rig.camera.status(t)["since_ffc_s"] < 1
