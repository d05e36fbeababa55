// Thermal mode (/ws?mode=thermal, server/protocol.py): each binary message is a small JSON header
// and the radiometric frame (RAD2, lossless). This module turns one message into what the viewer
// shows: this viewer's own picture (web/thermal.js, at sensor resolution), a header in the shape the
// rest of the page already reads (display orientation: shape, stats with min/max positions, palette,
// agc, range), and the oriented pixels for the temperature under the pointer (read with frame.js
// rawAt, like the JPEG mode's raw pixels).

import { splitMessage } from "./frame.js";
import { decode, statistics, ThermalView } from "./thermal.js";

// ArrayBuffer -> {header, payload (Uint8Array)} or null when it is not a thermal message.
export function parseThermal(buffer) {
  const message = splitMessage(buffer);
  if (message === null || message.header.mode !== "thermal") return null;
  const { header, offset } = message;
  const payload = new Uint8Array(buffer, offset);
  if (header.rad_bytes !== payload.length) return null;
  return { header, payload };
}

export class ThermalPainter {
  // settings: as web/thermal.js ThermalView takes them (viewsettings.js forRenderer()).
  constructor(settings) {
    this.view = new ThermalView();
    this.update(settings);
  }

  // Returns null, or the reason the settings were refused (e.g. a palette this page does not know).
  update(settings) {
    try {
      this.view.update(settings);
      return null;
    } catch (e) {
      this.view.update({ ...settings, palette: "ironbow" });
      return e.message;
    }
  }

  // One message -> {header, raw, image} or null (malformed: the previous picture stays).
  async frame(buffer) {
    const message = parseThermal(buffer);
    if (!message) return null;
    const h = message.header;
    let decoded;
    try {
      decoded = await decode(message.payload);
    } catch (e) {
      return null;
    }
    const meta = { tlinear: h.tlinear === true, kelvin_per_count: Number(h.kelvin_per_count) || 0.01 };
    const out = this.view.render(decoded, meta);
    const f = out.frame; // oriented as this viewer shows it
    const s = this.view.settings;
    const header = {
      ...h, shape: [f.rows, f.cols], stats: statistics(f, meta), palette: s.palette, agc: out.agc,
      range: [out.lo, out.hi],
    };
    const pixels = f.pixels;
    const raw = { rows: f.rows, cols: f.cols, offset: 0,
                  view: new DataView(pixels.buffer, pixels.byteOffset, pixels.byteLength) };
    return { header, raw, image: out.image };
  }
}
