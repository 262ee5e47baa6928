// The NOC dashboard: problems first, sites at a glance, every device (a
// virtualised list), search and filters kept in the URL, a device's detail
// (device.js), honest liveness (live.js). Reads the REST API; no build step.

import { follow } from "./live.js";
import { showDevice, deviceChanged, closeDevice, useDashboard } from "./device.js";

// What the operator saw last: problems since then are marked new.
const SEEN_KEY = "ward-problems-seen-until";

const state = {
  devices: new Map(),   // id → device as /api/v1/devices shows it
  alerts: new Map(),    // device id → its open alert
  order: [],            // device ids by site, then name (natural order)
  session: null,        // {user, role, csrf} when logged in
  siteOrder: "problems",
  rendered: false,      // the first render with devices is done
  // Problems that began after this (Unix ms) are new to the operator: when
  // the page was last hidden or left, or now on a first visit.
  seenUntil: Number(localStorage.getItem(SEEN_KEY)) || Date.now(),
};

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const naturally = (a, b) => collator.compare(a, b);
const SEVERITY = ["critical", "major", "minor", "info"];
const WORST_FIRST = ["down", "unreachable", "degraded", "unknown", "up"];
// Problems: the worst status first, then severity, newest first.
const PROBLEM_ORDER = ["down", "unreachable", "degraded", "unknown", "up"];

const ICON = { up: "▲", down: "▼", unreachable: "◆", unknown: "?", degraded: "◐" };
const ROW_PX = 30;
const FILTERS = ["q", "status", "site", "severity", "tag"];

// ---- small helpers ------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

function badge(status) {
  return el("span", { class: `badge st-${status}` },
    el("span", { class: "icon", "aria-hidden": "true", text: ICON[status] || "?" }), ` ${status}`);
}

function relative(iso) {
  if (!iso) return "";
  let seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts = [];
  for (const [unit, size] of units) {
    if (seconds >= size || (unit === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

// A time as `2026-12-06 09:41:30 UTC+04:00`: ISO order, this browser's
// zone, stated (`UTC` when it is UTC).
function absolute(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const two = (n) => String(n).padStart(2, "0");
  const offset = -at.getTimezoneOffset();
  const zone = offset === 0 ? "UTC"
    : `UTC${offset > 0 ? "+" : "-"}${two(Math.floor(Math.abs(offset) / 60))}:${two(Math.abs(offset) % 60)}`;
  return `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())} `
    + `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())} ${zone}`;
}

// Who did something, as a person reads it: `user olga (dashboard session)`
// → `olga`; agents and the console as they are.
const who = (principal) => principal.replace(/^user (.+) \((?:token \d+|dashboard session)\)$/, "$1");

function since(device) {
  return device.down_since || device.last_change;
}

// `since` in Unix ms, worked out once per device object.
const sinceMs = (device) => {
  if (device.sinceMs === undefined) device.sinceMs = Date.parse(since(device));
  return device.sinceMs;
};

async function json(path, options = {}) {
  const response = await fetch(path, { cache: "no-store", ...options });
  if (response.status === 401) {
    showLogin("your session ended: log in again");
    throw new Error("not logged in");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(refusal(body) || `${path}: HTTP ${response.status}`);
  return body;
}

// A refusal as the operator reads it: the field it is about first
// ("interval_ms: must be between 10 and 3600000"), unless the message
// names it already.
function refusal(body) {
  if (!body.error) return "";
  const field = body.field && body.field !== "body" ? body.field : "";
  return field && !body.error.includes(field) ? `${field}: ${body.error}` : body.error;
}

// "in maintenance" with its pause mark drawn by the stylesheet: no font
// is relied on for the glyph.
const maintenanceMark = () => el("span", { class: "maint", text: "in maintenance" });

// A change made from the dashboard: JSON body, the session's CSRF token.
function send(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (state.session) headers["x-ward-csrf"] = state.session.csrf;
  return json(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

const canOperate = () => state.session && ["operator", "admin"].includes(state.session.role);

// ---- the view in the URL ------------------------------------------------

function view() {
  const params = new URLSearchParams(location.search);
  const filters = {};
  for (const name of FILTERS) filters[name] = params.get(name) || "";
  return { filters, device: Number(params.get("device")) || null, wall: params.get("wall") === "1" };
}

function setView(changes) {
  const params = new URLSearchParams(location.search);
  for (const [name, value] of Object.entries(changes)) {
    if (value) params.set(name, value); else params.delete(name);
  }
  const query = params.toString();
  history.pushState(null, "", query ? `?${query}` : location.pathname);
  applyView();
}

function applyView() {
  const { filters, device, wall } = view();
  document.body.classList.toggle("wall", wall);
  for (const name of FILTERS) {
    const input = document.getElementById(name === "q" ? "q" : `f-${name}`);
    if (input.value !== filters[name]) input.value = filters[name];
  }
  if (device && !wall) showDevice(device); else closeDevice();
  schedule();
}

// The REST API's `/api/v1/devices` filters, the same way.
function matches(device, filters) {
  if (filters.status && device.status !== filters.status) return false;
  if (filters.site && device.site !== filters.site) return false;
  if (filters.severity && device.severity !== filters.severity) return false;
  if (filters.tag && !device.tags.includes(filters.tag)) return false;
  if (filters.q) {
    const q = filters.q.toLowerCase();
    return device.name.toLowerCase().includes(q) || device.address.includes(q)
      || device.tags.some((tag) => tag.toLowerCase().includes(q));
  }
  return true;
}

// Not plainly up: down, unreachable, degraded, unknown, flapping or in
// maintenance.
const isProblem = (device) =>
  device.enabled && (device.status !== "up" || device.flapping || device.in_maintenance);

// ---- rendering ----------------------------------------------------------

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function render() {
  const { filters } = view();
  measureList(); // read the layout before anything is written
  renderCounts();
  renderProblems(filters);
  renderSites(filters);
  renderDevices(filters);
  if (!state.rendered && state.devices.size > 0) {
    state.rendered = true;
    performance.mark("ward-first-render"); // docs/BENCHMARKS.md reads it
  }
}

function renderCounts() {
  const counts = { up: 0, degraded: 0, down: 0, unreachable: 0, unknown: 0, total: 0 };
  for (const device of state.devices.values()) {
    if (!device.enabled) continue;
    counts.total += 1;
    counts[device.status] += 1;
  }
  for (const [name, count] of Object.entries(counts)) document.getElementById(name).textContent = count;
}

// How a degraded device is: "warning: loss 30 %, RTT 12 ms".
function degradedNote(device) {
  const degraded = device.degraded;
  if (!degraded) return "";
  const rtt = degraded.rtt_ms === null ? "no reply" : `RTT ${Math.round(degraded.rtt_ms)} ms`;
  return `${degraded.level}: loss ${degraded.loss_pct} %, ${rtt}`;
}

function alertNote(device) {
  const notes = [degradedNote(device)].filter(Boolean);
  const alert = state.alerts.get(device.id);
  if (alert) {
    notes.push(`alert #${alert.id} since ${new Date(alert.opened_at).toLocaleTimeString([], { hour12: false })}`);
    if (alert.acknowledged) notes.push(`✔ ${who(alert.acknowledged.by)}: ${alert.acknowledged.comment}`);
  }
  if (device.flapping) notes.push("⇅ flapping");
  return notes.join(" · ");
}

// Problem rows are kept by device and made again only when what they
// show changed: a burst of changes moves rows instead of rebuilding them.
const problemRows = new Map(); // id → [shown text, element]
const MOST_PROBLEM_ROWS = 500;

function problemRow(device) {
  const when = since(device);
  const note = [device.agent ? `via ${device.agent}` : "no agent", alertNote(device)].filter(Boolean).join(" · ");
  const fresh = sinceMs(device) > state.seenUntil;
  const key = [device.status, device.name, device.address, device.site, device.severity, when, note, fresh,
    device.in_maintenance].join("\u0000");
  const kept = problemRows.get(device.id);
  const text = `for ${relative(when)}`;
  if (kept && kept[0] === key) {
    if (kept[2].textContent !== text) kept[2].textContent = text;
    return kept[1];
  }
  const time = el("time", { datetime: when, title: absolute(when), text });
  const row = el("li", { class: `problem st-${device.status}${fresh ? " new" : ""}`, id: `problem-${device.id}`, "data-status": device.status,
    title: `${device.name} ${device.address} @ ${device.site} · ${device.status} since ${absolute(when)} · ${note}`
      + (device.in_maintenance ? " · in maintenance" : "") },
  badge(device.status),
  el("a", { class: "name", href: `?device=${device.id}`, onclick: openDevice(device.id) }, device.name,
    fresh ? el("span", { class: "fresh", title: "began since you last looked", text: "new" }) : null),
  el("span", { class: "where", text: device.site }),
  el("span", { class: `severity sev-${device.severity}`, text: device.severity }),
  el("span", { class: "facts" }, time, ` · ${device.address}`),
  el("span", { class: "note" }, note, device.in_maintenance ? [" · ", maintenanceMark()] : null));
  problemRows.set(device.id, [key, row, time]);
  return row;
}

function renderProblems(filters) {
  const problems = [...state.devices.values()]
    .filter((device) => isProblem(device) && matches(device, filters))
    .sort((a, b) => PROBLEM_ORDER.indexOf(a.status) - PROBLEM_ORDER.indexOf(b.status)
      || SEVERITY.indexOf(a.severity) - SEVERITY.indexOf(b.severity)
      || sinceMs(b) - sinceMs(a) || naturally(a.name, b.name));
  const shown = problems.slice(0, MOST_PROBLEM_ROWS);
  const rows = shown.map(problemRow);
  for (const id of problemRows.keys()) if (!state.devices.has(id) || !isProblem(state.devices.get(id))) problemRows.delete(id);
  if (problems.length > shown.length) {
    rows.push(el("li", { class: "more", text: `… and ${problems.length - shown.length} more: filter by site or status, or see the sites` }));
  }
  document.getElementById("problems").replaceChildren(...rows);
  document.getElementById("problem-count").textContent = `(${problems.length})`;
  document.getElementById("no-problems").hidden = problems.length > 0;
}

function siteTotals() {
  const sites = new Map();
  for (const device of state.devices.values()) {
    if (!sites.has(device.site)) {
      sites.set(device.site, { name: device.site, up: 0, degraded: 0, down: 0, unreachable: 0, unknown: 0, problems: 0 });
    }
    if (!device.enabled) continue;
    const site = sites.get(device.site);
    site[device.status] += 1;
    if (isProblem(device)) site.problems += 1;
  }
  for (const site of sites.values()) site.worst = WORST_FIRST.find((status) => site[status] > 0) || "unknown";
  return [...sites.values()];
}

function renderSites(filters) {
  const sites = siteTotals();
  if (state.siteOrder === "problems") {
    sites.sort((a, b) => b.problems - a.problems || WORST_FIRST.indexOf(a.worst) - WORST_FIRST.indexOf(b.worst)
      || naturally(a.name, b.name));
  } else {
    sites.sort((a, b) => naturally(a.name, b.name));
  }
  document.getElementById("sites").replaceChildren(...sites.map((site) => {
    const shown = WORST_FIRST.filter((status) => site[status] > 0).map((status) => `${site[status]} ${status}`);
    return el("li", {},
      el("button", {
        type: "button", class: `site st-${site.worst}`, "data-site": site.name,
        "aria-pressed": String(filters.site === site.name),
        title: `${site.name}: ${shown.join(", ") || "no devices"}`,
        onclick: () => setView({ site: filters.site === site.name ? "" : site.name }),
      },
      el("span", { class: "icon", "aria-hidden": "true", text: ICON[site.worst] }),
      el("b", { text: site.name }),
      el("small", { text: shown.join(" · ") || "no devices" })));
  }));
  const select = document.getElementById("f-site");
  const names = sites.map((site) => site.name).sort(naturally);
  if (select.options.length - 1 !== names.length) {
    select.replaceChildren(el("option", { value: "", text: "any site" }),
      ...names.map((name) => el("option", { value: name, text: name })));
    select.value = filters.site;
  }
}

// The devices list: only the rows in view exist (10,000 stay smooth).
let listed = [];
function renderDevices(filters) {
  listed = state.order.filter((id) => {
    const device = state.devices.get(id);
    return device && matches(device, filters);
  });
  document.getElementById("device-rows").style.height = `${listed.length * ROW_PX}px`;
  document.getElementById("device-count").textContent = `(${listed.length})`;
  drawRows();
}

function deviceRow(device, index) {
  const when = since(device);
  const row = el("div", { class: `row st-${device.status}`, role: "listitem", id: `device-${device.id}`,
    "data-status": device.status },
  badge(device.status),
  el("a", { href: `?device=${device.id}`, text: device.name, onclick: openDevice(device.id) }),
  el("span", { text: device.address }),
  el("span", { text: device.site }),
  el("time", { datetime: when, title: absolute(when), text: relative(when) }),
  el("span", { text: device.agent || "" }),
  el("span", { text: device.last_rtt_ms == null ? "—" : `${device.last_rtt_ms.toFixed(1)} ms` }));
  row.style.top = `${index * ROW_PX}px`;
  return row;
}

// The list's scroll position and height, read before a frame's writes
// (reading them after would lay the whole page out again).
const listView = { top: 0, height: 0 };
function measureList() {
  const list = document.getElementById("device-list");
  listView.top = list.scrollTop;
  listView.height = list.clientHeight;
}

function drawRows() {
  const first = Math.max(0, Math.floor(listView.top / ROW_PX) - 10);
  const last = Math.min(listed.length, Math.ceil((listView.top + listView.height) / ROW_PX) + 10);
  const rows = [];
  for (let index = first; index < last; index += 1) rows.push(deviceRow(state.devices.get(listed[index]), index));
  document.getElementById("device-rows").replaceChildren(...rows);
}

function openDevice(id) {
  return (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    setView({ device: String(id) });
  };
}

// ---- data ---------------------------------------------------------------

function sortOrder() {
  state.order = [...state.devices.values()]
    .sort((a, b) => naturally(a.site, b.site) || naturally(a.name, b.name))
    .map((device) => device.id);
}

async function refreshAlerts() {
  const alerts = await json("/api/v1/alerts?state=open");
  state.alerts = new Map(alerts.filter((alert) => alert.device_id !== null).map((alert) => [alert.device_id, alert]));
  schedule();
}

async function reload() {
  const [devices] = await Promise.all([json("/api/v1/devices"), refreshAlerts()]);
  state.devices = new Map(devices.map((device) => [device.id, device]));
  sortOrder();
  schedule();
  const { device } = view();
  if (device) deviceChanged(device);
}

let alertsPending = false;
function statusChanged(device) {
  const known = state.devices.has(device.id);
  state.devices.set(device.id, device);
  if (!known) sortOrder();
  deviceChanged(device.id);
  schedule();
  if (!alertsPending) {
    alertsPending = true;
    setTimeout(() => { alertsPending = false; refreshAlerts().catch(failed); }, 300);
  }
}

function failed(error) {
  console.error(error);
  const link = document.getElementById("link");
  if (!document.body.classList.contains("stale")) link.textContent = `error: ${error.message}`;
}

// ---- session ------------------------------------------------------------

function showLogin(note) {
  // Nothing is counted or followed until someone logs in.
  for (const id of ["board", "counts", "link"]) document.getElementById(id).hidden = true;
  document.getElementById("login").hidden = false;
  const shown = document.getElementById("login-note");
  shown.textContent = note || "";
  shown.hidden = !note;
}

async function logIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/api/v1/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: form.get("user"), password: form.get("password") }),
  });
  if (response.ok) {
    location.reload();
    return;
  }
  const body = await response.json().catch(() => ({}));
  document.getElementById("login-error").textContent = body.error || `HTTP ${response.status}`;
}

async function logOut() {
  await fetch("/api/v1/logout", { method: "POST", headers: { "x-ward-csrf": state.session.csrf } });
  location.reload();
}

async function start() {
  const who = await (await fetch("/api/v1/session", { cache: "no-store" })).json();
  if (who.user) {
    state.session = who;
    document.getElementById("who-name").textContent = `${who.user} (${who.role})`;
    document.getElementById("who").hidden = false;
  } else if (who.anonymous_read) {
    document.getElementById("login-open").hidden = false;
  } else {
    showLogin(who.first_admin);
    return;
  }
  document.getElementById("board").hidden = false;
  applyView();
  follow({ status: statusChanged, resync: () => reload().catch(failed), reload });
  setInterval(schedule, 5000); // relative times move on
}

// ---- wiring -------------------------------------------------------------

const filtersForm = document.getElementById("filters");
filtersForm.addEventListener("submit", (event) => event.preventDefault());
let typing = null;
filtersForm.addEventListener("input", (event) => {
  const name = event.target.name;
  clearTimeout(typing);
  typing = setTimeout(() => setView({ [name]: event.target.value.trim() }), name === "q" || name === "tag" ? 250 : 0);
});
document.getElementById("clear").addEventListener("click", () =>
  setView(Object.fromEntries(FILTERS.map((name) => [name, ""]))));
document.getElementById("site-order").addEventListener("click", (event) => {
  state.siteOrder = state.siteOrder === "problems" ? "name" : "problems";
  event.target.textContent = state.siteOrder === "problems" ? "sort by name" : "sort by problems";
  schedule();
});
document.getElementById("device-list").addEventListener("scroll", () => requestAnimationFrame(() => {
  measureList();
  drawRows();
}));
window.addEventListener("popstate", applyView);
// Leaving the page (or its tab) is the last look: what begins after it is
// new when the operator is back.
const rememberSeen = () => localStorage.setItem(SEEN_KEY, String(Date.now()));
document.addEventListener("visibilitychange", () => { if (document.hidden) rememberSeen(); });
window.addEventListener("pagehide", rememberSeen);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && view().device) setView({ device: "" });
  if (event.key === "/" && document.activeElement.tagName !== "INPUT") {
    event.preventDefault();
    document.getElementById("q").focus();
  }
});
document.getElementById("login-form").addEventListener("submit", (event) => logIn(event).catch(failed));
document.getElementById("login-open").addEventListener("click", () => showLogin());
document.getElementById("logout").addEventListener("click", () => logOut().catch(failed));
useDashboard({
  state, el, badge, relative, absolute, since, json, send, setView, canOperate, naturally,
  refreshAlerts, failed, schedule, who, maintenanceMark, degradedNote,
});
// The device panel opens below the header, whatever its height: the live
// indicator and Log out stay in sight.
const header = document.querySelector("header");
new ResizeObserver(() => document.documentElement.style.setProperty("--header-height", `${header.offsetHeight}px`))
  .observe(header);
start().catch(failed);
