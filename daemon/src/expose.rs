//! The daemon's side of `meshplane expose`: check the flags, create the
//! session on the management server, then keep it alive with the core's
//! [`KeepAlive`] machine for as long as the CLI's control connection stays
//! open.
//!
//! The CLI's connection is the session's lifetime: the daemon answers the
//! `expose` request with the session, then waits. A `stop_expose` line or
//! the connection closing (the CLI was killed) stops the session; so does
//! `meshplane down` ([`Exposes::stop_all`]). A failed renewal ends it with
//! an error line, and the server removes the service after its TTL.
//!
//! The management calls run in a task of their own that owns the gRPC
//! session, so a renewal in flight never blocks the loop from noticing a
//! stop; answers that arrive after the machine moved on are ignored by it.

use std::io;
use std::time::Duration;

use meshplane_core::expose::{ExposeRequest, KeepAlive, KeepAliveConfig, KeepAliveEvent, Request};
use meshplane_core::validate::ValidationError;
use meshplane_core::Timestamp;
use meshplane_proto::v1::{CreateExposeRequest, ExposeSession};
use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncWrite, Lines};
use tokio::sync::{mpsc, watch};

use crate::control::{self, send, ExposeInfo, Reply};
use crate::mgmt::client::{now, ManagementError, Session};
use crate::service::Daemon;

/// How long `down` waits for every active session to send its stop (each
/// gives up after the machine's 5 s stop timeout).
const STOP_ALL_WITHIN: Duration = Duration::from_secs(7);

/// Why an expose request failed.
#[derive(Debug, Error)]
pub enum ExposeError {
    /// The seed shows a bad prefix under the step that failed.
    #[error("generate service name: {0}")]
    NamePrefix(ValidationError),
    #[error(transparent)]
    Invalid(ValidationError),
    #[error("client is not running, run 'meshplane up' first")]
    NotRunning,
    #[error(transparent)]
    Management(#[from] ManagementError),
}

impl From<ValidationError> for ExposeError {
    fn from(e: ValidationError) -> Self {
        match e {
            ValidationError::InvalidNamePrefix(_) => ExposeError::NamePrefix(e),
            other => ExposeError::Invalid(other),
        }
    }
}

/// The session as the CLI shows it.
fn info(s: &ExposeSession) -> ExposeInfo {
    ExposeInfo {
        name: s.name.clone(),
        url: s.url.clone(),
        domain: s.domain.clone(),
        protocol: s.protocol.clone(),
        port: u16::try_from(s.port).unwrap_or_default(),
        expires_at: Timestamp::from_millis(s.expires_at_ms),
    }
}

/// Checks the flags with the core's request validation (the messages of
/// SEMANTICS.md, in flag order), so a typo fails before any server round
/// trip; the request for CreateExpose.
pub fn check(request: &ExposeRequest) -> Result<CreateExposeRequest, ExposeError> {
    let valid = request.validate()?;
    Ok(CreateExposeRequest {
        port: u32::from(valid.port.get()),
        protocol: valid.protocol.as_str().to_string(),
        pin: valid.pin.map(|p| p.as_str().to_string()),
        password: valid.password.map(|p| p.as_str().to_string()),
        user_groups: valid.user_groups.unwrap_or_default(),
        custom_domain: valid
            .custom_domain
            .map(|d| d.to_string())
            .unwrap_or_default(),
        name_prefix: valid.name_prefix.map(|p| p.to_string()).unwrap_or_default(),
    })
}

/// The daemon's active expose sessions, so `down` can stop them first.
#[derive(Debug)]
pub struct Exposes {
    /// Bumped by [`stop_all`](Self::stop_all); every session started
    /// before stops when it changes.
    epoch: watch::Sender<u64>,
    active: watch::Sender<usize>,
}

impl Default for Exposes {
    fn default() -> Self {
        Exposes {
            epoch: watch::Sender::new(0),
            active: watch::Sender::new(0),
        }
    }
}

/// One registered session; dropping it unregisters it.
#[derive(Debug)]
struct Active<'a> {
    exposes: &'a Exposes,
    stop: watch::Receiver<u64>,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.exposes
            .active
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Exposes {
    fn register(&self) -> Active<'_> {
        self.active.send_modify(|n| *n += 1);
        Active {
            exposes: self,
            stop: self.epoch.subscribe(),
        }
    }

    /// Tells every active session to stop and waits until they have sent
    /// their stop (bounded by [`STOP_ALL_WITHIN`]).
    pub async fn stop_all(&self) {
        self.epoch.send_modify(|e| *e += 1);
        let mut active = self.active.subscribe();
        let done = active.wait_for(|n| *n == 0);
        if tokio::time::timeout(STOP_ALL_WITHIN, done).await.is_err() {
            tracing::warn!("expose sessions did not stop within {STOP_ALL_WITHIN:?}");
        }
    }
}

/// Serves one `expose` request on a control connection: answers with the
/// session (or an error), keeps it alive, and writes the final line when it
/// ends. `lines` is the rest of the connection from the CLI.
pub async fn serve<R, W>(
    daemon: &Daemon,
    request: &ExposeRequest,
    lines: &mut Lines<R>,
    write: &mut W,
) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut active = daemon.exposes().register();
    let (session, info) = match create(daemon, request).await {
        Ok(created) => created,
        Err(e) => return send(write, &Reply::Error(e.to_string())).await,
    };
    tracing::info!("exposed port {} as {}", info.port, info.url);
    send(write, &Reply::Exposed(info.clone())).await?;
    let end = keep_alive(
        session,
        info.domain.clone(),
        daemon.keepalive(),
        lines,
        &mut active.stop,
    )
    .await;
    let reply = match end {
        KeepAliveEvent::Stopped { clean } => {
            tracing::info!("stopped exposing {} (confirmed: {clean})", info.domain);
            Reply::ExposeStopped { clean }
        }
        KeepAliveEvent::Failed { reason } => {
            tracing::warn!("expose session {} failed: {reason}", info.domain);
            Reply::Error(format!("cannot renew the expose session: {reason}"))
        }
    };
    // The CLI may be gone already (killed): nobody to tell.
    let _ = send(write, &reply).await;
    Ok(())
}

/// Validates, checks the daemon is connected, and creates the session.
async fn create(
    daemon: &Daemon,
    request: &ExposeRequest,
) -> Result<(Session, ExposeInfo), ExposeError> {
    let create = check(request)?;
    let (server, key) = daemon
        .expose_target()
        .await
        .ok_or(ExposeError::NotRunning)?;
    let mut session = Session::connect(&server, &key).await?;
    let created = session.create_expose(&create).await?;
    Ok((session, info(&created)))
}

/// Runs the keep-alive machine until it finishes; how it ended.
async fn keep_alive<R: AsyncBufRead + Unpin>(
    session: Session,
    domain: String,
    config: KeepAliveConfig,
    lines: &mut Lines<R>,
    stop: &mut watch::Receiver<u64>,
) -> KeepAliveEvent {
    let (requests, calls_in) = mpsc::channel(4);
    let (answers_out, mut answers) = mpsc::channel(4);
    let calls = tokio::spawn(call(session, domain, calls_in, answers_out));
    let mut machine = KeepAlive::new(config, now());
    let mut cli_open = true;
    let mut stop_open = true;
    let end = loop {
        while let Some(request) = machine.poll_transmit() {
            // The call task lives until it is aborted below.
            let _ = requests.send(request).await;
        }
        if let Some(event) = machine.poll_event() {
            break event;
        }
        let wait = machine
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(u64::try_from((at - now()).as_millis()).unwrap_or(0))
            });
        tokio::select! {
            () = tokio::time::sleep(wait) => machine.handle_timeout(now()),
            Some((request, result)) = answers.recv() => match (request, result) {
                (Request::Renew, Ok(())) => machine.handle_renew_ok(now()),
                (Request::Renew, Err(e)) => machine.handle_renew_failed(&e.to_string(), now()),
                (Request::Stop, Ok(())) => machine.handle_stop_done(now()),
                // Refused or unreachable: waiting out the stop timeout
                // would not change the answer.
                (Request::Stop, Err(e)) => {
                    tracing::warn!("stop not confirmed: {e}");
                    break KeepAliveEvent::Stopped { clean: false };
                }
            },
            line = lines.next_line(), if cli_open => {
                match line.map(|l| l.map(|l| serde_json::from_str::<control::Request>(&l))) {
                    Ok(Some(Ok(control::Request::StopExpose))) => {}
                    Ok(Some(_)) => continue,
                    // The CLI went away without saying stop.
                    Ok(None) | Err(_) => cli_open = false,
                }
                machine.stop(now());
            }
            changed = stop.changed(), if stop_open => {
                stop_open = changed.is_ok();
                machine.stop(now());
            }
        }
    };
    calls.abort();
    end
}

/// The management calls of one session, one at a time, in order.
async fn call(
    mut session: Session,
    domain: String,
    mut requests: mpsc::Receiver<Request>,
    answers: mpsc::Sender<(Request, Result<(), ManagementError>)>,
) {
    while let Some(request) = requests.recv().await {
        let result = match request {
            Request::Renew => session.renew_expose(&domain).await.map(drop),
            Request::Stop => session.stop_expose(&domain).await,
        };
        if answers.send((request, result)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(port: i64) -> ExposeRequest {
        ExposeRequest {
            port,
            ..ExposeRequest::default()
        }
    }

    fn message(r: &ExposeRequest) -> String {
        match check(r) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn flags_fail_with_the_seed_messages() {
        assert_eq!(
            message(&request(0)),
            "invalid port number: must be between 1 and 65535"
        );
        assert_eq!(
            message(&request(65_536)),
            "invalid port number: must be between 1 and 65535"
        );
        let with = |f: fn(&mut ExposeRequest)| {
            let mut r = request(8080);
            f(&mut r);
            message(&r)
        };
        assert_eq!(
            with(|r| r.protocol = Some("tcp".into())),
            "unsupported protocol"
        );
        assert_eq!(
            with(|r| r.pin = Some("12345".into())),
            "invalid pin: must be exactly 6 digits"
        );
        assert_eq!(
            with(|r| r.password = Some(String::new())),
            "password cannot be empty"
        );
        assert_eq!(
            with(|r| r.user_groups = Some(vec![])),
            "user groups cannot be empty"
        );
        assert_eq!(
            with(|r| r.user_groups = Some(vec!["devops".into(), String::new()])),
            "user groups cannot be empty"
        );
        assert_eq!(
            with(|r| r.name_prefix = Some("Bad_Prefix".into())),
            "generate service name: invalid name prefix \"Bad_Prefix\": must be lowercase \
             alphanumeric with optional hyphens, 1-32 characters"
        );
    }

    #[test]
    fn valid_flags_make_the_create_request() {
        let r = ExposeRequest {
            port: 8080,
            protocol: Some("https".into()),
            pin: Some("123456".into()),
            user_groups: Some(vec!["devops".into(), " Backend".into()]),
            name_prefix: Some("demo".into()),
            ..ExposeRequest::default()
        };
        let create = check(&r).unwrap();
        assert_eq!(create.port, 8080);
        assert_eq!(create.protocol, "https");
        assert_eq!(create.pin.as_deref(), Some("123456"));
        assert_eq!(create.password, None);
        assert_eq!(create.user_groups, vec!["devops", "Backend"]);
        assert_eq!(create.name_prefix, "demo");
        assert_eq!(check(&request(1)).unwrap().protocol, "http");
    }

    #[tokio::test]
    async fn stop_all_returns_once_every_session_is_gone() {
        let exposes = Exposes::default();
        let mut first = exposes.register();
        let waiter = async {
            first.stop.changed().await.unwrap();
            drop(first);
        };
        tokio::join!(exposes.stop_all(), waiter);
        assert_eq!(*exposes.active.borrow(), 0);
        // A session registered after the stop is not stopped by it.
        let later = exposes.register();
        assert!(!later.stop.has_changed().unwrap());
    }
}
