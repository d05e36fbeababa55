// The radiometric frame in the browser: decode what flirstream/radiometric.py sent, and paint this
// viewer's own view of it (palette, AGC, range, isotherm, rotation) at sensor resolution; the canvas
// scales the small picture up (nearest, on the GPU).
//
// The AGCs and the palette step are the encoder's (encoder/agc.py, encoder/palettes.py) redone
// value for value, rounding included (OpenCV rounds half to even and scales in float32), so the
// browser's picture equals the encoder's rendering of the same frame.
//
//   const frame = await decode(bytes);                    // {rows, cols, pixels: Uint16Array}
//   const view = new ThermalView({palette: "ironbow", agc: "linear"});
//   const out = view.render(frame, {tlinear: true, kelvin_per_count: 0.01});
//   draw(canvas, out.image);                              // out.lo / out.hi: the range, in unit
//   valueAt(out.frame, x, y, meta)                        // the temperature under a pixel

import { PALETTES } from "./palettes.js";
import { KELVIN_AT_0C } from "./units.js";

export const MIN_SPAN = 10; // encoder/agc.py: a flat scene is spread over at least this many counts
const MAGIC = [0x52, 0x41, 0x44, 0x32]; // "RAD2"
const HEADER_BYTES = 10;

// ------------------------------------------------------------------ decoding

// The payload's planes (low bytes, then high bytes of the residuals) -> the pixels. Each residual is
// the value minus the one before it in row-major order, plus 128 (see radiometric.py): a running sum.
export function unfilter(planes, rows, cols) {
  const n = rows * cols;
  const out = new Uint16Array(n);
  for (let i = 0, value = 0; i < n; i++) {
    value = (value + (planes[i] | (planes[n + i] << 8)) - 128) & 0xffff;
    out[i] = value;
  }
  return out;
}

// zlib bytes -> the inflated bytes. Writing to and reading from the stream directly is much faster
// than Blob.stream() + Response.arrayBuffer() (docs/PERFORMANCE.md, the browser's per-frame work).
async function inflate(data) {
  const ds = new DecompressionStream("deflate");
  const writer = ds.writable.getWriter();
  writer.write(data).catch(() => {}); // a failure shows up at read() below
  writer.close().catch(() => {});
  const reader = ds.readable.getReader();
  const chunks = [];
  let size = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } catch (e) {
    throw new Error(`radiometric frame: not a zlib stream (${e.message})`);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  for (let i = 0, at = 0; i < chunks.length; at += chunks[i].length, i++) out.set(chunks[i], at);
  return out;
}

// A payload (ArrayBuffer or Uint8Array) -> {rows, cols, pixels}; throws Error naming the problem.
export async function decode(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (u8.length < HEADER_BYTES) throw new Error(`radiometric frame: ${u8.length} bytes, shorter than its header`);
  if (MAGIC.some((b, i) => u8[i] !== b)) throw new Error("radiometric frame: does not start with RAD2");
  const rows = u8[4] | (u8[5] << 8);
  const cols = u8[6] | (u8[7] << 8);
  const step = u8[8] | (u8[9] << 8); // values were sent as round(pixel / step)
  if (step === 0) throw new Error("radiometric frame: step 0");
  const planes = await inflate(u8.subarray(HEADER_BYTES));
  if (planes.length !== 2 * rows * cols) {
    throw new Error(`radiometric frame: ${planes.length} bytes of planes, ${rows}x${cols} needs ${2 * rows * cols}`);
  }
  const pixels = unfilter(planes, rows, cols);
  if (step > 1) for (let i = 0; i < pixels.length; i++) pixels[i] = Math.min(pixels[i] * step, 65535);
  return { rows, cols, pixels };
}

// ------------------------------------------------------------------ orientation

// Rotate clockwise by 0/90/180/270, then mirror ("none", "horizontal", "vertical", "both"):
// encoder/render.py orient(), i.e. cv2.rotate then cv2.flip.
export function orient(frame, rotate = 0, flip = "none") {
  const { rows, cols, pixels } = frame;
  if (!rotate && flip === "none") return frame;
  const turned = rotate === 90 || rotate === 270;
  const R = turned ? cols : rows;
  const C = turned ? rows : cols;
  const fx = flip === "horizontal" || flip === "both";
  const fy = flip === "vertical" || flip === "both";
  const out = new Uint16Array(rows * cols);
  for (let y = 0; y < R; y++) {
    const ry = fy ? R - 1 - y : y; // position before the mirror
    for (let x = 0; x < C; x++) {
      const rx = fx ? C - 1 - x : x;
      let sy, sx; // source pixel
      if (rotate === 90) { sy = rows - 1 - rx; sx = ry; }
      else if (rotate === 180) { sy = rows - 1 - ry; sx = cols - 1 - rx; }
      else if (rotate === 270) { sy = rx; sx = cols - 1 - ry; }
      else { sy = ry; sx = rx; }
      out[y * C + x] = pixels[sy * cols + sx];
    }
  }
  return { rows: R, cols: C, pixels: out };
}

// ------------------------------------------------------------------ AGC (encoder/agc.py)

// Python's round() and OpenCV's cvRound: half to even.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

// Counts of every value from the frame's minimum up: {counts, base}.
export function histogram(pixels) {
  let lo = 65535, hi = 0;
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const counts = new Uint32Array(hi - lo + 1);
  for (let i = 0; i < pixels.length; i++) counts[pixels[i] - lo]++;
  return { counts, base: lo };
}

// Nearest-rank percentiles from the histogram, as encoder/agc.py percentiles().
export function percentiles(pixels, low, high) {
  const { counts, base } = histogram(pixels);
  const cdf = new Float64Array(counts.length);
  let sum = 0;
  for (let i = 0; i < counts.length; i++) cdf[i] = sum += counts[i];
  const n = sum;
  const rank = (p) => {
    const r = roundHalfEven(p / 100 * (n - 1));
    let j = 0; // first index whose cdf exceeds the rank (numpy searchsorted side="right")
    while (j < cdf.length - 1 && cdf[j] <= r) j++;
    return base + j;
  };
  return [rank(low), rank(high)];
}

function widen(lo, hi) {
  if (hi - lo >= MIN_SPAN) return [lo, hi];
  const mid = (lo + hi) / 2;
  return [mid - MIN_SPAN / 2, mid + MIN_SPAN / 2];
}

// lo..hi onto 0..255, clipped: cv2.subtract(pixels, lo) (lo rounded, saturating at 0) then
// cv2.convertScaleAbs(alpha = 255 / (hi - lo)), which scales in float32 and rounds half to even.
export function stretch(pixels, lo, hi, out = new Uint8Array(pixels.length)) {
  const l = roundHalfEven(lo);
  const alpha = Math.fround(255 / (hi - lo));
  const level = (p) => {
    let s = p - l;
    s = s < 0 ? 0 : s > 65535 ? 65535 : s;
    const v = roundHalfEven(Math.fround(s * alpha));
    return v > 255 ? 255 : v;
  };
  let min = 65535, max = 0;
  for (let i = 0; i < pixels.length; i++) {
    const p = pixels[i];
    if (p < min) min = p;
    if (p > max) max = p;
  }
  if (max - min < pixels.length) { // fewer distinct values than pixels (always, on a Lepton): a table
    const table = new Uint8Array(max - min + 1);
    for (let v = min; v <= max; v++) table[v - min] = level(v);
    for (let i = 0; i < pixels.length; i++) out[i] = table[pixels[i] - min];
  } else {
    for (let i = 0; i < pixels.length; i++) out[i] = level(pixels[i]);
  }
  return out;
}

// Frame range between two percentiles, smoothed over frames (the state is this viewer's own).
export class LinearAGC {
  constructor(clip = [1, 99], smoothing = 0.8) {
    this.clip = clip;
    this.smoothing = smoothing;
    this.range = null;
    this.shape = null;
  }

  reset() {
    this.range = null;
  }

  // -> {gray, lo, hi} (lo, hi in counts)
  apply(frame, out) {
    let [lo, hi] = percentiles(frame.pixels, this.clip[0], this.clip[1]);
    const shape = frame.rows + "x" + frame.cols;
    if (this.range && this.shape === shape) {
      const w = this.smoothing;
      lo = w * this.range[0] + (1 - w) * lo;
      hi = w * this.range[1] + (1 - w) * hi;
    }
    this.range = [lo, hi];
    this.shape = shape;
    [lo, hi] = widen(lo, hi);
    return { gray: stretch(frame.pixels, lo, hi, out), lo, hi };
  }
}

// Histogram equalisation over the full 16-bit values (encoder/agc.py HistogramAGC).
export function histogramAGC(frame, out = new Uint8Array(frame.pixels.length)) {
  const { counts, base } = histogram(frame.pixels);
  let n = 0;
  for (let i = 0; i < counts.length; i++) n += counts[i];
  const first = counts[0];
  if (n === first) return { gray: out.fill(128), lo: base, hi: base };
  const table = new Uint8Array(counts.length);
  const scale = 255 / (n - first);
  for (let i = 0, cdf = 0; i < counts.length; i++) {
    cdf += counts[i];
    table[i] = roundHalfEven((cdf - first) * scale);
  }
  const p = frame.pixels;
  for (let i = 0; i < p.length; i++) out[i] = table[p[i] - base];
  return { gray: out, lo: base, hi: base + counts.length - 1 };
}

// ------------------------------------------------------------------ palettes, units

const tables = new Map();

// A palette as 256 packed RGBA words (for a Uint32Array view of ImageData: little-endian ABGR).
export function paletteTable(name) {
  let table = tables.get(name);
  if (table) return table;
  const hex = Object.prototype.hasOwnProperty.call(PALETTES, name) ? PALETTES[name] : null;
  if (typeof hex !== "string" || hex.length !== 256 * 6) throw new Error(`unknown palette ${name}`);
  table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) table[i] = packColour(parseInt(hex.slice(6 * i, 6 * i + 6), 16));
  tables.set(name, table);
  return table;
}

function packColour(rgb) { // 0xRRGGBB -> RGBA bytes in memory order
  const r = (rgb >> 16) & 255, g = (rgb >> 8) & 255, b = rgb & 255;
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

// The value of a sensor count in the frame's unit: °C on TLinear frames, else the count itself.
export function toUnit(count, meta) {
  return meta.tlinear ? count * meta.kelvin_per_count - KELVIN_AT_0C : count;
}

// The temperature (or count) at pixel (x, y) of a frame, null outside it.
export function valueAt(frame, x, y, meta) {
  x = Math.floor(x);
  y = Math.floor(y);
  if (!frame || x < 0 || y < 0 || x >= frame.cols || y >= frame.rows) return null;
  return toUnit(frame.pixels[y * frame.cols + x], meta);
}

// Where on the frame a point of the displayed picture is: fractions (0..1) of its width and height.
export function pixelAt(frame, fx, fy) {
  const x = Math.floor(fx * frame.cols), y = Math.floor(fy * frame.rows);
  return x >= 0 && y >= 0 && x < frame.cols && y < frame.rows ? { x, y } : null;
}

// min, max, mean, centre in unit and min_xy / max_xy, as encoder/render.py statistics().
export function statistics(frame, meta) {
  const { rows, cols, pixels } = frame;
  let lo = Infinity, hi = -Infinity, loAt = 0, hiAt = 0, sum = 0;
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i];
    sum += v;
    if (v < lo) { lo = v; loAt = i; }
    if (v > hi) { hi = v; hiAt = i; }
  }
  let c = 0, k = 0;
  for (let y = (rows - 1) >> 1; y <= rows >> 1; y++) {
    for (let x = (cols - 1) >> 1; x <= cols >> 1; x++) { c += pixels[y * cols + x]; k++; }
  }
  const u = (v) => toUnit(v, meta);
  return { min: u(lo), max: u(hi), mean: u(sum / pixels.length), centre: u(c / k),
           min_xy: [loAt % cols, Math.floor(loAt / cols)], max_xy: [hiAt % cols, Math.floor(hiAt / cols)] };
}

// ------------------------------------------------------------------ one viewer's view

export const DEFAULTS = {
  palette: "ironbow", agc: "linear", clip_percent: [1, 99], smoothing: 0.8, range_c: [20, 40],
  rotate: 0, flip: "none",
  isotherm: null, // {mode: "above" | "below" | "between", lo, hi (in unit), colour: [r, g, b]}
};

export class ThermalView {
  constructor(settings = {}) {
    this.settings = { ...DEFAULTS };
    this.linear = new LinearAGC();
    this.gray = null;
    this.image = null;
    this.update(settings);
  }

  // Change some settings; the linear AGC keeps its smoothed range (no jump on a palette change).
  update(settings) {
    Object.assign(this.settings, settings);
    const s = this.settings;
    paletteTable(s.palette); // unknown palette: throws now, not at the next frame
    this.linear.clip = s.clip_percent;
    this.linear.smoothing = s.smoothing;
    return this.settings;
  }

  // One frame -> {image (ImageData at sensor resolution, oriented), frame (oriented), agc, lo, hi
  // (range in unit)}. meta: {tlinear, kelvin_per_count}.
  render(frame, meta) {
    const s = this.settings;
    const f = orient(frame, s.rotate, s.flip);
    const n = f.pixels.length;
    if (!this.gray || this.gray.length !== n) this.gray = new Uint8Array(n);
    let mode = s.agc === "fixed" && !meta.tlinear ? "linear" : s.agc; // as the encoder falls back
    let result;
    if (mode === "histogram") result = histogramAGC(f, this.gray);
    else if (mode === "fixed") {
      const lo = (s.range_c[0] + KELVIN_AT_0C) / meta.kelvin_per_count;
      const hi = (s.range_c[1] + KELVIN_AT_0C) / meta.kelvin_per_count;
      result = { gray: stretch(f.pixels, lo, hi, this.gray), lo, hi };
    } else result = this.linear.apply(f, this.gray);
    if (!this.image || this.image.width !== f.cols || this.image.height !== f.rows) {
      this.image = new ImageData(f.cols, f.rows);
    }
    const rgba = new Uint32Array(this.image.data.buffer);
    const table = paletteTable(s.palette);
    const gray = result.gray;
    for (let i = 0; i < n; i++) rgba[i] = table[gray[i]];
    if (s.isotherm && meta.tlinear) this.isotherm(f, meta, rgba); // temperatures only, as the encoder
    const range = mode === "fixed" ? [s.range_c[0], s.range_c[1]]
      : [toUnit(result.lo, meta), toUnit(result.hi, meta)];
    return { image: this.image, frame: f, agc: mode, lo: range[0], hi: range[1] };
  }

  // Paint the pixels whose value (in unit) is above / below / between the thresholds.
  isotherm(f, meta, rgba) {
    const { mode, lo, hi, colour } = this.settings.isotherm;
    const mark = packColour((colour[0] << 16) | (colour[1] << 8) | colour[2]);
    const p = f.pixels;
    for (let i = 0; i < p.length; i++) {
      const v = toUnit(p[i], meta);
      const hit = mode === "above" ? v >= lo : mode === "below" ? v <= lo : v >= lo && v <= hi;
      if (hit) rgba[i] = mark;
    }
  }
}

// ------------------------------------------------------------------ drawing

const scratches = new WeakMap();

// Draw a sensor-resolution ImageData over the whole canvas, nearest-neighbour (the GPU scales).
export function draw(canvas, image) {
  let scratch = scratches.get(canvas);
  if (!scratch) {
    scratch = document.createElement("canvas");
    scratches.set(canvas, scratch);
  }
  if (scratch.width !== image.width || scratch.height !== image.height) {
    scratch.width = image.width;
    scratch.height = image.height;
  }
  scratch.getContext("2d").putImageData(image, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, 0, 0, canvas.width, canvas.height);
}
