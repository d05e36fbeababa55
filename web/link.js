// The websocket to the server: connects, reconnects with backoff when the server goes away, and keeps
// an estimate of the server's clock so the viewer can show capture-to-screen latency.

const PING_EVERY_MS = 2000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 5000;
const OFFSET_SAMPLES = 8;

// ws:// or wss:// next to the page (so a reverse proxy under a path prefix works), with its ?token=
// and, for thermal mode, ?mode=thermal (server/protocol.py).
export function socketUrl(loc = window.location, mode = "jpeg") {
  const url = new URL("ws", loc.href);
  url.protocol = loc.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  const token = new URLSearchParams(loc.search).get("token");
  if (token) url.searchParams.set("token", token);
  if (mode === "thermal") url.searchParams.set("mode", "thermal");
  return url.href;
}

export class Link {
  // handlers: onState(state, detail), onText(message object), onBinary(ArrayBuffer)
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
    this.backoff = BACKOFF_FIRST_MS;
    this.retryTimer = null;
    this.pingTimer = null;
    this.samples = []; // [rtt, offset] of recent pings; the one with the smallest rtt is best
    this.offset = null; // server clock - this clock, seconds
    this.failures = 0; // attempts in a row that never opened
    this.everOpened = false;
  }

  start() {
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.handlers.onState("connecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (e) {
      this.retry();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.backoff = BACKOFF_FIRST_MS;
      this.failures = 0;
      socket.opened = true;
      this.everOpened = true;
      this.handlers.onState("connected");
      this.ping();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.ping(), PING_EVERY_MS);
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        let message;
        try {
          message = JSON.parse(ev.data);
        } catch (e) {
          return; // not ours to crash on
        }
        if (!message || typeof message !== "object") return;
        if (message.type === "pong") this.pong(message);
        else this.handlers.onText(message);
      } else {
        this.handlers.onBinary(ev.data);
      }
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      if (!socket.opened) this.failures++;
      this.socket = null;
      clearInterval(this.pingTimer);
      this.retry();
    };
    socket.onerror = () => {
      /* onclose follows and retries */
    };
  }

  retry() {
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.handlers.onState("reconnecting", wait);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  ping() {
    this.send({ op: "ping", t: Date.now() / 1000 });
  }

  pong(message) {
    const t1 = Date.now() / 1000;
    const t0 = message.t;
    const server = message.server;
    if (typeof t0 !== "number" || typeof server !== "number" || !(t1 >= t0) || t1 - t0 > 30) return;
    // NTP-style: the server read its clock about halfway through the round trip.
    this.samples.push([t1 - t0, server - (t0 + t1) / 2]);
    if (this.samples.length > OFFSET_SAMPLES) this.samples.shift();
    let best = this.samples[0];
    for (const s of this.samples) if (s[0] < best[0]) best = s;
    this.offset = best[1];
  }

  // Seconds from `serverTime` (a time stamp from the server's clock) until now.
  since(serverTime) {
    if (this.offset === null || typeof serverTime !== "number") return null;
    return Date.now() / 1000 + this.offset - serverTime;
  }
}
