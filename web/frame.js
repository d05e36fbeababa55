// One binary websocket message -> a frame object, or null when the message is malformed.
// Layout (server/protocol.py): uint32 big-endian N, N bytes of UTF-8 JSON header, the JPEG
// (header.jpeg_bytes long), then the radiometric pixels as little-endian uint16 (header.raw_bytes,
// 0 unless this viewer asked for them).

import { KELVIN_AT_0C } from "./units.js";

const decoder = new TextDecoder();

function finite(x) {
  return typeof x === "number" && Number.isFinite(x);
}

// Every binary message of both modes starts the same way: ArrayBuffer -> {header, offset (where
// the bytes after the header start)}, or null when it does not.
export function splitMessage(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 4) return null;
  const n = new DataView(buffer).getUint32(0, false);
  if (n === 0 || 4 + n > buffer.byteLength) return null;
  let header;
  try {
    header = JSON.parse(decoder.decode(new Uint8Array(buffer, 4, n)));
  } catch (e) {
    return null;
  }
  if (!header || typeof header !== "object") return null;
  return { header, offset: 4 + n };
}

export function parseFrame(buffer) {
  const message = splitMessage(buffer);
  if (message === null) return null;
  const { header, offset: jpegStart } = message;
  const view = new DataView(buffer);
  const jpegBytes = header.jpeg_bytes;
  if (!Number.isInteger(jpegBytes) || jpegBytes <= 0 || jpegStart + jpegBytes > buffer.byteLength) {
    return null;
  }
  const frame = {
    header,
    jpeg: new Uint8Array(buffer, jpegStart, jpegBytes),
    raw: null, // {rows, cols, view, offset}: read with rawAt()
  };
  // The pixels are optional: a wrong size or shape just means "no temperatures under the pointer".
  const shape = header.shape;
  const rawBytes = header.raw_bytes | 0;
  const rawStart = jpegStart + jpegBytes;
  if (Array.isArray(shape) && shape.length === 2 && Number.isInteger(shape[0]) &&
      Number.isInteger(shape[1]) && shape[0] > 0 && shape[1] > 0 &&
      rawBytes === shape[0] * shape[1] * 2 && rawStart + rawBytes <= buffer.byteLength) {
    frame.raw = { rows: shape[0], cols: shape[1], view, offset: rawStart };
  }
  return frame;
}

// The raw value at raw-pixel (x, y), or null outside the frame / without raw pixels.
export function rawAt(raw, x, y) {
  if (!raw || x < 0 || y < 0 || x >= raw.cols || y >= raw.rows) return null;
  return raw.view.getUint16(raw.offset + 2 * (y * raw.cols + x), true);
}

// A raw value in the frame's unit: degrees C for TLinear frames, else the sensor's counts.
export function rawToUnit(header, value) {
  if (value === null) return null;
  if (header.unit === "C" && finite(header.kelvin_per_count)) {
    return value * header.kelvin_per_count - KELVIN_AT_0C;
  }
  return value;
}

export function shapeOf(header) {
  const s = header && header.shape;
  if (Array.isArray(s) && s.length === 2 && s[0] > 0 && s[1] > 0) return { rows: s[0], cols: s[1] };
  return null;
}

export { finite };
