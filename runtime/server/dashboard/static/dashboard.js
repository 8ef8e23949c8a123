// mlrt's dashboard: polls dashboard.json (relative to this page) and draws it. The server
// sends counters; this page keeps the last minutes of polls and draws rates and latency
// percentiles from their differences. No library, no network beyond the server.
"use strict";

const POLL_MS = 2000;
const KEEP_S = 300;
const STATUS_ORDER = { alert: 0, warn: 1, ok: 2 };
const history = new Map(); // "model v" -> [{t, counts, total, errors, refused, queue}]
const sortBy = new Map(); // model -> {key, descending}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function fmt(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString();
  return x.toFixed(digits);
}

function sum(obj) {
  return Object.values(obj).reduce((a, b) => a + b, 0);
}

// -- traffic -------------------------------------------------------------------------------

function record(doc) {
  for (const m of doc.models) {
    const key = `${m.name} v${m.version}`;
    const total = sum(m.requests);
    const errors = Object.entries(m.requests).filter(([c]) => c >= "500").reduce((a, [, n]) => a + n, 0);
    const points = history.get(key) || [];
    points.push({ t: doc.time, counts: m.latency.counts, bounds: m.latency.bounds, total, errors,
                  refused: sum(m.rejected), queue: m.queue_rows });
    while (points.length && doc.time - points[0].t > KEEP_S) points.shift();
    history.set(key, points);
  }
}

// The q-quantile of the requests between two polls, from their latency buckets
// (as Prometheus's histogram_quantile: linear within the bucket).
function quantile(q, a, b) {
  const delta = b.counts.map((n, i) => n - (a.counts[i] || 0));
  const n = delta.reduce((x, y) => x + y, 0);
  if (n <= 0) return null;
  const rank = q * n;
  let seen = 0;
  for (let i = 0; i < delta.length; i++) {
    if (seen + delta[i] >= rank && delta[i] > 0) {
      const lo = i === 0 ? 0 : b.bounds[i - 1];
      const hi = i < b.bounds.length ? b.bounds[i] : b.bounds[b.bounds.length - 1];
      return lo + (hi - lo) * ((rank - seen) / delta[i]);
    }
    seen += delta[i];
  }
  return b.bounds[b.bounds.length - 1];
}

function series(points) {
  const out = { rps: [], p50: [], p99: [], queue: [], errors: [], refused: [] };
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1], b = points[i];
    const dt = b.t - a.t;
    if (dt <= 0) continue;
    out.rps.push([b.t, (b.total - a.total) / dt]);
    const p50 = quantile(0.5, a, b), p99 = quantile(0.99, a, b);
    out.p50.push([b.t, p50 === null ? null : p50 * 1e3]);
    out.p99.push([b.t, p99 === null ? null : p99 * 1e3]);
    out.queue.push([b.t, b.queue]);
    out.errors.push([b.t, (b.errors - a.errors) / dt]);
    out.refused.push([b.t, (b.refused - a.refused) / dt]);
  }
  return out;
}

function chart(title, points, unit, now) {
  const w = 170, h = 46;
  // The x axis spans what the page has seen, at least a minute, at most KEEP_S.
  const span = Math.min(KEEP_S, Math.max(60, points.length ? now - points[0][0] : 0));
  const box = el("div", { class: "chart" });
  const last = points.length ? points[points.length - 1][1] : null;
  box.append(el("div", { class: "title", text: title }),
             el("div", { class: "value", text: `${fmt(last)} ${unit}` }));
  const drawing = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  const values = points.filter((p) => p[1] !== null);
  const top = Math.max(1e-9, ...values.map((p) => p[1]));
  const xy = values.map(([t, v]) => `${(w * (1 - (now - t) / span)).toFixed(1)},${(h - 2 - (h - 4) * v / top).toFixed(1)}`);
  drawing.append(svg("polyline", { points: xy.join(" "), fill: "none", stroke: "#1e88e5", "stroke-width": 1.5 }));
  if (xy.length === 1) {  // one interval so far: a dot, not an empty box
    const [x, y] = xy[0].split(",");
    drawing.append(svg("circle", { cx: x, cy: y, r: 2.5, fill: "#1e88e5" }));
  }
  box.append(drawing);
  return box;
}

function drawCharts(doc) {
  const root = document.getElementById("charts");
  root.replaceChildren();
  for (const [key, points] of history) {
    const s = series(points);
    root.append(el("div", { class: "chartrow", "data-model": key },
      el("div", { class: "label", text: key }),
      chart("requests/s", s.rps, "/s", doc.time),
      chart("latency p50", s.p50, "ms", doc.time),
      chart("latency p99", s.p99, "ms", doc.time),
      chart("queued rows", s.queue, "", doc.time),
      chart("errors/s (5xx)", s.errors, "/s", doc.time),
      chart("refused/s", s.refused, "/s", doc.time)));
  }
}

// -- models and endpoints ------------------------------------------------------------------

function drawModels(doc) {
  const driftOf = new Map(doc.drift.map((d) => [`${d.model_name} v${d.model_version}`, d.status]));
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  for (const m of doc.models) {
    const key = `${m.name} v${m.version}`;
    const drift = m.monitored ? driftOf.get(key) || "ok" : "off";
    const total = sum(m.requests);
    const errors = Object.entries(m.requests).filter(([c]) => c !== "200").reduce((a, [, n]) => a + n, 0);
    body.append(el("tr", { "data-model": m.name },
      el("td", { text: m.name }), el("td", { text: m.version }), el("td", { text: m.platform }),
      el("td", { text: m.source }),
      el("td", {}, el("span", { class: `badge ${m.ready ? "ready" : "unready"}`, text: m.ready ? "ready" : "not ready" })),
      el("td", {}, el("span", { class: `badge ${drift}`, text: drift })),
      el("td", { class: "num", text: fmt(m.queue_rows, 0) }), el("td", { class: "num", text: fmt(total, 0) }),
      el("td", { class: "num", text: fmt(errors, 0) }), el("td", { class: "num", text: fmt(sum(m.rejected), 0) })));
  }
}

function drawEndpoints(doc) {
  const section = document.getElementById("endpoints-section");
  const root = document.getElementById("endpoints");
  section.hidden = doc.endpoints.length === 0;
  root.replaceChildren();
  for (const e of doc.endpoints) {
    const table = el("table", { "data-endpoint": e.name });
    table.append(el("tr", {}, ...["variant", "weight", "requests", "role"].map((h) => el("th", { text: h }))));
    for (const v of e.variants) {
      table.append(el("tr", {}, el("td", { text: v.model }), el("td", { class: "num", text: fmt(v.weight, 0) }),
        el("td", { class: "num", text: fmt(v.requests, 0) }), el("td", { text: "variant" })));
    }
    for (const s of e.shadows) {
      const agree = s.agreement === undefined || s.agreement === null ? "" : `, agreement ${fmt(100 * s.agreement)}%`;
      table.append(el("tr", {}, el("td", { text: s.model }), el("td", { class: "num", text: `${fmt(100 * (s.sample ?? 1), 0)}%` }),
        el("td", { class: "num", text: fmt(s.sent ?? s.compared ?? 0, 0) }), el("td", { text: `shadow${agree}` })));
    }
    root.append(el("h3", { text: `${e.name}${e.sticky ? ` (sticky: ${e.sticky})` : ""}` }), table);
  }
}

// -- drift ---------------------------------------------------------------------------------

function band(psi, t) {
  if (psi === null) return "-";
  return psi > t.alert_psi ? "significant" : psi > t.warn_psi ? "moderate" : "none";
}

function verdict(f, report) {
  const t = report.thresholds;
  if (report.window.rows < t.min_rows) return `too few rows (${report.window.rows} of ${t.min_rows})`;
  if (f.p_value === null || f.p_value === undefined) return "-";
  return f.significant ? `significant (p ${f.p_value.toExponential(1)})` : `within noise (p ${f.p_value.toFixed(2)})`;
}

function histogram(f) {
  const ref = f.reference_share || [], cur = f.current_share || [];
  const bw = 8, gap = 3, h = 38, step = 2 * bw + gap;
  const w = Math.max(1, step * ref.length);
  const top = Math.max(1e-9, ...ref, ...cur);
  const drawing = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });
  ref.forEach((r, i) => {
    const c = cur[i] || 0, x = i * step;
    const g = svg("g", {});
    const title = svg("title", {});
    title.textContent = `${(f.bins || [])[i] ?? i}: reference ${(100 * r).toFixed(1)}%, window ${(100 * c).toFixed(1)}%`;
    g.append(title,
      svg("rect", { x, y: h - h * r / top, width: bw, height: h * r / top, fill: "#bdbdbd" }),
      svg("rect", { x: x + bw, y: h - h * c / top, width: bw, height: h * c / top, fill: "#1e88e5" }));
    drawing.append(g);
  });
  return drawing;
}

const SORTS = {
  worst: (a, b) => (STATUS_ORDER[a.status] - STATUS_ORDER[b.status]) || ((b.psi ?? -1) - (a.psi ?? -1)),
  name: (a, b) => a.name.localeCompare(b.name),
  psi: (a, b) => (b.psi ?? -1) - (a.psi ?? -1),
};

function drawDrift(doc) {
  const root = document.getElementById("drift");
  root.replaceChildren();
  if (!doc.drift.length) {
    root.append(el("div", { class: "meta", text: "No model is served with a reference profile." }));
    return;
  }
  for (const report of doc.drift) {
    const model = report.model_name;
    const t = report.thresholds;
    const order = sortBy.get(model) || "worst";
    const section = el("div", { class: "model-drift", "data-model": model, "data-status": report.status });
    section.append(el("h3", {}, `${model} v${report.model_version} `,
      el("span", { class: `badge ${report.status}`, text: report.status })),
      el("div", { class: "meta guard", text:
        `${report.window.rows.toLocaleString()} rows in the window against ${report.reference.rows.toLocaleString()} ` +
        `reference rows; a status needs at least ${t.min_rows}.` }));
    const table = el("table", { class: "features" });
    const head = el("tr");
    for (const [label, key] of [["feature", "name"], ["", null], ["PSI", "psi"], ["band", null],
                                ["status", "worst"], ["difference", null], ["rows", null], ["missing", null],
                                ["reference (grey) and window (blue) per bin", null]]) {
      const th = el("th", { text: label, class: key ? `sortable${order === key ? " sorted" : ""}` : "" });
      if (key) th.addEventListener("click", () => { sortBy.set(model, key); drawDrift(last); });  // a re-sort draws at once
      head.append(th);
    }
    table.append(head);
    const items = [...report.features.map((f) => ({ ...f, section: "input" })),
                   ...report.outputs.map((f) => ({ ...f, section: "output" }))].sort(SORTS[order]);
    for (const f of items) {
      const b = band(f.psi, t);
      table.append(el("tr", { "data-feature": f.name, "data-section": f.section, "data-status": f.status,
                              "data-psi": f.psi === null ? "" : String(f.psi) },
        el("td", { text: f.name }), el("td", { class: "meta", text: f.section }),
        el("td", { class: `num psi ${b}`, text: f.psi === null ? "-" : f.psi.toFixed(4) }),
        el("td", { text: b }),
        el("td", {}, el("span", { class: `badge ${f.status}`, text: f.status })),
        el("td", { text: verdict(f, report) }),
        el("td", { class: "num", text: fmt(f.rows, 0) }), el("td", { class: "num", text: fmt(f.missing, 0) }),
        el("td", {}, histogram(f))));
    }
    section.append(table);
    root.append(section);
  }
}

function drawEvents(doc) {
  const root = document.getElementById("events");
  root.replaceChildren();
  for (const e of [...doc.events].reverse().slice(0, 50)) {
    const when = new Date(e.time * 1000).toLocaleTimeString();
    root.append(el("li", { "data-kind": e.kind }, el("span", { class: "time", text: when }),
      el("span", { class: "kind", text: e.kind }), `${e.model}: ${e.text}`));
  }
  if (!doc.events.length) root.append(el("li", { class: "meta", text: "nothing yet" }));
}

// -- the loop ------------------------------------------------------------------------------

let last = null;
let drawnDrift = "";  // the drift reports last drawn: unchanged ones are not drawn again

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("dashboard.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`dashboard.json: ${response.status}`);
    const doc = await response.json();
    last = doc;
    record(doc);
    drawModels(doc);
    drawCharts(doc);
    drawEndpoints(doc);
    const drift = JSON.stringify(doc.drift);
    if (drift !== drawnDrift) {
      drawnDrift = drift;
      drawDrift(doc);
    }
    drawEvents(doc);
    const up = Math.round(doc.time - doc.started);
    const stall = doc.loop_stall_s === null ? "-" : `${fmt(doc.loop_stall_s * 1e3)} ms`;
    status.textContent = `v${doc.version}, ${doc.ready ? "ready" : "NOT READY"}, up ${up} s, ` +
      `longest event-loop stall in the last minute ${stall}; updated ${new Date(doc.time * 1000).toLocaleTimeString()}`;
    document.body.dataset.updated = String(doc.time);
  } catch (err) {
    status.textContent = `cannot reach the server: ${err.message}`;
  }
}

poll();
setInterval(poll, POLL_MS);
