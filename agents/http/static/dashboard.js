// The DTF dashboard: REST reads, WebSocket updates, no build step. Every text from the
// server goes through textContent (never innerHTML): task names and output are data.
"use strict";

const ROW_H = 24;
const PAGE = 500;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function api(path, options = {}) {
  const init = { ...options, headers: { ...(options.headers || {}) } };
  if (init.method && init.method !== "GET") init.headers["X-DTF-CSRF"] = "1";
  const answer = await fetch(path, init);
  if (answer.status === 401) { location.assign("/"); throw new Error("logged out"); }
  const body = answer.status === 204 ? null : await answer.json();
  if (!answer.ok) throw new Error(body && body.error ? body.error.message : answer.statusText);
  return body;
}

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

// A table that renders only the rows in view: thousands of rows stay cheap.
class VirtualTable {
  constructor(container, render, onClick) {
    this.container = container;
    this.render = render;
    this.spacer = el("div", null, "spacer");
    container.appendChild(this.spacer);
    this.rows = [];
    this.nodes = [];
    this.onEnd = null;
    container.addEventListener("scroll", () => this.draw());
    if (onClick) container.addEventListener("click", (e) => {
      const row = e.target.closest(".row");
      if (row && e.target.tagName !== "BUTTON") onClick(this.rows[Number(row.dataset.i)]);
    });
  }
  set(rows) { this.rows = rows; this.draw(); }
  draw() {
    this.spacer.style.height = `${this.rows.length * ROW_H}px`;
    const top = this.container.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - 5);
    const last = Math.min(this.rows.length, first + Math.ceil(this.container.clientHeight / ROW_H) + 10);
    for (const node of this.nodes) node.remove();
    this.nodes = [];
    for (let i = first; i < last; i++) {
      const node = this.render(this.rows[i]);
      node.classList.add("row");
      node.dataset.i = String(i);
      node.style.top = `${i * ROW_H}px`;
      this.container.appendChild(node);
      this.nodes.push(node);
    }
    if (this.onEnd && last >= this.rows.length - 20) this.onEnd();
  }
}

const state = { me: null, tasks: [], byId: new Map(), next: null, loading: false,
                filter: "", runs: new Map(), tests: new Map(), open: null };
const canManage = () => state.me && (state.me.role === "manager" || state.me.role === "admin");

function taskRow(t) {
  const row = el("div");
  row.dataset.task = t.id;
  row.append(el("span", t.id), el("span", t.name || ""), el("span", t.status, `status-${t.status}`),
             el("span", t.worker_id || ""), el("span", t.attempt ?? ""));
  return row;
}

function workerRow(w) {
  const row = el("div");
  const caps = w.capabilities || {};
  const hw = [`${caps.cpu_count || "?"} cpu`, ...(caps.hardware || []).filter((h) => h !== "cpu"),
              caps.memory_gb ? `${Math.round(caps.memory_gb)} GB` : ""].filter(Boolean).join(", ");
  const load = w.load ? `${Math.round(w.load.cpu_percent)}% cpu, ${Math.round(w.load.memory_percent)}% mem` : "";
  row.append(el("span", w.id), el("span", w.state, `state-${w.state}`), el("span", w.scheduling),
             el("span", `${w.running}/${w.slots}`), el("span", hw), el("span", load));
  const actions = el("span");
  if (canManage()) {
    for (const action of w.scheduling === "open" ? ["cordon", "drain"] : ["uncordon"]) {
      const button = el("button", action);
      button.type = "button";
      button.addEventListener("click", () => api(`/api/workers/${encodeURIComponent(w.id)}/${action}`,
        { method: "POST", body: "{}" }).then(loadWorkers).catch(showError));
      actions.append(button);
    }
  }
  row.append(actions);
  return row;
}

const tasksTable = new VirtualTable($("tasks"), taskRow, (t) => openTask(t.id));
const workersTable = new VirtualTable($("workers"), workerRow);
tasksTable.onEnd = () => loadTasks(false);

async function loadTasks(reset) {
  if (state.loading || (!reset && !state.next)) return;
  state.loading = true;
  try {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (state.filter) params.set("status", state.filter);
    if (!reset) params.set("cursor", state.next);
    const page = await api(`/api/tasks?${params}`);
    if (reset) { state.tasks = []; state.byId = new Map(); }
    for (const t of page.items) if (!state.byId.has(t.id)) {
      state.byId.set(t.id, t);
      state.tasks.push(t);
    }
    state.next = page.next;
    $("tasks-count").textContent = `${state.tasks.length}${state.next ? "+" : ""}`;
    tasksTable.set(state.tasks);
  } catch (e) { showError(e); } finally { state.loading = false; }
}

async function loadWorkers() {
  const rows = [];
  let cursor = null;
  do {
    const page = await api(`/api/workers?limit=1000${cursor ? `&after=${encodeURIComponent(cursor)}` : ""}`);
    rows.push(...page.items);
    cursor = page.next;
  } while (cursor);
  $("workers-count").textContent = String(rows.length);
  workersTable.set(rows);
}

function showAggregate(a) {
  if (a.error) { $("health").textContent = "unavailable"; $("health").className = "badge bad"; return; }
  const st = a.status;
  $("position").textContent = `log at ${st.last_seq}`;
  $("leaders").textContent = Object.entries(st.leaders || {})
    .map(([role, c]) => `${role}: ${c.holder}`).join(" · ");
  $("health").textContent = "live";
  $("health").className = "badge ok";
  const tiles = $("counts");
  tiles.replaceChildren();
  const counts = { ...st.tasks, "workers alive": a.workers.by_state.alive || 0,
                   "workers lost": a.workers.by_state.lost || 0,
                   "slots busy": `${a.workers.running}/${a.workers.slots}` };
  for (const [name, n] of Object.entries(counts)) {
    const tile = el("div", null, "tile");
    tile.append(el("b", n), el("span", name));
    tile.dataset.count = name;
    tiles.append(tile);
  }
}

const STATUS_OF = { submitted: "queued", leased: "leased", started: "running", succeeded: "succeeded",
                    failed: "failed", cancelled: "cancelled", requeued: "queued", retry_scheduled: "queued" };

function onEvents(items) {
  let changed = false;
  for (const item of items) {
    if (item.kind === "tests") { onTests(item); continue; }
    if (item.kind === "bench") { loadTrends(); continue; }  // results imported
    if (item.kind !== "task") continue;
    let t = state.byId.get(item.task_id);
    const status = STATUS_OF[item.type];
    if (TERMINAL.has(status)) loadTrends();  // a benchmark may have ended (30 s at most)
    if (!t && item.type === "submitted" && (!state.filter || state.filter === "queued")) {
      t = { id: item.task_id, name: item.name, status: "queued", worker_id: null, attempt: 0 };
      state.byId.set(t.id, t);
      state.tasks.unshift(t);
      changed = true;
    }
    if (!t) continue;
    if (status) t.status = status;
    if (item.worker_id && item.type === "leased") { t.worker_id = item.worker_id; t.attempt = item.attempt; }
    changed = true;
    if (state.open === t.id) openTask(t.id);
  }
  if (changed) { tasksTable.set(state.tasks); $("tasks-count").textContent = String(state.tasks.length); }
}

function onTests(item) {
  const run = state.runs.get(item.run_id) || { passed: 0, failed: 0, other: 0 };
  for (const [outcome, n] of Object.entries(item.outcomes || {})) {
    if (outcome === "passed") run.passed += n;
    else if (outcome === "failed" || outcome === "error" || outcome === "crashed") run.failed += n;
    else run.other += n;
  }
  state.runs.set(item.run_id, run);
  for (const nodeid of item.failures || []) {
    const seen = state.tests.get(nodeid) || { failed: new Set(), passed: false };
    seen.failed.add(item.worker_id);
    state.tests.set(nodeid, seen);
  }
  const runs = $("runs");
  runs.replaceChildren(...[...state.runs].map(([id, r]) =>
    el("div", `${id}: ${r.passed} passed, ${r.failed} failed, ${r.other} other`)));
  $("failing").replaceChildren(...[...state.tests].slice(-200).map(([nodeid, s]) =>
    el("div", `${nodeid} failed on ${[...s.failed].join(", ")}`)));
  if ((item.failures || []).length) loadFlaky();
}

let flakyAt = 0;
async function loadFlaky() {
  if (Date.now() - flakyAt < 10000) return;  // at most every 10 s
  flakyAt = Date.now();
  try {
    const page = await api("/api/tests/flaky?days=7&limit=200");
    $("flaky").replaceChildren(...page.items.map((t) => el("div",
      `${t.test_id}: ${t.passed} passed, ${t.failed} failed (on ${t.failed_on.join(", ")})`)));
  } catch (e) { $("flaky").replaceChildren(el("div", `unavailable: ${e.message}`, "error")); }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// A series as a line, each change point a red dashed line (the report's chart, small).
function sparkline(s) {
  const w = 320, h = 60, pad = 4;
  const t0 = s.t[0], t1 = s.t[s.t.length - 1] || t0 + 1;
  const lo = Math.min(...s.values), hi = Math.max(...s.values);
  const x = (t) => pad + (w - 2 * pad) * (t - t0) / ((t1 - t0) || 1);
  const y = (v) => h - pad - (h - 2 * pad) * (v - lo) / ((hi - lo) || 1);
  const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark" });
  chart.appendChild(svg("polyline", { fill: "none", stroke: "#1f77b4", "stroke-width": 1.2,
    points: s.t.map((t, i) => `${x(t).toFixed(1)},${y(s.values[i]).toFixed(1)}`).join(" ") }));
  if (s.t.length < 30) {  // few points: each one shows
    s.t.forEach((t, i) => chart.appendChild(svg("circle", { cx: x(t).toFixed(1),
      cy: y(s.values[i]).toFixed(1), r: 2, fill: "#1f77b4" })));
  }
  for (const t of s.change_times) {
    chart.appendChild(svg("line", { x1: x(t), x2: x(t), y1: 0, y2: h, stroke: "#d62728",
      "stroke-dasharray": "3,2" }));
  }
  return chart;
}

function seriesLabel(k) {
  return [k.model || k.name, k.workload, k.precision, `batch ${k.batch_size}`, k.hardware_type]
    .filter((p) => p !== null && p !== undefined && p !== "").join(" · ");
}

let trendsAt = 0;
async function loadTrends() {
  if (Date.now() - trendsAt < 30000) return;  // at most every 30 s
  trendsAt = Date.now();
  try {
    const r = await api("/api/trends?limit=12");
    $("trends-count").textContent = `(${r.series_total} series, ${r.alarms_total} with alarms)`;
    $("trends").replaceChildren(...r.series.map((s) => {
      const row = el("div", null, s.alarm ? "trend alarm" : "trend");
      const change = s.change_points.map((c) => `${(c.change * 100).toFixed(1)}%`).join(", ");
      row.appendChild(el("div", `${seriesLabel(s.key)}: last ${s.last.toPrecision(4)}` +
        (change ? `, changed ${change}` : "") +
        (s.forecast && s.forecast.crosses ? ", forecast past its budget" : "")));
      row.appendChild(sparkline(s));
      return row;
    }), ...r.flaky.filter((f) => f.only_on.length).map((f) =>
      el("div", `${f.test_id}: flaky only on ${f.only_on.join(", ")}`, "trend alarm")));
  } catch (e) { $("trends").replaceChildren(el("div", `unavailable: ${e.message}`, "error")); }
}

async function openTask(id) {
  state.open = id;
  $("detail").hidden = false;
  $("detail-title").textContent = id;
  $("detail-error").textContent = "";
  try {
    const [task, why, output] = await Promise.all([
      api(`/api/tasks/${encodeURIComponent(id)}`), api(`/api/tasks/${encodeURIComponent(id)}/explain`),
      api(`/api/tasks/${encodeURIComponent(id)}/logs`)]);
    if (state.open !== id) return;
    $("detail-status").textContent = `${task.status}${task.worker_id ? ` on ${task.worker_id}` : ""}` +
      `${task.exit_code !== null && task.exit_code !== undefined ? `, exit ${task.exit_code}` : ""}` +
      `${task.error ? `: ${task.error}` : ""}`;
    $("detail-status").className = `status-${task.status}`;
    $("explain").replaceChildren(...why.lines.map((line) => el("li", line)));
    $("timeline").replaceChildren(...task.history.map((h) =>
      el("li", `${new Date(h.time * 1000).toLocaleTimeString()} ${h.type}${h.actor ? ` by ${h.actor}` : ""}`)));
    $("output").textContent = output.chunks.map((c) => c.text).join("") + (output.truncated ? "\n[truncated]" : "");
    $("cancel").hidden = TERMINAL.has(task.status);
    $("cancel").disabled = !canManage();
    $("cancel").title = canManage() ? "" : "your role may not cancel";
  } catch (e) { $("detail-error").textContent = e.message; }
}

function socket(path, onMessage) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  const ws = new WebSocket(url);
  ws.onmessage = (m) => onMessage(JSON.parse(m.data));
  ws.onclose = (e) => {
    if (e.code === 4401) { location.assign("/"); return; }
    $("health").textContent = "reconnecting";
    $("health").className = "badge bad";
    setTimeout(() => { if (path === "/ws") loadTasks(true); socket(path, onMessage); }, 1000);
  };
}

async function main() {
  try {
    state.me = await api("/api/me");
    $("me").textContent = `${state.me.sub} (${state.me.role})`;
    showAggregate(await api("/api/dashboard"));
    await Promise.all([loadTasks(true), loadWorkers(), loadFlaky(), loadTrends()]);
  } catch (e) { showError(e); }
  // The workers' table (a heartbeat read per worker on the server) is read again when the
  // counts change, at most every 2 s, and every 15 s for their load.
  let workersAt = 0;
  let counts = "";
  socket("/ws/dashboard", (a) => {
    showAggregate(a);
    const now = JSON.stringify(a.workers || {});
    const age = Date.now() - workersAt;
    if ((now !== counts && age > 2000) || age > 15000) {
      workersAt = Date.now();
      counts = now;
      loadWorkers().catch(showError);
    }
  });
  socket("/ws", (m) => { if (Array.isArray(m)) onEvents(m); });
  $("status-filter").addEventListener("change", (e) => { state.filter = e.target.value; loadTasks(true); });
  $("detail-close").addEventListener("click", () => { state.open = null; $("detail").hidden = true; });
  $("cancel").addEventListener("click", () => {
    const id = state.open;
    api(`/api/tasks/${encodeURIComponent(id)}`, { method: "DELETE" })
      .then(() => openTask(id)).catch((e) => { $("detail-error").textContent = e.message; });
  });
  $("logout").addEventListener("click", () => api("/logout", { method: "POST" })
    .then(() => location.assign("/")).catch(showError));
}

main();
