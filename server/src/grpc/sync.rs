//! The Sync stream: the peer's full map first, then a new one each time its
//! map changes (see [`super::updates`]). A peer that accepts deltas gets,
//! after its first full map, only what changed since the map sent before
//! ([`meshplane_core::netmap::delta`]), each with the digest of the map it
//! leads to; its first response is a delta too when it names, on
//! reconnecting, the map it acknowledged last and the hub still holds it. The peer counts as connected while
//! a stream is open; when its last stream ends it is marked disconnected
//! with `last_seen`. A deleted, blocked or expired peer's stream is closed
//! with the reason. One peer key holds at most `--streams-per-peer`
//! streams; a newer one closes its oldest (see [`super::peer_streams`]).

use std::sync::Arc;

use std::time::Duration;

use meshplane_core::model::Peer;
use meshplane_core::netmap::delta::{diff, json_digest, ordered_digest, MapDigest};
use meshplane_core::netmap::PeerMap;
use meshplane_core::ErrorCode;
use meshplane_proto::delta::{digest_bytes, from_digest_bytes};
use meshplane_proto::status::code_of;
use meshplane_proto::v1::{
    AckMapRequest, AckMapResponse, NetworkMap, PeerSystemMeta, SealedMessage, SyncRequest,
    SyncResponse,
};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::framing;
use super::internal;
use super::login::{checked_peer, mark_seen};
use super::meta;
use super::peer_streams::StreamSlot;
use super::service::{Opened, SealedStream, Shared};
use super::updates::{Ack, Held, Subscription, Update};
use crate::domain::account_view::put_peer;
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
    let request = opened.message;
    let deltas = if request.accepts_deltas {
        let held = if request.held_digest.is_empty() {
            None
        } else {
            let digest = from_digest_bytes("held_digest", &request.held_digest)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Some((request.held_serial, digest))
        };
        let digests = match (request.entry_digests, request.folded_digests) {
            (false, _) => Digests::Json,
            (true, false) => Digests::Ordered,
            (true, true) => Digests::Folded,
        };
        Deltas::On { held, digests }
    } else {
        Deltas::Off
    };
    let (sealer, to) = (shared.clone(), opened.sender);
    let render = move |frame: Frame<'_>| {
        let (network_map, delta) = match (frame.map, frame.base) {
            (Some(map), Some(base)) => (None, Some(diff(base, map).into())),
            (Some(map), None) => (Some(NetworkMap::from(PeerMap::clone(map))), None),
            (None, _) => (None, None),
        };
        let response = SyncResponse {
            serial: frame.serial,
            network_map,
            process_check_paths: frame.paths.to_vec(),
            delta,
            digest: if frame.deltas {
                digest_bytes(frame.digest)
            } else {
                Vec::new()
            },
        };
        sealer.seal(&response, &to)
    };
    let stream = open(shared, &opened.key, request.meta, None, deltas, render).await?;
    Ok(ReceiverStream::new(stream))
}

/// [`start`] for a call framed by [`super::framing`].
pub async fn start_framed(
    shared: Arc<Shared>,
    request: axum::extract::Request,
) -> Result<SealedStream, Status> {
    let sealed = framing::message::<SealedMessage>(request).await?;
    let opened = shared.open::<SyncRequest>(&sealed)?;
    start(shared, opened).await
}

/// Whether a stream sends deltas.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deltas {
    /// Every message carries the whole map (NetBird's streams, and peers
    /// that do not take deltas).
    Off,
    /// After the first whole map, deltas; `held` names the map the peer
    /// holds from an earlier stream.
    On {
        held: Option<(u64, MapDigest)>,
        digests: Digests,
    },
}

/// Which digest a delta stream's messages carry and its acknowledgements
/// name: what the peer's release checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digests {
    /// [`digest`](meshplane_core::netmap::delta::digest), the one the
    /// fan-out computes for every map.
    Folded,
    /// [`ordered_digest`] (daemons of the previous release), computed by
    /// the stream.
    Ordered,
    /// [`json_digest`] (daemons of the first releases with deltas),
    /// computed by the stream.
    Json,
}

/// One message a stream sends, for `render` to put in its protocol.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    /// The map to send; `None` for a refresh alone.
    pub map: Option<&'a Arc<PeerMap>>,
    /// What the peer holds, to send `map` as a delta from; `None` for the
    /// whole map.
    pub base: Option<&'a PeerMap>,
    /// The digest of `map`.
    pub digest: &'a MapDigest,
    /// Whether the stream sends deltas at all.
    pub deltas: bool,
    pub paths: &'a [String],
    pub serial: u64,
}

/// Opens a map stream for the peer holding `key`, which reported `meta`:
/// each map it should get goes out as `render(frame)` (with the process
/// paths its posture checks name), in the protocol of the stream, and with
/// [`Deltas::On`] as a delta from the one sent before. With `refresh`, a
/// frame without a map goes out that often as well (NetBird's streams
/// carry the relay token, which must be renewed before it expires even
/// when the map does not change).
pub(crate) async fn open<T, F>(
    shared: Arc<Shared>,
    key: &str,
    meta: Option<PeerSystemMeta>,
    refresh: Option<Duration>,
    deltas: Deltas,
    render: F,
) -> Result<mpsc::Receiver<Result<T, Status>>, Status>
where
    T: Send + 'static,
    F: FnMut(Frame<'_>) -> T + Send + 'static,
{
    if *shared.closing.borrow() {
        return Err(shutting_down());
    }
    let reported = meta.map(meta::checked).transpose()?;
    let now = ids::now();
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (record, mut peer) = checked_peer(&mut tx, key, now).await?;
    mark_seen(&mut peer, reported, now);
    let account_id = record.id;
    put_peer(&mut tx, &account_id, &peer)
        .await
        .map_err(internal)?;
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
        deltas,
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
    deltas: Deltas,
}

/// Forwards the peer's updates until it hangs up, must be cut off, or
/// opens too many streams (this one being its oldest).
async fn serve<T, F>(stream: StreamOf, out: mpsc::Sender<Result<T, Status>>, mut render: F)
where
    F: FnMut(Frame<'_>) -> T,
{
    let StreamOf {
        shared,
        mut subscription,
        slot,
        account_id,
        refresh,
        deltas,
    } = stream;
    // The last map sent and its paths.
    let mut sent: Option<(Held, Arc<[String]>)> = None;
    // What the peer holds, for a delta stream: at first the map it names,
    // when the hub still knows it.
    let mut base: Option<Arc<PeerMap>> = match deltas {
        Deltas::On {
            held: Some((serial, digest)),
            ..
        } => subscription.acknowledged(serial, &digest),
        _ => None,
    };
    let digests = match deltas {
        Deltas::On { digests, .. } => digests,
        Deltas::Off => Digests::Folded,
    };
    let deltas = matches!(deltas, Deltas::On { .. });
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
                if let Some((held, paths)) = &sent {
                    let frame = Frame {
                        map: None,
                        base: None,
                        digest: &held.digest,
                        deltas,
                        paths,
                        serial: held.serial,
                    };
                    if out.send(Ok(render(frame))).await.is_err() {
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
                digest,
            }) => {
                if sent
                    .as_ref()
                    .is_some_and(|(held, p)| held.map == map && *p == paths)
                {
                    continue;
                }
                // What this stream sends and its acknowledgements name.
                let digest = match digests {
                    Digests::Folded => digest,
                    Digests::Ordered => ordered_digest(&map),
                    Digests::Json => json_digest(&map),
                };
                let frame = Frame {
                    map: Some(&map),
                    base: base.as_deref(),
                    digest: &digest,
                    deltas,
                    paths: &paths,
                    serial,
                };
                if out.send(Ok(render(frame))).await.is_err() {
                    break;
                }
                let held = Held {
                    serial,
                    digest,
                    map,
                };
                if deltas {
                    base = Some(held.map.clone());
                    subscription.sent(held.clone());
                }
                sent = Some((held, paths));
            }
            Some(Update::Close(why)) => {
                let status = Status::new(code_of(why.kind()), why.to_string());
                let _ = out.send(Err(status)).await;
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

/// Answers AckMap: the peer holding `key` holds the map of the request's
/// serial and digest. Refused with FAILED_PRECONDITION when that is not the
/// map this server sent with the serial (the peer then opens Sync again
/// without naming a map, and gets the whole one); an acknowledgement of a
/// map this server did not send last (an older one, or one another server
/// sent, or from a peer without a stream here) is accepted and changes
/// nothing. Acknowledgements come from every peer after every change, so
/// this reads no store.
pub fn ack(shared: &Shared, key: &str, request: AckMapRequest) -> Result<AckMapResponse, Status> {
    let digest = from_digest_bytes("digest", &request.digest)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    match shared.hubs.ack(key, request.serial, &digest) {
        Ack::Holds | Ack::Unknown => Ok(AckMapResponse {}),
        Ack::Differs => Err(Status::failed_precondition(
            "the map held is not the one sent with this serial: open Sync again for the whole map",
        )),
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
    put_peer(&mut tx, account_id, &peer)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)
}
