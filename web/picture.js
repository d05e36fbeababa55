// The picture: the newest decoded frame drawn to fit the stage (aspect kept, sharp on high-DPI
// screens), with min / max / centre markers and the probe (pointer) position on top.

import { formatValue } from "./units.js";
import { shapeOf } from "./frame.js";

const MAX_COLOUR = "#ff4d4d";
const MIN_COLOUR = "#4da6ff";
const CENTRE_COLOUR = "#ffffff";
const LABEL_FONT = "600 12px system-ui, sans-serif";
const LABEL_HEIGHT = 18;
const LABEL_GAP = 10; // from the marker to its label, sideways
const LABEL_SPACING = 2; // between stacked labels

export class PictureCanvas {
  constructor(canvas, stage) {
    this.canvas = canvas;
    this.stage = stage;
    this.ctx = canvas.getContext("2d");
    this.bitmap = null;
    this.smooth = true; // JPEG mode: smooth scaling; thermal mode: crisp sensor pixels
    this.scratch = null; // thermal mode: the sensor-resolution picture
    this.header = null;
    this.probe = null; // {x, y} in raw-pixel coordinates, or null
    this.cssWidth = 0;
    this.cssHeight = 0;
    this.labelBoxes = []; // where the min / max / centre labels were drawn: [{name, x, y, w, h}]
    new ResizeObserver(() => this.fit()).observe(stage);
  }

  // Takes ownership of `bitmap` (closes the previous one: decoded frames are big).
  setFrame(bitmap, header) {
    const old = this.bitmap;
    this.bitmap = bitmap;
    this.smooth = true;
    this.header = header;
    if (old && old !== bitmap && old.close) old.close();
    this.fit();
  }

  // Thermal mode: this viewer's own picture at sensor resolution (ImageData, web/live.js), scaled
  // up nearest-neighbour by the canvas, like the encoder's 4x nearest JPEG but to the screen's size.
  setImage(image, header) {
    if (!this.scratch) this.scratch = document.createElement("canvas");
    const s = this.scratch;
    if (s.width !== image.width || s.height !== image.height) {
      s.width = image.width;
      s.height = image.height;
    }
    s.getContext("2d").putImageData(image, 0, 0);
    const old = this.bitmap;
    if (old && old !== s && old.close) old.close();
    this.bitmap = s;
    this.smooth = false;
    this.header = header;
    this.fit();
  }

  aspect() {
    if (this.bitmap) return this.bitmap.width / this.bitmap.height;
    return 4 / 3; // every Lepton is 4:3 until a frame says otherwise (rotated: 3:4)
  }

  fit() {
    const box = this.stage.getBoundingClientRect();
    if (box.width <= 0 || box.height <= 0) return;
    const aspect = this.aspect();
    let w = box.width;
    let h = w / aspect;
    if (h > box.height) {
      h = box.height;
      w = h * aspect;
    }
    w = Math.floor(w);
    h = Math.floor(h);
    const dpr = window.devicePixelRatio || 1;
    if (w !== this.cssWidth || h !== this.cssHeight) {
      this.cssWidth = w;
      this.cssHeight = h;
      this.canvas.style.width = w + "px";
      this.canvas.style.height = h + "px";
    }
    const bw = Math.round(w * dpr);
    const bh = Math.round(h * dpr);
    if (this.canvas.width !== bw || this.canvas.height !== bh) {
      this.canvas.width = bw;
      this.canvas.height = bh;
    }
    this.draw();
  }

  // Client (event) coordinates -> where on the picture, as fractions of its width and height
  // (0..1; what stays true when the page scrolls or the picture is resized), or null outside it.
  toFraction(clientX, clientY) {
    const r = this.canvas.getBoundingClientRect();
    if (r.width <= 0 || r.height <= 0) return null;
    const fx = (clientX - r.left) / r.width;
    const fy = (clientY - r.top) / r.height;
    return fx >= 0 && fy >= 0 && fx < 1 && fy < 1 ? { fx, fy } : null;
  }

  // Fractions of the picture -> raw-pixel coordinates of the current frame, or null.
  toRaw(fx, fy) {
    const shape = shapeOf(this.header);
    if (!shape) return null;
    const x = Math.floor(fx * shape.cols);
    const y = Math.floor(fy * shape.rows);
    if (x < 0 || y < 0 || x >= shape.cols || y >= shape.rows) return null;
    return { x, y };
  }

  // Raw-pixel coordinates -> CSS pixels inside the canvas (the centre of that raw pixel).
  toCss(x, y) {
    const shape = shapeOf(this.header);
    return {
      x: ((x + 0.5) / shape.cols) * this.cssWidth,
      y: ((y + 0.5) / shape.rows) * this.cssHeight,
    };
  }

  draw() {
    const ctx = this.ctx;
    const dpr = this.canvas.width / Math.max(1, this.cssWidth);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.bitmap) return;
    ctx.imageSmoothingEnabled = this.smooth;
    ctx.drawImage(this.bitmap, 0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.drawMarkers();
  }

  drawMarkers() {
    this.labelBoxes = [];
    const h = this.header;
    const shape = shapeOf(h);
    const stats = h && h.stats;
    if (!shape || !stats || typeof stats !== "object") return;
    const unit = h.unit;
    const at = (xy) => (Array.isArray(xy) && xy.length === 2 &&
                        Number.isFinite(xy[0]) && Number.isFinite(xy[1])) ? this.toCss(xy[0], xy[1]) : null;
    const centre = { x: this.cssWidth / 2, y: this.cssHeight / 2 };
    const max = at(stats.max_xy);
    const min = at(stats.min_xy);
    this.crosshair(centre, CENTRE_COLOUR);
    if (max) this.triangle(max, MAX_COLOUR, true);
    if (min) this.triangle(min, MIN_COLOUR, false);
    // The labels are placed together, after every marker, so none covers another label (the spots
    // may be a pixel apart) and, where there is room, none covers a marker.
    const labels = [{ name: "centre", p: centre, text: formatValue(stats.centre, unit), colour: CENTRE_COLOUR, below: true }];
    if (max) labels.push({ name: "max", p: max, text: "max " + formatValue(stats.max, unit), colour: MAX_COLOUR, below: false });
    if (min) labels.push({ name: "min", p: min, text: "min " + formatValue(stats.min, unit), colour: MIN_COLOUR, below: true });
    const markers = labels.map((l) => ({ x: l.p.x - 8, y: l.p.y - 10, w: 16, h: 20 }));
    this.ctx.font = LABEL_FONT;
    for (const l of labels) {
      const box = this.placeLabel(l, this.ctx.measureText(l.text).width + 8, markers);
      this.labelBoxes.push({ name: l.name, x: box.x, y: box.y, w: box.w, h: box.h });
      this.label(box, l.text, l.colour);
    }
  }

  // Where a label of width w goes: beside its marker (right, else left; below or above as it
  // prefers), inside the canvas, clear of the labels placed so far and if possible of every marker;
  // when the spots are crowded it is stacked above or below, one label height at a time.
  placeLabel(l, w, markers) {
    const h = LABEL_HEIGHT;
    const W = this.cssWidth;
    const H = this.cssHeight;
    const clampX = (x) => Math.max(2, Math.min(x, W - w - 2));
    const clampY = (y) => Math.max(2, Math.min(y, H - h - 2));
    const right = clampX(l.p.x + LABEL_GAP);
    const left = clampX(l.p.x - LABEL_GAP - w);
    const below = l.p.y + 14 - h / 2;
    const above = l.p.y - 12 - h / 2;
    const [first, second] = l.below ? [below, above] : [above, below];
    const xs = l.p.x + LABEL_GAP + w > W - 2 ? [left, right] : [right, left];
    const candidates = [];
    for (const x of xs) for (const y of [first, second]) candidates.push({ x, y: clampY(y), w, h });
    const step = h + LABEL_SPACING;
    const rows = Math.ceil(H / step);
    for (let k = 1; k <= rows; k++) {
      for (const x of xs) {
        for (const y of [first + k * step, first - k * step]) {
          if (y >= 2 && y + h <= H - 2) candidates.push({ x, y, w, h });
        }
      }
    }
    const clear = (box, others) => others.every((o) => !overlaps(box, o));
    const placed = this.labelBoxes;
    return candidates.find((c) => clear(c, placed) && clear(c, markers)) ||
      candidates.find((c) => clear(c, placed)) || candidates[0];
  }

  crosshair(p, colour) {
    const ctx = this.ctx;
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    this.cross(p, 8);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = colour;
    this.cross(p, 8);
  }

  cross(p, r) {
    const ctx = this.ctx;
    ctx.beginPath();
    ctx.moveTo(p.x - r, p.y);
    ctx.lineTo(p.x - 3, p.y);
    ctx.moveTo(p.x + 3, p.y);
    ctx.lineTo(p.x + r, p.y);
    ctx.moveTo(p.x, p.y - r);
    ctx.lineTo(p.x, p.y - 3);
    ctx.moveTo(p.x, p.y + 3);
    ctx.lineTo(p.x, p.y + r);
    ctx.stroke();
  }

  triangle(p, colour, up) {
    const ctx = this.ctx;
    const s = up ? -1 : 1;
    ctx.beginPath();
    ctx.moveTo(p.x, p.y);
    ctx.lineTo(p.x - 6, p.y + s * 10);
    ctx.lineTo(p.x + 6, p.y + s * 10);
    ctx.closePath();
    ctx.fillStyle = colour;
    ctx.strokeStyle = "rgba(0,0,0,0.7)";
    ctx.lineWidth = 1.5;
    ctx.fill();
    ctx.stroke();
  }

  // A small dark box with text, where placeLabel put it.
  label(box, text, colour) {
    const ctx = this.ctx;
    ctx.font = LABEL_FONT;
    ctx.textBaseline = "middle";
    ctx.fillStyle = "rgba(10,12,16,0.72)";
    ctx.fillRect(box.x, box.y, box.w, box.h);
    ctx.fillStyle = colour;
    ctx.fillText(text, box.x + 4, box.y + box.h / 2 + 0.5);
  }
}

// Do two {x, y, w, h} boxes share any area (touching edges do not count)?
export function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}
