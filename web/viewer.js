// The viewer: wires the websocket, the picture, the colour bar, the readouts and the controls.
// Thermal mode (the default where the browser has DecompressionStream; ?mode=jpeg forces the other):
// frames arrive as radiometric data and this page paints its own view of them (live.js, thermal.js)
// with its own settings (viewsettings.js), so nobody else's choices change this picture. JPEG mode:
// frames arrive as the server's JPEGs (decoded off the main thread by createImageBitmap) and the
// controls change the server's settings, as before.
// Either way only the newest frame is ever drawn: while one decode runs, just the newest arriving
// message is kept and older ones are dropped, so a slow phone shows fewer frames instead of falling
// further and further behind.

import { parseFrame, rawAt, rawToUnit } from "./frame.js";
import { Link, socketUrl } from "./link.js";
import { PictureCanvas } from "./picture.js";
import { Colorbar } from "./colorbar.js";
import { Controls } from "./controls.js";
import { formatValue, KELVIN_AT_0C } from "./units.js";
import { ThermalPainter } from "./live.js";
import { ViewSettings } from "./viewsettings.js";
import { Monitoring } from "./monitoring.js";
import { CameraPanel } from "./camera.js";

const $ = (id) => document.getElementById(id);
const STALE_MS = 3000; // no frame for this long: the camera counts as offline
const RAW_IDLE_MS = 30000; // stop receiving raw pixels this long after the pointer left
const token = new URLSearchParams(location.search).get("token");
const THERMAL = typeof DecompressionStream === "function" &&
  new URLSearchParams(location.search).get("mode") !== "jpeg";
const viewSettings = new ViewSettings(); // thermal mode: this viewer's own view
const painter = THERMAL ? new ThermalPainter(viewSettings.forRenderer()) : null;
let pendingDefault = false; // "make default" sent, its "settings" answer not yet seen

const view = new PictureCanvas($("view"), $("stage"));
const colorbar = new Colorbar($("colorbar"), $("bar-lo"), $("bar-mid"), $("bar-hi"));

const state = {
  connection: "connecting",
  camera: "starting", // "online" | "offline" | "starting" | "unknown", as the server says
  cameraDetail: "",
  capture: "", // capture's state, as the server last heard it
  fault: null, // {stage: "encoder" | "capture" | "camera", detail}: the part that went quiet
  encoderBusy: true, // until a status says otherwise
  encoderDetail: "",
  frame: null, // newest frame drawn: {header, raw}
  lastFrameAt: 0, // performance.now() of the newest live frame drawn
  staleShown: null, // header of the frame on screen when it is a stale one (not live), else null
  shownAt: [], // performance.now() of recent frames, for fps
  latency: null, // seconds, smoothed
  latencyParts: "", // its breakdown, as text
  decoding: false,
  pending: null, // newest ArrayBuffer waiting for the decoder
  dropped: 0,
  rawWanted: false, // what we asked the server for
  pointer: null, // {fx, fy}: where on the picture (fractions), or null
  pointerSeenAt: -Infinity,
};

const link = new Link(socketUrl(window.location, THERMAL ? "thermal" : "jpeg"), {
  onState(s, wait) {
    state.connection = s;
    const pill = $("connection");
    pill.dataset.state = s;
    pill.textContent = s === "reconnecting" ? "reconnecting…" : s === "connected" ? "connected" : "connecting…";
    pill.title = s === "reconnecting" ? `next try in ${(wait / 1000).toFixed(1)} s` : "";
    updateOffline();
    if (s !== "connected") {
      state.rawWanted = false; // a new connection starts without raw pixels
      controls.enable(false);
    }
    // A refused handshake (wrong token, server full) looks the same as "down" to a page: say what
    // to try when the websocket never opened at all.
    if (s === "reconnecting" && !link.everOpened && link.failures >= 3) {
      say("Cannot open the live connection. The server may be down or full, or need a token: " +
          "open this page with ?token=…");
    }
  },
  onText: handleText,
  onBinary: offer,
});

// A view change: this viewer's own in thermal mode, the server's in JPEG mode.
function changeView(change) {
  if (THERMAL) {
    viewSettings.change(change);
    applyView();
    return;
  }
  sendSettings(change);
}

function sendSettings(settings) {
  const message = { op: "set", settings };
  const t = controls.tokenValue();
  if (t) message.token = t;
  const sent = link.send(message);
  if (!sent) say("Not connected: the change was not sent.");
  return sent;
}

function applyView() {
  const refused = painter.update(viewSettings.forRenderer());
  if (refused) say(refused);
  controls.apply(viewSettings.effective());
  $("view-reset").disabled = !viewSettings.hasOwn();
  monitoring.redraw(); // this viewer's turn of the picture may have changed (regions follow it)
}

const controls = new Controls({
  change: changeView,
  reset: () => {
    if (THERMAL) {
      viewSettings.reset();
      applyView();
      say("");
    }
  },
  // The owner's "this view for everyone": the server's defaults become this view (control token).
  makeDefault: () => {
    if (sendSettings(THERMAL ? viewSettings.effective() : controls.settings)) pendingDefault = THERMAL;
  },
  onUnit: () => {
    view.draw();
    monitoring.redraw();
    colorbar.drawn = null;
    if (state.frame) colorbar.draw(state.frame.header);
    updateReadouts();
  },
  say,
});

if (!THERMAL) { // the server's picture: no view of this viewer's own to reset or share
  $("view-reset").hidden = true;
  $("make-default").hidden = true;
}

const cameraPanel = new CameraPanel({
  send: (m) => link.send(m),
  say,
  token: () => $("token").value.trim(),
});

function say(text) {
  $("message").textContent = text;
}

// Regions, alarms and the history chart. The picture is turned as the encoder's settings say.
const monitoring = new Monitoring({
  send: (m) => link.send(m),
  token: () => $("token").value.trim(),
  orientation: () => ({ rotate: parseInt(controls.settings.rotate, 10) || 0, flip: controls.settings.flip || "none" }),
  header: () => state.frame && state.frame.header,
  say,
});

function handleText(m) {
  if (monitoring.handle(m)) return;
  if (m.type === "hello") {
    if (THERMAL) {
      viewSettings.setDefaults(m.settings);
      controls.hello({ ...m, settings: viewSettings.effective() });
      applyView();
    } else {
      controls.hello(m);
    }
    setCamera(m.camera, "");
    say("");
    state.rawWanted = false;
    syncRaw();
  } else if (m.type === "settings" && m.settings && typeof m.settings === "object") {
    if (THERMAL) {
      viewSettings.setDefaults(m.settings);
      if (pendingDefault) viewSettings.reset(); // this view is now everyone's default: follow it
      pendingDefault = false;
      applyView();
    } else {
      controls.apply(m.settings);
    }
    monitoring.redraw(); // the picture may be turned now
    say("");
  } else if (m.type === "error") {
    say(typeof m.error === "string" ? m.error : "The server refused the request.");
    pendingDefault = false;
    if (THERMAL) controls.apply(viewSettings.effective());
    else controls.revert();
  } else if (m.type === "camera") {
    cameraPanel.update(m.camera);
  } else if (m.type === "status") {
    const detail = (stage) => (stage && typeof stage === "object" && typeof stage.detail === "string"
      ? stage.detail : "");
    const encoder = m.encoder && typeof m.encoder === "object" ? m.encoder : {};
    state.encoderBusy = encoder.state === "encoding" || encoder.state === "streaming";
    state.encoderDetail = detail(encoder);
    state.capture = m.capture && typeof m.capture.state === "string" ? m.capture.state : "";
    const f = m.fault;
    state.fault = f && typeof f === "object" && FAULT_TITLES[f.stage]
      ? { stage: f.stage, detail: typeof f.detail === "string" ? f.detail : "" } : null;
    setCamera(m.camera, detail(m.capture));
  }
}

// The overlay's title for the part the server names as silent or failing.
const FAULT_TITLES = { encoder: "Encoder not responding", capture: "Capture not responding",
                       camera: "Camera offline" };

function setCamera(camera, detail) {
  if (["online", "offline", "starting", "unknown"].includes(camera)) state.camera = camera;
  state.cameraDetail = detail || "";
  const stage = $("stage");
  stage.dataset.camera = state.camera; // for tools and tests: what the page was told
  stage.dataset.capture = state.capture;
  stage.dataset.fault = state.fault ? state.fault.stage : "";
  updateOffline();
}

// Why there is no picture, in a few words.
function offlineReason() {
  if (state.connection !== "connected") return "reconnecting…";
  if (state.fault && state.fault.detail) return state.fault.detail;
  if (state.camera === "offline" && state.cameraDetail) return state.cameraDetail;
  if (!state.encoderBusy && state.encoderDetail) return state.encoderDetail;
  if (state.lastFrameAt > 0) {
    return "no picture for " + Math.round((performance.now() - state.lastFrameAt) / 1000) + " s";
  }
  return "";
}

// ---------------------------------------------------------------- frames

function offer(buffer) {
  if (state.decoding) {
    if (state.pending) state.dropped++;
    state.pending = buffer;
    return;
  }
  show(buffer);
}

async function show(buffer) {
  if (THERMAL) return showThermal(buffer);
  const frame = parseFrame(buffer);
  if (!frame) return next();
  state.decoding = true;
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(new Blob([frame.jpeg], { type: "image/jpeg" }));
  } catch (e) {
    bitmap = null; // a broken JPEG: skip it, keep the previous picture
  }
  state.decoding = false;
  if (bitmap) drawFrame(frame, bitmap);
  next();
}

// Thermal mode: decode the radiometric frame and paint this viewer's view of it.
async function showThermal(buffer) {
  state.decoding = true;
  let shown = null;
  try {
    shown = await painter.frame(buffer);
  } catch (e) {
    shown = null; // a frame that cannot be painted: keep the previous picture
  }
  state.decoding = false;
  if (shown) {
    view.setImage(shown.image, shown.header);
    frameShown(shown);
  }
  next();
}

function next() {
  const buffer = state.pending;
  state.pending = null;
  if (buffer) show(buffer);
}

function drawFrame(frame, bitmap) {
  colorbar.learn(bitmap, frame, performance.now());
  view.setFrame(bitmap, frame.header);
  frameShown(frame);
}

// What follows a frame on screen, in either mode: frame = {header, raw} (display orientation).
function frameShown(frame) {
  const now = performance.now();
  const h = frame.header;
  // A stale frame (the server's cached one, sent on connect after a pause) is shown, greyed, but
  // it is not live: it counts for no latency, no fps and no fresh temperatures.
  const isLive = h.stale !== true;
  monitoring.frame();
  colorbar.draw(h);
  controls.fromFrame(h);
  cameraPanel.fromFrame(h);
  state.frame = frame;
  state.staleShown = isLive ? null : h;
  if (isLive) {
    state.lastFrameAt = now;
    state.shownAt.push(now);
  }
  const age = isLive ? link.since(h.t) : null;
  if (age !== null && Number.isFinite(age)) {
    state.latency = state.latency === null ? age : state.latency * 0.8 + age * 0.2;
    // Where the time goes, for whoever hovers the number: capture -> encoder -> server -> screen.
    const ms = (a, b) => (Number.isFinite(a) && Number.isFinite(b) ? Math.round((b - a) * 1000) + " ms" : "?");
    const encoded = Number.isFinite(h.t_encoded) ? h.t_encoded : h.t_measured;
    state.latencyParts = `encode ${ms(h.t, encoded)}, to server ${ms(encoded, h.t_sent)}, ` +
      `to screen ${Math.round((age - (Number.isFinite(h.t_sent) ? h.t_sent - h.t : 0)) * 1000)} ms`;
  }
  updateOffline();
  updateReadouts(); // with the picture, not up to a timer tick later (also updates the probe)
  syncRaw();
  // Let tests and tools see which frame is on screen.
  $("view").dataset.seq = String(h.seq);
  $("view").dataset.palette = String(h.palette);
  $("view").dataset.stale = String(!isLive);
}

// Is a live frame on screen (one came less than STALE_MS ago, and the one shown is not stale)?
function live() {
  return state.lastFrameAt > 0 && state.staleShown === null &&
    performance.now() - state.lastFrameAt < STALE_MS;
}

// ---------------------------------------------------------------- pointer temperature

function wantRaw() {
  const pointerActive = performance.now() - state.pointerSeenAt < RAW_IDLE_MS;
  return pointerActive || colorbar.needsRaw(state.frame && state.frame.header);
}

function syncRaw() {
  if (THERMAL || state.connection !== "connected") return; // thermal frames carry every pixel
  const want = wantRaw();
  if (want !== state.rawWanted && link.send({ op: "raw", enable: want })) state.rawWanted = want;
}

function pointerAt(ev) {
  state.pointer = view.toFraction(ev.clientX, ev.clientY);
  state.pointerSeenAt = performance.now();
  syncRaw();
  updateProbe();
}

const canvas = $("view");
canvas.addEventListener("pointermove", pointerAt);
canvas.addEventListener("pointerdown", (ev) => {
  if (ev.pointerType !== "mouse") canvas.setPointerCapture(ev.pointerId);
  pointerAt(ev);
});
canvas.addEventListener("pointerleave", (ev) => {
  // A finger lifted keeps its reading on screen; a mouse that left clears it.
  if (ev.pointerType === "mouse") {
    state.pointer = null;
    updateProbe();
  }
});

// Keyboard: the arrow keys move the probe one raw pixel (with Shift, ten), Escape hides it.
canvas.addEventListener("keydown", (ev) => {
  const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[ev.key];
  const shape = state.frame && Array.isArray(state.frame.header.shape) ? state.frame.header.shape : null;
  if (ev.key === "Escape") {
    state.pointer = null;
    updateProbe();
    return;
  }
  if (!step || !shape) return;
  ev.preventDefault(); // the arrows move the probe, not the page
  const [rows, cols] = shape;
  const k = ev.shiftKey ? 10 : 1;
  const p = state.pointer || { fx: 0.5, fy: 0.5 };
  const x = Math.min(cols - 1, Math.max(0, Math.floor(p.fx * cols) + step[0] * k));
  const y = Math.min(rows - 1, Math.max(0, Math.floor(p.fy * rows) + step[1] * k));
  state.pointer = { fx: (x + 0.5) / cols, fy: (y + 0.5) / rows };
  state.pointerSeenAt = performance.now();
  syncRaw();
  updateProbe();
});

function updateProbe() {
  const probe = $("probe");
  const spot = $("spot");
  const frame = live() ? state.frame : null;
  const p = state.pointer;
  const at = p && frame ? view.toRaw(p.fx, p.fy) : null;
  if (!at) {
    probe.hidden = true;
    $("bar-probe").hidden = true;
    spot.textContent = "–";
    delete spot.dataset.value;
    return;
  }
  const value = rawToUnit(frame.header, rawAt(frame.raw, at.x, at.y));
  const text = value === null ? "…" : formatValue(value, frame.header.unit);
  spot.textContent = text;
  if (value === null) delete spot.dataset.value;
  else spot.dataset.value = String(value); // in the frame's unit, for tools and tests
  placeOnBar(frame.header, value);
  spot.dataset.x = String(at.x);
  spot.dataset.y = String(at.y);
  const box = $("stage").getBoundingClientRect();
  const pic = canvas.getBoundingClientRect();
  probe.textContent = text;
  probe.hidden = false;
  const left = pic.left - box.left + p.fx * pic.width;
  const top = pic.top - box.top + p.fy * pic.height;
  // Keep the bubble beside the finger, not under it, and inside the stage.
  probe.style.transform = `translate(${Math.min(left + 14, box.width - 90)}px, ${Math.max(top - 34, 0)}px)`;
}

// The pointer's temperature as a tick on the colour bar (where the bar is linear in temperature).
function placeOnBar(h, value) {
  const tick = $("bar-probe");
  const lo = Array.isArray(h.range) ? h.range[0] : NaN;
  const hi = Array.isArray(h.range) ? h.range[1] : NaN;
  if (value === null || h.agc === "histogram" || !(hi > lo)) {
    tick.hidden = true;
    return;
  }
  const t = Math.min(1, Math.max(0, (value - lo) / (hi - lo)));
  tick.style.left = (t * 100).toFixed(2) + "%";
  tick.hidden = false;
}

// ---------------------------------------------------------------- status and readouts

function updateOffline() {
  const connected = state.connection === "connected";
  const stale = state.lastFrameAt > 0 && performance.now() - state.lastFrameAt > STALE_MS;
  const never = state.lastFrameAt === 0 && connected;
  const away = !connected && (state.lastFrameAt > 0 || state.staleShown !== null);
  const fault = connected ? state.fault : null;
  const offline = fault !== null || state.camera === "offline" || stale || away;
  const stage = $("stage");
  stage.classList.toggle("is-offline", offline);
  $("offline").hidden = !offline;
  $("offline-title").textContent = away ? "Server unreachable"
    : fault ? FAULT_TITLES[fault.stage] : "Camera offline";
  $("offline-detail").textContent = offline ? offlineReason() : "";
  stage.classList.toggle("is-waiting", never && !offline);
  stage.classList.toggle("is-stale", state.staleShown !== null && !offline);
  stage.dataset.waiting = state.staleShown !== null
    ? `last picture, from ${clockTime(state.staleShown.t)}; waiting for a live one…`
    : state.camera === "starting" ? "starting…" : "waiting for the first picture…";
}

// A frame's capture time (Unix seconds) as the time of day, or "earlier" if it has none.
function clockTime(t) {
  return Number.isFinite(t) ? new Date(t * 1000).toLocaleTimeString() : "earlier";
}

function updateStatus() {
  const now = performance.now();
  state.shownAt = state.shownAt.filter((t) => now - t < 2000);
  const fresh = live();
  const fps = fresh && state.shownAt.length > 1
    ? (state.shownAt.length - 1) / ((state.shownAt[state.shownAt.length - 1] - state.shownAt[0]) / 1000) : 0;
  $("st-fps").textContent = fresh ? fps.toFixed(1) : "–";
  $("st-fps").title = `frames drawn a second; ${state.dropped} skipped so far to stay current`;
  $("st-latency").textContent = fresh && state.latency !== null
    ? Math.round(state.latency * 1000) + " ms" : "–";
  $("st-latency").title = fresh && state.latencyParts ? state.latencyParts : "capture to screen";
  const h = state.frame && state.frame.header;
  const shape = h && Array.isArray(h.shape) ? h.shape : null;
  $("st-size").textContent = shape ? `${shape[1]}×${shape[0]}` : "–";
  $("st-sensor").textContent = h && typeof h.sensor === "string" ? h.sensor : "–";
  const tel = fresh && h && h.telemetry && typeof h.telemetry === "object" ? h.telemetry : null;
  let fpaC = null;
  if (tel && Number.isFinite(tel.fpa_temp_c)) fpaC = tel.fpa_temp_c;
  else if (tel && Number.isFinite(tel.fpa_temp_k)) fpaC = tel.fpa_temp_k - KELVIN_AT_0C;
  $("st-fpa").textContent = fpaC === null ? "–" : formatValue(fpaC, "C");
  $("st-ffc").textContent = tel && tel.ffc_state !== undefined && tel.ffc_state !== null
    ? String(tel.ffc_state) : "–";
  updateOffline();
  updateReadouts();
  syncRaw();
}

function updateReadouts() {
  const fresh = live();
  const h = fresh && state.frame && state.frame.header;
  const s = h && h.stats && typeof h.stats === "object" ? h.stats : {};
  const unit = h ? h.unit : "C";
  $("rd-min").textContent = formatValue(s.min, unit);
  $("rd-max").textContent = formatValue(s.max, unit);
  $("rd-centre").textContent = formatValue(s.centre, unit);
  $("rd-mean").textContent = formatValue(s.mean, unit);
  // Only TLinear frames are temperatures: say so instead of showing degrees.
  $("relative").hidden = !h || unit === "C";
  updateProbe();
}

setInterval(updateStatus, 250);

// ---------------------------------------------------------------- full screen

const fullscreen = $("fullscreen");
if (!document.fullscreenEnabled) fullscreen.hidden = true; // e.g. iPhone Safari
fullscreen.addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else $("stage").requestFullscreen().catch(() => say("This browser refused full screen."));
});

// ---------------------------------------------------------------- saving

function withToken(name) {
  return token ? `${name}?token=${encodeURIComponent(token)}` : name;
}

function stamp() {
  return new Date().toISOString().replace(/[:]/g, "-").replace(/\..*/, "");
}

for (const [id, name, ext] of [["save-jpg", "snapshot.jpg", "jpg"], ["save-tiff", "snapshot.tiff", "tiff"],
                               ["save-csv", "snapshot.csv", "csv"]]) {
  const a = $(id);
  a.href = withToken(name);
  a.addEventListener("click", () => { a.download = `thermal-${stamp()}.${ext}`; });
}

$("save-view").addEventListener("click", () => {
  canvas.toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `thermal-view-${stamp()}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
});

link.start();

// For tools and tests (read, do not change): what the page knows, and where it drew the labels.
window.flirstream = { state, link, view, monitoring };

