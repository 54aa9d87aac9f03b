// The Memory tab: the live memory plan's lines, the loaded models, and a chart of device and host memory
// from polling GET /v1/memory, with the device's recoveries (any job's, as the server reports them) marked.

import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const KEEP_SAMPLES = 300;

function gib(bytes) {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

function svg(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

export class MemoryPanel {
  constructor() {
    this.samples = []; // {time, device, host}
    this.recoveries = []; // {time, text}
    this.timer = null;
  }

  markRecovery(text) {
    this.recoveries.push({ time: Date.now(), text });
  }

  start(onError) {
    if (this.timer) return;
    const poll = () => this.poll().catch((error) => {
      this.stop();
      onError(error);
    });
    poll();
    this.timer = setInterval(poll, 1000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async poll() {
    const memory = await api("GET", "/v1/memory");
    this.samples.push({ time: Date.now(), device: memory.device.in_use_bytes, host: memory.host.process_rss_bytes });
    for (const recovery of memory.recoveries) {
      const time = recovery.time * 1000;
      if (!this.recoveries.some((mark) => mark.text === recovery.text && Math.abs(mark.time - time) < 2000))
        this.recoveries.push({ time, text: recovery.text });
    }
    if (this.samples.length > KEEP_SAMPLES) this.samples.shift();
    const device = memory.device;
    const deviceTotal = device.total_bytes ? ` of ${gib(device.total_bytes)} (${gib(device.free_bytes)} free)` : "";
    $("memory-now").textContent =
      `${device.device}: ${gib(device.in_use_bytes)} in use${deviceTotal}, peak ${gib(device.peak_bytes)}. ` +
      `Host: process ${gib(memory.host.process_rss_bytes)}, ${gib(memory.host.available_bytes)} available of ${gib(memory.host.total_bytes)}.`;
    $("memory-plan").textContent = memory.plan.length ? memory.plan.join("\n") : "No job has run yet.";
    $("memory-models").textContent = JSON.stringify(memory.models, null, 2);
    this.draw(device.total_bytes || 0, memory.host.total_bytes);
  }

  draw(deviceTotal, hostTotal) {
    const chart = $("memory-chart");
    // Drawn in the chart's own pixels, so that its text is not stretched.
    const width = chart.clientWidth || 600;
    const height = chart.clientHeight || 200;
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const first = this.samples[0].time;
    const span = Math.max(this.samples.at(-1).time - first, 1000);
    const top = Math.max(1, ...this.samples.map((sample) => Math.max(sample.device, sample.host))) * 1.1;
    const x = (time) => ((time - first) / span) * width;
    const y = (bytes) => height - (bytes / top) * height;
    const line = (key, className) =>
      svg("polyline", {
        class: className,
        fill: "none",
        points: this.samples.map((sample) => `${x(sample.time).toFixed(1)},${y(sample[key]).toFixed(1)}`).join(" "),
      });
    const parts = [svg("rect", { x: 0, y: 0, width, height, class: "chart-back" })];
    for (const recovery of this.recoveries.filter((mark) => mark.time >= first)) {
      const mark = svg("line", { x1: x(recovery.time), x2: x(recovery.time), y1: 0, y2: height, class: "recovery" });
      const title = svg("title", {});
      title.textContent = recovery.text;
      mark.append(title);
      parts.push(mark);
    }
    parts.push(line("device", "device"), line("host", "host"));
    const scale = svg("text", { x: 4, y: 14, class: "chart-label" });
    scale.textContent = `${gib(top)} (device total ${deviceTotal ? gib(deviceTotal) : "n/a"}, host ${gib(hostTotal)})`;
    parts.push(scale);
    chart.replaceChildren(...parts);
  }
}
