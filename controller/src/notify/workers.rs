//! The delivery workers, one per receiver, made to match the
//! configuration at start and on each reload: a worker whose receiver is
//! unchanged keeps running (its queue untouched), one whose receiver
//! changed or went away stops after its round, a new receiver gets one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Channel;
use crate::config::{Receiver, Settings};
use crate::services::App;

/// What a worker is made from: its receiver, the dashboard's address,
/// Alertmanager's re-send interval.
type MadeFrom = (Receiver, Option<String>, Duration);

/// The channels of a configuration, made, waiting to be switched to.
pub struct Prepared(Vec<(MadeFrom, Channel)>);

/// One running worker and what it was made from.
struct Running {
    made_from: MadeFrom,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running workers.
pub struct Workers {
    app: App,
    running: Vec<Running>,
}

impl Workers {
    /// None yet: [`Workers::apply`] starts them.
    pub fn new(app: &App) -> Self {
        Self {
            app: app.clone(),
            running: Vec::new(),
        }
    }

    /// Runs a worker for each of `settings`' receivers (see
    /// [`Workers::prepare`] and [`Workers::switch`]).
    pub async fn apply(&mut self, settings: &Settings) -> Result<(), String> {
        let prepared = Self::prepare(settings)?;
        self.switch(prepared).await;
        Ok(())
    }

    /// Every channel of `settings`' receivers, made before anything
    /// changes: an error (a CA that does not load, an address) names the
    /// receiver and leaves the workers running as they are.
    pub fn prepare(settings: &Settings) -> Result<Prepared, String> {
        settings
            .receivers
            .iter()
            .map(|receiver| {
                let channel = Channel::for_receiver(
                    receiver,
                    settings.public_url.as_deref(),
                    settings.alertmanager_resend_interval,
                )?;
                let made_from = (
                    receiver.clone(),
                    settings.public_url.clone(),
                    settings.alertmanager_resend_interval,
                );
                Ok((made_from, channel))
            })
            .collect::<Result<_, String>>()
            .map(Prepared)
    }

    /// Makes the running workers those `prepared`: the workers of
    /// receivers gone or changed stop (after their round), the new ones
    /// start, the unchanged ones keep running.
    pub async fn switch(&mut self, prepared: Prepared) {
        let wanted = prepared.0;
        let (kept, gone): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|running| wanted.iter().any(|(from, _)| *from == running.made_from));
        for running in gone {
            stop(running).await;
        }
        self.running = kept;
        for (from, channel) in wanted {
            if self.running.iter().any(|running| running.made_from == from) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(super::run(
                Arc::clone(&self.app.notifications),
                Arc::clone(&self.app.maintenance),
                Arc::clone(&self.app.cluster),
                channel,
                async move {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            ));
            self.running.push(Running {
                made_from: from,
                stop,
                task,
            });
        }
    }

    /// Stops every worker (each after its round).
    pub async fn stop_all(&mut self) {
        for running in std::mem::take(&mut self.running) {
            stop(running).await;
        }
    }
}

async fn stop(running: Running) {
    let _ = running.stop.send(true);
    if let Err(error) = running.task.await {
        tracing::error!(%error, receiver = %running.made_from.0.name, "a notification worker ended abnormally");
    }
}
