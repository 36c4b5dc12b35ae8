//! What this peer tells the management server about its machine, for the
//! account's posture checks: hostname, OS and versions ([`system`]), the
//! interface addresses ([`addresses`]) and which of the process paths the
//! server asked about are running ([`processes`]).
//!
//! Login and Sync carry the meta; [`report`] re-collects it every
//! [`RECHECK`] and whenever the server's list of paths changes, and sends
//! it with SyncMeta when it differs from what the server last got, so a
//! peer that starts a required process (or joins a required network)
//! gets its access within seconds, and one that stops loses it.

pub mod addresses;
pub mod processes;
pub mod system;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use meshplane_proto::v1::PeerSystemMeta;
use tokio::sync::watch;

pub use addresses::Mesh;

use crate::key::PrivateKey;
use crate::mgmt::client::{Management, ManagementError, Session};

/// How often the meta is collected again to look for changes.
pub const RECHECK: Duration = Duration::from_secs(3);

/// The meta of this host as it is now, leaving out `mesh`; `paths` are the
/// process paths the server asked about. Reads files and `/proc`: blocking.
pub fn collect(mesh: &Mesh, paths: &[String]) -> PeerSystemMeta {
    let system = system::read();
    PeerSystemMeta {
        hostname: system.hostname,
        os: system.os,
        os_version: system.os_version,
        kernel_version: system.kernel_version,
        client_version: env!("CARGO_PKG_VERSION").to_string(),
        network_addresses: addresses::read(mesh),
        processes: processes::running(paths),
        ..PeerSystemMeta::default()
    }
}

/// What the Sync task and the reporter share: what to leave out, the paths
/// the server asked about, and the meta the server last got.
#[derive(Debug)]
pub struct Meta {
    mesh: Mesh,
    paths: watch::Sender<Vec<String>>,
    sent: Mutex<Option<PeerSystemMeta>>,
}

impl Meta {
    /// `paths` as the login answered them.
    pub fn new(mesh: Mesh, paths: Vec<String>) -> Arc<Meta> {
        Arc::new(Meta {
            mesh,
            paths: watch::Sender::new(paths),
            sent: Mutex::new(None),
        })
    }

    /// The server's current list of process paths (from a Login or Sync
    /// answer); the reporter collects again when it changed.
    pub fn set_paths(&self, paths: Vec<String>) {
        self.paths.send_if_modified(|current| {
            let changed = *current != paths;
            *current = paths;
            changed
        });
    }

    /// Collects the meta now (off the async threads), for a Login or Sync
    /// request, and remembers it as what the server has.
    pub async fn for_request(&self) -> PeerSystemMeta {
        let meta = self.collect().await;
        *self.sent() = Some(meta.clone());
        meta
    }

    async fn collect(&self) -> PeerSystemMeta {
        let mesh = self.mesh.clone();
        let paths = self.paths.borrow().clone();
        tokio::task::spawn_blocking(move || collect(&mesh, &paths))
            .await
            .unwrap_or_default()
    }

    fn sent(&self) -> MutexGuard<'_, Option<PeerSystemMeta>> {
        // Plain data: a panic elsewhere leaves it usable.
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends `meta`'s changes to `server` as the peer holding
/// `key`, on a session of its own, until the task is aborted. A refused
/// or undelivered report is sent again at the next check.
pub async fn report(meta: Arc<Meta>, server: Management, key: PrivateKey) {
    let mut paths = meta.paths.subscribe();
    let mut session: Option<Session> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(RECHECK) => {}
            changed = paths.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = meta.collect().await;
        if meta.sent().as_ref() == Some(&now) {
            continue;
        }
        if session.is_none() {
            session = Session::connect(&server, &key).await.ok();
        }
        let Some(s) = session.as_mut() else {
            continue;
        };
        match s.sync_meta(now.clone()).await {
            Ok(()) => *meta.sent() = Some(now),
            Err(ManagementError::Refused(reason)) => {
                tracing::debug!("meta update refused: {reason}");
            }
            Err(e) => {
                tracing::debug!("meta update not delivered: {e}");
                session = None;
            }
        }
    }
}
