//! One connection to the controller: the channel (plaintext to loopback,
//! or mTLS), and the `AgentLink.Connect` stream opened with a `Hello`.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use ward_proto::v1::{self as pb, agent_message};

use super::config::RunSettings;
use super::tls;

/// Messages buffered towards the controller.
const OUTBOUND_BUFFER: usize = 256;
/// A connection attempt slower than this failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the controller sent: a message, the stream's error, or its end.
pub type Inbound = Option<Result<pb::ControllerMessage, tonic::Status>>;

/// An open stream.
pub struct Link {
    /// Towards the controller.
    pub outbound: mpsc::Sender<pb::AgentMessage>,
    /// From the controller, read by a task of its own so the controller's
    /// acks never wait for the agent to finish sending (both sides
    /// blocked on full buffers would be a deadlock); ends with `None`.
    pub inbound: mpsc::UnboundedReceiver<Inbound>,
}

/// Why no stream could be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The controller URL or TLS files are unusable.
    #[error("{0}")]
    Setup(String),
    /// No connection.
    #[error("cannot connect to the controller at {url}: {cause}")]
    Connect {
        /// The controller.
        url: String,
        /// Why, with every cause (a TLS name mismatch names the name asked
        /// for and the names in the certificate).
        cause: String,
    },
    /// The controller refused the call.
    #[error("the controller refused the link: {0}")]
    Call(#[from] tonic::Status),
}

/// `error` and every error beneath it, outermost first ("transport error:
/// invalid peer certificate: certificate not valid for name …").
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// Connects to the controller at `url` and says `hello`.
pub async fn open(settings: &RunSettings, url: &str, hello: pb::Hello) -> Result<Link, LinkError> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|error| LinkError::Setup(format!("controller URL {url}: {error}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if let Some(files) = &settings.tls {
        endpoint = endpoint
            .tls_config(
                tls::client_config(files).map_err(|error| LinkError::Setup(error.to_string()))?,
            )
            .map_err(|error| LinkError::Setup(format!("TLS: {error}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| LinkError::Connect {
            url: url.to_owned(),
            cause: causes(&error),
        })?;
    let mut client = pb::agent_link_client::AgentLinkClient::new(channel);
    let (outbound, receiver) = mpsc::channel(OUTBOUND_BUFFER);
    outbound
        .send(pb::AgentMessage {
            kind: Some(agent_message::Kind::Hello(hello)),
        })
        .await
        .map_err(|_| LinkError::Setup("stream closed before Hello".into()))?;
    let response = client.connect(ReceiverStream::new(receiver)).await?;
    let mut stream = response.into_inner();
    let (forward, inbound) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let next = stream.message().await.transpose();
            let end = !matches!(next, Some(Ok(_)));
            if forward.send(next).is_err() || end {
                return;
            }
        }
    });
    Ok(Link { outbound, inbound })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cause_is_named_once() {
        let inner = std::io::Error::other("certificate not valid for name \"controller\"");
        let outer = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert_eq!(
            super::causes(&outer),
            "certificate not valid for name \"controller\""
        );
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Transport(#[source] std::io::Error);
        let wrapped = Transport(std::io::Error::other("invalid peer certificate"));
        assert_eq!(
            super::causes(&wrapped),
            "transport error: invalid peer certificate"
        );
    }
}
