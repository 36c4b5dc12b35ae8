//! WatchServices: the reverse proxy's stream of its account's services.
//!
//! Only a proxy peer (a peer of the account's proxy group) may watch, and
//! only for the domain this server hands out (`--proxy-domain`): a proxy
//! configured for another domain would serve names nobody resolves to it.
//! The stream sends the whole table first and again whenever it changes —
//! a session begins or ends, or the account changes in a way that alters
//! a target's address or a group's name. It ends with the reason when the
//! peer stops being a proxy (or is deleted or blocked), and UNAVAILABLE
//! when the server stops, like the Sync streams.

use std::collections::BTreeMap;

use meshplane_core::expose::PublicUrl;
use meshplane_core::model::{Group, Peer};
use meshplane_proto::v1::{ExposedService, SealedMessage, ServiceTable, WatchServicesRequest};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;

use super::senders::Sender;
use super::Expose;
use crate::grpc::{internal, StreamSlot};
use crate::store::Store;

/// Tables a slow proxy may have waiting before the stream stops reading
/// changes (it then gets the latest table once it catches up).
const BACKLOG: usize = 4;

/// A proxy's open stream.
#[derive(Debug)]
struct Watcher {
    expose: Expose,
    store: Store,
    key: String,
    account: String,
}

/// Checks the sender of a WatchServices call and starts its stream: the
/// receiving end of the sealed tables (`seal` seals one to the proxy;
/// `slot` takes the stream's place among the proxy's streams, which may
/// close it for a newer one).
pub async fn watch(
    expose: &Expose,
    store: &Store,
    key: &str,
    req: WatchServicesRequest,
    closing: watch::Receiver<bool>,
    slot: impl FnOnce() -> StreamSlot,
    seal: impl Fn(&ServiceTable) -> SealedMessage + Send + 'static,
) -> Result<mpsc::Receiver<Result<SealedMessage, Status>>, Status> {
    if *closing.borrow() {
        return Err(shutting_down());
    }
    let served = expose.config().proxy_domain.as_str();
    let watcher = Watcher {
        account: proxy(expose, store, key).await?,
        expose: expose.clone(),
        store: store.clone(),
        key: key.to_string(),
    };
    if req.domain != served {
        return Err(Status::failed_precondition(format!(
            "the proxy serves \"{}\" but this server's proxy domain is \"{served}\"",
            req.domain
        )));
    }
    // A proxy that says nothing (an older one) keeps what was known.
    if !req.public_url.is_empty() {
        let public = PublicUrl::parse(&req.public_url, served)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        expose.set_public_url(&watcher.account, public).await;
    }
    let (out, stream) = mpsc::channel(BACKLOG);
    tokio::spawn(serve(watcher, closing, slot(), out, seal));
    Ok(stream)
}

/// The account of the proxy peer holding `key`; PERMISSION_DENIED when it
/// is no proxy (or the login checks' status).
async fn proxy(expose: &Expose, store: &Store, key: &str) -> Result<String, Status> {
    let Sender { record, peer } = expose.senders().check(key).await?;
    let mut tx = store.read().await.map_err(internal)?;
    let groups = tx.list::<Group>(&record.id).await.map_err(internal)?;
    let group = &expose.config().proxy_group;
    if groups
        .iter()
        .any(|g| &g.name == group && g.peers.contains(&peer.id))
    {
        Ok(record.id)
    } else {
        Err(Status::permission_denied("peer is not a reverse proxy"))
    }
}

/// Why streams end when the server stops; proxies reconnect.
fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down")
}

/// Resolves once the server stops.
async fn stopped(closing: &mut watch::Receiver<bool>) {
    // A dropped sender means the server is gone too.
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}

/// What a change notice means for the stream.
enum Wake {
    Sessions,
    Account,
    Stop,
}

/// A notice of `touched` for the stream of `account`: whether it matters.
fn concerns(notice: Result<String, RecvError>, account: &str) -> Option<bool> {
    match notice {
        Ok(touched) => Some(touched == account),
        // Lagged: something may have changed here too.
        Err(RecvError::Lagged(_)) => Some(true),
        Err(RecvError::Closed) => None,
    }
}

/// Drops the notices already queued: the next table reads their effect.
fn drain(rx: &mut broadcast::Receiver<String>) {
    while !matches!(
        rx.try_recv(),
        Err(TryRecvError::Empty | TryRecvError::Closed)
    ) {}
}

/// Sends tables until the proxy hangs up, must be cut off, or opens too
/// many streams (this one being its oldest).
async fn serve(
    watcher: Watcher,
    mut closing: watch::Receiver<bool>,
    slot: StreamSlot,
    out: mpsc::Sender<Result<SealedMessage, Status>>,
    seal: impl Fn(&ServiceTable) -> SealedMessage,
) {
    let mut sessions = watcher.expose.changes();
    let mut account = watcher.store.changes();
    let mut sent: Option<ServiceTable> = None;
    let mut wake = Wake::Sessions;
    loop {
        if matches!(wake, Wake::Account) {
            if let Err(status) = proxy(&watcher.expose, &watcher.store, &watcher.key).await {
                let _ = out.send(Err(status)).await;
                return;
            }
        }
        drain(&mut sessions);
        drain(&mut account);
        match table(&watcher, sent.as_ref()).await {
            Ok(Some(next)) => {
                if out.send(Ok(seal(&next))).await.is_err() {
                    return;
                }
                sent = Some(next);
            }
            Ok(None) => {}
            Err(status) => {
                let _ = out.send(Err(status)).await;
                return;
            }
        }
        wake = loop {
            let woke = tokio::select! {
                () = out.closed() => Wake::Stop,
                () = stopped(&mut closing) => {
                    let _ = out.send(Err(shutting_down())).await;
                    Wake::Stop
                }
                () = slot.replaced() => {
                    let _ = out.send(Err(slot.replaced_status())).await;
                    Wake::Stop
                }
                n = sessions.recv() => match concerns(n, &watcher.account) {
                    Some(true) => Wake::Sessions,
                    Some(false) => continue,
                    None => Wake::Stop,
                },
                n = account.recv() => match concerns(n, &watcher.account) {
                    Some(true) => Wake::Account,
                    Some(false) => continue,
                    None => Wake::Stop,
                },
            };
            break woke;
        };
        if matches!(wake, Wake::Stop) {
            return;
        }
    }
}

/// The account's table now, unless its services equal those of `sent`.
async fn table(
    watcher: &Watcher,
    sent: Option<&ServiceTable>,
) -> Result<Option<ServiceTable>, Status> {
    let (sessions, revision) = watcher.expose.sessions(&watcher.account).await;
    let mut tx = watcher.store.read().await.map_err(internal)?;
    let peers: BTreeMap<String, Peer> = tx
        .list::<Peer>(&watcher.account)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|p| (p.id.to_string(), p))
        .collect();
    let groups = tx.list::<Group>(&watcher.account).await.map_err(internal)?;
    drop(tx);
    let services: Vec<ExposedService> = sessions
        .iter()
        .filter_map(|s| {
            let peer = peers.get(s.peer_id.as_str())?;
            let auth = &s.auth;
            Some(ExposedService {
                domain: s.domain.clone(),
                source_peer_id: s.peer_id.to_string(),
                target_ip: peer.ip.to_string(),
                target_port: u32::from(s.port.get()),
                protocol: s.protocol.as_str().to_string(),
                pin_hash: auth.pin_hash.clone().unwrap_or_default(),
                password_hash: auth.password_hash.clone().unwrap_or_default(),
                user_group_ids: auth
                    .user_group_ids
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                user_group_names: auth
                    .user_group_ids
                    .iter()
                    .filter_map(|id| groups.iter().find(|g| &g.id == id))
                    .map(|g| g.name.clone())
                    .collect(),
            })
        })
        .collect();
    match sent {
        Some(last) if last.services == services => Ok(None),
        last => Ok(Some(ServiceTable {
            services,
            // Strictly increasing per stream; the table's own revision
            // when only sessions changed.
            revision: revision.max(last.map_or(0, |l| l.revision + 1)),
        })),
    }
}
