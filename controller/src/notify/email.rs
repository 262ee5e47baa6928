//! E-mail over SMTP (`lettre`): one message per notification to every
//! recipient, its subject the notification's headline (`[ward] DOWN
//! atm-17 (branch-0421) since 03:12 UTC`), a plain-text and an HTML body
//! with the device, site, status, since, acknowledgement and the link to
//! the device. STARTTLS is required on `smtp://` (unless switched off for
//! a relay on this host), TLS from the first byte on `smtps://`; a
//! password is only ever sent over TLS.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Message;
use crate::config::{EmailSettings, SmtpSecurity};
use crate::store::DueNotification;

/// How long one delivery may take (connect, TLS, authenticate, send).
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// An e-mail receiver.
pub struct Email {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The dashboard's address, for each message's link.
    public_url: Option<String>,
}

impl Email {
    /// Receiver `name` sending as `settings` say; an error names what is
    /// wrong (an address, the CA).
    pub fn new(
        name: &str,
        settings: &EmailSettings,
        public_url: Option<&str>,
    ) -> Result<Self, String> {
        let mailbox = |address: &str| {
            address
                .parse::<Mailbox>()
                .map_err(|error| format!("receiver {name}: `{address}`: {error}"))
        };
        let mut tls = TlsParameters::builder(settings.host.clone());
        if let Some(pem) = &settings.ca_pem {
            let ca = Certificate::from_pem(pem)
                .map_err(|error| format!("receiver {name}: ca_file: {error}"))?;
            tls = tls.add_root_certificate(ca);
        }
        let tls = tls
            .build_rustls()
            .map_err(|error| format!("receiver {name}: TLS: {error}"))?;
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(SMTP_TIMEOUT))
            .tls(match settings.security {
                SmtpSecurity::Tls => Tls::Wrapper(tls),
                SmtpSecurity::StartTls => Tls::Required(tls),
                SmtpSecurity::Plain => Tls::None,
            });
        if let Some((user, password)) = &settings.credentials {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            name: name.to_owned(),
            transport: transport.build(),
            from: mailbox(&settings.from)?,
            to: settings
                .to
                .iter()
                .map(|address| mailbox(address))
                .collect::<Result<_, _>>()?,
            public_url: public_url.map(str::to_owned),
        })
    }

    /// Its receiver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) async fn post(&self, notification: &DueNotification) -> Result<(), String> {
        let message = Message::of(notification, self.public_url.as_deref());
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(message.headline.clone());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(
                plain(&message),
                html(&message),
            ))
            .map_err(|error| format!("e-mail to {}: {error}", self.name))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|error| format!("SMTP ({}): {error}", self.name))
    }
}

fn plain(message: &Message) -> String {
    let mut text = format!("{}\n\n{}\n", message.headline, message.plain_facts());
    if let Some(link) = &message.link {
        text.push_str(&format!("\nOpen in ward: {link}\n"));
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(message: &Message) -> String {
    let rows: String = message
        .facts
        .iter()
        .map(|(label, value)| {
            format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(label),
                escape(value)
            )
        })
        .collect();
    let link = message.link.as_ref().map_or_else(String::new, |link| {
        format!("<p><a href=\"{}\">Open in ward</a></p>", escape(link))
    });
    format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><table>{rows}</table>{link}</body></html>",
        escape(&message.headline)
    )
}
