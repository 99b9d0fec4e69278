// The kubeinfer dashboard: one EventSource on /api/events, the page redrawn from what it sends.
// Plain JavaScript, no framework and no network beyond the platform that served the page.
"use strict";

const WINDOW_S = 300; // the charts show the last five minutes
const MAX_SAMPLES = 900;
const state = { status: null, samples: [], decisions: [], cost: null, prices: null, updated: 0, services: [], metrics: null };
// the service shown: ?service=KEY in the page's address (a cluster's dashboard shows several)
let selected = new URLSearchParams(location.search).get("service");

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const num = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
const money = (v) => (v === null || v === undefined ? "–" : v >= 1 ? `$${v.toFixed(2)}` : `$${v.toFixed(4)}`);
const clock = (t) => new Date(t * 1000).toLocaleTimeString();

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// -- charts: lines over time on a <canvas>, drawn by hand ------------------------------------------------
function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawChart(canvas, lines, opts = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 44, right = 8, top = 8, bottom = 20;
  const now = state.samples.length ? state.samples[state.samples.length - 1].t : Date.now() / 1000;
  const t0 = now - WINDOW_S;
  const x = (t) => left + ((t - t0) / WINDOW_S) * (w - left - right);
  let max = opts.min || 1;
  for (const line of lines) for (const p of line.points) if (p[0] >= t0 && p[1] !== null && p[1] > max) max = p[1];
  max *= 1.15;
  const y = (v) => h - bottom - (v / max) * (h - top - bottom);
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = css("--line");
  g.fillStyle = css("--muted");
  g.lineWidth = 1;
  for (let i = 0; i <= 3; i += 1) {
    const v = (max / 3) * i, yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
    g.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2), 2, yy + 4);
  }
  for (let s = 0; s <= WINDOW_S; s += 60) {
    const label = s === WINDOW_S ? "now" : `-${(WINDOW_S - s) / 60}m`;
    g.fillText(label, Math.min(x(t0 + s) - 8, w - right - 20), h - 5);
  }
  for (const t of opts.markers || []) {
    if (t < t0) continue;
    g.strokeStyle = css("--dec");
    g.setLineDash([3, 3]);
    g.beginPath(); g.moveTo(Math.round(x(t)) + 0.5, top); g.lineTo(Math.round(x(t)) + 0.5, h - bottom); g.stroke();
    g.setLineDash([]);
  }
  for (const line of lines) {
    g.strokeStyle = css(line.color);
    g.lineWidth = 1.75;
    g.beginPath();
    let pen = false, last = null;
    for (const [t, v] of line.points) {
      if (t < t0 - 1 || v === null) { pen = false; continue; }
      const xx = x(t), yy = y(v);
      if (!pen) { g.moveTo(xx, yy); pen = true; }
      else if (line.step && last !== null) { g.lineTo(xx, y(last)); g.lineTo(xx, yy); }
      else g.lineTo(xx, yy);
      last = v;
    }
    g.stroke();
  }
}

function series(key) {
  return state.samples.map((s) => [s.t, s[key]]);
}

function drawCharts() {
  const marks = state.decisions.map((d) => d.t);
  drawChart($("chart-rps"), [{ color: "--rps", points: series("rps") }, { color: "--err", points: series("errors") }], { markers: marks });
  drawChart($("chart-latency"), [{ color: "--p50", points: series("p50") }, { color: "--p99", points: series("p99") }]);
  drawChart($("chart-queue"), [{ color: "--queue", points: series("queue") }, { color: "--inflight", points: series("in_flight") }]);
  drawChart($("chart-replicas"), [
    { color: "--desired", points: series("desired"), step: true },
    { color: "--ready", points: series("ready"), step: true },
  ], { markers: marks, min: 2 });
}

// -- tables and figures ------------------------------------------------------------------------------------
function renderStatus() {
  const st = state.status;
  if (!st) return;
  const a = st.autoscaling || {};
  document.title = `${st.name} · kubeinfer`;
  $("name").textContent = st.name;
  const where = st.namespace ? `namespace ${st.namespace}  ` : "";
  $("summary").textContent = `${where}${st.endpoint ? st.endpoint.http : ""}  revision ${st.revision} (version ${st.version})  policy ${a.policy} [${a.min}, ${a.max}]`;
  renderCluster(st);
  $("ready-count").textContent = st.ready_replicas;
  $("desired-count").textContent = st.desired;
  const ro = st.rollout;
  const rs = st.rollout_status;
  $("revision").textContent = ro ? `rolling out revision ${ro.revision} (from ${ro.previous}, ${age(ro.elapsed)})`
    : rs ? `revision ${st.revision}: ${rs.phase}, ${rs.reason}${rs.message ? " (" + rs.message + ")" : ""}` : `revision ${st.revision}`;
  $("replicas").tBodies[0].innerHTML = st.replicas.map((r) => {
    const le = r.last_exit;
    const exit = le ? `${esc(le.code)} ${esc(le.reason)}${le.message ? ": " + esc(le.message) : ""}` : "";
    const why = [r.reason, r.message].filter(Boolean).map(esc).join(": ");
    return `<tr data-replica-id="${esc(r.id)}" data-state="${esc(r.state)}" data-ready="${r.ready}" data-restarts="${r.restarts}">` +
      `<td>${esc(r.id)}</td><td><span class="badge ${esc(r.state)}">${esc(r.state)}</span></td><td>${r.ready ? "yes" : "no"}</td>` +
      `<td>${esc(r.revision)} (${esc(r.version)})</td><td class="restarts">${r.restarts}</td><td class="msg">${exit}</td><td class="msg">${why}</td>` +
      `<td>${age(r.age)}</td><td>${esc(r.pid ?? r.node ?? "–")}</td><td>${r.cpu === null ? "–" : num(r.cpu, 2)}</td><td>${bytes(r.memory)}</td></tr>`;
  }).join("");
  const cold = st.cold_starts && st.cold_starts.length ? `; scale-from-zero waits ${st.cold_starts.map((c) => c.toFixed(2) + " s").join(", ")}` : "";
  $("autoscaling").textContent = `policy ${a.policy}, between ${a.min} and ${a.max} replicas; last decision: ${a.reason || "none yet"}${a.message ? " (" + a.message + ")" : ""}${a.buffering ? "; buffering requests" : ""}${cold}`;
  const v = st.vpa;
  if (v) {
    const row = (k) => `<tr><td>${k}</td><td>${num(v[k].cpu, 3)} cores</td><td>${bytes(v[k].memory)}</td></tr>`;
    $("vpa").innerHTML = `<table><thead><tr><th></th><th>CPU</th><th>Memory</th></tr></thead><tbody>${row("lower")}${row("target")}${row("upper")}</tbody></table>` +
      `<p class="muted">mode ${esc(v.mode)}; ${esc(v.reason)}</p>`;
  }
  $("events").tBodies[0].innerHTML = (st.events || []).slice().reverse().map((e) =>
    `<tr><td>${clock(e.time)}</td><td><span class="badge ${esc(e.type)}">${esc(e.type)}</span></td><td>${esc(e.reason)}</td>` +
    `<td>${e.kind ? esc(e.kind) + "/" : ""}${esc(e.object)}</td><td class="msg">${esc(e.message)}${e.count > 1 ? ` (x${e.count})` : ""}</td></tr>`).join("");
}

// what only a cluster's service has: the InferenceService's conditions, the rollout's state, the HPA
function renderCluster(st) {
  const cluster = st.source === "cluster";
  $("cluster").hidden = !cluster;
  if (!cluster) return;
  const rs = st.rollout_status;
  $("rollout-status").textContent = rs ? `rollout: ${rs.phase} (${rs.reason})` : "";
  const conds = st.conditions || [];
  $("conditions").tBodies[0].innerHTML = conds.length ? conds.map((c) =>
    `<tr data-type="${esc(c.type)}" data-status="${esc(c.status)}"><td>${esc(c.type)}</td><td><span class="badge ${esc(c.status)}">${esc(c.status)}</span></td>` +
    `<td>${esc(c.reason)}</td><td class="msg">${esc(c.message)}</td><td>${esc(c.lastTransitionTime ?? "")}</td></tr>`).join("")
    : `<tr><td colspan="5" class="muted">no conditions: the operator has not written this service's status</td></tr>`;
  const h = st.hpa;
  $("hpa").innerHTML = h ? `<h2>HorizontalPodAutoscaler ${esc(h.name)}</h2><p>current ${esc(h.current ?? "–")}, desired ${esc(h.desired ?? "–")}` +
    `${h.lastScaleTime ? ", last scaled " + esc(h.lastScaleTime) : ""}</p>` +
    (h.conditions || []).map((c) => `<div><span class="badge ${esc(c.status)}">${esc(c.type)}</span> ${esc(c.reason)}: ${esc(c.message)}</div>`).join("")
    : "";
}

function renderServices() {
  const sel = $("service");
  const list = state.services || [];
  sel.hidden = list.length < 2 && !(list.length === 1 && list[0].namespace);
  const want = list.map((s) => `${s.key}|${s.ready}/${s.desired}`).join(",");
  if (sel.dataset.list !== want) {
    sel.dataset.list = want;
    sel.innerHTML = list.map((s) => `<option value="${esc(s.key)}">${esc(s.key)} (${s.ready}/${s.desired} ready)</option>`).join("");
  }
  if (state.key) sel.value = state.key;
}

function renderNote() {
  const note = state.error ? `the status cannot be read: ${state.error} (the page shows the last one read, and follows again once it can)`
    : (state.metrics && state.metrics.note) || "";
  $("note").hidden = !note;
  $("note").textContent = note;
}

function renderFigures() {
  const s = state.samples[state.samples.length - 1];
  if (s) {
    $("rps").textContent = num(s.rps);
    $("errors").textContent = num(s.errors);
    $("p50").textContent = s.p50 === null ? "–" : `${num(s.p50)} ms`;
    $("p99").textContent = s.p99 === null ? "–" : `${num(s.p99)} ms`;
    $("queue").textContent = num(s.queue, 0);
  }
  const c = state.cost, p = state.prices;
  if (c) {
    $("cost-hour").textContent = money(c.per_hour);
    $("cost-million").textContent = money(c.per_million);
    const gpu = c.gpus ? ` + ${c.gpus} GPU × $${p.gpu_hour}` : "";
    $("cost-basis").textContent = `${c.replicas} replica(s) × (${num(c.cpu, 3)} CPU × $${p.cpu_hour} + ${num(c.memory / 2 ** 30, 3)} GiB × $${p.gib_hour}${gpu}) per hour` +
      ` (${c.basis}). Per million requests: the hourly cost over the mean request rate of the last minute. ` +
      "Prices: KUBEINFER_PRICE_CPU_HOUR, KUBEINFER_PRICE_GIB_HOUR, KUBEINFER_PRICE_GPU_HOUR.";
  }
  $("decisions").tBodies[0].innerHTML = state.decisions.slice().reverse().map((d) =>
    `<tr><td>${clock(d.t)}</td><td>${d.before} → ${d.after}</td><td>${esc(d.reason || (d.before === 0 ? "start" : ""))}</td><td class="msg">${esc(d.message)}</td>` +
    `<td>${num(d.rps)} req/s, queue ${num(d.queue, 0)}, in replicas ${num(d.in_flight, 0)}</td></tr>`).join("");
}

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    renderServices();
    renderNote();
    renderStatus();
    renderFigures();
    drawCharts();
    document.body.dataset.seq = state.seq ?? "";
  });
}

function take(doc) {
  state.status = doc.status;
  state.cost = doc.cost;
  state.seq = doc.seq;
  state.key = doc.key;
  state.error = null; // a status came: it could be read
  state.metrics = doc.metrics;
  if (doc.services) state.services = doc.services;
  state.updated = Date.now();
}

// -- the live connection ---------------------------------------------------------------------------------------
let source = null;
function connect() {
  const conn = $("conn");
  if (source) source.close();
  const es = new EventSource(selected ? `/api/events?service=${encodeURIComponent(selected)}` : "/api/events");
  source = es;
  es.addEventListener("empty", () => {
    state.status = null;
    state.metrics = { note: "no InferenceService to show yet: the page follows as soon as one exists" };
    renderNote();
    conn.className = "conn live";
    conn.textContent = "live";
  });
  es.addEventListener("unreadable", (ev) => {
    // the server could not read the status (the API server did not answer, a permission is missing)
    state.error = JSON.parse(ev.data).message;
    renderNote();
  });
  es.addEventListener("gone", (ev) => {
    // the service was deleted (or never existed): show the first one there is
    const doc = JSON.parse(ev.data);
    state.services = doc.services || [];
    choose(null);
  });
  es.addEventListener("init", (ev) => {
    const doc = JSON.parse(ev.data);
    take(doc);
    state.prices = doc.prices;
    state.samples = doc.history.samples;
    state.decisions = doc.history.decisions;
    conn.className = "conn live";
    conn.textContent = "live";
    render();
  });
  es.addEventListener("tick", (ev) => {
    const doc = JSON.parse(ev.data);
    take(doc);
    state.samples.push(...doc.samples);
    if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
    if (doc.decision) state.decisions.push(doc.decision);
    if (state.decisions.length > MAX_SAMPLES) state.decisions.splice(0, state.decisions.length - MAX_SAMPLES);
    conn.className = "conn live";
    conn.textContent = "live";
    render();
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED && selected && !state.status) {
      choose(null); // a service that is not there (a stale link): show the first one there is
      return;
    }
    conn.className = es.readyState === EventSource.CLOSED ? "conn down" : "conn wait";
    conn.textContent = es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
  };
}

function choose(key) {
  selected = key;
  const url = new URL(location.href);
  if (key) url.searchParams.set("service", key); else url.searchParams.delete("service");
  history.replaceState(null, "", url);
  state.samples = [];
  state.decisions = [];
  connect();
}

$("service").addEventListener("change", (ev) => choose(ev.target.value));
window.addEventListener("resize", () => drawCharts());
setInterval(() => {
  // a stream that stops sending (the platform is gone, or paused) is shown as stale, not as live
  if (state.updated && Date.now() - state.updated > 5000) {
    $("conn").className = "conn wait";
    $("conn").textContent = `no update for ${Math.round((Date.now() - state.updated) / 1000)} s`;
  }
}, 1000);
connect();
