// Regions of interest on the picture: drawn over it with their readings, turned with it, and drawn,
// moved and deleted here with the pointer or a finger.
//
// Regions are in sensor pixels (x = column, y = row, inclusive), as the camera delivers them before
// rotate / flip; the picture on screen is turned. The turn in use is a parameter (`orientation()`),
// so this works whoever turns the picture (the encoder, or the browser per viewer). toDisplay is
// flirstream/regions.py point_to_display (encoder/render.orient's turn: rotate clockwise, then
// mirror), toSensor its inverse.

import { formatValue } from "./units.js";

const SVG = "http://www.w3.org/2000/svg";
const SENSORS = { lepton3: [160, 120], lepton2: [80, 60] }; // [columns, rows]
const NAME = /^[A-Za-z0-9_-]{1,40}$/;

// ---------------------------------------------------------------- geometry (plain functions)

// [columns, rows] of the picture once turned.
export function displaySize(sensor, rotate) {
  return rotate === 90 || rotate === 270 ? [sensor[1], sensor[0]] : [sensor[0], sensor[1]];
}

export function toDisplay(x, y, sensor, rotate, flip) {
  let [cols, rows] = sensor;
  if (rotate === 90) [x, y, cols, rows] = [rows - 1 - y, x, rows, cols];
  else if (rotate === 180) [x, y] = [cols - 1 - x, rows - 1 - y];
  else if (rotate === 270) [x, y, cols, rows] = [y, cols - 1 - x, rows, cols];
  if (flip === "horizontal" || flip === "both") x = cols - 1 - x;
  if (flip === "vertical" || flip === "both") y = rows - 1 - y;
  return [x, y];
}

export function toSensor(x, y, sensor, rotate, flip) {
  const [cols, rows] = sensor;
  const [dcols, drows] = displaySize(sensor, rotate);
  if (flip === "horizontal" || flip === "both") x = dcols - 1 - x;
  if (flip === "vertical" || flip === "both") y = drows - 1 - y;
  if (rotate === 90) return [y, rows - 1 - x];
  if (rotate === 180) return [cols - 1 - x, rows - 1 - y];
  if (rotate === 270) return [cols - 1 - y, x];
  return [x, y];
}

// A region's corners in the picture: {x0, y0, x1, y1}, inclusive, in order.
export function displayRect(region, sensor, rotate, flip) {
  const c = region.kind === "spot" ? [...region.spot, ...region.spot] : region.box;
  const [ax, ay] = toDisplay(c[0], c[1], sensor, rotate, flip);
  const [bx, by] = toDisplay(c[2], c[3], sensor, rotate, flip);
  return { x0: Math.min(ax, bx), y0: Math.min(ay, by), x1: Math.max(ax, bx), y1: Math.max(ay, by) };
}

// Picture rectangle (display pixels, inclusive) -> a region's sensor coordinates.
export function sensorShape(rect, sensor, rotate, flip) {
  const [ax, ay] = toSensor(rect.x0, rect.y0, sensor, rotate, flip);
  const [bx, by] = toSensor(rect.x1, rect.y1, sensor, rotate, flip);
  if (ax === bx && ay === by) return { spot: [ax, ay] };
  return { box: [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)] };
}

export function sensorOf(header) {
  if (header && SENSORS[header.sensor]) return SENSORS[header.sensor];
  return SENSORS.lepton3;
}

// ---------------------------------------------------------------- the layer

export class RegionLayer {
  // stage: the element the picture sits in; canvas: the picture; tools: where the buttons go;
  // send(message) -> bool; token() -> control token or ""; orientation() -> {rotate, flip};
  // sensor() -> [columns, rows]; say(text) for messages to the user.
  constructor({ stage, canvas, tools, send, token, orientation, sensor, say }) {
    Object.assign(this, { stage, canvas, send, token, orientation, sensor, say });
    this.regions = []; // [{name, kind, spot | box, source}]
    this.readings = {}; // name -> {max, min, mean}
    this.alarmed = new Set(); // region names with an alarm in state "alarm"
    this.mode = null; // null | "box" | "spot": drawing
    this.selected = null; // name of the selected (drawn) region
    this.drag = null; // {kind: "draw" | "move", start: [x, y], now: [x, y], region?}
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("class", "regions");
    this.svg.setAttribute("aria-label", "Regions of interest");
    this.svg.setAttribute("preserveAspectRatio", "none");
    stage.appendChild(this.svg);
    this.buildTools(tools);
    this.svg.addEventListener("pointerdown", (ev) => this.down(ev));
    this.svg.addEventListener("pointermove", (ev) => this.move(ev));
    this.svg.addEventListener("pointerup", (ev) => this.up(ev));
    this.svg.addEventListener("pointercancel", () => { this.drag = null; this.draw(); });
    document.addEventListener("keydown", (ev) => {
      if ((ev.key === "Delete" || ev.key === "Backspace") && this.selected &&
          !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement && document.activeElement.tagName)) {
        this.remove(this.selected);
      } else if (ev.key === "Escape" && this.mode) this.setMode(null);
    });
    new ResizeObserver(() => this.place()).observe(stage);
  }

  buildTools(tools) {
    const button = (id, text, title) => {
      const b = document.createElement("button");
      Object.assign(b, { type: "button", id, textContent: text, title });
      tools.appendChild(b);
      return b;
    };
    this.boxButton = button("region-box", "+ Box", "Draw a box on the picture: its min, max and mean");
    this.spotButton = button("region-spot", "+ Spot", "Put a spot on the picture: its temperature");
    this.deleteButton = button("region-delete", "Delete", "Delete the selected region (Delete key)");
    this.boxButton.addEventListener("click", () => this.setMode(this.mode === "box" ? null : "box"));
    this.spotButton.addEventListener("click", () => this.setMode(this.mode === "spot" ? null : "spot"));
    this.deleteButton.addEventListener("click", () => this.selected && this.remove(this.selected));
    this.updateTools();
  }

  setMode(mode) {
    this.mode = mode;
    this.drag = null;
    this.updateTools();
    this.draw();
  }

  updateTools() {
    this.boxButton.setAttribute("aria-pressed", String(this.mode === "box"));
    this.spotButton.setAttribute("aria-pressed", String(this.mode === "spot"));
    this.deleteButton.disabled = !this.selected;
    this.svg.classList.toggle("drawing", this.mode !== null);
  }

  // ------------------------------------------------------------ from the server

  setRegions(list) {
    this.regions = Array.isArray(list) ? list.filter((r) => r && typeof r.name === "string" &&
      (Array.isArray(r.box) && r.box.length === 4 || Array.isArray(r.spot) && r.spot.length === 2)) : [];
    if (!this.regions.some((r) => r.name === this.selected)) this.selected = null;
    this.updateTools();
    this.draw();
  }

  setReadings(readings) {
    this.readings = readings && typeof readings === "object" ? readings : {};
    this.draw();
  }

  setAlarms(alarms) {
    this.alarmed = new Set(Object.values(alarms || {}).filter((a) => a && a.state === "alarm" && a.roi)
      .map((a) => a.roi));
    this.draw();
  }

  // ------------------------------------------------------------ drawing

  // Over the canvas exactly (it is centred in the stage and resized with it).
  place() {
    const s = this.stage.getBoundingClientRect();
    const c = this.canvas.getBoundingClientRect();
    const style = this.svg.style;
    const want = [c.left - s.left, c.top - s.top, c.width, c.height].map((v) => v.toFixed(1) + "px");
    if (style.left !== want[0] || style.top !== want[1] || style.width !== want[2] || style.height !== want[3]) {
      [style.left, style.top, style.width, style.height] = want;
    }
  }

  turn() {
    const o = this.orientation() || {};
    const rotate = [0, 90, 180, 270].includes(Number(o.rotate)) ? Number(o.rotate) : 0;
    return { rotate, flip: o.flip || "none", sensor: this.sensor() };
  }

  draw() {
    this.place();
    const { rotate, flip, sensor } = this.turn();
    const [dcols, drows] = displaySize(sensor, rotate);
    this.svg.setAttribute("viewBox", `0 0 ${dcols} ${drows}`);
    this.svg.replaceChildren();
    const font = Math.max(3, dcols / 44);
    for (const region of this.regions) {
      let rect = displayRect(region, sensor, rotate, flip);
      if (this.drag && this.drag.kind === "move" && this.drag.region === region.name) {
        rect = this.moved(rect, dcols, drows);
      }
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", "region");
      g.dataset.name = region.name;
      g.dataset.source = region.source || "config";
      g.classList.toggle("alarm", this.alarmed.has(region.name));
      g.classList.toggle("selected", this.selected === region.name);
      const shape = document.createElementNS(SVG, "rect");
      const pad = region.kind === "spot" ? 1 : 0; // a spot: a small square ring around its pixel
      shape.setAttribute("x", rect.x0 - pad);
      shape.setAttribute("y", rect.y0 - pad);
      shape.setAttribute("width", rect.x1 - rect.x0 + 1 + 2 * pad);
      shape.setAttribute("height", rect.y1 - rect.y0 + 1 + 2 * pad);
      g.appendChild(shape);
      const reading = this.readings[region.name];
      const label = document.createElementNS(SVG, "text");
      const value = reading && Number.isFinite(reading.max) ? formatValue(reading.max, "C") : "–";
      label.textContent = region.kind === "spot" ? `${region.name} ${value}` : `${region.name} max ${value}`;
      label.setAttribute("font-size", font.toFixed(1));
      const above = rect.y0 - pad - font * 0.35;
      label.setAttribute("x", Math.min(rect.x0, dcols - font * 6));
      label.setAttribute("y", above > font ? above : rect.y1 + pad + font * 1.05);
      g.appendChild(label);
      if (reading && Number.isFinite(reading.max)) g.dataset.max = String(reading.max);
      this.svg.appendChild(g);
    }
    if (this.drag && this.drag.kind === "draw") {
      const r = this.dragRect();
      const preview = document.createElementNS(SVG, "rect");
      preview.setAttribute("class", "preview");
      preview.setAttribute("x", r.x0);
      preview.setAttribute("y", r.y0);
      preview.setAttribute("width", r.x1 - r.x0 + 1);
      preview.setAttribute("height", r.y1 - r.y0 + 1);
      this.svg.appendChild(preview);
    }
  }

  // ------------------------------------------------------------ pointer

  // Client coordinates -> display pixel [x, y], clamped to the picture.
  pixelAt(ev) {
    const r = this.svg.getBoundingClientRect();
    const { rotate, sensor } = this.turn();
    const [dcols, drows] = displaySize(sensor, rotate);
    const x = Math.floor((ev.clientX - r.left) / Math.max(1, r.width) * dcols);
    const y = Math.floor((ev.clientY - r.top) / Math.max(1, r.height) * drows);
    return [Math.min(dcols - 1, Math.max(0, x)), Math.min(drows - 1, Math.max(0, y))];
  }

  down(ev) {
    const at = this.pixelAt(ev);
    if (this.mode) {
      this.drag = { kind: "draw", start: at, now: at };
    } else {
      const g = ev.target.closest && ev.target.closest("g.region");
      if (!g || g.dataset.source !== "viewer") return;
      this.selected = g.dataset.name;
      this.drag = { kind: "move", start: at, now: at, region: g.dataset.name };
      this.updateTools();
    }
    ev.preventDefault();
    this.svg.setPointerCapture(ev.pointerId);
    this.draw();
  }

  move(ev) {
    if (!this.drag) return;
    this.drag.now = this.pixelAt(ev);
    this.draw();
  }

  up(ev) {
    const drag = this.drag;
    if (!drag) return;
    drag.now = this.pixelAt(ev);
    this.drag = null;
    const { rotate, flip, sensor } = this.turn();
    if (drag.kind === "draw") {
      const kind = this.mode;
      const rect = kind === "spot"
        ? { x0: drag.now[0], y0: drag.now[1], x1: drag.now[0], y1: drag.now[1] } : this.dragRect(drag);
      const name = this.freeName(kind);
      this.put({ name, ...sensorShape(rect, sensor, rotate, flip) });
      this.selected = name;
      this.setMode(null);
      return;
    }
    const region = this.regions.find((r) => r.name === drag.region);
    if (region && (drag.now[0] !== drag.start[0] || drag.now[1] !== drag.start[1])) {
      const [dcols, drows] = displaySize(sensor, rotate);
      this.drag = drag; // moved() reads it
      const rect = this.moved(displayRect(region, sensor, rotate, flip), dcols, drows);
      this.drag = null;
      const shape = sensorShape(rect, sensor, rotate, flip);
      // a spot stays a spot, a box a box (a 1x1 box is still sent as a box)
      this.put({ name: region.name, ...(region.kind === "box" && shape.spot
        ? { box: [...shape.spot, ...shape.spot] } : shape) });
    }
    this.draw();
  }

  dragRect(drag = this.drag) {
    const [ax, ay] = drag.start;
    const [bx, by] = drag.now;
    return { x0: Math.min(ax, bx), y0: Math.min(ay, by), x1: Math.max(ax, bx), y1: Math.max(ay, by) };
  }

  // rect moved by the drag, kept inside the picture
  moved(rect, dcols, drows) {
    const dx = Math.max(-rect.x0, Math.min(dcols - 1 - rect.x1, this.drag.now[0] - this.drag.start[0]));
    const dy = Math.max(-rect.y0, Math.min(drows - 1 - rect.y1, this.drag.now[1] - this.drag.start[1]));
    return { x0: rect.x0 + dx, y0: rect.y0 + dy, x1: rect.x1 + dx, y1: rect.y1 + dy };
  }

  freeName(kind) {
    const taken = new Set(this.regions.map((r) => r.name));
    for (let i = 1; ; i++) if (!taken.has(`${kind}${i}`)) return `${kind}${i}`;
  }

  put(region) {
    if (!NAME.test(region.name)) return;
    this.request({ op: "region", put: region });
  }

  remove(name) {
    this.request({ op: "region", delete: name });
    this.selected = null;
    this.updateTools();
  }

  request(message) {
    const token = this.token();
    if (token) message.token = token;
    if (!this.send(message)) this.say("Not connected: the region was not changed.");
  }
}
