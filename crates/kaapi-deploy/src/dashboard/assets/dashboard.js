// The kaapi-deploy dashboard: renders /api/state (inlined on first load, then polled) with DOM
// calls only (no innerHTML: every value is text) and plots in inline SVG.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 60 ? value.toFixed(1) + " s" : Math.floor(value / 60) + " m " + Math.round(value % 60) + " s";
}

function time(iso) {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

// One plot: lines for each series over the samples, dashed lines where the release changed.
function plot(title, samples, lines, unit) {
  const width = 600, height = 170, left = 44, right = 8, top = 12, bottom = 20;
  const root = svg("svg", { class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  root.append(svg("title", {}, title));
  const n = samples.length;
  const x = (i) => left + (n <= 1 ? 0 : (i * (width - left - right)) / (n - 1));
  let max = 0;
  for (const line of lines) for (const s of samples) max = Math.max(max, line.value(s) || 0);
  max = max > 0 ? max * 1.1 : 1;
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  root.append(svg("line", { class: "axis", x1: left, y1: y(0), x2: width - right, y2: y(0) }));
  root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: y(0) }));
  root.append(svg("text", { x: 2, y: top + 8 }, max.toFixed(max < 10 ? 1 : 0) + unit));
  root.append(svg("text", { x: 2, y: y(0) }, "0"));
  if (n > 0) {
    root.append(svg("text", { x: left, y: height - 4 }, time(samples[0].at)));
    root.append(svg("text", { x: width - right - 48, y: height - 4 }, time(samples[n - 1].at)));
  }
  for (let i = 1; i < n; i++) {
    if (samples[i].release !== samples[i - 1].release && samples[i].release !== null) {
      const bx = x(i);
      root.append(svg("line", { class: "boundary", x1: bx, y1: top, x2: bx, y2: y(0), "data-release": samples[i].release }));
      root.append(svg("text", { x: bx + 3, y: top + 8, class: "boundary-label" }, "release " + samples[i].release));
    }
  }
  for (const line of lines) {
    const points = [];
    samples.forEach((s, i) => {
      const v = line.value(s);
      if (v !== null && v !== undefined) points.push([x(i), y(v)]);
    });
    if (points.length === 0) continue;
    const d = points.map(([px, py], i) => (i === 0 ? "M" : "L") + px.toFixed(1) + "," + py.toFixed(1)).join(" ");
    root.append(svg("path", { class: line.cls, d, "data-points": points.length }));
  }
  const legend = el("div", { class: "legend" }, ...lines.map((l) => el("span", { class: l.cls }, "— " + l.label)));
  return el("div", { class: "chart" }, el("h3", {}, title), root, legend);
}

function plots(series) {
  if (!series || series.samples.length === 0) {
    return el("p", { class: "muted" }, "no traffic measured yet (the local agent samples its ingress every second)");
  }
  const perSecond = 1000 / series.period_ms;
  const samples = series.samples;
  return el("div", { class: "grid plots" },
    plot("Requests and errors per second", samples, [
      { cls: "requests", label: "requests/s", value: (s) => s.requests * perSecond },
      { cls: "errors", label: "errors/s (5xx, unanswered)", value: (s) => s.errors * perSecond },
    ], "/s"),
    plot("Latency", samples, [
      { cls: "p50", label: "p50", value: (s) => s.p50_ms },
      { cls: "p99", label: "p99", value: (s) => s.p99_ms },
    ], " ms"));
}

function timeline(releases) {
  if (releases.length === 0) return el("p", { class: "muted" }, "no releases yet");
  const rows = releases.map((r) => el("tr", { class: (r.rollback_of ? "rollback " : "") + "release", "data-release": r.number },
    el("td", {}, r.number),
    el("td", { class: r.outcome }, r.outcome.replace("_", " ") + (r.rollback_of ? " (rollback to " + r.rollback_of + ")" : "")),
    el("td", {}, r.image),
    el("td", {}, r.commit),
    el("td", {}, r.version || "–"),
    el("td", {}, r.author),
    el("td", {}, time(r.created_at)),
    el("td", {}, seconds(r.duration_secs)),
    el("td", { class: "detail" }, r.detail || "")));
  return el("table", { class: "timeline" },
    el("thead", {}, el("tr", {}, ...["release", "outcome", "image", "commit", "version", "author", "started", "duration", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function replicas(services) {
  const rows = [];
  for (const service of services) {
    for (const r of service.replicas) {
      const health = r.healthy === true ? "healthy" : r.healthy === false ? "down" : "unknown";
      rows.push(el("tr", { class: "replica" },
        el("td", {}, service.service), el("td", {}, r.id), el("td", {}, r.state),
        el("td", { class: health }, health), el("td", {}, r.release ?? "–"),
        el("td", {}, r.cpu_percent == null ? "–" : r.cpu_percent.toFixed(1) + "%"),
        el("td", {}, r.memory_bytes == null ? "–" : (r.memory_bytes / 1048576).toFixed(1) + " MiB")));
    }
  }
  if (rows.length === 0) return el("p", { class: "muted" }, "no replicas or tasks run");
  return el("table", { class: "replicas" },
    el("thead", {}, el("tr", {}, ...["service", "replica / task", "state", "health", "release", "cpu", "memory"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function deploy(view) {
  if (!view) return null;
  const release = view.release === null ? "" : String(view.release);
  const title = release ? "Deploy of release " + release + " in progress" : "Deploy in progress (no release registered yet)";
  return el("section", { class: "deploy", "data-deploy-release": release },
    el("h3", {}, title),
    el("ol", { class: "phases" }, ...view.phases.map((p) => el("li", { class: p.state, "data-phase": p.name }, p.name))),
    view.messages.length ? el("pre", { class: "messages" }, view.messages.join("\n")) : null);
}

function environment(env) {
  const services = env.services.map((s) => `${s.service} ${s.healthy}/${s.desired} healthy`).join(", ");
  return el("section", { class: "env", "data-environment": env.name },
    el("h2", {}, env.name,
      el("span", { class: "badge " + env.health }, env.health),
      el("span", { class: "muted" }, env.engine),
      el("span", { class: "current" }, env.current_release ? "release " + env.current_release : "nothing deployed"),
      env.url ? el("span", { class: "muted" }, env.url) : null),
    env.error ? el("p", { class: "error" }, env.error) : null,
    services ? el("p", { class: "muted" }, services) : null,
    deploy(env.deploy),
    plots(env.series),
    el("div", { class: "grid" },
      el("div", {}, el("h3", {}, "Releases"), timeline(env.releases)),
      el("div", {}, el("h3", {}, "Replicas and tasks"), replicas(env.services))));
}

function render(state) {
  if (!state) return;
  const main = document.getElementById("environments");
  main.replaceChildren(...state.environments.map(environment));
  document.getElementById("updated").textContent = "updated " + time(state.generated_at);
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (response.ok) render(await response.json());
  } catch (e) {
    document.getElementById("updated").textContent = "dashboard unreachable: " + e;
  }
  setTimeout(poll, POLL_MS);
}

render(JSON.parse(document.getElementById("initial-state").textContent));
setTimeout(poll, POLL_MS);
