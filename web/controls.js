// The control panel: palette, AGC, clip percentiles, fixed range, isotherm, rotate, mirror, °C/°F,
// "Reset to defaults", "Make default for everyone" and the control token.
// It only asks for changes (change(settings), in server.conf's text form): in thermal mode the viewer
// applies them to its own view (viewsettings.js); in JPEG mode they go to the server. What the
// picture really uses comes back through apply(), so the inputs always show the truth.

import { displayUnit, setDisplayUnit, cToDisplay, displayToC } from "./units.js";
import { parseIsotherm } from "./viewsettings.js";

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
  // change(settings) asks for a change; makeDefault() and reset() are the two view buttons;
  // onUnit() redraws after a °C/°F change; say(text) shows a message.
  constructor({ change, makeDefault, reset, onUnit, say }) {
    this.change = change;
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
    this.clipLo = $("clip-lo");
    this.clipHi = $("clip-hi");
    this.isoMode = $("iso-mode");
    this.isoLo = $("iso-lo");
    this.isoHi = $("iso-hi");
    this.isoColour = $("iso-colour");
    this.isotherm = null; // {mode, lo, hi} in °C as in use
    $("clip-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.applyClip();
    });
    $("isotherm-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.applyIsotherm();
    });
    this.isoMode.addEventListener("change", () => {
      this.isoHi.hidden = this.isoMode.value !== "between";
      if (this.isoMode.value === "off") this.applyIsotherm();
    });
    $("view-reset").addEventListener("click", () => reset());
    $("make-default").addEventListener("click", () => makeDefault());

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
        this.showIsotherm(this.isotherm);
        this.onUnit();
      });
    }
    this.updateUnitLabels();
    this.enable(false);
  }

  enable(on) {
    for (const el of document.querySelectorAll("#controls select, #controls button.send, #range-form input, #range-form button, #clip-form input, #clip-form button, #isotherm-form input, #isotherm-form button")) {
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
    const clip = pair(settings.clip_percent);
    if (clip && !this.typing(this.clipLo, this.clipHi)) {
      this.clipLo.value = String(clip[0]);
      this.clipHi.value = String(clip[1]);
    }
    if (typeof settings.isotherm === "string") {
      this.isotherm = parseIsotherm(settings.isotherm);
      if (!this.typing(this.isoLo, this.isoHi)) this.showIsotherm(this.isotherm);
    }
    if (typeof settings.isotherm_colour === "string" && /^#?[0-9a-f]{6}$/i.test(settings.isotherm_colour)) {
      this.isoColour.value = "#" + settings.isotherm_colour.replace("#", "").toLowerCase();
    }
  }

  typing(...inputs) {
    return inputs.includes(document.activeElement);
  }

  showIsotherm(iso) {
    this.isoMode.value = iso ? iso.mode : "off";
    this.isoLo.value = iso ? round(cToDisplay(iso.lo)) : "";
    this.isoHi.value = iso && iso.hi !== null ? round(cToDisplay(iso.hi)) : "";
    this.isoHi.hidden = this.isoMode.value !== "between";
  }

  applyClip() {
    const lo = parseFloat(this.clipLo.value);
    const hi = parseFloat(this.clipHi.value);
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo >= 0 && hi <= 100 && lo < hi)) {
      this.say("Enter two percentiles from 0 to 100, low below high.");
      return;
    }
    // Clipping is the linear AGC's: choosing it means "use it".
    this.set({ agc: "linear", clip_percent: `${lo}, ${hi}` });
  }

  applyIsotherm() {
    const mode = this.isoMode.value;
    const colour = this.isoColour.value.replace("#", "").toLowerCase();
    if (mode === "off") {
      this.set({ isotherm: "off" });
      return;
    }
    const lo = parseFloat(this.isoLo.value);
    const hi = parseFloat(this.isoHi.value);
    const c = (v) => String(Number(displayToC(v).toFixed(2)));
    if (!Number.isFinite(lo) || (mode === "between" && !(Number.isFinite(hi) && hi > lo))) {
      this.say(mode === "between" ? "Enter a low and a high temperature, low below high."
        : "Enter a temperature.");
      return;
    }
    const text = mode === "between" ? `between ${c(lo)} ${c(hi)}` : `${mode} ${c(lo)}`;
    this.set({ isotherm: text, isotherm_colour: colour });
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
    this.change(change);
  }

  tokenValue() {
    return this.token.value.trim();
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
