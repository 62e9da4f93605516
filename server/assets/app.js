// The patientflow dashboard: reads the REST API of the server that serves it and draws SVG
// charts. No libraries, no build step.
"use strict";

const PALETTE = ["#2f6db5", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"];
const $ = (id) => document.getElementById(id);
const errors = [];

window.addEventListener("error", (e) => reportError(e.message));
window.addEventListener("unhandledrejection", (e) => reportError(String(e.reason)));

function reportError(message) {
  errors.push(message);
  const pre = $("errors");
  pre.hidden = false;
  pre.textContent = errors.join("\n");
}

// The access token: from the link's #token=… (then dropped from the address bar), or pasted
// into the sign-in form; kept for the browser tab only.
const TOKEN_KEY = "patientflow.token";
const fragment = location.hash.match(/token=([^&]+)/);
if (fragment) {
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(fragment[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

class SignedOut extends Error {}

async function api(path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new SignedOut("sign in with an access token");
  const headers = { authorization: `Bearer ${token}` };
  const response = await fetch(path, body === undefined ? { headers } : {
    method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const json = await response.json();
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new SignedOut(json.message);
  }
  if (!response.ok) throw new Error(`${path}: ${json.message || response.status}`);
  return json;
}

/** A wait in minutes as "H h MM min", rounded to the minute first (never "22 h 60 min"). */
function hoursMinutes(minutes) {
  const m = Math.round(minutes);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function empty(el, message) {
  el.innerHTML = `<p class="empty">${message}</p>`;
}

// Horizontal bars: items [{label, value, alert}], values formatted by fmt.
function hbars(el, items, { max, fmt = (v) => v.toFixed(1) } = {}) {
  if (!items.length) return empty(el, "no data in this period");
  const row = 22, left = 100, width = 420, height = items.length * row + 8;
  const top = max || Math.max(...items.map((i) => i.value), 1e-9);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, "data-marks": items.length });
  const x = (v) => left + (width - left - 60) * Math.min(v / top, 1.2) / 1.2;
  items.forEach((item, i) => {
    const y = i * row + 4;
    root.append(svg("text", { x: left - 6, y: y + 13, "text-anchor": "end" }, item.label));
    root.append(svg("rect", { x: left, y, width: Math.max(x(item.value) - left, 1), height: row - 6,
      class: item.alert ? "bottleneck" : "bar" }));
    root.append(svg("text", { x: x(item.value) + 4, y: y + 13 }, fmt(item.value)));
  });
  el.replaceChildren(root);
}

// Hospital × department grid of point occupancy; bottlenecks marked. `longOpen(r)`: the
// ward's long-open stays, named on hover.
function heatmap(el, rows, longOpen) {
  if (!rows.length) return empty(el, "no census at the as-of hour");
  const hospitals = [...new Set(rows.map((r) => r.hospital))].sort((a, b) => a - b);
  const departments = [...new Set(rows.map((r) => r.department))].sort();
  const cell = new Map(rows.map((r) => [`${r.hospital}|${r.department}`, r]));
  const table = document.createElement("table");
  table.className = "heatmap";
  table.dataset.marks = rows.length;
  const head = table.insertRow();
  head.append(document.createElement("th"));
  for (const d of departments) head.append(Object.assign(document.createElement("th"), { textContent: d }));
  for (const h of hospitals) {
    const tr = table.insertRow();
    tr.append(Object.assign(document.createElement("th"), { textContent: `Hospital ${h}` }));
    for (const d of departments) {
      const td = tr.insertCell();
      const r = cell.get(`${h}|${d}`);
      if (!r || r.occupancy_rate_point === undefined) { td.textContent = "–"; continue; }
      const v = r.occupancy_rate_point;
      td.textContent = `${(v * 100).toFixed(0)}%`;
      td.title = patients(r, longOpen(r));
      const hue = Math.max(0, 120 - 120 * Math.min(v / 1.2, 1));
      td.style.background = `hsl(${hue}, 70%, 85%)`;
      if (r.bottleneck) td.className = "hot";
    }
  }
  el.replaceChildren(table);
}

// Lines over time: series {name: [[Date, value], …]}.
function lines(el, series, { fmt = (v) => v.toFixed(2) } = {}) {
  const names = Object.keys(series);
  const points = names.flatMap((n) => series[n]);
  if (!points.length) return empty(el, "no data in this period");
  const width = 900, height = 260, left = 50, bottom = 24;
  const t0 = Math.min(...points.map((p) => p[0])), t1 = Math.max(...points.map((p) => p[0]));
  const vmax = Math.max(...points.map((p) => p[1]), 1e-9);
  const x = (t) => left + (width - left - 10) * (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0));
  const y = (v) => height - bottom - (height - bottom - 10) * v / vmax;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, "data-marks": points.length });
  for (const f of [0, 0.5, 1]) {
    root.append(svg("line", { x1: left, x2: width, y1: y(vmax * f), y2: y(vmax * f), class: "axis" }));
    root.append(svg("text", { x: left - 6, y: y(vmax * f) + 4, "text-anchor": "end" }, fmt(vmax * f)));
  }
  for (const t of [t0, t1]) {
    root.append(svg("text", { x: x(t), y: height - 6, "text-anchor": t === t0 ? "start" : "end" },
      minute(new Date(t))));
  }
  names.forEach((name, i) => {
    const d = series[name].sort((a, b) => a[0] - b[0]).map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", { d, fill: "none", stroke: PALETTE[i % PALETTE.length], "stroke-width": 1.6 }));
  });
  el.replaceChildren(root, legend(names));
}

// Grouped vertical bars: categories with two series.
function vbars(el, categories, a, b, names) {
  if (!categories.length) return empty(el, "no data in this period");
  const width = 460, height = 220, bottom = 30, slot = (width - 40) / categories.length;
  const vmax = Math.max(...a, ...b, 1);
  const y = (v) => (height - bottom - 10) * v / vmax;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, "data-marks": categories.length * 2 });
  categories.forEach((c, i) => {
    const x = 40 + i * slot, w = Math.max(slot / 2 - 2, 1);
    root.append(svg("rect", { x, y: height - bottom - y(a[i]), width: w, height: y(a[i]), class: "bar" }));
    root.append(svg("rect", { x: x + w + 1, y: height - bottom - y(b[i]), width: w, height: y(b[i]), class: "bar2" }));
    if (categories.length <= 16 || i % Math.ceil(categories.length / 16) === 0) {
      root.append(svg("text", { x: x + w, y: height - 12, "text-anchor": "middle" }, c));
    }
  });
  root.append(svg("text", { x: 36, y: 14, "text-anchor": "end" }, String(vmax)));
  el.replaceChildren(root, legend(names, ["#2f6db5", "#7aa6d8"]));
}

function legend(names, colors = PALETTE) {
  const div = document.createElement("div");
  div.className = "legend";
  names.forEach((n, i) => {
    const span = document.createElement("span");
    span.innerHTML = `<i style="background:${colors[i % colors.length]}"></i>`;
    span.append(n);
    div.append(span);
  });
  return div;
}

// Per hospital: encounters waiting in the emergency department, the longest wait, and those
// who left without admission among the arrivals 24–48 h before the as-of time: a count by
// arrival is final only once 24 h have passed (contract §5.1), so today's would always read 0.
function edNow(el, waiting, left) {
  const hospitals = [...new Set([...state.hospitals, ...waiting.map((r) => r.hospital), ...left.map((r) => r.hospital)])]
    .filter((h) => !$("hospital").value || String(h) === $("hospital").value).sort((a, b) => a - b);
  if (!hospitals.length) return empty(el, "no emergency-department arrivals");
  const by = (rows) => new Map(rows.map((r) => [r.hospital, r]));
  const w = by(waiting), l = by(left);
  const table = document.createElement("table");
  table.className = "ed";
  table.dataset.marks = hospitals.length;
  table.innerHTML = "<tr><th></th><th>waiting</th><th>longest wait</th><th>left without admission (arrived 24–48 h ago)</th></tr>";
  for (const h of hospitals) {
    const minutes = w.get(h)?.ed_longest_wait_minutes;
    const tr = table.insertRow();
    tr.innerHTML = `<th>Hospital ${h}</th><td class="n">${w.get(h)?.ed_waiting ?? 0}</td>
      <td class="n">${minutes === undefined || minutes === null ? "–" : hoursMinutes(minutes)}</td>
      <td class="n">${l.get(h)?.ed_left_without_admission ?? 0}</td>`;
  }
  el.replaceChildren(table);
}

// "16 patients" and, when some of them are long-open (still counted, contract §5.1), how
// many: a ward over 100 % of its beds usually holds discharges that never arrived.
function patients(r, longOpen) {
  return longOpen ? `${r.census} patients (${longOpen} long-open: no news past the ward's warning)`
    : `${r.census} patients`;
}

// The long-open stays of a hospital's department, from the quality report.
function longOpenOf(quality) {
  const n = new Map((quality.open_stays || []).map((o) => [`${o.hospital_id}|${o.department}`, o.long_open]));
  return (r) => n.get(`${r.hospital}|${r.department}`) || 0;
}

// Open stays that stopped reporting (contract §5.1), from the quality report.
function openStays(quality) {
  const rows = (quality.open_stays || []).filter((o) => o.long_open + o.stale > 0);
  const total = (k) => (quality.open_stays || []).reduce((n, o) => n + o[k], 0);
  const list = rows.slice().sort((a, b) => b.stale + b.long_open - a.stale - a.long_open).slice(0, 8)
    .map((o) => `Hospital ${o.hospital_id} · ${o.department}: ${o.stale} stale, ${o.long_open} long-open`).join(" · ");
  return `<p>Open stays: ${total("open")} · <b>long-open ${total("long_open")}</b> (quiet past the department's warning, still counted)
    · <b>stale ${total("stale")}</b> (quiet past its limit, left out of census and occupancy)</p>
    <p class="muted">${list || "none long-open or stale"}</p>`;
}

const state = { asOf: null, threshold: null, hospitals: [] };

function filters() {
  const hospital = $("hospital").value;
  return hospital ? { hospital: [Number(hospital)] } : {};
}

function range(days) {
  const to = new Date(state.asOf.getTime() + 3600e3);
  return { from: new Date(to.getTime() - days * 86400e3).toISOString(), to: to.toISOString() };
}

// Arrow JSON timestamps may come without an offset; they are UTC.
const toDate = (s) => new Date(/(Z|[+-]\d\d:?\d\d)$/.test(s) ? s : s + "Z");
const minute = (d) => d.toISOString().slice(0, 16).replace("T", " ");
const label = (r) => `Hospital ${r.hospital} · ${r.department}`;

async function refresh() {
  document.body.dataset.status = "loading";
  if (state.threshold === null) state.threshold = (await api("/api/v1/catalog")).bottleneck_threshold;
  const latest = await api("/api/v1/sql", { sql: "SELECT max(hour_start) AS as_of FROM gold.fact_census_hourly" });
  const asOf = latest.rows[0] && latest.rows[0].as_of;
  if (!asOf) {
    $("asof").textContent = "No gold data yet: run `patientflow ingest`.";
    document.body.dataset.status = "ready";
    return;
  }
  state.asOf = toDate(asOf);
  await showFreshness();
  const days = Number($("range").value);
  const time_range = range(days);
  const base = { filters: filters(), time_range };

  const settledFrom = new Date(state.asOf.getTime() - 2 * 86400e3);
  const settledTo = new Date(state.asOf.getTime() - 86400e3);
  const [now, trend, flow, alos, gender, age, quality, ed, left, alerts] = await Promise.all([
    api("/api/v1/query", { metrics: ["occupancy_rate_point", "census", "bottleneck"], dimensions: ["hospital", "department"], filters: filters(), order: ["-occupancy_rate_point"] }),
    api("/api/v1/query", { ...base, metrics: ["occupancy_rate"], dimensions: ["department"], grain: days <= 1 ? "hour" : "day" }),
    api("/api/v1/query", { ...base, metrics: ["admissions", "discharges"], grain: "day" }),
    api("/api/v1/query", { ...base, metrics: ["alos_hours"], dimensions: ["department"], order: ["-alos_hours"] }),
    api("/api/v1/query", { ...base, metrics: ["admissions"], dimensions: ["gender"] }),
    api("/api/v1/query", { ...base, metrics: ["admissions"], dimensions: ["age_band"] }),
    api("/api/v1/quality/latest"),
    api("/api/v1/query", { metrics: ["ed_waiting", "ed_longest_wait_minutes"], dimensions: ["hospital"], filters: filters() }),
    api("/api/v1/query", { metrics: ["ed_left_without_admission"], dimensions: ["hospital"], filters: filters(),
      time_range: { from: settledFrom.toISOString(), to: settledTo.toISOString() } }),
    api("/api/v1/alerts"),
  ]);
  showAlerts(alerts);

  if (!state.hospitals.length) {
    state.hospitals = [...new Set(now.rows.map((r) => r.hospital))].sort((a, b) => a - b);
    for (const h of state.hospitals) $("hospital").append(new Option(`Hospital ${h}`, h));
  }
  const hot = now.rows.filter((r) => r.bottleneck).slice(0, 10);
  $("threshold").textContent = `(bottleneck at ≥ ${Math.round(state.threshold * 100)}% of beds; top ${hot.length} listed)`;
  const longOpen = longOpenOf(quality);
  heatmap($("now"), now.rows, longOpen);
  $("bottlenecks").innerHTML = "";
  for (const r of hot) {
    const li = document.createElement("li");
    li.textContent = `${label(r)}: ${patients(r, longOpen(r))}, ${(r.occupancy_rate_point * 100).toFixed(0)}% of beds`;
    $("bottlenecks").append(li);
  }

  const series = {};
  for (const r of trend.rows) {
    if (r.occupancy_rate === undefined) continue;
    (series[r.department] ||= []).push([toDate(r.period).getTime(), r.occupancy_rate]);
  }
  lines($("trend"), series);

  vbars($("flow"), flow.rows.map((r) => r.period.slice(5, 10)), flow.rows.map((r) => r.admissions), flow.rows.map((r) => r.discharges), ["admissions", "discharges"]);
  hbars($("alos"), alos.rows.filter((r) => r.alos_hours !== undefined).map((r) => ({ label: r.department, value: r.alos_hours })));
  hbars($("gender"), gender.rows.map((r) => ({ label: r.gender, value: r.admissions })), { fmt: (v) => String(v) });
  hbars($("age"), age.rows.map((r) => ({ label: r.age_band, value: r.admissions })), { fmt: (v) => String(v) });

  edNow($("ed"), ed.rows, left.rows);

  const latestRun = quality.latest || {};
  const rules = Object.entries(latestRun.rules || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  $("quality").innerHTML = `<table>
    <tr><th>records in</th><th>silver</th><th>quarantined</th><th>duplicates</th></tr>
    <tr><td class="n">${latestRun.records_in ?? 0}</td><td class="n">${latestRun.silver_rows ?? 0}</td>
        <td class="n">${latestRun.quarantined ?? 0}</td><td class="n">${latestRun.duplicates ?? 0}</td></tr></table>
    <p class="muted">${rules.map(([n, c]) => `${n}: ${c}`).join(" · ") || "no rule fired"}</p>
    ${openStays(quality)}`;
  document.body.dataset.status = errors.length ? "error" : "ready";
}

// The alerts that hold (bottlenecks, failed jobs, a stalled stream, quality breaches), red
// first; the caller sees those of the departments it may read.
function showAlerts(response) {
  const alerts = response.alerts || [];
  const el = $("alerts");
  el.innerHTML = "";
  const note = $("alerts-note");
  note.textContent = alertsNote(alerts, response);
  note.title = response.checked_at ? `checked ${utcTime(response.checked_at)}` : "";
  // Department alerts as compact chips (the summary on hover); the pipeline's in full.
  for (const a of alerts) {
    const li = document.createElement("li");
    li.className = a.severity === "critical" ? "red" : "amber";
    const since = `since ${minute(toDate(a.starts_at))} UTC`;
    if (a.department) {
      li.classList.add("chip");
      const what = a.condition === "bottleneck" ? `${Math.round(a.value * 100)}%` : `${a.value} stale`;
      li.textContent = `H${a.hospital_id} ${a.department} ${what}`;
      li.title = `${a.summary} — ${since}`;
    } else {
      li.textContent = `${a.summary} — ${since}`;
    }
    el.append(li);
  }
}

// How many alerts hold, or, with none, whether the data was looked at: before the scheduler's
// first look an empty list means "not checked yet", not "none".
function alertsNote(alerts, response) {
  if (alerts.length) {
    const red = alerts.filter((a) => a.severity === "critical").length;
    return `(${red} red, ${alerts.length - red} amber; a bottleneck is amber from ${Math.round(state.threshold * 100)}% of beds)`;
  }
  if (response.checked_at) return `(none; checked ${utcTime(response.checked_at)})`;
  return response.source === "scheduler" ? "(occupancy and quality not checked yet)" : "(none)";
}

const utcTime = (s) => `${toDate(s).toISOString().slice(11, 19)} UTC`;

// "12 s", "14 min", "11 h".
const span = (seconds) => {
  const s = Math.round(seconds);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
};

// "data as of …, N s behind", amber once the data is later than the server's threshold, or
// once its newest event lies well before the census time (a backlog or replay arriving now:
// the figures "now" lack the events since).
async function showFreshness() {
  const f = await api("/api/v1/freshness");
  const el = $("asof");
  if (!f.data_as_of) {
    el.textContent = `census as of ${minute(state.asOf)} UTC`;
    return;
  }
  const catchingUp = f.events_behind_seconds > f.events_warn_after_seconds;
  el.textContent = `data as of ${toDate(f.data_as_of).toISOString().slice(0, 19).replace("T", " ")} UTC, ${span(f.seconds_behind)} behind`
    + (catchingUp ? ` · catching up: events up to ${minute(toDate(f.events_as_of))} UTC, ${span(f.events_behind_seconds)} before the census time` : "");
  el.classList.toggle("late", f.seconds_behind > f.warn_after_seconds || catchingUp);
  el.title = `census as of ${f.census_as_of}; newest event ${f.events_as_of}; gold refreshed ${f.refreshed_at}`;
}

function run() {
  $("signin").hidden = true;
  refresh().catch((e) => {
    if (e instanceof SignedOut) {
      $("signin").hidden = false;
      $("signin-reason").textContent = e.message;
      document.body.dataset.status = "signed-out";
      return;
    }
    reportError(e.message);
    document.body.dataset.status = "error";
  });
}

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  run();
});

$("hospital").addEventListener("change", run);
$("range").addEventListener("change", run);
run();
setInterval(run, 30000);
// The header follows a live stream between full refreshes.
setInterval(() => { if (state.asOf) showFreshness().catch(() => {}); }, 5000);
