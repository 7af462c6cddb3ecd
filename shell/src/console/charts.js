// The console's charts of the last hour, from `GET /console/activity`, drawn with the vendored
// uPlot (vendor/uPlot.iife.min.js): events per minute by type, readers online, this node's
// delivery latency, and a sparkline of each online reader's events per minute.
"use strict";

const PALETTE = ["#1d4ed8", "#15803d", "#b91c1c", "#7e22ce", "#c2410c", "#0e7490", "#a16207", "#be185d",
  "#4b5563", "#4d7c0f", "#6d28d9", "#0f766e", "#9f1239", "#1e40af", "#854d0e", "#6b7280"];
const CHART_HEIGHT = 170;
/** Refreshes after new activity come at most this often. */
const NUDGE_EVERY_MS = 3000;

class Charts {
  /** `fetchActivity()` resolves with the endpoint's body, or null when it could not be read. */
  constructor(fetchActivity) {
    this.fetchActivity = fetchActivity;
    this.plots = {}; // by container id: { plot, labels }
    this.sparklines = new Map(); // userId -> events per minute
    this.colours = new Map(); // series label -> colour, kept for the page's life
    this.timer = null;
    this.soon = null;
    this.last = 0; // when the last refresh started
    this.generation = 0; // a refresh started before the last start or stop draws nothing
    window.addEventListener("resize", () => this.resize());
  }

  /** Refreshes now and every `everyMs` after. */
  start(everyMs) {
    this.stop();
    this.refresh();
    this.timer = setInterval(() => this.refresh(), everyMs);
  }

  stop() {
    this.generation += 1;
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.timer = null;
    this.soon = null;
  }

  /** Something happened: refresh soon, once however many events come meanwhile, and at most
   *  every NUDGE_EVERY_MS. */
  nudge() {
    if (this.soon !== null || this.timer === null) return;
    const wait = Math.max(1000, this.last + NUDGE_EVERY_MS - Date.now());
    this.soon = setTimeout(() => { this.soon = null; this.refresh(); }, wait);
  }

  async refresh() {
    const generation = this.generation;
    this.last = Date.now();
    const a = await this.fetchActivity();
    if (!a || generation !== this.generation) return;
    const types = a.eventsByType.map((t) => t.eventType);
    this.draw("chart-events", a.minutes, types, a.eventsByType.map((t) => t.perMinute), "events");
    this.draw("chart-online", a.minutes, ["online"], [a.onlineReaders], "readers");
    // Minutes without deliveries break the line: a lone minute shows as a dot.
    this.draw("chart-delivery", a.minutes, ["p50", "p99"], [a.deliveryMs.p50, a.deliveryMs.p99], "ms", true);
    this.sparklines = new Map(a.readers.map((r) => [r.userId, r.perMinute]));
    for (const cell of document.querySelectorAll("td.spark")) this.fillSparkline(cell);
  }

  /** Draws one chart, or gives it new data when its series are the same. */
  draw(id, minutes, labels, values, unit, dots = false) {
    const el = document.getElementById(id);
    const data = [minutes, ...values];
    const current = this.plots[id];
    if (current && current.labels.join("\n") === labels.join("\n")) {
      current.plot.setData(data);
      return;
    }
    current?.plot.destroy();
    const series = [{}, ...labels.map((label) => ({
      label, stroke: this.colour(label), width: 2, spanGaps: false,
      points: { show: dots, size: 5, fill: this.colour(label) },
      value: (_, v) => (v === null || v === undefined ? "—" : `${v} ${unit}`),
    }))];
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: CHART_HEIGHT,
      series,
      scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(max ?? 0, 1)] } },
      axes: [{ stroke: "#555" }, { stroke: "#555", size: 44 }],
      legend: { live: false },
    };
    this.plots[id] = { plot: new uPlot(opts, data, el), labels };
  }

  /** A series' colour: the next free one the first time its label is seen, the same after. */
  colour(label) {
    if (!this.colours.has(label)) this.colours.set(label, PALETTE[this.colours.size % PALETTE.length]);
    return this.colours.get(label);
  }

  resize() {
    for (const [id, { plot }] of Object.entries(this.plots)) {
      plot.setSize({ width: Math.max(document.getElementById(id).clientWidth, 200), height: CHART_HEIGHT });
    }
  }

  /** The sparkline cell of a reader's row (`data-user`): its events per minute, drawn in SVG. */
  fillSparkline(cell) {
    const counts = this.sparklines.get(cell.dataset.user);
    if (!counts) return cell.replaceChildren();
    const total = counts.reduce((a, b) => a + b, 0);
    const top = Math.max(...counts, 1);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${counts.length - 1} 10`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "sparkline");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${total} events in the last hour`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", counts.map((n, i) => `${i},${(10 - (n / top) * 9.5).toFixed(2)}`).join(" "));
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
    cell.replaceChildren(svg);
  }
}
