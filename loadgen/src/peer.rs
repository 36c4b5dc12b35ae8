//! Simulated peers on the real protocol: each has its own WireGuard key
//! pair, registers with `Login` and follows its `Sync` stream like a daemon
//! does (every message opened with the envelope and its replay guard, every
//! map decoded into the core's [`PeerMap`]). Peers share HTTP/2 connections,
//! a bounded number of streams on each.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crypto_box::{PublicKey, SecretKey};
use http_body_util::{BodyExt, Full};
use meshplane_core::netmap::delta::MapDelta;
use meshplane_core::netmap::PeerMap;
use meshplane_core::Timestamp;
use meshplane_proto::delta::from_digest_bytes;
use meshplane_proto::envelope::{encode_public_key, parse_public_key, Pair, ReplayGuard};
use meshplane_proto::framing::{frame, Reassembly, MAX_MESSAGE, SYNC_PATH};
use meshplane_proto::v1::management_client::ManagementClient;
use meshplane_proto::v1::{
    AckMapRequest, AckMapResponse, GetServerKeyRequest, LoginRequest, LoginResponse,
    PeerSystemMeta, SealedMessage, SyncRequest, SyncResponse,
};
use prost::Message;
use rand_core::OsRng;
use thiserror::Error;
use tokio::sync::OwnedSemaphorePermit;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::entries::SharedEntries;
use crate::track::Tracker;

/// How long connecting or one unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a call whose connection was lost is sent again.
const CONNECTION_RETRIES: usize = 2;

/// Why a peer could not join or follow its stream.
#[derive(Debug, Clone, Error)]
pub enum PeerError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{call} of peer {index} refused: {reason}")]
    Refused {
        call: &'static str,
        index: usize,
        reason: String,
    },
    #[error("bad answer to peer {index}: {reason}")]
    Protocol { index: usize, reason: String },
}

/// The HTTP/2 connections the peers share and the server's key.
#[derive(Debug, Clone)]
pub struct Connections {
    url: String,
    plan: ConnectionPlan,
    channels: Vec<Channel>,
    server: PublicKey,
}

/// Where the connections come from.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionPlan {
    /// Streams one connection carries (the server allows 100 by default).
    pub streams_per_connection: usize,
    /// Connections from one loopback source address before the next
    /// `127.0.0.x` is used (the server allows 256 per address by default).
    pub connections_per_address: usize,
}

impl Connections {
    /// Opens enough connections to `url` for `peers` streams and fetches the
    /// server's key.
    pub async fn open(
        url: &str,
        peers: usize,
        plan: ConnectionPlan,
    ) -> Result<Connections, PeerError> {
        let plan = ConnectionPlan {
            streams_per_connection: plan.streams_per_connection.max(1),
            connections_per_address: plan.connections_per_address.max(1),
        };
        let first = connect(url, plan, 0).await?;
        let answer = ManagementClient::new(first.clone())
            .get_server_key(GetServerKeyRequest {})
            .await
            .map_err(|s| connect_error(url, s.message().to_string()))?
            .into_inner();
        let server =
            parse_public_key(&answer.key).map_err(|e| connect_error(url, e.to_string()))?;
        let mut connections = Connections {
            url: url.to_string(),
            plan,
            channels: vec![first],
            server,
        };
        connections.grow(peers).await?;
        Ok(connections)
    }

    /// Adds connections until `peers` streams fit.
    pub async fn grow(&mut self, peers: usize) -> Result<(), PeerError> {
        while self.channels.len() * self.plan.streams_per_connection < peers {
            let channel = connect(&self.url, self.plan, self.channels.len()).await?;
            self.channels.push(channel);
        }
        Ok(())
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.channels.len()
    }

    fn channel(&self, index: usize) -> Channel {
        let i = (index / self.plan.streams_per_connection).min(self.channels.len() - 1);
        self.channels[i].clone()
    }
}

/// Opens connection number `i` to `url`. Past the per-address share of
/// a loopback server, connections come from 127.0.0.2, 127.0.0.3, ... so the
/// server's per-address limit does not refuse them.
async fn connect(url: &str, plan: ConnectionPlan, i: usize) -> Result<Channel, PeerError> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| connect_error(url, format!("invalid URL: {e}")))?
        .connect_timeout(CALL_TIMEOUT);
    let loopback = url.contains("://127.") || url.contains("://localhost");
    let host = 1 + i / plan.connections_per_address;
    if loopback && host > 1 {
        let host = u8::try_from(host)
            .ok()
            .filter(|h| *h < 255)
            .ok_or_else(|| connect_error(url, "more connections than 127.0.0.0/24 holds".into()))?;
        endpoint = endpoint.local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))));
    }
    endpoint
        .connect()
        .await
        .map_err(|e| connect_error(url, e.to_string()))
}

/// Whether a call failed because its connection went away rather than
/// because the server refused it (the server answers every refusal with
/// a code of its own, never these).
fn connection_lost(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::Unknown
    )
}

fn connect_error(url: &str, reason: String) -> PeerError {
    PeerError::Connect {
        url: url.to_string(),
        reason,
    }
}

/// One simulated peer: its keys and where it talks to the server.
#[derive(Debug)]
pub struct Peer {
    pub index: usize,
    /// Its WireGuard public key, base64.
    pub key: String,
    /// The box between its key and the server's, agreed once.
    pair: Pair,
    guard: ReplayGuard,
    channel: Channel,
    client: ManagementClient<Channel>,
}

impl Peer {
    /// A new peer with fresh keys, on the connection its index falls on.
    pub fn new(index: usize, connections: &Connections) -> Peer {
        let secret = SecretKey::generate(&mut OsRng);
        let channel = connections.channel(index);
        Peer {
            index,
            key: encode_public_key(&secret.public_key()),
            pair: Pair::new(&secret, &connections.server),
            guard: ReplayGuard::default(),
            client: ManagementClient::new(channel.clone()),
            channel,
        }
    }

    fn seal<M: Message>(&self, message: &M) -> SealedMessage {
        self.pair.seal(message, &self.key, now(), &mut OsRng)
    }

    /// The answer to the call `send` makes (sealing its request anew each
    /// time), sent again when the connection under it was lost: the server
    /// closes a connection that carried no request for its idle timeout,
    /// and a call racing that close fails without reaching it. A daemon
    /// reconnects the same way.
    async fn retried<T, Fut>(
        &self,
        call: &'static str,
        mut send: impl FnMut() -> Fut,
    ) -> Result<T, PeerError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut lost = 0;
        loop {
            match tokio::time::timeout(CALL_TIMEOUT, send()).await {
                Err(_) => return Err(self.refused(call, "timed out".to_string())),
                Ok(Ok(answer)) => return Ok(answer.into_inner()),
                Ok(Err(s)) if connection_lost(&s) && lost < CONNECTION_RETRIES => lost += 1,
                Ok(Err(s)) => return Err(self.refused(call, s.message().to_string())),
            }
        }
    }

    fn meta(&self) -> PeerSystemMeta {
        PeerSystemMeta {
            hostname: format!("loadgen-{}", self.index),
            os: "linux".to_string(),
            kernel_version: "6.1.0".to_string(),
            client_version: env!("CARGO_PKG_VERSION").to_string(),
            ..PeerSystemMeta::default()
        }
    }

    /// Registers with `setup_key`.
    pub async fn login(&mut self, setup_key: &str) -> Result<LoginResponse, PeerError> {
        let request = LoginRequest {
            setup_key: setup_key.to_string(),
            meta: Some(self.meta()),
            extra_dns_labels: Vec::new(),
        };
        let answer = self
            .retried("Login", || {
                let (mut client, sealed) = (self.client.clone(), self.seal(&request));
                async move { client.login(sealed).await }
            })
            .await?;
        self.pair
            .open(&answer, &mut self.guard, now())
            .map_err(|e| PeerError::Protocol {
                index: self.index,
                reason: e.to_string(),
            })
    }

    /// Opens the Sync stream and follows it on a task of its own, reporting
    /// every map to `tracker`. With `deltas` the peer takes map deltas and
    /// acknowledges each map, as a daemon does; without, every message
    /// carries the whole map. `slot` is dropped once the first map arrived,
    /// so the caller can bound the whole maps in flight.
    pub async fn sync(
        mut self,
        tracker: Arc<Tracker>,
        entries: Arc<SharedEntries>,
        deltas: bool,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), PeerError> {
        let request = SyncRequest {
            meta: Some(self.meta()),
            accepts_deltas: deltas,
            entry_digests: true,
            folded_digests: true,
            ..SyncRequest::default()
        };
        let stream = self
            .retried("Sync", || {
                open_sync(self.channel.clone(), self.seal(&request))
            })
            .await?;
        tokio::spawn(async move {
            if let Err(e) = self.follow(stream, &tracker, &entries, slot).await {
                tracker.fail(e.to_string());
            }
        });
        Ok(())
    }

    /// Reads the stream until it ends: opens each message, decodes its map
    /// (or applies its delta to the map held and checks the digest), hands
    /// it to `tracker` with the message's encoded size, and acknowledges it
    /// when it came with a digest.
    async fn follow(
        &mut self,
        mut stream: SyncMessages,
        tracker: &Tracker,
        entries: &SharedEntries,
        mut slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), PeerError> {
        let mut held: Option<PeerMap> = None;
        loop {
            let sealed = match stream.next().await {
                Ok(Some(sealed)) => sealed,
                Ok(None) if tracker.finished() => return Ok(()),
                Ok(None) => return Err(self.refused("Sync", "stream ended".to_string())),
                Err(_) if tracker.finished() => return Ok(()),
                Err(s) => return Err(self.refused("Sync", s.message().to_string())),
            };
            let bytes = sealed.encoded_len();
            let protocol = |reason: String| PeerError::Protocol {
                index: self.index,
                reason,
            };
            let response: SyncResponse = self
                .pair
                .open(&sealed, &mut self.guard, now())
                .map_err(|e| protocol(e.to_string()))?;
            // Not held while the acknowledgement waits for the server.
            drop(sealed);
            let map = match (response.network_map, response.delta) {
                (Some(m), _) => {
                    let mut map = PeerMap::try_from(m).map_err(|e| protocol(e.to_string()))?;
                    entries.share_map(&mut map);
                    map
                }
                (None, Some(delta)) => {
                    let delta = MapDelta::try_from(delta).map_err(|e| protocol(e.to_string()))?;
                    let sent = from_digest_bytes("digest", &response.digest)
                        .map_err(|e| protocol(e.to_string()))?;
                    let mut map = held
                        .take()
                        .ok_or_else(|| protocol("a delta before any map".to_string()))?;
                    entries
                        .apply_checked(&mut map, delta, &sent)
                        .map_err(|e| protocol(format!("map delta: {e}")))?;
                    map
                }
                (None, None) => {
                    return Err(protocol("SyncResponse without a map".to_string()));
                }
            };
            tracker.observe(self.index, &map, bytes);
            slot.take();
            if !response.digest.is_empty() {
                self.ack(response.serial, response.digest).await?;
            }
            held = Some(map);
        }
    }

    /// Acknowledges the map of `serial` and `digest`.
    async fn ack(&mut self, serial: u64, digest: Vec<u8>) -> Result<(), PeerError> {
        let sealed = self.seal(&AckMapRequest { serial, digest });
        let answer = tokio::time::timeout(CALL_TIMEOUT, self.client.ack_map(sealed))
            .await
            .map_err(|_| self.refused("AckMap", "timed out".to_string()))?
            .map_err(|s| self.refused("AckMap", s.message().to_string()))?
            .into_inner();
        let _: AckMapResponse = self
            .pair
            .open(&answer, &mut self.guard, now())
            .map_err(|e| PeerError::Protocol {
                index: self.index,
                reason: e.to_string(),
            })?;
        Ok(())
    }

    fn refused(&self, call: &'static str, reason: String) -> PeerError {
        PeerError::Refused {
            call,
            index: self.index,
            reason,
        }
    }
}

/// Opens a Sync stream with `sealed` on `channel`.
async fn open_sync(
    mut channel: Channel,
    sealed: SealedMessage,
) -> Result<tonic::Response<SyncMessages>, Status> {
    let body = tonic::body::Body::new(Full::new(Bytes::from(frame(&sealed))));
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(SYNC_PATH)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(body)
        .map_err(|e| Status::internal(e.to_string()))?;
    let lost = |e: tonic::transport::Error| Status::unavailable(e.to_string());
    let response = channel
        .ready()
        .await
        .map_err(lost)?
        .call(request)
        .await
        .map_err(lost)?;
    // A call refused at once answers with its status in the headers.
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    Ok(tonic::Response::new(SyncMessages {
        body: response.into_body(),
        messages: Reassembly::new(MAX_MESSAGE),
    }))
}

/// A Sync stream read without tonic's decoder, which keeps a buffer per
/// stream as large as the largest message it carried: every simulated
/// peer's first whole map (about 2 MB at 10,000 peers), for the whole run.
/// Each message here is gathered in an allocation of its own and dropped
/// once read (see [`meshplane_proto::framing`]).
#[derive(Debug)]
struct SyncMessages {
    body: tonic::body::Body,
    messages: Reassembly,
}

impl SyncMessages {
    /// The next message; `None` when the stream ended well.
    async fn next(&mut self) -> Result<Option<SealedMessage>, Status> {
        let malformed = |e: String| Status::internal(format!("Sync stream: {e}"));
        loop {
            if let Some(message) = self.messages.next_message() {
                return SealedMessage::decode(message.as_slice())
                    .map(Some)
                    .map_err(|e| malformed(e.to_string()));
            }
            let frame = match self.body.frame().await {
                None => None,
                Some(frame) => Some(frame?),
            };
            let trailers = match frame.map(|frame| frame.into_data()) {
                Some(Ok(data)) => {
                    self.messages
                        .push(&data)
                        .map_err(|e| malformed(e.to_string()))?;
                    continue;
                }
                Some(Err(frame)) => frame.into_trailers().ok(),
                None => None,
            };
            if let Some(status) = trailers.as_ref().and_then(Status::from_header_map) {
                if status.code() != Code::Ok {
                    return Err(status);
                }
            }
            self.messages
                .finish()
                .map_err(|e| malformed(e.to_string()))?;
            return Ok(None);
        }
    }
}

/// The wall clock, as the envelope's replay window needs it.
fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}
