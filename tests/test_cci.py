"""capture.cci: the real CCI client against the simulated device (capture.cci_sim) through the
i2c_rdwr seam, with smbus2's i2c_msg and with the stand-in messages used without smbus2."""
from __future__ import annotations

import errno
import sys

import pytest

from capture import cci
from capture.cci import CCIError, CCITimeout, CCIUnavailable, FluxParameters, Lepton, LeptonCCI
from capture.cci_sim import BOOT_S, ManualClock, SimulatedCCI

# smbus2 is a test extra; without it the stand-in messages (what the project uses then) still
# run every test below.
MESSAGES = {"stand-in": cci.StandInMsg}
try:
    from smbus2 import i2c_msg
    MESSAGES["smbus2"] = i2c_msg
except ImportError:
    pass


@pytest.fixture(params=sorted(MESSAGES))
def rig(request):
    clock = ManualClock()
    dev = SimulatedCCI(clock=clock)
    client = LeptonCCI(dev, clock=clock, sleep=clock.sleep, i2c_msg=MESSAGES[request.param])
    yield clock, dev, client, Lepton(client)
    assert dev.violations == 0, "the client wrote a command while the camera was busy"


class Recorder:
    """A bus that logs each message (write bytes, or read length and the bytes read)."""

    def __init__(self, bus):
        self.bus = bus
        self.log: list[tuple[str, bytes]] = []

    def i2c_rdwr(self, *msgs):
        writes = [("w", bytes(m)) for m in msgs if not m.flags & cci.I2C_M_RD]
        self.bus.i2c_rdwr(*msgs)
        for m in msgs:
            self.log.append(("r", bytes(m)) if m.flags & cci.I2C_M_RD else writes.pop(0))


# ---------------------------------------------------------------- the protocol on the bus

def test_a_get_is_exactly_the_sdk_sequence():
    clock = ManualClock()
    dev = SimulatedCCI(clock=clock, command_s=0.0)
    bus = Recorder(dev)
    value = LeptonCCI(bus, clock=clock, sleep=clock.sleep).get(cci.SYS_FPA_TEMP, 1)
    assert value == [30000]
    assert bus.log == [
        ("w", b"\x00\x02"), ("r", b"\x00\x06"),              # STATUS: booted, not busy
        ("w", b"\x00\x06\x00\x01"),                          # DATA_LENGTH = 1 word
        ("w", b"\x00\x04\x02\x14"),                          # COMMAND = 0x0214 | GET
        ("w", b"\x00\x02"), ("r", b"\x00\x06"),              # not busy, result 0
        ("w", b"\x00\x08"), ("r", (30000).to_bytes(2, "big")),  # DATA0, big-endian
    ]


def test_set_writes_data_then_length_then_command_with_the_protection_bit():
    clock = ManualClock()
    dev = SimulatedCCI(clock=clock, command_s=0.0)
    bus = Recorder(dev)
    LeptonCCI(bus, clock=clock, sleep=clock.sleep).set(cci.RAD_TLINEAR_ENABLE, [0, 0])
    writes = [data for kind, data in bus.log if kind == "w" and len(data) > 2]
    assert writes == [b"\x00\x08\x00\x00\x00\x00", b"\x00\x06\x00\x02", b"\x00\x04\x4e\xc1"]
    assert dev.state.tlinear is False


def test_run_sends_the_run_type_and_no_data():
    clock = ManualClock()
    dev = SimulatedCCI(clock=clock)
    bus = Recorder(dev)
    LeptonCCI(bus, clock=clock, sleep=clock.sleep).run(cci.SYS_RUN_FFC)
    writes = [data for kind, data in bus.log if kind == "w" and len(data) > 2]
    assert writes == [b"\x00\x06\x00\x00", b"\x00\x04\x02\x42"]
    assert dev.commands[-1] == (0x0242, 0)


def test_strings_lie_in_the_words_as_the_sdk_reads_them():
    # The SDK turns each big-endian register into a host (little-endian) word and reads the
    # LEP_CHAR8 array from those: so on the bus each word carries its two characters swapped.
    clock = ManualClock()
    bus = Recorder(SimulatedCCI(clock=clock))
    assert Lepton(LeptonCCI(bus, clock=clock, sleep=clock.sleep)).part_number() == "500-0771-01"
    kind, data = bus.log[-1]
    assert kind == "r" and data.startswith(b"05-070170-\x001") and len(data) == 32


def test_the_client_waits_while_busy(rig):
    clock, dev, client, _ = rig
    dev.command_s = 0.05
    for _ in range(3):
        client.get(cci.SYS_UPTIME, 2)
    # Each command waited ~50 ms of camera time for the busy bit (the fixture checks that no
    # command was written while busy).
    assert len(dev.commands) == 3


def test_busy_timeout_names_the_command(rig):
    clock, dev, client, lepton = rig
    dev.stall(10.0)
    start = clock()
    with pytest.raises(CCITimeout, match=r"after GET 0x0214 \(SYS FPA temperature\)"):
        lepton.fpa_temp_k()
    assert 1.0 <= clock() - start < 1.1  # the client's timeout, in camera time
    clock.advance(10.0)
    assert lepton.fpa_temp_k() == pytest.approx(300.0, abs=0.6)  # works again once not busy


def test_busy_before_the_command_times_out_too(rig):
    clock, dev, client, lepton = rig
    dev.stall(10.0)
    with pytest.raises(CCITimeout, match="after RUN 0x0200"):
        lepton.ping()  # the ping ran; the camera then stays busy
    with pytest.raises(CCITimeout, match="before GET"):
        lepton.uptime_ms()


def test_real_clock_and_sleep_by_default():
    dev = SimulatedCCI()  # time.monotonic
    assert Lepton(LeptonCCI(dev)).part_number() == "500-0771-01"
    assert dev.violations == 0


# ---------------------------------------------------------------- error codes

def test_undefined_command_raises_with_the_sdk_name(rig):
    _, _, client, _ = rig
    with pytest.raises(CCIError) as err:
        client.get(0x0FF0, 2)
    assert err.value.code == -7
    assert "GET 0x0FF0" in str(err.value) and "LEP_UNDEFINED_FUNCTION_ERROR" in str(err.value)


def test_oem_and_rad_need_the_protection_bit(rig):
    _, _, client, _ = rig
    with pytest.raises(CCIError, match="-7 LEP_UNDEFINED_FUNCTION_ERROR"):
        client.get(0x081C, 16)  # OEM part number without 0x4000
    with pytest.raises(CCIError, match="-7"):
        client.get(0x0EC0, 2)   # RAD TLinear enable without 0x4000
    assert client.get(cci.OEM_PART_NUMBER, 16)


def test_out_of_range_value_is_a_range_error(rig):
    _, dev, client, _ = rig
    with pytest.raises(CCIError) as err:
        client.set(cci.SYS_GAIN_MODE, [7, 0])
    assert err.value.code == -3
    assert "SET 0x0248 (SYS gain mode)" in str(err.value)
    assert "LEP_RANGE_ERROR" in str(err.value)
    assert dev.state.gain_mode == 0
    with pytest.raises(CCIError, match="LEP_RANGE_ERROR"):  # emissivity 0.001 (< 82 / 8192)
        client.set(cci.RAD_FLUX_LINEAR_PARAMS, [8, 30000, 8192, 30000, 8192, 30000, 0, 30000])


def test_wrong_length_and_wrong_type(rig):
    _, _, client, _ = rig
    with pytest.raises(CCIError, match="-6 LEP_DATA_SIZE_ERROR"):
        client.get(cci.SYS_FPA_TEMP, 2)
    with pytest.raises(CCIError, match="SET 0x0214.*-7"):
        client.set(cci.SYS_FPA_TEMP, [1])  # read-only
    with pytest.raises(CCIError, match="RUN 0x0248.*-7"):
        client.run(cci.SYS_GAIN_MODE)
    assert client.get(cci.SYS_FPA_TEMP, 1)  # the camera still answers


def test_error_name_of_an_unknown_code():
    assert "unknown LEP_RESULT" in cci.error_name(-50)
    assert cci.error_name(-2) == "-2 LEP_NOT_READY (camera not ready)"


def test_arguments_are_checked_before_the_bus(rig):
    _, dev, client, lepton = rig
    before = len(dev.commands)
    with pytest.raises(ValueError, match="type bits"):
        client.get(0x0215, 1)
    with pytest.raises(ValueError, match="0..65535"):
        client.set(cci.SYS_GAIN_MODE, [70000, 0])
    with pytest.raises(ValueError, match="at most 512"):
        client.get(cci.VID_LUT_TRANSFER, 513)
    with pytest.raises(ValueError, match="gain mode 'medium'"):
        lepton.set_gain_mode("medium")
    with pytest.raises(ValueError, match="emissivity 0"):
        lepton.set_flux_parameters(FluxParameters(emissivity=0.0))
    with pytest.raises(ValueError, match="window reflection"):
        lepton.set_flux_parameters(FluxParameters(window_transmission=0.9, window_reflection=0.2))
    with pytest.raises(ValueError, match="655.35"):
        lepton.set_flux_parameters(FluxParameters(background_k=700.0))
    assert len(dev.commands) == before
    client.run(0x0242)  # RUN with its own type bits is fine


def test_no_device_at_the_address():
    clock = ManualClock()
    client = LeptonCCI(SimulatedCCI(clock=clock), address=0x2B, clock=clock, sleep=clock.sleep)
    with pytest.raises(OSError) as err:
        client.status()
    assert err.value.errno == errno.EREMOTEIO


# ---------------------------------------------------------------- block buffer

def test_more_than_16_words_go_through_the_block_buffer(rig):
    _, dev, client, _ = rig
    lut = [(i * 37) & 0xFFFF for i in range(512)]
    data_regs = dev.peek(cci.REG_DATA0, 16)
    client.set(cci.VID_LUT_TRANSFER, lut)
    assert dev.state.lut == lut
    assert dev.peek(cci.BLOCK_BUFFER0, 512) == lut
    assert dev.peek(cci.REG_DATA0, 16) == data_regs  # DATA0..15 untouched
    dev.state.lut = lut[::-1]
    assert client.get(cci.VID_LUT_TRANSFER, 512) == lut[::-1]


# ---------------------------------------------------------------- named operations

def test_identity(rig):
    clock, dev, _, lepton = rig
    assert lepton.part_number() == "500-0771-01"
    assert lepton.model() == cci.Model("Lepton 3.5", "lepton3", True)
    assert lepton.serial() == 0x0123_4567_89AB_CDEF
    assert lepton.software_version() == "gpp 3.3.26 dsp 3.3.26"
    clock.advance(12.5)
    assert 12500 <= lepton.uptime_ms() < 12600
    assert lepton.fpa_temp_k() == pytest.approx(dev.fpa_temp_k(), abs=0.01)
    assert lepton.aux_temp_k() == pytest.approx(dev.housing_temp_k(), abs=0.01)
    lepton.ping()


@pytest.mark.parametrize("part, model", [
    ("500-0763-01", cci.Model("Lepton 2.5", "lepton2", True)),
    ("500-0726-01", cci.Model("Lepton 3.0", "lepton3", False)),
    ("500-0758-01", cci.Model("Lepton 3.1R", "lepton3", True)),
    ("500-0659-01", cci.Model("Lepton 2.0", "lepton2", False)),
    ("500-9999-01", None),
])
def test_part_number_to_model(part, model):
    clock = ManualClock()
    lepton = Lepton(LeptonCCI(SimulatedCCI(part_number=part, clock=clock), clock=clock,
                              sleep=clock.sleep))
    assert lepton.part_number() == part
    assert lepton.model() == model


def test_a_non_radiometric_part_has_no_rad_module():
    clock = ManualClock()
    lepton = Lepton(LeptonCCI(SimulatedCCI(part_number="500-0726-01", clock=clock),
                              clock=clock, sleep=clock.sleep))
    with pytest.raises(CCIError, match="GET 0x4EC0 \\(RAD TLinear enable\\).*-7"):
        lepton.tlinear_enabled()


def test_settings_round_trip(rig):
    _, dev, _, lepton = rig
    lepton.set_telemetry(True)
    lepton.set_telemetry_location("footer")
    assert lepton.telemetry_enabled() and lepton.telemetry_location() == "footer"
    assert dev.telemetry_mode == "footer"
    lepton.set_telemetry(False)
    assert not lepton.telemetry_enabled() and dev.telemetry_mode == "off"

    lepton.set_radiometry(False)
    assert not lepton.radiometry_enabled()
    lepton.set_radiometry(True)
    assert lepton.radiometry_enabled()

    lepton.set_tlinear(False)
    assert not lepton.tlinear_enabled()
    lepton.set_tlinear(True)
    lepton.set_tlinear_resolution(0.1)
    assert lepton.tlinear_enabled() and lepton.tlinear_resolution() == 0.1
    lepton.set_tlinear_resolution(0.01)
    assert lepton.tlinear_resolution() == 0.01

    for mode in ("low", "auto", "high"):
        lepton.set_gain_mode(mode)
        assert lepton.gain_mode() == mode

    lepton.set_agc(True)
    assert lepton.agc_enabled() and dev.state.agc
    lepton.set_agc(False)
    assert not lepton.agc_enabled()

    params = FluxParameters(emissivity=0.95, background_k=293.15, window_transmission=0.9,
                            window_k=294.0, atmosphere_transmission=0.99, atmosphere_k=291.0,
                            window_reflection=0.05, reflected_k=292.5)
    lepton.set_flux_parameters(params)
    back = lepton.flux_parameters()
    assert back.emissivity == pytest.approx(0.95, abs=1 / 8192)
    assert back.window_reflection == pytest.approx(0.05, abs=1 / 8192)
    assert (back.background_k, back.window_k, back.atmosphere_k, back.reflected_k) == (
        293.15, 294.0, 291.0, 292.5)
    assert dev.state.flux == [7782, 29315, 7373, 29400, 8110, 29100, 410, 29250]
    lepton.set_emissivity(0.5, background_k=300.0)
    back = lepton.flux_parameters()
    assert back.emissivity == 0.5 and back.background_k == 300.0
    assert back.window_transmission == pytest.approx(0.9, abs=1 / 8192)  # the rest kept


def test_ffc_mode_and_run(rig):
    clock, dev, _, lepton = rig
    assert lepton.ffc_mode() == "auto"
    mode = lepton.ffc_shutter_mode()
    assert mode["desired_ffc_period_ms"] == 300000 and mode["video_freeze_during_ffc"]
    assert mode["imminent_delay_frames"] == 52
    lepton.set_ffc_mode("manual")
    assert lepton.ffc_mode() == "manual" and dev.state.ffc_mode == 0
    assert lepton.ffc_shutter_mode()["desired_ffc_period_ms"] == 300000  # the rest kept
    assert lepton.ffc_status() == "ready"
    lepton.run_ffc()
    assert lepton.ffc_status() == "busy"
    clock.advance(0.5)
    assert lepton.ffc_status() == "ready"
    assert dev.ffc_state == "complete" and dev.ffc_time_ms > 0


def test_manual_ffc_mode_asks_for_ffc_after_the_period(rig):
    clock, dev, _, lepton = rig
    lepton.set_ffc_mode("manual")
    assert not lepton.ffc_shutter_mode()["ffc_desired"]
    clock.advance(301.0)
    assert lepton.ffc_shutter_mode()["ffc_desired"]
    lepton.run_ffc()
    clock.advance(0.5)
    assert not lepton.ffc_shutter_mode()["ffc_desired"]


def test_reboot_waits_for_the_boot_and_forgets_the_settings(rig):
    clock, dev, _, lepton = rig
    lepton.set_gain_mode("low")
    lepton.set_agc(True)
    clock.advance(100.0)
    start = clock()
    lepton.reboot()
    assert clock() - start >= BOOT_S  # run() waited until the camera had booted
    assert lepton.gain_mode() == "high" and not lepton.agc_enabled()
    assert lepton.uptime_ms() < 1000


def test_reboot_waits_out_a_camera_that_does_not_answer_while_booting(rig):
    clock, dev, _, lepton = rig
    dev.nack_while_booting = True
    start = clock()
    lepton.reboot()
    assert clock() - start >= BOOT_S
    assert lepton.part_number() == "500-0771-01"


def test_reboot_gives_up_when_the_camera_never_comes_back(rig):
    clock, dev, _, lepton = rig
    dev.boot_s = 60.0
    with pytest.raises(CCITimeout, match="camera not back 5 s after RUN 0x4840"):
        lepton.reboot()
    clock.advance(60.0)  # (the fixture's check needs the camera idle again)


def test_open_bus_says_why_i2c_is_unavailable(monkeypatch):
    with pytest.raises(CCIUnavailable, match="no /dev/i2c-250"):
        cci.open_bus(250)
    monkeypatch.setitem(sys.modules, "smbus2", None)  # as if smbus2 were not installed
    with pytest.raises(CCIUnavailable, match="needs smbus2"):
        cci.open_bus(1)
    assert cci.message_type() is cci.StandInMsg
    clock = ManualClock()
    assert Lepton(LeptonCCI(SimulatedCCI(clock=clock), clock=clock,
                            sleep=clock.sleep)).part_number() == "500-0771-01"
