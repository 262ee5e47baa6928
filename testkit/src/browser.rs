//! Headless Chromium (Debian `chromium`) driven over the DevTools protocol,
//! for end-to-end tests of pages served on loopback. Started with the
//! flags that keep it off the network (no background networking, no
//! component updates, no sync) and a fresh profile in a `ward-test-*`
//! directory; stopped by PID, with its process group, when dropped.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::process::Supervised;
use crate::services::service_dir;

const BINARY: &str = "/usr/bin/chromium";
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A running headless Chromium with one page open.
pub struct Chromium {
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    server: Supervised,
    profile: TempDir,
}

impl Chromium {
    /// Starts Chromium on `about:blank` and attaches to its page.
    pub fn start() -> anyhow::Result<Self> {
        let profile = service_dir("chromium")?;
        let data = profile.path().join("profile");
        let port_file = data.join("DevToolsActivePort");
        let mut server = Supervised::new(
            "chromium",
            profile.path().join("chromium.log"),
            move || {
                let mut command = Command::new(BINARY);
                command
                    .args([
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-extensions",
                        "--window-size=1280,800",
                        "--remote-debugging-address=127.0.0.1",
                        "--remote-debugging-port=0",
                    ])
                    .arg(format!("--user-data-dir={}", data.display()))
                    .arg("about:blank");
                // Its renderers and helpers share the group, ended with it.
                std::os::unix::process::CommandExt::process_group(&mut command, 0);
                command
            },
            {
                let port_file = port_file.clone();
                move || port_file.exists()
            },
        );
        server.start()?;
        let port = read_port(&port_file)?;
        let targets: Value = http_get_json(port, "/json/list")?;
        let page_url = targets
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|page| page["webSocketDebuggerUrl"].as_str())
            .context("Chromium lists no page target")?
            .to_owned();
        let (page, _) = tungstenite::connect(&page_url)
            .with_context(|| format!("connecting to the DevTools page {page_url}"))?;
        if let MaybeTlsStream::Plain(stream) = page.get_ref() {
            stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        }
        Ok(Self {
            page,
            next_id: 1,
            server,
            profile,
        })
    }

    /// Sends a DevTools command to the page and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        self.page.send(Message::text(request.to_string()))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                bail!("{method}: no answer from Chromium within {CALL_TIMEOUT:?}");
            }
            let Message::Text(text) = self.page.read()? else {
                continue;
            };
            let message: Value = serde_json::from_str(&text)?;
            if message["id"] != id {
                continue; // an event
            }
            if let Some(error) = message.get("error") {
                bail!("{method}: {error}");
            }
            return Ok(message["result"].clone());
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let result = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = result.get("errorText") {
            bail!("navigating to {url}: {error}");
        }
        Ok(())
    }

    /// Evaluates `expression` in the page; its JSON value.
    pub fn evaluate(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("evaluating `{expression}`: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `expression` every 20 ms until it is `true`; how long that
    /// took, or an error after `limit`.
    pub fn wait_until(&mut self, expression: &str, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            // While the page loads, the expression may throw: not yet.
            let last = match self.evaluate(expression) {
                Ok(Value::Bool(true)) => return Ok(start.elapsed()),
                Ok(value) => format!("it is {value}"),
                Err(error) => error.to_string(),
            };
            if start.elapsed() >= limit {
                bail!(
                    "`{expression}` still not true after {limit:?} ({last}); Chromium's profile and log: {}",
                    self.profile.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes the page's viewport `width` × `height` CSS pixels (a phone, a
    /// NOC screen).
    pub fn set_viewport(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        Ok(())
    }

    /// A PNG screenshot of the page, written to `path`.
    pub fn screenshot(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        let result = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = result["data"].as_str().context("screenshot without data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let group = self.server.pid();
        self.server.stop();
        if let Some(group) = group.and_then(|pid| i32::try_from(pid).ok()) {
            // Helpers that outlive the browser process: same group, ours.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The DevTools port Chromium wrote to `DevToolsActivePort`.
fn read_port(path: &std::path::Path) -> anyhow::Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(port) = text
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
        {
            return Ok(port);
        }
        if Instant::now() > deadline {
            bail!("{} names no port: {text:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get_json(port: u16, path: &str) -> anyhow::Result<Value> {
    use std::io::{Read as _, Write as _};

    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("Chromium DevTools on port {port}"))?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    // Chromium keeps the connection open: read the headers, then exactly
    // Content-Length bytes.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .with_context(|| format!("DevTools answer to {path} without a length: {head}"))?;
            if body.len() >= length {
                return Ok(serde_json::from_str(&body[..length])?);
            }
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("DevTools closed the connection during {path}: {text:?}");
        }
        answer.extend_from_slice(&chunk[..read]);
    }
}
