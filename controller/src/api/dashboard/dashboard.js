// The NOC dashboard: problems first, sites at a glance, every device (the
// server's pages, each a virtualised list), search and filters kept in the
// URL, a device's detail (device.js), honest liveness (live.js). Reads the
// REST API; no build step. It never loads the whole inventory: the counts,
// the heat map and the problems come from /api/v1/overview, the list a
// page at a time, and status events patch what is on screen.

import { follow } from "./live.js";
import { showDevice, deviceChanged, closeDevice, useDashboard } from "./device.js";

// What the operator saw last: problems since then are marked new.
const SEEN_KEY = "ward-problems-seen-until";

const state = {
  devices: new Map(),   // id → device as /api/v1/devices shows it (those on screen)
  alerts: new Map(),    // device id → its open alert
  overview: null,       // /api/v1/overview for the filters shown
  page: { rows: [], cursors: [""], index: 0, next: null }, // the device list's page
  session: null,        // {user, role, csrf} when logged in
  siteOrder: "problems",
  rendered: false,      // the first render with devices is done
  // Problems that began after this (Unix ms) are new to the operator: when
  // the page was last hidden or left, or now on a first visit.
  seenUntil: Number(localStorage.getItem(SEEN_KEY)) || Date.now(),
};

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const naturally = (a, b) => collator.compare(a, b);
const WORST_FIRST = ["down", "unreachable", "degraded", "unknown", "up"];

const ICON = { up: "▲", down: "▼", unreachable: "◆", unknown: "?", degraded: "◐" };
const ROW_PX = 30;
const PAGE_ROWS = 500;
// The overview is asked again at most this often while changes arrive.
const OVERVIEW_EVERY_MS = 500;
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

// The filters the data on screen was asked for (null until the board is
// shown: the event stream's opening loads it first).
let askedFor = null;

function applyView() {
  const { filters, device, wall } = view();
  document.body.classList.toggle("wall", wall);
  for (const name of FILTERS) {
    const input = document.getElementById(name === "q" ? "q" : `f-${name}`);
    if (input.value !== filters[name]) input.value = filters[name];
  }
  if (device && !wall) showDevice(device); else closeDevice();
  const asked = filterQuery(filters).toString();
  if (askedFor !== null && asked !== askedFor) {
    askedFor = asked;
    state.page = { rows: [], cursors: [""], index: 0, next: null };
    reload().catch(failed);
  }
  schedule();
}

// The filters as REST parameters (`/api/v1/devices`, `/api/v1/overview`).
function filterQuery(filters) {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
  return params;
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
  if (!state.overview) return;
  const { filters } = view();
  measureList(); // read the layout before anything is written
  renderCounts();
  renderProblems();
  renderSites(filters);
  renderDevices();
  if (!state.rendered && state.page.rows.length > 0) {
    state.rendered = true;
    performance.mark("ward-first-render"); // docs/BENCHMARKS.md reads it
  }
}

function renderCounts() {
  for (const [name, count] of Object.entries(state.overview.counts)) {
    const shown = document.getElementById(name);
    if (shown) shown.textContent = count;
  }
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

// The overview's problems (the server's order), each as its latest event
// shows it; one that is no longer a problem leaves at once.
function renderProblems() {
  const { total, devices } = state.overview.problems;
  const shown = devices.map((device) => state.devices.get(device.id) || device).filter(isProblem);
  const rows = shown.map(problemRow);
  const ids = new Set(shown.map((device) => device.id));
  for (const id of problemRows.keys()) if (!ids.has(id)) problemRows.delete(id);
  if (total > devices.length) {
    rows.push(el("li", { class: "more", text: `… and ${total - devices.length} more: filter by site or status, or see the sites` }));
  }
  document.getElementById("problems").replaceChildren(...rows);
  document.getElementById("problem-count").textContent = `(${total})`;
  document.getElementById("no-problems").hidden = total > 0;
}

function renderSites(filters) {
  const sites = [...state.overview.sites];
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

// The devices list: the server's page, of which only the rows in view
// exist.
let listed = [];
function renderDevices() {
  listed = state.page.rows.filter((id) => state.devices.has(id));
  const { index } = state.page;
  const matching = state.overview.matching;
  const first = index * PAGE_ROWS;
  document.getElementById("device-rows").style.height = `${listed.length * ROW_PX}px`;
  document.getElementById("device-count").textContent = `(${matching})`;
  document.getElementById("page-range").textContent = matching === 0 ? "none"
    : `${first + 1}–${first + listed.length} of ${matching}`;
  document.getElementById("page-prev").disabled = index === 0;
  document.getElementById("page-next").disabled = !state.page.next;
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

async function refreshAlerts() {
  const alerts = await json("/api/v1/alerts?state=open");
  state.alerts = new Map(alerts.filter((alert) => alert.device_id !== null).map((alert) => [alert.device_id, alert]));
  schedule();
  // The open device's detail shows its alert and the form to acknowledge it.
  const { device } = view();
  if (device) deviceChanged(device);
}

// Keeps only the devices on screen: the page's and the problems'.
function keepShown() {
  const shown = new Map();
  for (const device of state.overview ? state.overview.problems.devices : []) {
    shown.set(device.id, state.devices.get(device.id) || device);
  }
  for (const id of state.page.rows) if (state.devices.has(id)) shown.set(id, state.devices.get(id));
  state.devices = shown;
}

async function refreshOverview() {
  const overview = await json(`/api/v1/overview?${filterQuery(view().filters)}`);
  state.overview = overview;
  for (const device of overview.problems.devices) state.devices.set(device.id, device);
  keepShown();
  schedule();
}

async function refreshPage() {
  const params = filterQuery(view().filters);
  params.set("limit", String(PAGE_ROWS));
  const cursor = state.page.cursors[state.page.index];
  if (cursor) params.set("cursor", cursor);
  const page = await json(`/api/v1/devices?${params}`);
  for (const device of page.devices) state.devices.set(device.id, device);
  state.page.rows = page.devices.map((device) => device.id);
  state.page.next = page.next_cursor;
  keepShown();
  schedule();
}

function turnPage(step) {
  const page = state.page;
  if (step > 0 && page.next) {
    page.cursors[page.index + 1] = page.next;
    page.index += 1;
  } else if (step < 0 && page.index > 0) {
    page.index -= 1;
  } else {
    return;
  }
  document.getElementById("device-list").scrollTop = 0;
  refreshPage().catch(failed);
}

async function reload() {
  await Promise.all([refreshOverview(), refreshPage(), refreshAlerts()]);
  const { device } = view();
  if (device) deviceChanged(device);
}

// While changes arrive the overview is asked again at most every
// OVERVIEW_EVERY_MS (the first after a quiet spell at once).
let overviewAt = 0;
let overviewPending = false;
function overviewSoon() {
  if (overviewPending) return;
  overviewPending = true;
  setTimeout(() => {
    overviewPending = false;
    overviewAt = Date.now();
    refreshOverview().catch(failed);
  }, Math.max(20, overviewAt + OVERVIEW_EVERY_MS - Date.now()));
}

let alertsPending = false;
function statusChanged(device) {
  // Only what is on screen is kept; the overview brings the rest.
  if (state.devices.has(device.id)) state.devices.set(device.id, device);
  deviceChanged(device.id);
  overviewSoon();
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
  askedFor = filterQuery(view().filters).toString();
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
document.getElementById("page-prev").addEventListener("click", () => turnPage(-1));
document.getElementById("page-next").addEventListener("click", () => turnPage(1));
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
  state, el, badge, relative, absolute, since, json, send, setView, canOperate,
  refreshAlerts, failed, schedule, who, maintenanceMark, degradedNote,
});
// The device panel opens below the header, whatever its height: the live
// indicator and Log out stay in sight.
const header = document.querySelector("header");
new ResizeObserver(() => document.documentElement.style.setProperty("--header-height", `${header.offsetHeight}px`))
  .observe(header);
start().catch(failed);
