//! `GET /api/v1/events`: committed status changes as server-sent events.
//! Each `status` event is the device as `/api/v1/devices/{id}` shows it,
//! plus `previous_status`. A
//! subscriber that falls too far behind gets a `resync` event (reload the
//! lists), counted in `ward_event_subscribers_lagged_total`; nothing is
//! skipped silently.
//!
//! Resuming: the stream opens with an `id:` of the data version it starts
//! at, and the last change of each committed version carries that
//! version as its `id:` (versions follow commit order on every
//! controller). A client reconnecting with `Last-Event-ID` gets every
//! change committed after it from the event log first, each with its
//! status then, and the live ones after; a gap the log cannot fill (more
//! than [`MOST_REPLAYED`] changes, an id from another database or not one
//! of ours) is a `resync` instead.
//!
//! Liveness: with `?heartbeat=1` the stream also carries a `heartbeat`
//! event every [`HEARTBEAT`] (data: the controller's clock, Unix ms), so a
//! client (the dashboard) can tell a quiet stream from a dead one.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt as _};

use super::devices::device_json;
use crate::services::{Core, LiveEvent, Maintenance};
use crate::store::{LoggedChange, StoreError};

/// Changes replayed to a resuming client at most; beyond, `resync`.
pub const MOST_REPLAYED: i64 = 10_000;

/// How often a `heartbeat` event comes when asked for.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// `?heartbeat=1`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    heartbeat: Option<u8>,
}

/// A `heartbeat` event every [`HEARTBEAT`], the first at once.
fn heartbeats() -> impl Stream<Item = Event> + Send {
    futures_util::stream::unfold(true, |first| async move {
        if !first {
            tokio::time::sleep(HEARTBEAT).await;
        }
        let at = crate::time::now_ms().to_string();
        Some((Event::default().event("heartbeat").data(at), false))
    })
}

/// `GET /api/v1/events`.
pub async fn stream(
    State(core): State<Arc<Core>>,
    State(maintenance): State<Arc<Maintenance>>,
    Query(options): Query<StreamOptions>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stopped = core.live.stopped();
    // Subscribed before the log is read: nothing falls between them.
    let live = BroadcastStream::new(core.live.subscribe());
    let resume = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or_default().trim().to_owned());
    let (opening, replayed_to) = opening(&core, &maintenance, resume.as_deref()).await;
    let changes = live.filter_map(move |change| {
        Some(match change {
            Ok(LiveEvent::Resync) => resync("{\"missed\":0}"),
            Ok(LiveEvent::Status(change)) => {
                // Replayed from the log already.
                if change.version.is_some_and(|v| v <= replayed_to) {
                    return None;
                }
                let data = change.encoded.get_or_init(|| {
                    let mut device = device_json(&change.device, &maintenance.open_windows());
                    device["previous_status"] = change.previous.as_str().into();
                    device.to_string()
                });
                let event = Event::default().event("status").data(data);
                match change.version {
                    Some(version) if change.closes_version => event.id(version.to_string()),
                    _ => event,
                }
            }
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                core.metrics
                    .event_subscribers_lagged
                    .fetch_add(1, Ordering::Relaxed);
                resync(&format!("{{\"missed\":{missed}}}"))
            }
        })
    });
    let beats: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>> =
        if options.heartbeat.unwrap_or(0) > 0 {
            Box::pin(heartbeats())
        } else {
            Box::pin(futures_util::stream::pending())
        };
    let events = tokio_stream::iter(opening)
        .chain(changes.merge(beats))
        .map(Ok);
    // Ends when the controller shuts down, so the server can stop.
    let events = futures_util::StreamExt::take_until(events, stopped);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn resync(data: &str) -> Event {
    Event::default().event("resync").data(data)
}

/// What a new subscriber gets first, and the version that brings it to
/// (live changes up to it were replayed): the starting `id:`, or the
/// changes after `Last-Event-ID` from the log, or a `resync`.
async fn opening(
    core: &Core,
    maintenance: &Maintenance,
    resume: Option<&str>,
) -> (Vec<Event>, i64) {
    let now = match core.store.data_version().await {
        Ok(now) => now.version,
        Err(_) => {
            return (
                vec![resync(
                    "{\"missed\":0,\"why\":\"the status database is not answering\"}",
                )],
                i64::MAX,
            );
        }
    };
    let start = Event::default().id(now.to_string()).comment("from here");
    let Some(resume) = resume else {
        return (vec![start], 0);
    };
    let gap = |why: &str| {
        let data = json!({"missed": 0, "why": why}).to_string();
        (vec![resync(&data), start.clone()], now)
    };
    let Ok(after) = resume.parse::<i64>() else {
        return gap(&format!(
            "Last-Event-ID `{resume}` is not an id of this stream"
        ));
    };
    if after > now {
        return gap("Last-Event-ID is from another database");
    }
    match replay(core, maintenance, after).await {
        Ok(Some((events, last))) => (events, now.max(last)),
        Ok(None) => gap(&format!(
            "more than {MOST_REPLAYED} changes since Last-Event-ID"
        )),
        Err(_) => gap("the status database is not answering"),
    }
}

/// The changes after version `after` as events (the last of each version
/// with its `id:`) and the last version among them, `None` if there are
/// too many.
async fn replay(
    core: &Core,
    maintenance: &Maintenance,
    after: i64,
) -> Result<Option<(Vec<Event>, i64)>, StoreError> {
    let changes = core.store.changes_since(after, MOST_REPLAYED + 1).await?;
    if i64::try_from(changes.len()).unwrap_or(i64::MAX) > MOST_REPLAYED {
        return Ok(None);
    }
    let devices = core.devices().await?;
    let by_id: std::collections::HashMap<i64, &crate::store::Device> =
        devices.iter().map(|d| (d.id, d.as_ref())).collect();
    let open = maintenance.open_windows();
    let mut events = Vec::with_capacity(changes.len());
    for (index, change) in changes.iter().enumerate() {
        // A deleted device's events went with it.
        let Some(device) = by_id.get(&change.device_id) else {
            continue;
        };
        let closes = changes
            .get(index + 1)
            .is_none_or(|next: &LoggedChange| next.version != change.version);
        let mut shown = device_json(device, &open);
        shown["status"] = change.status.as_str().into();
        shown["previous_status"] = change.previous.as_str().into();
        let event = Event::default().event("status").data(shown.to_string());
        events.push(if closes {
            event.id(change.version.to_string())
        } else {
            event
        });
    }
    let last = changes.last().map_or(after, |change| change.version);
    Ok(Some((events, last)))
}
