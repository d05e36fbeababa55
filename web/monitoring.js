// Monitoring in the viewer: asks the server for it ({"op": "monitor"}) on every connection, then
// keeps the regions layer, the alarm banner and the history chart up to date from the server's
// "regions", "alarms", "history" and "sample" messages (server/protocol.py).

import { RegionLayer, sensorOf } from "./regions.js";
import { HistoryChart } from "./chart.js";
import { formatValue } from "./units.js";

const $ = (id) => document.getElementById(id);

export class Monitoring {
  // send(message) -> bool; token() -> control token; orientation() -> {rotate, flip} of the picture
  // on screen; header() -> the newest frame's header (for the sensor); say(text).
  constructor({ send, token, orientation, header, say }) {
    this.send = send;
    this.alarms = {};
    this.layer = new RegionLayer({
      stage: $("stage"), canvas: $("view"), tools: $("region-tools"), send, token, orientation,
      sensor: () => sensorOf(header()), say,
    });
    this.chart = new HistoryChart($("history"));
  }

  // A text message from the server; true if it was one of ours.
  handle(m) {
    if (m.type === "hello") {
      this.send({ op: "monitor" }); // regions, alarms and history come back; samples follow
      return false;
    }
    if (m.type === "regions") this.layer.setRegions(m.regions);
    else if (m.type === "alarms") this.setAlarms(m.alarms);
    else if (m.type === "history") this.chart.setHistory(m.history);
    else if (m.type === "sample") {
      this.chart.add(m.sample);
      this.layer.setReadings(m.sample && m.sample.regions);
    } else return false;
    return true;
  }

  // After every frame drawn: the picture may have moved or turned.
  frame() {
    this.layer.draw();
  }

  // After a change of unit or orientation.
  redraw() {
    this.layer.draw();
    this.chart.draw();
    this.setAlarms(this.alarms);
  }

  setAlarms(alarms) {
    this.alarms = alarms && typeof alarms === "object" ? alarms : {};
    this.layer.setAlarms(this.alarms);
    const active = Object.entries(this.alarms).filter(([, a]) => a && a.state === "alarm");
    const banner = $("alarm-banner");
    banner.hidden = active.length === 0;
    banner.dataset.alarms = active.map(([name]) => name).join(",");
    banner.textContent = active.map(([name, a]) => {
      const where = a.roi ? a.roi : "frame";
      const stat = a.direction === "below" ? "min" : "max";
      return `⚠ ${name}: ${where} ${stat} ${formatValue(a.value, "C")} ${a.direction} ` +
        `${formatValue(a.threshold, "C")} at ${new Date(a.since * 1000).toLocaleTimeString()}`;
    }).join(" · ");
  }
}
