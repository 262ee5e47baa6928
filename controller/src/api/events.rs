//! `GET /api/v1/events`: committed status changes as server-sent events.
//! Each `status` event is the device as `/api/v1/devices/{id}` shows it,
//! plus `previous_status`. A
//! subscriber that falls too far behind gets a `resync` event (reload the
//! lists), counted in `ward_event_subscribers_lagged_total`; nothing is
//! skipped silently.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt as _};

use super::devices::device_json;
use crate::state::{Controller, LiveEvent};

/// `GET /api/v1/events`.
pub async fn stream(
    State(controller): State<Arc<Controller>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let controller_stopped = controller.stopped();
    let changes = BroadcastStream::new(controller.subscribe()).map(move |change| {
        Ok(match change {
            Ok(LiveEvent::Resync) => Event::default().event("resync").data("{\"missed\":0}"),
            Ok(LiveEvent::Status(change)) => {
                let mut device = device_json(&change.device);
                device["previous_status"] = change.previous.as_str().into();
                Event::default().event("status").data(device.to_string())
            }
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                controller
                    .metrics
                    .event_subscribers_lagged
                    .fetch_add(1, Ordering::Relaxed);
                Event::default()
                    .event("resync")
                    .data(format!("{{\"missed\":{missed}}}"))
            }
        })
    });
    // Ends when the controller shuts down, so the server can stop.
    let changes = futures_util::StreamExt::take_until(changes, controller_stopped);
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
