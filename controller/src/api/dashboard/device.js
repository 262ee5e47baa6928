// A device's detail (`?device=ID`): its configuration, agent, parents and
// children, maintenance, alert and acknowledgement; its RTT as a band
// (min–max, mean line, loss marked) over 1 h / 24 h / 7 d / 30 d with
// uPlot; its availability over that range; the path to it when it last
// failed (its agent's trace); its changes as a timeline; and,
// for an operator, acknowledge and maintenance, each saying what it did.

// What this module uses of the dashboard, handed over by `useDashboard`
// (dashboard.js imports this module, never the other way round).
let state, el, badge, relative, absolute, since, json, send, setView, canOperate,
  refreshAlerts, failed, schedule, who, maintenanceMark, degradedNote;

export function useDashboard(dashboard) {
  ({
    state, el, badge, relative, absolute, since, json, send, setView, canOperate,
    refreshAlerts, failed, schedule, who, maintenanceMark, degradedNote,
  } = dashboard);
}

const RANGES = [["1 h", 60], ["24 h", 1440], ["7 d", 10080], ["30 d", 43200]];
let shown = null;      // the device id on show
let minutes = 60;      // the chart's range
let chart = null;

const panel = () => document.getElementById("detail");

export function closeDevice() {
  shown = null;
  if (chart) chart.destroy();
  chart = null;
  panel().hidden = true;
  panel().replaceChildren();
}

export function showDevice(id) {
  if (shown === id && !panel().hidden) return;
  shown = id;
  panel().hidden = false;
  panel().replaceChildren(el("p", { text: "loading…" }));
  drawAll().catch(failed);
}

// A live change to device `id`: its facts are drawn again (not the chart).
export function deviceChanged(id) {
  if (shown === id) drawFacts().catch(failed);
}

async function drawAll() {
  const id = shown;
  const facts = el("div", { id: "detail-facts" });
  const chartBox = el("div", { id: "detail-chart" });
  const history = el("div", { id: "detail-history" });
  panel().replaceChildren(
    el("button", { type: "button", class: "close", "aria-label": "Close", text: "✕", onclick: () => setView({ device: "" }) }),
    facts,
    el("p", { id: "detail-said", class: "said", role: "status" }),
    el("h3", { text: "Round-trip time" }),
    el("div", { class: "ranges", role: "group", "aria-label": "Range" },
      ...RANGES.map(([label, range]) => el("button", {
        type: "button", text: label, "aria-pressed": String(range === minutes),
        onclick: () => { minutes = range; drawAll().catch(failed); },
      }))),
    chartBox,
    el("p", { id: "detail-availability" }),
    el("h3", { text: "Path when it last failed" }),
    el("div", { id: "detail-trace" }),
    el("h3", { text: "Changes" }),
    history);
  await drawFacts();
  if (shown !== id) return;
  await Promise.all([drawChart(id, chartBox), drawAvailability(id), drawHistory(id, history)]);
}

// The device's last trace (`GET /api/v1/devices/{id}`'s `trace`): one row
// per TTL, who answered and how fast, the last hop marked.
async function drawTrace(id) {
  const { trace } = await json(`/api/v1/devices/${id}`);
  const box = document.getElementById("detail-trace");
  if (shown !== id || !box) return;
  if (!trace) {
    box.replaceChildren(el("p", { text: "never traced: its agent traces the path when it goes down or degraded" }));
    return;
  }
  const hop = (h) => {
    const last = h.address && h.address === trace.last_hop && h.ttl === trace.hops.at(-1).ttl;
    const name = last && trace.last_hop_device ? ` (${trace.last_hop_device})` : "";
    return el("li", { class: last ? "last-hop" : "" },
      `${h.ttl}  ${h.address ? h.address + name : "*"}`,
      h.rtt_ms === null ? "" : `  ${h.rtt_ms.toFixed(1)} ms`,
      last ? (trace.reached ? "  ← the device" : "  ← last hop that answered") : "");
  };
  box.replaceChildren(
    el("p", {}, el("time", { datetime: trace.traced_at, text: `traced ${absolute(trace.traced_at)}` }),
      ` to ${trace.target}: `,
      trace.last_hop ? `ends at ${trace.last_hop}${trace.last_hop_device ? ` (${trace.last_hop_device})` : ""}` : "no hop answered"),
    el("ol", { class: "trace" }, ...trace.hops.map(hop)));
}

// Drawings of the facts overlap (a live change, the alerts read again);
// only the newest one started is put on screen, with what is known when it
// ends: an older one that ends last would show the facts it began with.
let factsDrawn = 0;

async function drawFacts() {
  const id = shown;
  const turn = ++factsDrawn;
  drawTrace(id).catch(failed);
  const device = state.devices.get(id) || await json(`/api/v1/devices/${id}`);
  if (shown !== id) return;
  const link = (other) => el("a", { href: `?device=${other.id}`, text: other.name,
    onclick: (event) => { event.preventDefault(); setView({ device: String(other.id) }); } });
  // Its parents and children from the server (the screen holds only what
  // it shows).
  const parents = [];
  for (let parent = device.parent_id; parent !== null && parents.length < 16;) {
    const found = state.devices.get(parent) || await json(`/api/v1/devices/${parent}`);
    parents.push(found);
    parent = found.parent_id;
  }
  const { devices: children } = await json(`/api/v1/devices?parent=${id}&limit=100`);
  const box = document.getElementById("detail-facts");
  if (shown !== id || turn !== factsDrawn || !box) return;
  const alert = state.alerts.get(id);
  const when = since(device);
  const row = (term, ...value) => [el("dt", { text: term }), el("dd", {}, ...value)];
  box.replaceChildren(
    el("h2", { id: "detail-title" }, badge(device.status), ` ${device.name}`),
    el("p", { class: "since" }, el("time", { datetime: when, title: absolute(when), text: `${device.status} for ${relative(when)}` }),
      device.degraded ? ` · ${degradedNote(device)}` : "",
      device.flapping ? " · ⇅ flapping" : "", device.in_maintenance ? [" · ", maintenanceMark()] : ""),
    el("dl", {},
      ...row("address", device.address),
      ...row("site", el("a", { href: `?site=${encodeURIComponent(device.site)}`, text: device.site,
        onclick: (event) => { event.preventDefault(); setView({ device: "", site: device.site }); } })),
      ...row("severity", device.severity),
      ...row("thresholds", device.profile ? `profile ${device.profile}` : "its site's default profile, else the controller's"),
      ...row("tags", device.tags.join(", ") || "none"),
      ...row("agent", device.agent || "none: its site has no agent"),
      ...row("probing", `every ${device.interval_ms} ms, timeout ${device.timeout_ms} ms, down after ${device.down_after} misses, up after ${device.up_after}${device.enabled ? "" : " (disabled)"}`),
      ...row("reached through", ...(parents.length ? parents.flatMap((parent, index) => [index ? " ← " : "", link(parent)]) : ["directly"])),
      ...row("children", ...(children.length ? children.flatMap((child, index) => [index ? ", " : "", link(child)]) : ["none"])),
      ...row("maintenance", device.in_maintenance ? `window ${device.maintenance.join(", ")} open` : "none open"),
      ...row("alert", alert ? `#${alert.id} open since ${absolute(alert.opened_at)}` : "none open"),
      ...row("acknowledged", alert && alert.acknowledged
        ? `by ${who(alert.acknowledged.by)} at ${absolute(alert.acknowledged.at)}: ${alert.acknowledged.comment}` : "no")),
    actions(device, alert));
}

// What an operator can do here; each action says what it did.
function actions(device, alert) {
  if (!canOperate()) return el("p", { class: "hint", text: "Log in as an operator to acknowledge or plan maintenance." });
  // Said outside the facts, which are drawn again after an action.
  const done = (text) => { document.getElementById("detail-said").textContent = text; };
  const box = el("div", { class: "actions" });
  if (alert) {
    const comment = el("input", { name: "comment", placeholder: "comment (who, ticket)", "aria-label": "Acknowledgement comment" });
    box.append(el("form", { onsubmit: (event) => {
      event.preventDefault();
      send("POST", `/api/v1/alerts/${alert.id}/ack`, { comment: comment.value })
        .then((acked) => { done(`Acknowledged alert #${acked.id} as ${who(acked.acknowledged.by)}.`); return refreshAlerts(); })
        .catch((error) => done(`Not acknowledged: ${error.message}`));
    } }, comment, el("button", { type: "submit", text: "Acknowledge" })));
  }
  const hours = el("select", { "aria-label": "Maintenance length" },
    ...[1, 4, 12, 24].map((count) => el("option", { value: count, text: `${count} h` })));
  const scope = el("select", { "aria-label": "Maintenance for" },
    el("option", { value: "device", text: "this device" }), el("option", { value: "site", text: `site ${device.site}` }));
  if (state.session && state.session.role === "admin") box.append(editForm(device, done));
  box.append(el("form", { onsubmit: (event) => {
    event.preventDefault();
    const now = Date.now();
    const body = {
      name: `dashboard: ${scope.value === "site" ? device.site : device.name}`,
      starts_at: new Date(now).toISOString(),
      ends_at: new Date(now + Number(hours.value) * 3600e3).toISOString(),
      time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
    };
    if (scope.value === "site") body.sites = [device.site]; else body.devices = [device.id];
    send("POST", "/api/v1/maintenance", body)
      .then((window) => done(`Maintenance window #${window.id} open until ${absolute(window.ends_at)} for ${scope.value === "site" ? `site ${device.site}` : device.name}.`))
      .catch((error) => done(`No maintenance: ${error.message}`));
  } }, el("span", { text: "Maintenance for " }), hours, scope, el("button", { type: "submit", text: "Start" })));
  return box;
}

// An admin edits the device in place (`PUT /api/v1/devices/{id}`); a
// refusal names the field.
function editForm(device, done) {
  const field = (name, value, label, type = "text") =>
    el("label", {}, `${label} `, el("input", { name, value: value ?? "", type, "aria-label": label }));
  const severity = el("select", { name: "severity", "aria-label": "severity" },
    ...["critical", "major", "minor", "info"].map((level) =>
      el("option", { value: level, text: level, selected: level === device.severity })));
  const enabled = el("input", { name: "enabled", type: "checkbox", checked: device.enabled, "aria-label": "probed" });
  const form = el("form", { class: "edit", onsubmit: (event) => {
    event.preventDefault();
    // One save at a time: a second one sent before the first answered
    // could land first and be overwritten by the older values.
    if (form.dataset.saving) {
      done("Still saving the last change; try again when it is saved.");
      return;
    }
    const value = (name) => form.elements[name].value.trim();
    const number = (name) => (value(name) === "" ? undefined : Number(value(name)));
    const body = {
      name: value("name"), address: value("address"), site: value("site"),
      parent_id: number("parent_id") ?? null,
      interval_ms: number("interval_ms"), timeout_ms: number("timeout_ms"),
      down_after: number("down_after"), up_after: number("up_after"),
      tags: value("tags").split(",").map((tag) => tag.trim()).filter(Boolean),
      severity: severity.value, enabled: enabled.checked, profile: value("profile") || null,
    };
    form.dataset.saving = "yes";
    send("PUT", `/api/v1/devices/${device.id}`, body)
      .finally(() => { delete form.dataset.saving; })
      .then((saved) => {
        state.devices.set(saved.id, saved);
        schedule();
        done(`Saved device ${saved.name} (${saved.address} @ ${saved.site}, ${saved.severity}).`);
        return drawFacts();
      })
      .catch((error) => done(`Not saved: ${error.message}`));
  } },
  field("name", device.name, "name"), field("address", device.address, "address"), field("site", device.site, "site"),
  field("parent_id", device.parent_id, "parent id", "number"),
  field("interval_ms", device.interval_ms, "interval ms", "number"), field("timeout_ms", device.timeout_ms, "timeout ms", "number"),
  field("down_after", device.down_after, "down after", "number"), field("up_after", device.up_after, "up after", "number"),
  field("tags", device.tags.join(", "), "tags"), field("profile", device.profile, "profile"),
  el("label", {}, "severity ", severity), el("label", {}, enabled, " probed"),
  el("button", { type: "submit", text: "Save" }));
  return el("details", {}, el("summary", { text: "Edit this device" }), form);
}

async function drawChart(id, box) {
  let body;
  try {
    body = await json(`/api/v1/devices/${id}/rtt?minutes=${minutes}`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "hint", text: error.message }));
    return;
  }
  if (shown !== id) return;
  if (chart) chart.destroy();
  chart = null;
  const points = body.points;
  // Without VictoriaMetrics the controller keeps the last day itself.
  const builtIn = body.kept_minutes === null ? ""
    : ` (the built-in history keeps the last ${body.kept_minutes / 60} h; configure victoria_metrics for more)`;
  if (points.length === 0) {
    box.replaceChildren(el("p", { class: "hint", text: `no samples in this range yet${builtIn}` }));
    return;
  }
  const column = (name) => points.map((point) => point[name]);
  // The median line: the agents' exact medians where they sent them,
  // else the mean.
  const medians = points.some((point) => point.p50_ms !== null);
  const data = [points.map((point) => Date.parse(point.at) / 1000), column("min_ms"), column("max_ms"),
    column(medians ? "p50_ms" : "rtt_ms"), points.map((point) => (point.loss === null ? null : point.loss * 100))];
  box.replaceChildren();
  const width = Math.max(260, box.clientWidth || 600);
  /* global uPlot */
  chart = new uPlot({
    width, height: 220,
    scales: { x: { time: true }, loss: { range: [0, 100] } },
    axes: [{}, { label: "ms", size: 50 }, { scale: "loss", side: 1, label: "loss %", grid: { show: false }, size: 50 }],
    series: [
      {},
      { label: "min", stroke: "rgba(21,101,192,0.35)", width: 1 },
      { label: "max", stroke: "rgba(21,101,192,0.35)", width: 1 },
      { label: medians ? "median" : "mean", stroke: "#0d47a1", width: 2 },
      { label: "loss %", scale: "loss", stroke: "#c62828", width: 0, points: { show: true, size: 6, fill: "#c62828" },
        paths: () => null, filter: (self, series) => series },
    ],
    bands: [{ series: [2, 1], fill: "rgba(21,101,192,0.18)" }],
  }, data, box);
  const lost = points.filter((point) => point.loss > 0).length;
  box.append(el("p", { class: "hint", text: `${points.length} steps; loss in ${lost} of them (red dots)${builtIn}` }));
}

async function drawAvailability(id) {
  const to = new Date();
  const from = new Date(to - minutes * 60e3);
  const line = document.getElementById("detail-availability");
  try {
    const report = await json(`/api/v1/reports/availability?by=device&device=${id}&from=${from.toISOString()}&to=${to.toISOString()}`);
    const row = report.rows && report.rows[0];
    if (!line) return;
    line.textContent = row && row.availability !== null
      ? `Availability over the range: ${(row.availability * 100).toFixed(3)} % (${row.outages} ${row.outages === 1 ? "outage" : "outages"})`
      : "Availability over the range: no time probed";
  } catch (error) {
    if (line) line.textContent = `Availability: ${error.message}`;
  }
}

async function drawHistory(id, box) {
  const page = await json(`/api/v1/history?device=${id}&limit=50`);
  if (shown !== id) return;
  box.replaceChildren(page.changes.length === 0 ? el("p", { class: "hint", text: "no change recorded" })
    : el("ol", { class: "timeline" }, ...page.changes.map((change) => el("li", {},
      el("time", { datetime: change.at, text: absolute(change.at) }), " ",
      badge(change.from), " → ", badge(change.to),
      el("small", { text: ` ${change.reason}${change.agent ? ` (${change.agent})` : ""}` })))));
}
