// The colour bar under the picture: the palette from the low to the high end of the current range.
// Exact colours come from palettes.js, the encoder's own tables copied by web/make_palettes.py. A
// palette that table does not know (a newer encoder) still gets a bar: it is sampled from the picture,
// pairing each radiometric pixel with the colour the encoder gave it (close, not exact: JPEG blurs).

import { formatValue } from "./units.js";
import { rawAt, rawToUnit } from "./frame.js";
import { PALETTES } from "./palettes.js";

const BINS = 64;

export class Colorbar {
  constructor(canvas, loLabel, midLabel, hiLabel) {
    this.canvas = canvas;
    this.loLabel = loLabel;
    this.midLabel = midLabel;
    this.hiLabel = hiLabel;
    this.exact = PALETTES; // name -> 256 colours as one "rrggbb..." string
    this.sampled = new Map(); // name|agc -> [[r,g,b] x BINS] learnt from frames
    this.drawn = null; // what the bar shows now, to redraw only on change
    this.scratch = null;
  }

  // True while the bar has no colours for this palette and needs raw pixels to learn them.
  needsRaw(header) {
    if (!header) return false;
    return !this.lut(header);
  }

  exactFor(name) {
    const table = Object.prototype.hasOwnProperty.call(this.exact, name) ? this.exact[name] : null;
    return typeof table === "string" && table.length === 256 * 6 ? table : null;
  }

  lut(header) {
    return this.exactFor(header.palette) || this.sampled.get(header.palette + "|" + header.agc) || null;
  }

  // Learn the palette from a decoded frame and its raw pixels (fallback only; about once a second).
  learn(bitmap, frame, now) {
    const h = frame.header;
    if (!frame.raw || this.exactFor(h.palette)) return;
    const key = h.palette + "|" + h.agc;
    const last = this.sampled.get(key);
    if (last && now - last.learntAt < 1000) return;
    const { rows, cols } = frame.raw;
    if (!this.scratch) this.scratch = document.createElement("canvas");
    const c = this.scratch;
    c.width = cols;
    c.height = rows;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0, cols, rows);
    const rgba = ctx.getImageData(0, 0, cols, rows).data;
    const n = rows * cols;
    const values = new Float64Array(n);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) values[y * cols + x] = rawToUnit(h, rawAt(frame.raw, x, y));
    }
    const position = this.positions(h, values);
    if (!position) return;
    const sum = new Float64Array(BINS * 4);
    for (let i = 0; i < n; i++) {
      const b = Math.min(BINS - 1, Math.max(0, Math.floor(position[i] * BINS)));
      sum[b * 4] += rgba[i * 4];
      sum[b * 4 + 1] += rgba[i * 4 + 1];
      sum[b * 4 + 2] += rgba[i * 4 + 2];
      sum[b * 4 + 3] += 1;
    }
    const colours = fillGaps(sum);
    if (!colours) return;
    colours.learntAt = now;
    this.sampled.set(key, colours);
    this.drawn = null;
  }

  // Where each pixel sits along the bar (0..1). Histogram AGC spreads values by rank, not by value.
  positions(h, values) {
    const n = values.length;
    const out = new Float64Array(n);
    if (h.agc === "histogram") {
      const order = Array.from(values.keys()).sort((a, b) => values[a] - values[b]);
      order.forEach((idx, rank) => { out[idx] = rank / n; });
      return out;
    }
    const lo = h.range && h.range[0];
    const hi = h.range && h.range[1];
    if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) return null;
    for (let i = 0; i < n; i++) out[i] = (values[i] - lo) / (hi - lo);
    return out;
  }

  draw(header) {
    if (!header) return;
    const range = Array.isArray(header.range) ? header.range : [null, null];
    this.loLabel.textContent = formatValue(range[0], header.unit);
    this.hiLabel.textContent = formatValue(range[1], header.unit);
    this.midLabel.textContent = header.agc === "histogram"
      ? "histogram" : formatValue((range[0] + range[1]) / 2, header.unit);
    const lut = this.lut(header);
    const key = header.palette + "|" + header.agc + "|" + (lut ? (lut.learntAt || "exact") : "none");
    const c = this.canvas;
    const w = Math.max(1, Math.round(c.clientWidth * (window.devicePixelRatio || 1)));
    if (this.drawn === key && c.width === w) return;
    this.drawn = key;
    c.width = w;
    c.height = 1;
    const ctx = c.getContext("2d");
    if (!lut) {
      ctx.clearRect(0, 0, w, 1);
      c.dataset.palette = "";
      return;
    }
    const img = ctx.createImageData(w, 1);
    for (let x = 0; x < w; x++) {
      const rgb = colourAt(lut, w > 1 ? x / (w - 1) : 0);
      img.data.set([rgb[0], rgb[1], rgb[2], 255], x * 4);
    }
    ctx.putImageData(img, 0, 0);
    c.dataset.palette = header.palette;
  }
}

// The colour at t (0..1) of a table: a hex string (exact) or an array of [r, g, b] (sampled).
function colourAt(lut, t) {
  const n = typeof lut === "string" ? lut.length / 6 : lut.length;
  const i = Math.min(n - 1, Math.max(0, Math.round(t * (n - 1))));
  if (typeof lut !== "string") return lut[i];
  const hex = (k) => parseInt(lut.substr(i * 6 + k, 2), 16);
  return [hex(0), hex(2), hex(4)];
}

// Mean colour per bin; empty bins take the colour between their filled neighbours.
function fillGaps(sum) {
  const colours = [];
  const filled = [];
  for (let b = 0; b < BINS; b++) {
    const k = sum[b * 4 + 3];
    colours.push(k ? [sum[b * 4] / k, sum[b * 4 + 1] / k, sum[b * 4 + 2] / k] : null);
    if (k) filled.push(b);
  }
  if (filled.length < 2) return null; // a flat frame says nothing about the palette
  for (let b = 0; b < BINS; b++) {
    if (colours[b]) continue;
    const after = filled.find((f) => f > b);
    const before = [...filled].reverse().find((f) => f < b);
    if (before === undefined) colours[b] = colours[after];
    else if (after === undefined) colours[b] = colours[before];
    else {
      const t = (b - before) / (after - before);
      colours[b] = colours[before].map((v, i) => v + (colours[after][i] - v) * t);
    }
  }
  return colours.map((c) => c.map(Math.round));
}
