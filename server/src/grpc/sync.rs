//! The Sync stream: the peer's full map first, then a new one each time its
//! map changes (see [`super::updates`]). The peer counts as connected while
//! a stream is open; when its last stream ends it is marked disconnected
//! with `last_seen`. A deleted, blocked or expired peer's stream is closed
//! with the reason. One peer key holds at most `--streams-per-peer`
//! streams; a newer one closes its oldest (see [`super::peer_streams`]).

use std::sync::Arc;

use std::time::Duration;

use meshplane_core::model::Peer;
use meshplane_core::netmap::PeerMap;
use meshplane_proto::v1::{NetworkMap, PeerSystemMeta, SyncRequest, SyncResponse};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::internal;
use super::login::{checked_peer, mark_seen};
use super::meta;
use super::peer_streams::StreamSlot;
use super::service::{Opened, SealedStream, Shared};
use super::updates::{Subscription, Update};
use crate::ids;
use crate::store::{Store, StoreError};

/// Messages a slow peer may have waiting before the stream stops reading
/// updates (it then gets the latest map once it catches up).
const BACKLOG: usize = 4;

/// Opens the stream of the peer that sent `opened`.
pub async fn start(
    shared: Arc<Shared>,
    opened: Opened<SyncRequest>,
) -> Result<SealedStream, Status> {
    let (sealer, to) = (shared.clone(), opened.sender);
    let render = move |map: Option<&PeerMap>, paths: &[String], serial| {
        let response = SyncResponse {
            serial,
            network_map: map.map(|m| NetworkMap::from(m.clone())),
            process_check_paths: paths.to_vec(),
        };
        sealer.seal(&response, &to)
    };
    let stream = open(shared, &opened.key, opened.message.meta, None, render).await?;
    Ok(ReceiverStream::new(stream))
}

/// Opens a map stream for the peer holding `key`, which reported `meta`:
/// each map it should get goes out as `render(Some(map), paths, serial)`
/// (with the process paths its posture checks name), in the protocol of
/// the stream. With `refresh`, `render(None, paths, serial)` goes out
/// that often as well (NetBird's streams carry the relay token, which must
/// be renewed before it expires even when the map does not change).
pub(crate) async fn open<T, F>(
    shared: Arc<Shared>,
    key: &str,
    meta: Option<PeerSystemMeta>,
    refresh: Option<Duration>,
    render: F,
) -> Result<mpsc::Receiver<Result<T, Status>>, Status>
where
    T: Send + 'static,
    F: FnMut(Option<&PeerMap>, &[String], u64) -> T + Send + 'static,
{
    if *shared.closing.borrow() {
        return Err(shutting_down());
    }
    let reported = meta.map(meta::checked).transpose()?;
    let now = ids::now();
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (account, mut peer) = checked_peer(&mut tx, key, now).await?;
    mark_seen(&mut peer, reported, now);
    let account_id = account.id.to_string();
    tx.put(&account_id, &peer).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    let slot = shared.syncs.open(key);
    let subscription = shared.hubs.subscribe(&account_id, peer.id.as_str(), key);
    let (out, stream) = mpsc::channel(BACKLOG);
    let stream_of = StreamOf {
        shared,
        subscription,
        slot,
        account_id,
        refresh,
    };
    tokio::spawn(serve(stream_of, out, render));
    Ok(stream)
}

/// What one open stream serves from.
struct StreamOf {
    shared: Arc<Shared>,
    subscription: Subscription,
    slot: StreamSlot,
    account_id: String,
    refresh: Option<Duration>,
}

/// Forwards the peer's updates until it hangs up, must be cut off, or
/// opens too many streams (this one being its oldest).
async fn serve<T, F>(stream: StreamOf, out: mpsc::Sender<Result<T, Status>>, mut render: F)
where
    F: FnMut(Option<&PeerMap>, &[String], u64) -> T,
{
    let StreamOf {
        shared,
        mut subscription,
        slot,
        account_id,
        refresh,
    } = stream;
    let mut sent: Option<(Arc<PeerMap>, Arc<[String]>, u64)> = None;
    let mut closing = shared.closing.clone();
    // Without `refresh` the timer never fires.
    let period = refresh.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
    let mut refresh_at = tokio::time::Instant::now() + period;
    loop {
        let update = tokio::select! {
            () = out.closed() => break,
            () = stopped(&mut closing) => {
                let _ = out.send(Err(shutting_down())).await;
                break;
            }
            () = slot.replaced() => {
                let _ = out.send(Err(slot.replaced_status())).await;
                break;
            }
            () = tokio::time::sleep_until(refresh_at), if refresh.is_some() => {
                refresh_at += period;
                if let Some((_, paths, serial)) = &sent {
                    if out.send(Ok(render(None, paths, *serial))).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            update = subscription.next() => update,
        };
        match update {
            Some(Update::Map {
                map,
                process_check_paths: paths,
                serial,
            }) => {
                if sent
                    .as_ref()
                    .is_some_and(|(m, p, _)| *m == map && *p == paths)
                {
                    continue;
                }
                if out
                    .send(Ok(render(Some(&map), &paths, serial)))
                    .await
                    .is_err()
                {
                    break;
                }
                sent = Some((map, paths, serial));
            }
            Some(Update::Close { code, message }) => {
                let _ = out.send(Err(Status::new(code, message))).await;
                break;
            }
            None => break,
        }
    }
    let peer_id = subscription.peer_id().to_string();
    if subscription.leave() {
        if let Err(e) = disconnect(&shared, &account_id, &peer_id).await {
            tracing::warn!(peer = peer_id, error = %e, "peer not marked disconnected");
        }
    }
}

/// Resolves once the server stops.
async fn stopped(closing: &mut watch::Receiver<bool>) {
    // A dropped sender means the server is gone too.
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}

/// Why streams end when the server stops; daemons reconnect.
fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down")
}

/// Marks every peer still recorded as connected disconnected, last seen now.
/// Run before the server listens: no stream can be open yet, so a peer
/// marked connected is a leftover of a server that was killed (a graceful
/// stop ends every stream and records it). Without this such peers would
/// show connected forever, and ephemeral ones would never be removed.
pub async fn reset_presence(store: &Store) -> Result<usize, StoreError> {
    let mut tx = store.write().await?;
    let now = ids::now();
    let mut reset = 0;
    for account in tx.accounts_with::<Peer>().await? {
        for mut peer in tx.list::<Peer>(&account).await? {
            if peer.connected {
                peer.connected = false;
                peer.last_seen = now;
                tx.put(&account, &peer).await?;
                reset += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(reset)
}

/// Marks the peer disconnected, last seen now (unless it is gone).
async fn disconnect(shared: &Shared, account_id: &str, peer_id: &str) -> Result<(), Status> {
    let mut tx = shared.store.write().await.map_err(internal)?;
    let Some(mut peer) = tx
        .get::<Peer>(account_id, peer_id)
        .await
        .map_err(internal)?
    else {
        return Ok(());
    };
    peer.connected = false;
    peer.last_seen = ids::now();
    tx.put(account_id, &peer).await.map_err(internal)?;
    tx.commit().await.map_err(internal)
}
