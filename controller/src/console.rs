//! `ward-controller users …` and `tokens …`: principals managed from the
//! controller's host (the console, audited as such), before any admin
//! exists and after.

use std::io::{BufRead as _, IsTerminal as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::auth::{self, Role};
use crate::store::{Actor, Store};
use crate::time::now_ms;

/// `users …`.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user. Its password is asked for on a terminal, read from
    /// standard input with --password-stdin, or generated and printed once.
    Add {
        /// Login name.
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// No password: the user only uses tokens (or LDAP).
        #[arg(long)]
        no_password: bool,
    },
    /// List users.
    List,
    /// Disable a user: no login, its tokens refused.
    Disable {
        /// Login name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// Login name.
        name: String,
    },
}

/// `tokens …`.
#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create an API token for USER (printed once; only its digest is kept).
    Create {
        /// The user it acts as (with the user's role).
        user: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime, e.g. 90d [default: none].
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token at once.
    Revoke {
        /// Its id (from `tokens list`).
        id: i64,
    },
}

/// Runs a `users` command on `store`.
pub async fn users(store: &Store, command: UsersCommand) -> anyhow::Result<()> {
    let enabling = matches!(command, UsersCommand::Enable { .. });
    match command {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
            no_password,
        } => {
            let (password, generated) = if no_password {
                (None, false)
            } else if password_stdin {
                (Some(read_password_line()?), false)
            } else if std::io::stdin().is_terminal() {
                (Some(prompt_password()?), false)
            } else {
                (Some(auth::generate_password()?), true)
            };
            let hash = password.as_deref().map(auth::hash_password).transpose()?;
            let user = store
                .add_user(&name, role, hash.as_deref(), &Actor::console(), now_ms())
                .await?;
            println!("user {} created with role {}", user.name, user.role);
            if let (Some(password), true) = (password, generated) {
                println!("password (shown once): {password}");
            }
        }
        UsersCommand::List => {
            for user in store.users().await? {
                let state = if user.enabled { "enabled" } else { "disabled" };
                println!("{}\t{}\t{state}", user.name, user.role);
            }
        }
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let Some(user) = store
                .set_user_enabled(&name, enabling, &Actor::console(), now_ms())
                .await?
            else {
                bail!("no user named `{name}` (see `ward-controller users list`)");
            };
            let state = if user.enabled { "enabled" } else { "disabled" };
            println!("user {} {state}", user.name);
        }
    }
    Ok(())
}

/// Runs a `tokens` command on `store`.
pub async fn tokens(store: &Store, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create {
            user,
            label,
            expires_in,
        } => {
            let now = now_ms();
            let expires_at_ms = expires_in
                .map(|lifetime| {
                    i64::try_from(lifetime.as_millis()).map(|ms| now.saturating_add(ms))
                })
                .transpose()
                .context("--expires-in is too long")?;
            let (secret, digest) = auth::new_token()?;
            let token = store
                .create_token(
                    &user,
                    &label,
                    &digest,
                    expires_at_ms,
                    &Actor::console(),
                    now,
                )
                .await?;
            println!("token {} for user {} (shown once):", token.id, token.user);
            println!("{secret}");
        }
        TokensCommand::List => {
            for token in store.tokens().await? {
                let state = match (token.revoked_at_ms, token.expires_at_ms) {
                    (Some(at), _) => format!("revoked {}", crate::time::rfc3339(at)),
                    (None, Some(at)) => format!("expires {}", crate::time::rfc3339(at)),
                    (None, None) => "no expiry".into(),
                };
                println!("{}\t{}\t{}\t{state}", token.id, token.user, token.label);
            }
        }
        TokensCommand::Revoke { id } => {
            let Some(token) = store.revoke_token(id, &Actor::console(), now_ms()).await? else {
                bail!("no token with id {id} (see `ward-controller tokens list`)");
            };
            println!("token {} of user {} revoked", token.id, token.user);
        }
    }
    Ok(())
}

fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    Ok(password)
}

fn prompt_password() -> anyhow::Result<String> {
    let password = rpassword::prompt_password("password: ")?;
    if password.is_empty() {
        bail!("an empty password is not allowed (use --no-password for token-only users)");
    }
    if rpassword::prompt_password("again: ")? != password {
        bail!("the two passwords differ");
    }
    Ok(password)
}
