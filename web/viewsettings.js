// This viewer's own view settings (thermal mode): the server's defaults (its [encoder] settings, in
// server.conf's text form, from "hello" and "settings" messages) with this browser's own choices on
// top. Only the choices are stored (localStorage), so a viewer that never chose a palette follows the
// server's default palette, also when the owner changes it; "Reset to defaults" forgets the choices.

const KEY = "flir-stream.view";

// The [encoder] keys that are view settings (size, quality, interpolation stay the server's: they
// shape its JPEG, not this viewer's picture), with server.conf's defaults for a server that has not
// said its settings yet.
export const FALLBACK = {
  palette: "ironbow", agc: "linear", clip_percent: "1, 99", smoothing: "0.8", range_c: "20, 40",
  rotate: "0", flip: "none", isotherm: "off", isotherm_colour: "00ff00",
};
export const VIEW_KEYS = Object.keys(FALLBACK);

function load() {
  try {
    const own = JSON.parse(localStorage.getItem(KEY) || "{}");
    if (!own || typeof own !== "object" || Array.isArray(own)) return {};
    const out = {};
    for (const k of VIEW_KEYS) if (typeof own[k] === "string") out[k] = own[k];
    return out;
  } catch (e) {
    return {}; // unreadable or disabled storage: no choices
  }
}

// "20, 40" or [20, 40] -> [20, 40], or null.
export function pair(value) {
  const parts = Array.isArray(value) ? value : String(value || "").split(/[,\s]+/).filter(Boolean);
  const nums = parts.map(Number);
  return nums.length === 2 && nums.every(Number.isFinite) ? nums : null;
}

// server.conf's isotherm text -> {mode, lo, hi} or null ("off", "above 40", "between 30 40").
export function parseIsotherm(text) {
  const parts = String(text || "").trim().toLowerCase().split(/[,\s]+/).filter(Boolean);
  const nums = parts.slice(1).map(Number);
  if (!nums.every(Number.isFinite)) return null;
  if ((parts[0] === "above" || parts[0] === "below") && nums.length === 1) {
    return { mode: parts[0], lo: nums[0], hi: null };
  }
  if (parts[0] === "between" && nums.length === 2 && nums[0] < nums[1]) {
    return { mode: "between", lo: nums[0], hi: nums[1] };
  }
  return null;
}

// "00ff00" (or "#00ff00") -> [0, 255, 0]; anything else -> green.
export function parseColour(text) {
  const m = /^#?([0-9a-f]{6})$/i.exec(String(text || "").trim());
  const v = m ? parseInt(m[1], 16) : 0x00ff00;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

export class ViewSettings {
  constructor() {
    this.defaults = { ...FALLBACK };
    this.own = load();
  }

  // The server's settings (all of [encoder], text form); keeps the view keys.
  setDefaults(settings) {
    if (!settings || typeof settings !== "object") return;
    for (const k of VIEW_KEYS) if (typeof settings[k] === "string") this.defaults[k] = settings[k];
  }

  change(change) {
    for (const [k, v] of Object.entries(change)) if (VIEW_KEYS.includes(k)) this.own[k] = String(v);
    this.save();
  }

  reset() {
    this.own = {};
    this.save();
  }

  save() {
    try {
      if (Object.keys(this.own).length) localStorage.setItem(KEY, JSON.stringify(this.own));
      else localStorage.removeItem(KEY);
    } catch (e) {
      /* not remembered, still used */
    }
  }

  hasOwn() {
    return Object.keys(this.own).length > 0;
  }

  // What this viewer shows, in server.conf's text form (also what "make default" sends).
  effective() {
    return { ...this.defaults, ...this.own };
  }

  // The same as web/thermal.js ThermalView takes it.
  forRenderer() {
    const s = this.effective();
    const iso = parseIsotherm(s.isotherm);
    return {
      palette: s.palette, agc: s.agc,
      clip_percent: pair(s.clip_percent) || [1, 99],
      smoothing: Number.isFinite(Number(s.smoothing)) ? Number(s.smoothing) : 0.8,
      range_c: pair(s.range_c) || [20, 40],
      rotate: parseInt(s.rotate, 10) || 0,
      flip: s.flip || "none",
      isotherm: iso ? { ...iso, colour: parseColour(s.isotherm_colour) } : null,
    };
  }
}
