// autodep's live status page: polls /status and /metrics once a second and
// draws what it saw (no library, no build step). With a bearer token set on the
// server, the token comes from the URL fragment (/#token=...) or the form, stays
// in this tab's sessionStorage, and goes out as `Authorization: Bearer` on every
// fetch; the page's HTML itself carries no data then.
"use strict";

const POLL_MS = 1000;
const HISTORY_S = 300; // charts: the last 5 minutes
const RATE_WINDOW_S = 5; // request rate: answers over the last 5 s
const LATENCY_WINDOW_S = 30; // latency percentiles: answers over the last 30 s
const TOKEN_KEY = "autodep-token";

let token = null;
const snapshots = []; // {t, status, requests, buckets}, oldest first
const series = {}; // model -> [{t, rate, p50, p99, live, desired, queue}]

// -- token ---------------------------------------------------------------------

function readToken() {
  const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (match) {
    token = decodeURIComponent(match[1]);
    sessionStorage.setItem(TOKEN_KEY, token);
    // Keep the token out of the address bar, the history and screenshots.
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    token = sessionStorage.getItem(TOKEN_KEY);
  }
}

function askForToken(message) {
  const form = document.getElementById("token-form");
  if (message) document.getElementById("token-message").textContent = message;
  form.hidden = false;
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token-input").value.trim() || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("token-form").hidden = true;
});

class Unauthorized extends Error {}

async function get(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized(path);
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return path === "/metrics" ? response.text() : response.json();
}

// -- Prometheus text -----------------------------------------------------------

function parseMetrics(text) {
  const requests = {}; // model -> {code: count}
  const buckets = {}; // model -> [[le, cumulative count]]
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const value = parseFloat(m[3]);
    if (m[1] === "autodep_requests_total") {
      (requests[labels.model] ??= {})[labels.code] = value;
    } else if (m[1] === "autodep_request_duration_seconds_bucket") {
      (buckets[labels.model] ??= []).push([parseFloat(labels.le), value]);
    }
  }
  for (const list of Object.values(buckets)) list.sort((a, b) => a[0] - b[0]);
  return { requests, buckets };
}

// -- derived numbers -----------------------------------------------------------

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

function answered(snapshot, model) {
  return sum(Object.values(snapshot.requests[model] || {}));
}

// The newest snapshot at least `seconds` older than `now` (else the oldest).
function before(now, seconds) {
  let found = snapshots[0];
  for (const s of snapshots) {
    if (s.t <= now.t - seconds) found = s;
    else break;
  }
  return found;
}

function rate(now, model) {
  const then = before(now, RATE_WINDOW_S);
  const dt = now.t - then.t;
  return dt > 0 ? (answered(now, model) - answered(then, model)) / dt : null;
}

// Like Prometheus' histogram_quantile: linear within the bucket holding the rank.
function quantile(q, now, model) {
  const then = before(now, LATENCY_WINDOW_S);
  const cur = now.buckets[model] || [];
  const old = new Map((then.buckets[model] || []).map(([le, c]) => [le, c]));
  const deltas = cur.map(([le, c]) => [le, c - (old.get(le) || 0)]);
  const total = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of deltas) {
    if (count >= rank) {
      if (!isFinite(le)) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(count - prevCount, 1e-9);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

function liveWorkers(model) {
  return model.workers.filter((w) => w.state !== "stopping").length;
}

function record(now) {
  for (const [name, model] of Object.entries(now.status.models)) {
    const points = (series[name] ??= []);
    points.push({
      t: now.t,
      rate: rate(now, name),
      p50: quantile(0.5, now, name),
      p99: quantile(0.99, now, name),
      live: liveWorkers(model),
      desired: model.desired_workers,
      queue: model.queue_depth,
    });
    while (points.length && points[0].t < now.t - HISTORY_S) points.shift();
  }
  while (snapshots.length > 1 && snapshots[0].t < now.t - HISTORY_S - LATENCY_WINDOW_S) {
    snapshots.shift();
  }
}

// -- drawing -------------------------------------------------------------------

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fixed(value, digits = 1) {
  return value == null ? "–" : value.toFixed(digits);
}

function ms(seconds) {
  return seconds == null ? "–" : (seconds * 1000).toFixed(1) + " ms";
}

function mib(bytes) {
  return bytes == null ? "–" : (bytes / 1048576).toFixed(0) + " MiB";
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function duration(seconds) {
  return seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds)} s`;
}

// Each model's charts: lines of its series, over the time this page has watched
// (at least a minute, at most HISTORY_S seconds); `floor` is the least y-axis top.
const CHARTS = [
  {
    title: "request rate",
    unit: "/s",
    lines: [{ key: "rate", label: "req/s", color: "var(--blue)" }],
  },
  {
    title: "latency (ms)",
    unit: "ms",
    scale: 1000,
    digits: 0,
    lines: [
      { key: "p50", label: "p50", color: "var(--blue)" },
      { key: "p99", label: "p99", color: "var(--orange)" },
    ],
  },
  {
    title: "workers",
    unit: "",
    digits: 0,
    floor: (model) => model.max_workers,
    lines: [
      { key: "live", label: "live", color: "var(--green)" },
      { key: "desired", label: "desired", color: "var(--ink)", dash: true },
    ],
  },
  {
    title: "queue depth",
    unit: "",
    digits: 0,
    lines: [{ key: "queue", label: "queued", color: "var(--orange)" }],
  },
];

function chart(points, t, spec, model) {
  const { title, unit, lines, scale = 1, digits = 1 } = spec;
  const floor = spec.floor ? spec.floor(model) : 0;
  const W = 300;
  const H = 100;
  const span = Math.min(HISTORY_S, Math.max(60, t - (points.length ? points[0].t : t)));
  let top = floor;
  for (const p of points) {
    for (const l of lines) if (p[l.key] != null) top = Math.max(top, p[l.key] * scale);
  }
  top = niceMax(top);
  const x = (pt) => (W * (pt - (t - span))) / span;
  const y = (v) => H - (H * v * scale) / top;
  const grid = [0.25, 0.5, 0.75]
    .map((f) => `<line x1="0" x2="${W}" y1="${H * f}" y2="${H * f}" stroke="#e3e6eb"/>`)
    .join("");
  const paths = lines
    .map((l) => {
      let d = "";
      let pen = false;
      for (const p of points) {
        if (p[l.key] == null) {
          pen = false;
          continue;
        }
        d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[l.key]).toFixed(1)}`;
        pen = true;
      }
      const dash = l.dash ? ' stroke-dasharray="4 3"' : "";
      return `<path d="${d}" fill="none" stroke="${l.color}" stroke-width="1.6"${dash}
        vector-effect="non-scaling-stroke"/>`;
    })
    .join("");
  const last = points[points.length - 1] || {};
  const now = lines
    .map((l) => {
      const v = last[l.key];
      const text = v == null ? "–" : (v * scale).toFixed(digits);
      const key = `<i style="background:${l.color}"></i>`;
      return `<span class="legend">${key}${esc(l.label)} ${text}</span>`;
    })
    .join("");
  return `<figure class="chart">
    <figcaption><span>${esc(title)}</span><span class="now">${now}</span></figcaption>
    <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${grid}${paths}</svg>
    <div class="axis">
      <span>−${duration(span)}</span><span>max ${top} ${esc(unit)}</span><span>now</span>
    </div>
  </figure>`;
}

function variantHtml(variant) {
  if (!variant || !variant.name) return "";
  const candidates = (variant.candidates || [])
    .map((c) => {
      if (c.skipped) {
        const why = typeof c.skipped === "string" ? ` (${esc(c.skipped)})` : "";
        return `<span class="skipped">${esc(c.name)}</span>${why}`;
      }
      const speed = typeof c.img_s === "number" ? ` ${c.img_s.toFixed(0)}/s` : "";
      return `${esc(c.name)}${speed}`;
    })
    .join(" · ");
  return `<span class="variant">variant <b>${esc(variant.name)}</b>${
    candidates ? ` — of ${candidates}` : ""
  }</span>`;
}

function workersHtml(model) {
  if (!model.workers.length) return `<p class="empty">no worker (scaled to zero)</p>`;
  const rows = model.workers
    .map(
      (w) => `<tr><td>${esc(w.pid ?? "–")}</td>
        <td class="state ${esc(w.state)}">${esc(w.state)}</td>
        <td class="num">${esc(w.served)}</td><td class="num">${mib(w.rss_bytes)}</td>
        <td>${w.started_at ? clock(w.started_at) : "–"}</td>
        <td class="num">${w.startup_s == null ? "–" : w.startup_s.toFixed(2) + " s"}</td></tr>`,
    )
    .join("");
  return `<table><tr><th>pid</th><th>state</th><th class="num">served</th>
    <th class="num">RSS</th><th>started</th><th class="num">startup</th></tr>${rows}</table>`;
}

function scalingHtml(model) {
  const events = (model.scaling || []).slice(0, 6); // newest first
  if (!events.length) return `<p class="empty">no scaling decision yet</p>`;
  const rows = events
    .map((e) => {
      const dir = e.to > e.from ? "up" : "down";
      return `<tr><td>${clock(e.at)}</td><td class="${dir}">${e.from} → ${e.to}</td>
        <td>${esc(e.reason)}</td></tr>`;
    })
    .join("");
  return `<table><tr><th>at</th><th>workers</th><th>reason</th></tr>${rows}</table>`;
}

function errorsHtml(now, model) {
  const counts = now.requests[model] || {};
  const then = before(now, 60);
  const old = then.requests[model] || {};
  const codes = Object.keys(counts)
    .filter((c) => Number(c) >= 400)
    .sort();
  if (!codes.length) return `<p class="empty">no error answered</p>`;
  const rows = codes
    .map(
      (c) => `<tr><td class="code${c[0]}">${esc(c)}</td><td class="num">${counts[c]}</td>
        <td class="num">${counts[c] - (old[c] || 0)}</td></tr>`,
    )
    .join("");
  return `<table><tr><th>status</th><th class="num">total</th><th class="num">last min</th></tr>
    ${rows}</table>`;
}

function modelHtml(name, model, now) {
  const points = series[name] || [];
  const last = points[points.length - 1] || {};
  const served = sum(model.workers.map((w) => w.served));
  const errors = sum(
    Object.entries(now.requests[name] || {})
      .filter(([code]) => Number(code) >= 400)
      .map(([, n]) => n),
  );
  const kpi = (field, value, label, bad = false) =>
    `<div class="kpi"><span class="value${bad ? " bad" : ""}" data-field="${field}">${value}</span>
      <span class="label">${label}</span></div>`;
  const ready = model.ready ? "ready" : "not ready";
  const workers = `${liveWorkers(model)} / ${model.desired_workers}`;
  const range = `${model.min_workers}–${model.max_workers}`;
  return `<header><h2>${esc(name)}</h2>
      <span class="badge ${ready.replace(" ", "-")}">${ready}</span>
      ${variantHtml(model.variant)}</header>
    <div class="kpis">
      ${kpi("workers", workers, `workers live / desired (${range})`)}
      ${kpi("queue", model.queue_depth, "queued")}
      ${kpi("rate", fixed(last.rate), "requests/s")}
      ${kpi("p50", ms(last.p50), "p50 latency")}
      ${kpi("p99", ms(last.p99), "p99 latency")}
      ${kpi("served", served, "served by live workers")}
      ${kpi("errors", errors, "errors", errors > 0)}
      ${kpi("restarts", model.restarts, "restarts", model.restarts > 0)}
    </div>
    <div class="charts">${CHARTS.map((spec) => chart(points, now.t, spec, model)).join("")}</div>
    <div class="details">
      <div><h3>Workers</h3>${workersHtml(model)}</div>
      <div><h3>Scaling decisions</h3>${scalingHtml(model)}</div>
      <div><h3>Errors by status</h3>${errorsHtml(now, name)}</div>
    </div>`;
}

function render(now) {
  const main = document.getElementById("models");
  const names = Object.keys(now.status.models);
  for (const name of names) {
    let section = main.querySelector(`section[data-model="${CSS.escape(name)}"]`);
    if (!section) {
      section = document.createElement("section");
      section.className = "model";
      section.dataset.model = name;
      main.appendChild(section);
    }
    section.innerHTML = modelHtml(name, now.status.models[name], now);
  }
  for (const section of main.querySelectorAll("section[data-model]")) {
    if (!names.includes(section.dataset.model)) section.remove();
  }
  const total = sum(names.map((n) => (series[n] || []).at(-1)?.rate || 0));
  const workers = sum(names.map((n) => liveWorkers(now.status.models[n])));
  const models = `${names.length} model${names.length === 1 ? "" : "s"}`;
  document.getElementById("summary").textContent =
    `${models} · ${workers} workers · ${total.toFixed(1)} requests/s`;
  const unknown = now.requests.unknown;
  const box = document.getElementById("unknown-errors");
  box.hidden = !unknown;
  if (unknown) {
    box.textContent =
      "Requests for no served model: " +
      Object.entries(unknown)
        .map(([code, n]) => `${n} × ${code}`)
        .join(", ");
  }
}

// -- the loop ------------------------------------------------------------------

async function poll() {
  const connection = document.getElementById("connection");
  try {
    const [status, text] = await Promise.all([get("/status"), get("/metrics")]);
    const now = { t: Date.now() / 1000, status, ...parseMetrics(text) };
    snapshots.push(now);
    record(now);
    render(now);
    connection.textContent = "updated " + clock(now.t);
    connection.classList.remove("error");
  } catch (error) {
    if (error instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      askForToken("The token was missing or wrong. Open /#token=TOKEN, or enter it here:");
    }
    connection.textContent = "no answer: " + error.message;
    connection.classList.add("error");
  }
}

readToken();
if (document.body.dataset.auth === "required" && !token) askForToken();
async function loop() {
  const began = Date.now();
  if (token || document.body.dataset.auth !== "required") await poll();
  setTimeout(loop, Math.max(0, POLL_MS - (Date.now() - began)));
}
loop();
