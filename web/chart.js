// The history chart: up to the last ten minutes of the frame's max / min / centre and each region's max,
// on a canvas. The server sends its history to a new viewer (so the chart survives a reconnect or a
// reload) and a sample about once a second after that.

import { cToDisplay, displayUnit } from "./units.js";

const FRAME_SERIES = [["max", "#ff4d4d"], ["min", "#4da6ff"], ["centre", "#e8e8e8"]];
const REGION_COLOURS = ["#ffd23f", "#3fffa8", "#ff7ae0", "#7ad7ff", "#ffa23f", "#b08cff"];
const FONT = "11px system-ui, sans-serif";

export class HistoryChart {
  constructor(canvas, seconds = 600) {
    this.canvas = canvas;
    this.seconds = seconds;
    this.t = []; // Unix seconds
    this.frame = { max: [], min: [], centre: [] };
    this.regions = {}; // name -> [max or null]
    this.colours = {}; // region name -> colour, kept while the page lives
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  // The server's snapshot: {seconds, t: [...], frame: {stat: [...]}, regions: {name: {stat: [...]}}}.
  setHistory(h) {
    if (!h || !Array.isArray(h.t)) return;
    if (Number.isFinite(h.seconds)) this.seconds = h.seconds;
    this.t = h.t.slice();
    const col = (a) => (Array.isArray(a) && a.length === this.t.length ? a.slice() : this.t.map(() => null));
    const frame = h.frame || {};
    this.frame = { max: col(frame.max), min: col(frame.min), centre: col(frame.centre) };
    this.regions = {};
    for (const [name, stats] of Object.entries(h.regions || {})) this.regions[name] = col(stats && stats.max);
    this.draw();
  }

  // One sample: {t, frame: {max, min, centre}, regions: {name: {max, min, mean}}}.
  add(s) {
    if (!s || !Number.isFinite(s.t)) return;
    if (this.t.length && s.t < this.t[this.t.length - 1]) this.setHistory({ t: [] }); // clock stepped back
    const n = this.t.length;
    this.t.push(s.t);
    for (const [k] of FRAME_SERIES) this.frame[k].push(num(s.frame && s.frame[k]));
    const regions = s.regions || {};
    for (const name of Object.keys(regions)) if (!this.regions[name]) this.regions[name] = new Array(n).fill(null);
    for (const [name, values] of Object.entries(this.regions)) values.push(num(regions[name] && regions[name].max));
    // keep the last `seconds`
    let drop = 0;
    while (drop < this.t.length && s.t - this.t[drop] > this.seconds) drop++;
    if (drop) {
      this.t.splice(0, drop);
      for (const a of Object.values(this.frame)) a.splice(0, drop);
      for (const a of Object.values(this.regions)) a.splice(0, drop);
    }
    for (const [name, a] of Object.entries(this.regions)) if (a.every((v) => v === null)) delete this.regions[name];
    this.draw();
  }

  colour(name) {
    if (!this.colours[name]) {
      this.colours[name] = REGION_COLOURS[Object.keys(this.colours).length % REGION_COLOURS.length];
    }
    return this.colours[name];
  }

  // [{label, colour, values}] in the order drawn.
  series() {
    const out = FRAME_SERIES.map(([k, colour]) => ({ label: `frame ${k}`, colour, values: this.frame[k] }));
    for (const [name, values] of Object.entries(this.regions)) {
      out.push({ label: `${name} max`, colour: this.colour(name), values });
    }
    return out;
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) Object.assign(c, { width: w, height: h });
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = c.clientWidth;
    const H = c.clientHeight;
    ctx.clearRect(0, 0, W, H);
    const series = this.series();
    c.dataset.samples = String(this.t.length);
    c.dataset.series = series.filter((s) => s.values.some((v) => v !== null)).map((s) => s.label).join(",");
    if (!this.t.length || W < 40 || H < 30) return;
    const unit = displayUnit();
    const all = series.flatMap((s) => s.values).filter((v) => v !== null).map(cToDisplay);
    let lo = Math.min(...all);
    let hi = Math.max(...all);
    if (hi - lo < 2) [lo, hi] = [(lo + hi) / 2 - 1, (lo + hi) / 2 + 1];
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
    const left = 34;
    const top = 14;
    const bottom = H - 14;
    const right = W - 4;
    // The time axis spans the samples there are: at least a minute, at most `seconds`.
    const tEnd = this.t[this.t.length - 1];
    const span = Math.min(this.seconds, Math.max(60, tEnd - this.t[0]));
    const tStart = tEnd - span;
    const X = (t) => left + (t - tStart) / span * (right - left);
    const Y = (v) => bottom - (cToDisplay(v) - lo) / (hi - lo) * (bottom - top);
    // grid and scale
    ctx.font = FONT;
    ctx.fillStyle = "#9aa3ad";
    ctx.strokeStyle = "rgba(255,255,255,.12)";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      const y = bottom - (bottom - top) * i / 4;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
      ctx.fillText(v.toFixed(0) + "°", 2, y + 4);
    }
    ctx.fillText(`−${Math.round(span / 60)} min`, left, H - 2);
    ctx.fillText(`now (°${unit})`, right - 52, H - 2);
    // lines (gaps where a value is missing)
    ctx.lineWidth = 1.5;
    for (const s of series) {
      ctx.strokeStyle = s.colour;
      ctx.beginPath();
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        const x = X(this.t[i]);
        const y = Y(v);
        if (pen) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        pen = true;
      });
      ctx.stroke();
    }
    // legend
    let x = left + 4;
    for (const s of series) {
      if (!s.values.some((v) => v !== null)) continue;
      ctx.fillStyle = s.colour;
      ctx.fillRect(x, 3, 8, 8);
      ctx.fillStyle = "#c8d0d8";
      ctx.fillText(s.label, x + 11, 11);
      x += ctx.measureText(s.label).width + 22;
    }
  }
}

function num(v) {
  return Number.isFinite(v) ? v : null;
}
