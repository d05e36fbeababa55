// Temperatures for people: the frames carry degrees C (or plain counts on non-radiometric sensors);
// the viewer shows C or F as the user chose, and remembers the choice in this browser.

// TLinear pixels are kelvin / kelvin_per_count; the same constant as flirstream/wire.py's.
export const KELVIN_AT_0C = 273.15;

const KEY = "flir-stream.unit";

function stored() {
  try {
    return localStorage.getItem(KEY) === "F" ? "F" : "C";
  } catch (e) {
    return "C"; // storage can be disabled (private mode, file policies)
  }
}

let unit = stored();

export function displayUnit() {
  return unit;
}

export function setDisplayUnit(u) {
  unit = u === "F" ? "F" : "C";
  try {
    localStorage.setItem(KEY, unit);
  } catch (e) {
    /* not remembered, still used */
  }
}

export function cToDisplay(c) {
  return unit === "F" ? c * 9 / 5 + 32 : c;
}

export function displayToC(v) {
  return unit === "F" ? (v - 32) * 5 / 9 : v;
}

// `value` is in the frame's unit ("C" or "counts"); returns e.g. "36.6 °C", "98.0 °F", "8123".
export function formatValue(value, frameUnit) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (frameUnit !== "C") return String(Math.round(value));
  return cToDisplay(value).toFixed(1) + "\u202f°" + unit;
}
