//! A server process owned by a test: started, probed until ready, stopped
//! by PID (SIGTERM, then SIGKILL) when dropped.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

type CommandFactory = Box<dyn Fn() -> Command + Send + Sync>;
type ReadinessProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// One supervised server. Restartable, so tests can take it away and bring
/// it back (same port, same data directory).
pub(crate) struct Supervised {
    name: &'static str,
    command: CommandFactory,
    ready: ReadinessProbe,
    log_path: PathBuf,
    child: Option<Child>,
    /// The signal that asks this server to shut down at once.
    stop_signal: Signal,
}

impl Supervised {
    pub(crate) fn new(
        name: &'static str,
        log_path: PathBuf,
        command: impl Fn() -> Command + Send + Sync + 'static,
        ready: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            command: Box::new(command),
            ready: Box::new(ready),
            log_path,
            child: None,
            stop_signal: Signal::SIGTERM,
        }
    }

    /// Uses `signal` instead of SIGTERM to stop the server (PostgreSQL:
    /// SIGINT is its fast shutdown; SIGTERM waits for clients to leave).
    pub(crate) fn with_stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// Starts the server and waits until its readiness probe passes.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut command = (self.command)();
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().with_context(|| {
            format!(
                "starting {} ({command:?}); is its Debian package installed? \
                 `testkit/run-tests.sh` installs it",
                self.name
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child_mut()?.try_wait()? {
                self.child = None;
                bail!(
                    "{} exited with {status} before it was ready; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if (self.ready)() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                bail!(
                    "{} not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server gracefully (its stop signal, SIGKILL after a grace
    /// period).
    pub(crate) fn stop(&mut self) {
        self.signal_and_reap(self.stop_signal);
    }

    /// Kills the server without warning, as a crash would.
    pub(crate) fn crash(&mut self) {
        self.signal_and_reap(Signal::SIGKILL);
    }

    /// The process id while running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal_and_reap(&mut self, signal: Signal) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        if let Err(error) = kill(pid, signal) {
            eprintln!("{}: sending {signal} to pid {pid}: {error}", self.name);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => {
                    eprintln!("{}: waiting for pid {pid}: {error}", self.name);
                    break;
                }
            }
        }
        eprintln!(
            "{}: pid {pid} still running after {STOP_GRACE:?}; SIGKILL",
            self.name
        );
        if let Err(error) = child.kill() {
            eprintln!("{}: SIGKILL to pid {pid}: {error}", self.name);
        }
        if let Err(error) = child.wait() {
            eprintln!("{}: reaping pid {pid}: {error}", self.name);
        }
    }

    fn child_mut(&mut self) -> anyhow::Result<&mut Child> {
        self.child
            .as_mut()
            .with_context(|| format!("{} is not running", self.name))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
