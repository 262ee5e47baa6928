// Honest liveness: the page follows /api/v1/events?heartbeat=1 and is live
// only while that stream answers. A dropped stream, or one silent for
// STALE_AFTER_MS (the controller sends a heartbeat every second), turns the
// whole page stale at once: greyed, no status colour, a banner saying since
// when. It reconnects every second and is live again only after the truth
// was loaded anew.

export const STALE_AFTER_MS = 2500;
const RECONNECT_MS = 1000;

const clock = (at) => new Date(at).toLocaleTimeString([], { hour12: false });

// `handlers`: status(device), resync(), reload() (a promise: load the truth).
export function follow(handlers) {
  let events = null;
  let heard = 0;       // last time the stream said anything
  let liveSince = 0;   // the last moment the page was known live
  let live = false;

  const banner = document.getElementById("stale");
  const link = document.getElementById("link");

  function stale(why) {
    if (events) events.close();
    events = null;
    live = false;
    document.body.classList.add("stale");
    const since = liveSince ? `not live since ${clock(liveSince)}` : "not live yet";
    banner.textContent = `${since} — reconnecting (${why})`;
    banner.hidden = false;
    link.textContent = "not live";
    setTimeout(connect, RECONNECT_MS);
  }

  function connect() {
    if (events) return;
    events = new EventSource("/api/v1/events?heartbeat=1");
    const stream = events;
    heard = Date.now();
    const hear = () => {
      heard = Date.now();
      if (live) liveSince = heard;
    };
    stream.onopen = () => {
      hear();
      handlers.reload().then(() => {
        if (events !== stream) return;
        live = true;
        liveSince = Date.now();
        document.body.classList.remove("stale");
        banner.hidden = true;
        link.textContent = "live";
      }, () => { if (events === stream) stale("the lists did not load"); });
    };
    stream.onerror = () => { if (events === stream) stale("the event stream dropped"); };
    stream.addEventListener("heartbeat", hear);
    stream.addEventListener("status", (event) => { hear(); handlers.status(JSON.parse(event.data)); });
    stream.addEventListener("resync", () => { hear(); handlers.resync(); });
  }

  setInterval(() => {
    if (events && Date.now() - heard > STALE_AFTER_MS) stale("the controller stopped answering");
  }, 250);
  // A page left for another (and kept by the browser's back/forward cache)
  // lets go of its stream: browsers allow six connections per server, and
  // a held stream would starve the next page. Shown again, it reconnects.
  window.addEventListener("pagehide", () => {
    if (events) events.close();
    events = null;
  });
  window.addEventListener("pageshow", (event) => { if (event.persisted) stale("the page was shown again"); });
  document.body.classList.add("stale");
  connect();
}
