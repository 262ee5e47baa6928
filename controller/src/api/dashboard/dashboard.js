"use strict";
const devices = new Map();
// The logged-in session ({user, role, csrf}), if any.
let session = null;

function since(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return seconds < 120 ? `down ${seconds}s` : `down since ${new Date(iso).toLocaleString()}`;
}

function tile(device) {
  const element = document.createElement("div");
  element.className = `device ${device.status}`;
  element.id = `device-${device.id}`;
  element.dataset.status = device.status;
  element.textContent = device.name;
  const detail = document.createElement("small");
  detail.textContent = device.down_since ? since(device.down_since) : device.address;
  element.title = `${device.address} · ${device.status}`;
  element.append(detail);
  element.addEventListener("click", () => showHistory(device.id).catch(failed));
  return element;
}

// The selected device's mean RTT over the last hour, as a line.
async function showHistory(id) {
  const panel = document.getElementById("history");
  const device = devices.get(id);
  const title = document.createElement("h2");
  title.textContent = `RTT history · ${device ? device.name : id}`;
  const note = document.createElement("small");
  const response = await fetch(`/api/v1/devices/${id}/rtt?minutes=60`, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) {
    note.textContent = body.error || `HTTP ${response.status}`;
    panel.replaceChildren(title, note);
    return;
  }
  const points = body.points.map((p) => [Date.parse(p.at), p.rtt_ms]);
  if (points.length === 0) {
    note.textContent = "no samples in the last hour";
    panel.replaceChildren(title, note);
    return;
  }
  const [t0, t1] = [points[0][0], points[points.length - 1][0] || points[0][0] + 1];
  const max = Math.max(...points.map((p) => p[1]), 0.001);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 300 90");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map(([t, v]) =>
    `${(300 * (t - t0) / Math.max(t1 - t0, 1)).toFixed(1)},${(88 - 86 * v / max).toFixed(1)}`).join(" "));
  svg.append(line);
  const last = points[points.length - 1][1];
  note.textContent = `last ${last.toFixed(2)} ms · max ${max.toFixed(2)} ms · ${points.length} points, last hour`;
  panel.replaceChildren(title, svg, note);
}

function render() {
  const bySite = new Map();
  for (const device of devices.values()) {
    if (!bySite.has(device.site)) bySite.set(device.site, []);
    bySite.get(device.site).push(device);
  }
  const root = document.getElementById("sites");
  root.replaceChildren();
  for (const site of [...bySite.keys()].sort()) {
    const section = document.createElement("section");
    section.className = "site";
    const title = document.createElement("h2");
    title.textContent = site;
    const grid = document.createElement("div");
    grid.className = "grid";
    for (const device of bySite.get(site).sort((a, b) => a.name.localeCompare(b.name))) grid.append(tile(device));
    section.append(title, grid);
    root.append(section);
  }
}

async function json(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (response.status === 401) {
    showLogin("your session ended: log in again");
    throw new Error("not logged in");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function refreshCounts() {
  const [summary, alerts] = await Promise.all([json("/api/v1/summary"), json("/api/v1/alerts?state=open")]);
  for (const key of ["up", "down", "unreachable", "unknown", "total"]) document.getElementById(key).textContent = summary[key];
  const list = document.getElementById("alerts");
  list.replaceChildren(...alerts.map((alert) => {
    const item = document.createElement("li");
    const device = devices.get(alert.device_id);
    item.textContent = `${device ? device.name : "device " + alert.device_id} · ${device ? device.site : ""} · since ${new Date(alert.opened_at).toLocaleTimeString()}`;
    return item;
  }));
}

async function reload() {
  devices.clear();
  for (const device of await json("/api/v1/devices")) devices.set(device.id, device);
  render();
  await refreshCounts();
}

function failed(error) {
  document.getElementById("link").textContent = `error: ${error.message}`;
  console.error(error);
}

let countsPending = false;
function changed(device) {
  devices.set(device.id, device);
  const old = document.getElementById(`device-${device.id}`);
  if (old) old.replaceWith(tile(device)); else render();
  if (!countsPending) {
    countsPending = true;
    setTimeout(() => { countsPending = false; refreshCounts().catch(failed); }, 200);
  }
}

function connect() {
  const events = new EventSource("/api/v1/events");
  const link = document.getElementById("link");
  let opened = false;
  // After a reconnect, changes may have been missed: load everything again.
  events.onopen = () => {
    link.textContent = "live";
    if (opened) reload().catch(failed);
    opened = true;
  };
  events.onerror = () => { link.textContent = "reconnecting…"; };
  events.addEventListener("status", (event) => changed(JSON.parse(event.data)));
  events.addEventListener("resync", () => reload().catch(failed));
}

// Who is logged in; the board for a session or open reads, else the
// login form.
async function start() {
  const who = await (await fetch("/api/v1/session", { cache: "no-store" })).json();
  if (who.user) {
    session = who;
    document.getElementById("who-name").textContent = `${who.user} (${who.role})`;
    document.getElementById("who").hidden = false;
  } else if (who.anonymous_read) {
    document.getElementById("login-open").hidden = false;
  } else {
    showLogin(who.first_admin);
    return;
  }
  document.getElementById("board").hidden = false;
  await reload();
  connect();
  setInterval(() => document.querySelectorAll(".device.down, .device.unreachable").forEach((element) => {
    const device = devices.get(Number(element.id.replace("device-", "")));
    if (device) element.replaceWith(tile(device));
  }), 5000);
}

function showLogin(note) {
  document.getElementById("board").hidden = true;
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
  await fetch("/api/v1/logout", { method: "POST", headers: { "x-ward-csrf": session.csrf } });
  location.reload();
}

document.getElementById("login-form").addEventListener("submit", (event) => logIn(event).catch(failed));
document.getElementById("login-open").addEventListener("click", () => showLogin());
document.getElementById("logout").addEventListener("click", () => logOut().catch(failed));
start().catch(failed);
