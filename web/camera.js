// The Camera panel: what the camera is and says (model, serial, firmware, FPA temperature, time
// since the last FFC and whether it asks for one, gain mode, emissivity) and its commands (FFC,
// gain, emissivity). Commands go over the websocket as {"op": "camera", "request": {...}}; what the
// camera really does comes back in "camera" messages, about once a second.

import { formatValue } from "./units.js";

const $ = (id) => document.getElementById(id);

function text(v, fallback = "–") {
  return v === null || v === undefined || v === "" ? fallback : String(v);
}

export function since(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return Math.round(seconds) + " s ago";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

const MEANING = {
  kelvin_x100: "temperatures, 0.01 K",
  kelvin_x10: "temperatures, 0.1 K",
  raw_counts: "relative values (TLinear off)",
  agc_8bit: "relative values (camera AGC on)",
};

export class CameraPanel {
  // send(message) -> bool; say(text); token() -> the control token typed in (or "").
  constructor({ send, say, token }) {
    this.send = send;
    this.say = say;
    this.token = token;
    this.camera = null;
    this.frameTelemetryAt = -Infinity; // performance.now() of the newest frame with telemetry
    this.ffcStates = []; // FFC states seen, in order (changes only): for people hovering, and tests
    $("cam-ffc").addEventListener("click", () => this.command({ op: "ffc" }));
    $("cam-gain").addEventListener("change", () => this.command({ op: "gain", mode: $("cam-gain").value }));
    // A value typed but not yet sent is the user's: the camera's status (once a second) must not
    // overwrite it when the focus moves on to the next field, or the form would send the old one.
    for (const id of ["cam-emissivity", "cam-background"]) {
      $(id).addEventListener("input", () => { $(id).dataset.edited = "yes"; });
    }
    $("cam-emissivity-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      delete $("cam-emissivity").dataset.edited; // from now on it shows what the camera has
      delete $("cam-background").dataset.edited;
      const e = parseFloat($("cam-emissivity").value);
      if (!(e >= 0.01 && e <= 1)) {
        this.say("Emissivity is a number from 0.01 to 1.");
        return;
      }
      const request = { op: "emissivity", emissivity: e };
      const bg = parseFloat($("cam-background").value);
      if (Number.isFinite(bg)) request.background_c = bg;
      this.command(request);
    });
  }

  command(request) {
    const message = { op: "camera", request };
    const token = this.token();
    if (token) message.token = token;
    if (!this.send(message)) this.say("Not connected: the command was not sent.");
    else if (request.op === "ffc") $("cam-ffc-state").textContent = "FFC requested…";
  }

  // Every frame's telemetry says the FFC state at once (the status comes once a second, and an FFC
  // lasts a fraction of that).
  fromFrame(header) {
    const tel = header && header.telemetry && typeof header.telemetry === "object" ? header.telemetry : null;
    if (header && MEANING[header.meaning]) $("cam-meaning").textContent = MEANING[header.meaning];
    if (!tel || typeof tel.ffc_state !== "string") return;
    this.frameTelemetryAt = performance.now();
    let since = null;
    if (Number.isFinite(tel.uptime_ms) && Number.isFinite(tel.time_at_ffc_ms)) {
      since = Math.max(0, tel.uptime_ms - tel.time_at_ffc_ms) / 1000;
    }
    this.showFfc(tel.ffc_state, since, tel.ffc_desired === true);
  }

  showFfc(state, sinceS, desired) {
    const el = $("cam-ffc-state");
    if (this.ffcStates[this.ffcStates.length - 1] !== state) {
      this.ffcStates = [...this.ffcStates.slice(-19), state];
      el.dataset.seen = this.ffcStates.join(",");
    }
    el.textContent = state === "in progress" || state === "imminent"
      ? "FFC " + state : "last FFC " + since(sinceS);
    el.dataset.state = text(state, "");
    if (typeof sinceS === "number") el.dataset.since = String(sinceS);
    $("cam-ffc-wanted").hidden = desired !== true;
  }

  update(camera) {
    if (!camera || typeof camera !== "object") return;
    this.camera = camera;
    const available = camera.control === "available";
    $("cam-model").textContent = text(camera.model);
    $("cam-serial").textContent = text(camera.serial);
    $("cam-firmware").textContent = text(camera.firmware);
    $("cam-fpa").textContent = typeof camera.fpa_temp_c === "number" ? formatValue(camera.fpa_temp_c, "C") : "–";
    if (performance.now() - this.frameTelemetryAt > 2000) {
      this.showFfc(camera.ffc_state, camera.since_ffc_s, camera.ffc_desired);
    }
    $("cam-meaning").textContent = MEANING[camera.meaning] || text(camera.meaning);
    const gain = $("cam-gain");
    if (document.activeElement !== gain && typeof camera.gain_mode === "string") gain.value = camera.gain_mode;
    $("cam-gain-effective").textContent = camera.effective_gain && camera.gain_mode === "auto"
      ? "(now " + camera.effective_gain + ")" : "";
    const e = $("cam-emissivity");
    if (document.activeElement !== e && !e.dataset.edited && typeof camera.emissivity === "number") {
      e.value = String(camera.emissivity);
    }
    const bg = $("cam-background");
    if (document.activeElement !== bg && !bg.dataset.edited && typeof camera.background_c === "number") {
      bg.value = camera.background_c.toFixed(1);
    }
    $("cam-control").hidden = available;
    $("cam-control").textContent = available ? "" : text(camera.control, "camera control unavailable");
    for (const el of document.querySelectorAll("#camera-panel button, #camera-panel select, #camera-panel input")) {
      el.disabled = !available;
    }
    $("cam-emissivity-row").hidden = camera.radiometric === false;
  }
}
