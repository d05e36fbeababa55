"""The camera as capture sees it: identity, settings, what its pixels mean, and control over CCI.

Camera wraps a capture.cci.Lepton (None when camera control is unavailable here: then `why` says
why, and every command answers that). Pure code apart from the CCI calls, which run only on the
control thread (capture.control) or in the reader's recovery ladder (reboot), never on the frame
path: the frame loop only asks meaning() and observe(), which read values cached here.

What the pixels of a frame mean comes from the camera: its telemetry rows (capture.telemetry
parse + pixel_meaning) when the stream carries them, else the AGC / TLinear state read over CCI;
[capture] tlinear / tlinear_resolution other than auto override it (and are applied to the camera
when it can be controlled). With neither telemetry nor CCI the frame is assumed to be TLinear
kelvin x 100, a Lepton 3.5's power-on state, and the camera dict says "assumed".

Settings changed at run time (gain mode, FFC mode, emissivity, background temperature) are kept in
the stage's state file and applied again at start, after a reboot and after the camera restarted
on its own (its uptime went backwards): a Lepton forgets everything at power-on.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Optional

from flirstream import wire
from flirstream.state import StateFile

from . import cci
from . import telemetry as tm

log = logging.getLogger("capture.camera")

KELVIN_MEANINGS = (tm.KELVIN_X100, tm.KELVIN_X10)
POLL_EVERY_S = 1.0  # how often the control thread reads the camera's state when telemetry is off
SETTINGS = ("gain_mode", "ffc_mode", "emissivity", "background_k")


class CommandRefused(Exception):
    """A camera command that cannot be done; `reason` is "unavailable", "bad_request" or "camera"."""

    def __init__(self, text: str, reason: str = "camera"):
        super().__init__(text)
        self.reason = reason


def resolve_i2c(setting: str, exists: Callable[[str], bool] = os.path.exists) -> Optional[str]:
    """[capture] i2c -> the device to open, or None: auto is /dev/i2c-1 if it exists."""
    if setting == "off":
        return None
    if setting == "auto":
        return "/dev/i2c-1" if exists("/dev/i2c-1") else None
    return setting


def open_lepton(setting: str) -> tuple[Optional[cci.Lepton], str]:
    """(Lepton on the I2C device, "") or (None, why not) for a real camera."""
    device = resolve_i2c(setting)
    if device is None:
        return None, ("camera control is off ([capture] i2c = off)" if setting == "off" else
                      "camera control unavailable: no /dev/i2c-1 (enable I2C with "
                      "dtparam=i2c_arm=on and wire SDA/SCL, or set [capture] i2c)")
    try:
        bus = cci.open_bus(int(device.rsplit("-", 1)[1]))
    except cci.CCIUnavailable as exc:
        return None, f"camera control unavailable: {exc}"
    return cci.Lepton(cci.LeptonCCI(bus)), ""


def telemetry_mode(setting: str, controllable: bool, simulated: bool) -> str:
    """[capture] telemetry -> the layout to read: auto is footer where capture can switch it on
    (the simulator, a camera with CCI), else off (a Lepton's power-on state)."""
    if setting != "auto":
        return setting
    return "footer" if controllable or simulated else "off"


class Camera:
    def __init__(self, lepton: Optional[cci.Lepton], why: str, capture: Any,
                 state: Optional[StateFile] = None, telemetry: str = "off",
                 clock: Callable[[], float] = time.monotonic):
        self.lepton = lepton
        self.why = why if lepton is None else ""
        self.capture = capture  # the [capture] section
        self.state = state
        self.telemetry = telemetry  # the layout the stream is read with
        self.clock = clock
        self.lock = threading.RLock()  # the control thread and the reader's recovery ladder
        self.settings: dict = {}
        if state is not None:
            loaded = state.load().get("camera", {})
            self.settings = {k: loaded[k] for k in SETTINGS if isinstance(loaded, dict)
                             and k in loaded}
        self.identity: dict = {"model": None, "part_number": None, "serial": None,
                               "firmware": None, "sensor": None, "radiometric": None}
        self.model: Optional[cci.Model] = None
        # The camera's state as last read over CCI (telemetry off) or from telemetry.
        self.read: dict = {}
        self.last_telemetry: Optional[tm.Telemetry] = None
        self.reapply_needed = False  # set by observe() when the camera restarted by itself
        self._uptime_ms: Optional[int] = None
        self._lost = False  # the camera stopped answering over CCI (unplugged, unpowered)
        self._warned: set[str] = set()

    @property
    def available(self) -> bool:
        return self.lepton is not None

    # ------------------------------------------------------------ start, re-apply (CCI)

    def start(self) -> None:
        """Identify the camera, set it up as server.conf asks, re-apply the saved settings."""
        if not self.available:
            log.warning("%s: frames are read as the camera sends them", self.why)
            return
        with self.lock:
            try:
                self._identify()
                self.setup()
            except (cci.CCIError, cci.CCITimeout, OSError) as exc:
                # Set up once it answers (poll() notices): a camera powered after capture started.
                log.warning("camera control: %s; trying again every %g s", _why(exc),
                            POLL_EVERY_S)
                self._lost = True

    def _identify(self) -> None:
        lep = self.lepton
        part = lep.part_number()
        self.model = cci.model_for(part)
        serial = lep.serial()
        self.identity = {"model": self.model.name if self.model else f"unknown ({part})",
                         "part_number": part, "serial": f"{serial:016X}",
                         "firmware": lep.software_version(),
                         "sensor": self.model.sensor if self.model else None,
                         "radiometric": self.model.radiometric if self.model else None}
        log.info("camera: %s, part %s, serial %s, %s", self.identity["model"], part,
                 self.identity["serial"], self.identity["firmware"])
        if self.model and self.model.sensor != self.capture.sensor:
            log.warning("camera is a %s (%s) but [capture] sensor = %s: reading it as %s",
                        self.model.name, self.model.sensor, self.capture.sensor, self.model.sensor)

    @property
    def sensor(self) -> str:
        """The sensor layout to read: the model's when known, else [capture] sensor."""
        return self.model.sensor if self.model else self.capture.sensor

    def setup(self) -> None:
        """server.conf's telemetry / TLinear choices and the saved settings, on the camera."""
        lep = self.lepton
        with self.lock:
            if self.telemetry == "off":
                lep.set_telemetry(False)
            else:
                lep.set_telemetry_location(self.telemetry)
                lep.set_telemetry(True)  # power-on default is off: set after every reboot
            radiometric = self.model is None or self.model.radiometric
            if radiometric and self.capture.tlinear is not None:
                lep.set_tlinear(self.capture.tlinear)
            if radiometric and self.capture.tlinear_resolution != "auto":
                lep.set_tlinear_resolution(float(self.capture.tlinear_resolution))
            for key, value in self.settings.items():
                try:
                    self._apply(key, value)
                except (ValueError, cci.CCIError) as exc:
                    log.warning("saved camera setting %s = %r not applied: %s", key, value, exc)
            self._uptime_ms = None
            self.poll()

    def _apply(self, key: str, value: Any) -> None:
        lep = self.lepton
        if key == "gain_mode":
            lep.set_gain_mode(value)
        elif key == "ffc_mode":
            lep.set_ffc_mode(value)
        elif key in ("emissivity", "background_k") and self.radiometric:
            params = lep.flux_parameters()
            setattr(params, key, float(value))
            lep.set_flux_parameters(params)

    @property
    def radiometric(self) -> bool:
        return self.model is None or self.model.radiometric

    def poll(self) -> None:
        """Read the camera's state over CCI (what telemetry would say when it is off)."""
        if not self.available:
            return
        lep = self.lepton
        with self.lock:
            try:
                mode = lep.ffc_shutter_mode()
                read = {"agc": lep.agc_enabled(), "gain_mode": lep.gain_mode(),
                        "ffc_mode": mode["shutter_mode"], "ffc_desired": mode["ffc_desired"],
                        "since_ffc_s": mode["elapsed_since_last_ffc_ms"] / 1000.0,
                        "ffc_status": lep.ffc_status(), "fpa_temp_k": lep.fpa_temp_k(),
                        "uptime_ms": lep.uptime_ms()}
                if self.radiometric:
                    flux = lep.flux_parameters()
                    read.update(tlinear=lep.radiometry_enabled() and lep.tlinear_enabled(),
                                resolution=lep.tlinear_resolution(), emissivity=flux.emissivity,
                                background_k=flux.background_k)
                else:
                    read.update(tlinear=False, resolution=None)
            except (cci.CCIError, cci.CCITimeout, OSError) as exc:
                if not self._lost:
                    log.warning("camera control: reading its state failed: %s (trying again "
                                "every %g s)", _why(exc), POLL_EVERY_S)
                self._lost = True
                return
            if self._lost:  # it answers again: reconnected or powered up, so set it up again
                log.info("camera control: the camera answers again")
                self._lost = False
                self.reapply_needed = True
            self.read = read
            self._seen_uptime(read["uptime_ms"])

    def reapply_if_needed(self) -> bool:
        """After the camera restarted by itself: set it up again. True if it did."""
        if not (self.reapply_needed and self.available):
            return False
        self.reapply_needed = False
        log.info("camera restarted or reconnected: applying telemetry and saved settings again")
        try:
            if self.identity["part_number"] is None:
                self._identify()
            self.setup()
        except (cci.CCIError, cci.CCITimeout, OSError) as exc:
            log.warning("camera control: re-applying settings failed: %s", _why(exc))
        return True

    def reboot(self) -> bool:
        """Reboot the camera over CCI and set it up again (the "reboot" command). False when
        there is no camera control or the camera did not come back (logged)."""
        try:
            self.recovery_reboot()
        except CommandRefused as exc:
            log.warning("camera reboot failed: %s", exc)
            return False
        return True

    def recovery_reboot(self) -> None:
        """The reader's recovery ladder's `reboot` hook: reboot over CCI, set the camera up again
        (telemetry, saved settings: a reboot forgets them); CommandRefused saying why it failed."""
        if not self.available:
            raise CommandRefused(self.why, "unavailable")
        with self.lock:
            log.warning("rebooting the camera over CCI")
            try:
                self.lepton.reboot()
                self.setup()
            except (cci.CCIError, cci.CCITimeout, OSError) as exc:
                raise CommandRefused(_why(exc)) from None

    # ------------------------------------------------------------ commands (control thread)

    def command(self, request: dict) -> dict:
        """Run one checked request (wire.check_camera_request); returns the camera dict.
        Raises CommandRefused."""
        op = request["op"]
        if op == "camera":
            return self.status()
        if not self.available:
            raise CommandRefused(self.why, "unavailable")
        lep = self.lepton
        try:
            with self.lock:
                if op == "ffc":
                    lep.run_ffc()
                elif op == "reboot":
                    if not self.reboot():
                        raise CommandRefused("the camera did not come back after the reboot")
                elif op == "ffc_mode":
                    lep.set_ffc_mode(request["mode"])
                    self._save(ffc_mode=request["mode"])
                elif op == "gain":
                    lep.set_gain_mode(request["mode"])
                    self._save(gain_mode=request["mode"])
                elif op == "emissivity":
                    if not self.radiometric:
                        raise CommandRefused(f"a {self.identity['model']} is not radiometric: "
                                             f"it has no emissivity", "bad_request")
                    params = lep.flux_parameters()
                    params.emissivity = float(request["emissivity"])
                    change = {"emissivity": params.emissivity}
                    if "background_c" in request:
                        params.background_k = round(float(request["background_c"]) + wire.KELVIN_AT_0C, 2)
                        change["background_k"] = params.background_k
                    lep.set_flux_parameters(params)
                    self._save(**change)
                self.poll()
        except ValueError as exc:
            raise CommandRefused(str(exc), "bad_request") from None
        except (cci.CCIError, cci.CCITimeout, OSError) as exc:
            raise CommandRefused(f"the camera refused {op}: {_why(exc)}") from None
        log.info("camera %s done", op if op != "ffc_mode" and op != "gain" else
                 f"{op} {request['mode']}")
        return self.status()

    def _save(self, **change: Any) -> None:
        self.settings.update(change)
        if self.state is not None:
            data = self.state.load()
            data["camera"] = dict(self.settings)
            self.state.save(data)

    # ------------------------------------------------------------ per frame (frame loop)

    def observe(self, rows) -> Optional[tm.Telemetry]:
        """A frame's telemetry rows (or None) -> the parsed telemetry, noting a camera restart."""
        if rows is None:
            return None
        try:
            t = tm.parse(rows.reshape(-1))
        except ValueError:
            return None
        self.last_telemetry = t
        self._seen_uptime(t.uptime_ms)
        return t

    def _seen_uptime(self, uptime_ms: int) -> None:
        if self._uptime_ms is not None and uptime_ms + 2000 < self._uptime_ms:
            self.reapply_needed = True
        self._uptime_ms = uptime_ms

    def meaning(self, t: Optional[tm.Telemetry] = None) -> tuple[str, str]:
        """(what the pixels are, where that came from): telemetry, cci, config or assumed."""
        if t is not None:
            camera, source = tm.pixel_meaning(t), "telemetry"
        elif self.read.get("tlinear") is not None:
            camera, source = tm.pixel_meaning(agc_on=self.read["agc"],
                                              tlinear_enabled=self.read["tlinear"],
                                              tlinear_resolution=self.read["resolution"]), "cci"
        else:
            camera, source = None, "assumed"
        forced = self._forced(camera)
        if forced is not None and forced != camera:
            if camera is not None:
                self._warn_once(f"forced {forced} {camera}", f"the camera says its pixels are "
                                f"{camera} but server.conf forces {forced} ([capture] tlinear, "
                                f"tlinear_resolution)")
            return forced, "config"
        if camera is None:
            self._warn_once("assumed", "no telemetry and no camera control: the pixels are taken "
                            "as TLinear kelvin x 100 (a Lepton 3.5's power-on state)")
            return tm.KELVIN_X100, source
        return camera, source

    def _forced(self, camera: Optional[str]) -> Optional[str]:
        cap = self.capture
        if cap.tlinear is False:
            return tm.RAW_COUNTS if camera != tm.AGC_8BIT else camera
        if cap.tlinear is None and cap.tlinear_resolution == "auto":
            return None
        if cap.tlinear is None and camera not in KELVIN_MEANINGS and camera is not None:
            return None  # only the resolution is forced, and the pixels are not TLinear
        if cap.tlinear_resolution == "auto":
            return camera if camera in KELVIN_MEANINGS else tm.KELVIN_X100
        return tm.KELVIN_X100 if cap.tlinear_resolution == "0.01" else tm.KELVIN_X10

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", text)

    # ------------------------------------------------------------ the camera dict

    def status(self, t: Optional[tm.Telemetry] = None) -> dict:
        """What capture's status says about the camera (wire.py: the "camera" dict)."""
        t = t or self.last_telemetry
        meaning, source = self.meaning(t)
        r = self.read
        d = {"control": "available" if self.available else self.why, **self.identity,
             "meaning": meaning, "meaning_from": source,
             "kelvin_per_count": tm.KELVIN_PER_COUNT.get(meaning),
             "fpa_temp_c": None, "ffc_state": None, "ffc_desired": None, "since_ffc_s": None,
             "ffc_mode": r.get("ffc_mode"), "gain_mode": r.get("gain_mode"),
             "effective_gain": None, "emissivity": r.get("emissivity"),
             "background_c": _c(r.get("background_k")), "uptime_s": None}
        if t is not None:
            d.update(fpa_temp_c=round(t.fpa_temp_k - wire.KELVIN_AT_0C, 2), ffc_state=t.ffc_state,
                     ffc_desired=t.ffc_desired,
                     since_ffc_s=round(max(0, t.uptime_ms - t.time_at_ffc_ms) / 1000.0, 1),
                     gain_mode=t.gain_mode, effective_gain=t.effective_gain_mode,
                     emissivity=round(t.emissivity, 3), background_c=_c(t.background_k),
                     uptime_s=round(t.uptime_ms / 1000.0, 1))
        elif r:
            d.update(fpa_temp_c=_c(r.get("fpa_temp_k")), ffc_desired=r.get("ffc_desired"),
                     ffc_state="in progress" if r.get("ffc_status") == "busy" else "complete",
                     since_ffc_s=round(r["since_ffc_s"], 1),
                     uptime_s=round(r["uptime_ms"] / 1000.0, 1))
        if d["emissivity"] is not None:
            d["emissivity"] = round(d["emissivity"], 3)
        return d


def _c(kelvin: Optional[float]) -> Optional[float]:
    return None if kelvin is None else round(kelvin - wire.KELVIN_AT_0C, 2)


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, (cci.CCIError, cci.CCITimeout)):
        return f"I2C: {exc.strerror or exc}"
    return str(exc)


def frame_fields(meaning: str) -> tuple[bool, float]:
    """(tlinear, kelvin_per_count) of the wire for a meaning."""
    kpc = tm.KELVIN_PER_COUNT.get(meaning)
    return kpc is not None, kpc or 0.01


def reply_for(camera: Camera, message: dict) -> bytes:
    """One control request (already JSON-decoded) -> the reply bytes (wire.camera_reply)."""
    request_id = message.get("id") if isinstance(message, dict) else None
    try:
        request = wire.check_camera_request(message)
    except wire.WireError as exc:
        return wire.camera_reply(error=str(exc), reason="bad_request", request_id=request_id)
    try:
        return wire.camera_reply(camera.command(request), request_id=request_id)
    except CommandRefused as exc:
        return wire.camera_reply(error=str(exc), reason=exc.reason, request_id=request_id)
