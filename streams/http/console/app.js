// The CEMI ops console. Every value is set with textContent (never as markup): unit codes and
// catalog names come from users. Nothing is loaded from elsewhere.
"use strict";

const state = { data: null, window: "day", token: sessionStorage.getItem("cemi-token"), last: null };
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function signed(value) {
  if (value === null || value === undefined) return "–";
  return (value > 0 ? "+" : "") + Number(value).toFixed(2);
}

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = $("token-dialog");
    $("token-input").value = "";
    dialog.addEventListener(
      "close",
      () => {
        state.token = $("token-input").value.trim() || null;
        if (state.token) sessionStorage.setItem("cemi-token", state.token);
        resolve(state.token);
      },
      { once: true },
    );
    dialog.showModal();
  });
}

async function call(path, options = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const reply = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
    if ((reply.status === 401 || reply.status === 403) && attempt === 0) {
      await askToken();
      continue;
    }
    return reply;
  }
  return null;
}

// -- live state ------------------------------------------------------------------------------

function connect() {
  const query = state.token ? "?token=" + encodeURIComponent(state.token) : "";
  const source = new EventSource("/api/v1/events" + query);
  source.addEventListener("state", (event) => {
    $("connection").textContent = "live";
    render(JSON.parse(event.data));
  });
  source.onerror = async () => {
    source.close();
    $("connection").textContent = "reconnecting…";
    const probe = await fetch("/api/v1/scores?limit=1", { headers: headers() });
    if (probe.status === 401 || probe.status === 403) await askToken();
    setTimeout(connect, 1000);
  };
}

function render(data) {
  state.data = data;
  renderPipeline(data.pipeline);
  renderHeatmap();
  renderAlerts(data.alerts);
}

function renderPipeline(pipeline) {
  const strip = $("pipeline");
  strip.replaceChildren();
  let rate = null;
  if (state.last && pipeline.at_ms > state.last.at_ms) {
    rate = ((pipeline.consumed - state.last.consumed) * 1000) / (pipeline.at_ms - state.last.at_ms);
  }
  state.last = pipeline;
  const items = [
    ["events/s", rate === null ? "–" : Math.round(rate)],
    ["consumed", pipeline.consumed],
    ["dead-lettered", pipeline.dead_lettered],
    ["late", pipeline.late],
    ["consumer lag", pipeline.consumer_lag === null ? "–" : pipeline.consumer_lag],
    ["watermark lag", pipeline.watermark_lag_s === null ? "–" : fmt(pipeline.watermark_lag_s, 1) + " s"],
  ];
  for (const [label, value] of items) {
    const item = el("span", label + " ");
    item.dataset.metric = label;
    item.append(el("b", value));
    strip.append(item);
  }
}

function renderHeatmap() {
  const data = state.data;
  if (!data) return;
  const head = $("heatmap-head");
  head.replaceChildren(el("th", "rank"), el("th", "unit"), el("th", "CEMI"), el("th", "Δ prev"));
  for (const service of data.services) head.append(el("th", service));
  const body = $("heatmap-body");
  body.replaceChildren();
  const units = (data.windows[state.window] || { units: [] }).units;
  $("window-start").textContent = units.length ? units[0].window_start || "" : "no scores yet";
  for (const unit of units) {
    const row = el("tr");
    row.dataset.unit = unit.unit;
    row.append(rankCell(unit), el("td", unit.unit, "unit"));
    row.append(cell(unit.unit, null, unit), el("td", signed(unit.delta_prev)));
    for (const service of data.services) row.append(cell(unit.unit, service, unit.services[service]));
    body.append(row);
  }
}

function rankCell(unit) {
  const td = el("td", unit.rank === null || unit.rank === undefined ? "–" : unit.rank);
  if (unit.rank && unit.rank_prev && unit.rank_prev !== unit.rank) {
    const up = unit.rank_prev > unit.rank;
    td.append(el("span", (up ? " ↑" : " ↓") + Math.abs(unit.rank_prev - unit.rank), up ? "rank-up" : "rank-down"));
  }
  return td;
}

function cell(unit, service, value) {
  const cls = value && value.class ? value.class : "none";
  const td = el("td", value ? fmt(value.score) : "–", "cell " + cls);
  td.dataset.unit = unit;
  td.dataset.service = service || "";
  td.dataset.class = value && value.class ? value.class : "";
  td.title = value && value.class ? value.class : "no score";
  td.addEventListener("click", () => showTree(unit, service));
  return td;
}

// -- a unit's tree ---------------------------------------------------------------------------

function catalog() {
  return (state.data && state.data.catalog) || { touchpoints: {}, kpis: {} };
}

async function showTree(unit, openService) {
  const reply = await call("/api/v1/units/" + encodeURIComponent(unit) + "?window=" + state.window);
  const panel = $("tree-panel");
  panel.hidden = false;
  $("tree-title").textContent = unit + " — " + state.window;
  const tree = $("tree");
  tree.replaceChildren();
  tree.className = "tree";
  if (!reply || !reply.ok) {
    tree.append(el("p", "no scores for this unit yet", "muted"));
    return;
  }
  const found = (await reply.json()).windows[state.window];
  if (!found) return;
  for (const [service, node] of Object.entries(found.services || {})) {
    const details = el("details");
    details.dataset.service = service;
    details.open = !openService || service === openService;
    details.append(el("summary", service + " " + fmt(node.score) + " " + (node.class || "")));
    for (const [touchpoint, tp] of Object.entries(node.touchpoints || {})) {
      const inner = el("details");
      inner.dataset.touchpoint = touchpoint;
      const name = catalog().touchpoints[touchpoint];
      const label = (name ? name + " (" + touchpoint + ")" : touchpoint) + " " + fmt(tp.score);
      inner.append(el("summary", label + " " + (tp.class || "")));
      inner.append(kpiTable(tp.kpis || {}));
      details.append(inner);
    }
    tree.append(details);
  }
}

function kpiTable(kpis) {
  const table = el("table", null, "kpis");
  const head = el("tr");
  for (const name of ["KPI", "value", "points", "target met", "target ratio"]) head.append(el("th", name));
  table.append(head);
  for (const [kpi, node] of Object.entries(kpis)) {
    const excluded = node.score === null || node.score === undefined;
    const row = el("tr", null, excluded ? "excluded" : "");
    const name = el("td", kpi);
    name.title = catalog().kpis[kpi] || "";
    row.append(name, el("td", fmt(node.value, 3)));
    row.append(el("td", excluded ? "excluded" : fmt(node.score)));
    row.append(el("td", node.target_met === null || node.target_met === undefined ? "–" : node.target_met ? "yes" : "no"));
    row.append(el("td", fmt(node.target_ratio)));
    table.append(row);
  }
  return table;
}

// -- alerts ----------------------------------------------------------------------------------

function renderAlerts(alerts) {
  const list = $("alerts");
  list.replaceChildren();
  $("alert-count").textContent = "(" + alerts.filter((a) => a.state !== "resolved").length + " active)";
  for (const alert of alerts) {
    const item = el("li");
    item.dataset.alertId = alert.alert_id;
    item.dataset.state = alert.state;
    item.append(el("span", alert.state, "state " + alert.state), el("span", " "));
    const where = [alert.unit, alert.service, alert.touchpoint || alert.indicator].filter(Boolean).join(" / ");
    item.append(el("strong", where));
    item.append(el("span", " score " + fmt(alert.score) + " (threshold " + fmt(alert.threshold) + ")"));
    if (alert.owner) item.append(el("span", " → " + alert.owner, "muted"));
    const top = (alert.top_kpis || []).slice(0, 3).map((k) => k.kpi + " " + fmt(k.points));
    if (top.length) item.append(el("div", "top KPIs: " + top.join(", "), "muted"));
    if (alert.acknowledged_by) item.append(el("div", "acknowledged by " + alert.acknowledged_by, "muted"));
    if (alert.state === "firing" && !alert.acknowledged_by) {
      const button = el("button", "Acknowledge");
      button.addEventListener("click", () => acknowledge(alert.alert_id, button));
      item.append(button);
    }
    list.append(item);
  }
}

async function acknowledge(alertId, button) {
  button.disabled = true;
  if (!state.token) await askToken();
  const reply = await call("/api/v1/alerts/" + encodeURIComponent(alertId) + "/ack", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ by: "console" }),
  });
  button.textContent = reply && reply.ok ? "sent" : "failed";
}

document.addEventListener("DOMContentLoaded", () => {
  $("window").addEventListener("change", (event) => {
    state.window = event.target.value;
    renderHeatmap();
  });
  connect();
});
