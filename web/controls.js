// The control panel: palette, AGC, fixed range, rotate, mirror, °C/°F and the control token.
// It only sends requests; what the picture really uses comes back in "settings" messages (and frame
// headers), so several viewers changing things at once all end up showing the same state.

import { displayUnit, setDisplayUnit, cToDisplay, displayToC } from "./units.js";

const $ = (id) => document.getElementById(id);

function pair(value) {
  // range_c arrives as "20, 40" (server.conf text) or [20, 40] (parsed): accept both.
  const parts = Array.isArray(value) ? value : String(value || "").split(/[,\s]+/).filter(Boolean);
  const nums = parts.map(Number);
  return nums.length === 2 && nums.every(Number.isFinite) ? nums : null;
}

function round(v) {
  return String(Math.round(v * 10) / 10);
}

export class Controls {
  // send(settings) -> bool; onUnit() redraws after a °C/°F change; say(text) shows a message.
  constructor({ send, onUnit, say }) {
    this.send = send;
    this.onUnit = onUnit;
    this.say = say;
    this.settings = {};
    this.rangeC = null; // the fixed range in °C as the server has it
    this.lastFrame = null; // header of the newest frame
    this.palette = $("palette");
    this.agc = $("agc");
    this.flip = $("flip");
    this.lo = $("range-lo");
    this.hi = $("range-hi");
    this.tokenRow = $("token-row");
    this.token = $("token");
    const params = new URLSearchParams(location.search);
    this.token.value = params.get("control_token") || params.get("token") || "";

    this.palette.addEventListener("change", () => this.set({ palette: this.palette.value }));
    this.agc.addEventListener("change", () => this.set({ agc: this.agc.value }));
    this.flip.addEventListener("change", () => this.set({ flip: this.flip.value }));
    $("rotate").addEventListener("click", () => {
      const now = parseInt(this.settings.rotate, 10) || 0;
      this.set({ rotate: String((now + 90) % 360) });
    });
    this.tokenRow.addEventListener("submit", (ev) => ev.preventDefault());
    $("range-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.applyRange();
    });
    for (const radio of document.querySelectorAll('input[name="unit"]')) {
      radio.checked = radio.value === displayUnit();
      radio.addEventListener("change", () => {
        if (!radio.checked) return;
        const before = this.rangeInputsC();
        setDisplayUnit(radio.value);
        this.updateUnitLabels();
        if (before) this.showRange(before);
        this.onUnit();
      });
    }
    this.updateUnitLabels();
    this.enable(false);
  }

  enable(on) {
    for (const el of document.querySelectorAll("#controls select, #controls button.send, #range-form input, #range-form button")) {
      el.disabled = !on;
    }
  }

  hello(message) {
    fill(this.palette, message.palettes);
    fill(this.agc, message.agcs);
    this.tokenRow.hidden = message.control !== "token";
    this.enable(true);
    if (message.settings && typeof message.settings === "object") this.apply(message.settings);
  }

  // The server's current settings -> the inputs (never while the user is typing a range).
  apply(settings) {
    this.settings = { ...this.settings, ...settings };
    if (settings.palette) this.palette.value = settings.palette;
    if (settings.agc) this.agc.value = settings.agc;
    if (settings.flip) this.flip.value = settings.flip;
    const range = pair(settings.range_c);
    if (range) {
      this.rangeC = range;
      const typing = document.activeElement === this.lo || document.activeElement === this.hi;
      if (!typing) this.showRange(range);
    }
    const rotate = parseInt(this.settings.rotate, 10) || 0;
    $("rotate-value").textContent = rotate + "°";
  }

  // Without a settings message (settings null in hello), frames still say palette and AGC.
  fromFrame(header) {
    this.lastFrame = header;
    if (this.settings.palette === undefined && header.palette) this.palette.value = header.palette;
    if (this.settings.agc === undefined && header.agc) this.agc.value = header.agc;
  }

  // A change was refused: show what the picture really uses again, not what was asked for.
  revert() {
    const h = this.lastFrame || {};
    this.palette.value = this.settings.palette || h.palette || this.palette.value;
    this.agc.value = this.settings.agc || h.agc || this.agc.value;
    if (this.settings.flip) this.flip.value = this.settings.flip;
  }

  showRange([loC, hiC]) {
    this.lo.value = round(cToDisplay(loC));
    this.hi.value = round(cToDisplay(hiC));
  }

  rangeInputsC() {
    const lo = parseFloat(this.lo.value);
    const hi = parseFloat(this.hi.value);
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return null;
    return [displayToC(lo), displayToC(hi)];
  }

  applyRange() {
    const range = this.rangeInputsC();
    if (!range || !(range[0] < range[1])) {
      this.say("Enter a low and a high temperature, low below high.");
      return;
    }
    // Setting a range means "use it": switch to the fixed AGC in the same request.
    this.set({ agc: "fixed", range_c: range.map((v) => v.toFixed(2)).join(", ") });
  }

  updateUnitLabels() {
    for (const el of document.querySelectorAll(".unit-label")) el.textContent = "°" + displayUnit();
  }

  set(change) {
    const message = { op: "set", settings: change };
    const token = this.token.value.trim();
    if (token) message.token = token;
    if (!this.send(message)) this.say("Not connected: the change was not sent.");
  }
}

function fill(select, names) {
  if (!Array.isArray(names) || names.length === 0) return;
  const current = select.value;
  select.replaceChildren(...names.filter((n) => typeof n === "string").map((n) => {
    const o = document.createElement("option");
    o.value = n;
    o.textContent = n;
    return o;
  }));
  if (names.includes(current)) select.value = current;
}
