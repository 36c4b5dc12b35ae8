//! `meshplane expose <port>`: asks the daemon to publish a local port
//! through the reverse proxy, prints the session, and keeps the control
//! connection open until Ctrl+C / SIGTERM, when it asks the daemon to stop
//! the session. The daemon does the work (see [`crate::expose`]); this side
//! only prints and forwards the signal.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use meshplane_core::expose::ExposeRequest;
use meshplane_core::validate::ValidationError;
use tokio::io::{AsyncBufReadExt, AsyncWrite, BufReader, Lines};
use tokio::signal::unix::{signal, SignalKind};

use crate::control::ExposeInfo;
use crate::control::{self, send, ControlError, Reply, Request};

/// How long the CLI waits for the daemon's answer to a stop (the daemon
/// itself gives the server 5 s).
const STOP_ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// The flags of `meshplane expose`.
#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// The local port to expose (1-65535).
    //
    // Values may start with a hyphen so that `-1` or a prefix `-demo`
    // reach the validators and get their messages, not clap's.
    #[arg(allow_hyphen_values = true)]
    port: String,
    /// `http` or `https` (how the proxy talks to the local server)
    /// [default: http].
    #[arg(long, allow_hyphen_values = true)]
    protocol: Option<String>,
    /// Protect the service with a 6-digit PIN.
    #[arg(long, allow_hyphen_values = true)]
    with_pin: Option<String>,
    /// Protect the service with a password.
    #[arg(long, allow_hyphen_values = true)]
    with_password: Option<String>,
    /// Allow only users of these groups, through SSO (comma-separated).
    #[arg(long, value_delimiter = ',')]
    with_user_groups: Option<Vec<String>>,
    /// Serve on this custom domain (registered to the account).
    #[arg(long, allow_hyphen_values = true)]
    with_custom_domain: Option<String>,
    /// Prefix of the generated service name.
    #[arg(long, allow_hyphen_values = true)]
    with_name_prefix: Option<String>,
    /// Print the session as one JSON object.
    #[arg(long)]
    json: bool,
}

impl ExposeArgs {
    /// The request for the daemon. A port that is not even a number fails
    /// here with the same message the daemon gives for one out of range.
    fn request(&self) -> Result<ExposeRequest, ValidationError> {
        let port = self
            .port
            .trim()
            .parse::<i64>()
            .map_err(|_| ValidationError::InvalidPort)?;
        Ok(ExposeRequest {
            port,
            protocol: self.protocol.clone(),
            pin: self.with_pin.clone(),
            password: self.with_password.clone(),
            user_groups: self.with_user_groups.clone(),
            custom_domain: self.with_custom_domain.clone(),
            name_prefix: self.with_name_prefix.clone(),
        })
    }
}

/// Runs `meshplane expose` against the daemon at `socket`.
pub fn run(socket: &Path, args: &ExposeArgs) -> Result<(), String> {
    let request = args.request().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(expose(socket, request, args.json))
}

async fn expose(socket: &Path, request: ExposeRequest, json: bool) -> Result<(), String> {
    // Listen for the signals before the session exists, so a Ctrl+C right
    // after the output still stops it cleanly.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let stream = control::connect(socket).await.map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    send(&mut write, &Request::Expose(request))
        .await
        .map_err(|e| e.to_string())?;
    match next_reply(&mut lines).await? {
        Reply::Exposed(info) => print_session(&info, json)?,
        Reply::Error(message) => return Err(message),
        other => return Err(unexpected(&other)),
    }
    tokio::select! {
        _ = interrupt.recv() => stop(&mut lines, &mut write).await,
        _ = terminate.recv() => stop(&mut lines, &mut write).await,
        // The daemon ended the session: a failed renewal, or `down`.
        reply = next_reply(&mut lines) => finished(reply?),
    }
}

/// Asks the daemon to stop the session and reports how it went.
async fn stop<R, W>(lines: &mut Lines<R>, write: &mut W) -> Result<(), String>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    send(write, &Request::StopExpose)
        .await
        .map_err(|e| format!("cannot ask the daemon to stop: {e}"))?;
    match tokio::time::timeout(STOP_ANSWER_WITHIN, next_reply(lines)).await {
        Ok(reply) => finished(reply?),
        Err(_) => Err("the daemon did not answer the stop in time".to_string()),
    }
}

/// The session's last line from the daemon.
fn finished(reply: Reply) -> Result<(), String> {
    match reply {
        Reply::ExposeStopped { clean: true } => println!("Service stopped."),
        Reply::ExposeStopped { clean: false } => println!(
            "Service stop could not be confirmed; the server removes it when its session expires."
        ),
        Reply::Error(message) => return Err(message),
        other => return Err(unexpected(&other)),
    }
    Ok(())
}

async fn next_reply<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
) -> Result<Reply, String> {
    let line = lines
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            ControlError::Malformed("the daemon closed the connection".into()).to_string()
        })?;
    serde_json::from_str(&line).map_err(|e| ControlError::Malformed(e.to_string()).to_string())
}

fn unexpected(reply: &Reply) -> String {
    ControlError::Malformed(format!("unexpected reply {reply:?}")).to_string()
}

fn print_session(info: &ExposeInfo, json: bool) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string(info).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(info));
    }
    Ok(())
}

/// The block the seed shows.
fn render(info: &ExposeInfo) -> String {
    format!(
        "Service exposed successfully!\n  Name:     {}\n  URL:      {}\n  Domain:   {}\n  \
         Protocol: {}\n  Port:     {}\n\nPress Ctrl+C to stop exposing.\n",
        info.name, info.url, info.domain, info.protocol, info.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::Timestamp;

    #[test]
    fn the_block_is_the_seeds() {
        let info = ExposeInfo {
            name: "myapp-a1b2".into(),
            url: "https://myapp-a1b2.proxy.example.com".into(),
            domain: "myapp-a1b2.proxy.example.com".into(),
            protocol: "http".into(),
            port: 8080,
            expires_at: Timestamp::from_secs(90),
        };
        assert_eq!(
            render(&info),
            "Service exposed successfully!
  Name:     myapp-a1b2
  URL:      https://myapp-a1b2.proxy.example.com
  Domain:   myapp-a1b2.proxy.example.com
  Protocol: http
  Port:     8080

Press Ctrl+C to stop exposing.
"
        );
    }
}
