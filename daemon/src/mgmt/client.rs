//! One session with the management server over gRPC.
//!
//! Every call after `GetServerKey` is sealed between this peer's WireGuard
//! key and the server's key ([`meshplane_proto::envelope`]), and every
//! answer is opened and checked against a replay guard, so the daemon only
//! trusts messages from the holder of the server's key.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto_box::SecretKey;
use meshplane_core::backoff::Backoff;
use meshplane_core::netmap::delta::{apply_checked, digest, MapDelta, MapDigest};
use meshplane_core::netmap::PeerMap;
use meshplane_core::Timestamp;
use meshplane_proto::delta::{digest_bytes, from_digest_bytes};
use meshplane_proto::envelope::{parse_public_key, parse_secret_key, Pair, ReplayGuard};
use meshplane_proto::map::MapError;
use meshplane_proto::signal::client::SignalClient;
use meshplane_proto::v1::management_client::ManagementClient;
use meshplane_proto::v1::{
    AckMapRequest, AckMapResponse, CreateExposeRequest, CreateExposeResponse, ExposeSession,
    GetServerKeyRequest, LoginRequest, LoginResponse, PeerSystemMeta, RelayConfig,
    RelayTokenRequest, RelayTokenResponse, RenewExposeRequest, RenewExposeResponse,
    ReportTrafficRequest, ReportTrafficResponse, SealedMessage, ServiceTable, StopExposeRequest,
    StopExposeResponse, SyncMetaRequest, SyncMetaResponse, SyncRequest, SyncResponse,
    WatchServicesRequest,
};
use meshplane_relay::dial::{DialOptions, HTTP1};
use meshplane_tls::{HandshakeFailure, Trust};
use prost::Message;
use rand_core::OsRng;
use thiserror::Error;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::key::PrivateKey;

/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP/2 pings on the connection, answered within [`KEEPALIVE_TIMEOUT`]:
/// a connection that died silently (the host moved networks, a NAT forgot
/// it) is noticed in seconds, so Sync and signal reconnect.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// First wait before reconnecting to the management server or one of its
/// services (Sync, signal, relay); doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The waits of a loop reconnecting to the management server or one of its
/// services, jittered from the operating system's generator so daemons that
/// lost the server together do not return together.
pub(crate) fn reconnect_backoff() -> Backoff {
    Backoff::new(
        MIN_BACKOFF,
        MAX_BACKOFF,
        rand_core::RngCore::next_u64(&mut OsRng),
    )
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManagementError {
    /// No connection to the server at all.
    #[error("cannot reach the management server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with a refusal; its message, verbatim.
    #[error("{0}")]
    Refused(String),
    /// The server's answer could not be opened or understood.
    #[error("bad answer from the management server at {url}: {reason}")]
    Protocol { url: String, reason: String },
    /// The TLS handshake failed in a way the user can fix.
    #[error("TLS with the management server at {url}: {reason}")]
    Tls { url: String, reason: String },
    /// The URL or the CA file is unusable; nothing was dialled.
    #[error("{0}")]
    Setup(String),
}

/// The management server: its URL, and the roots its certificate is
/// checked against when the URL is `https://` (the Mozilla roots plus the
/// operator's CA, `--management-ca`). A `rels://` relay it names is
/// checked against the same roots.
#[derive(Debug, Clone)]
pub struct Management {
    url: String,
    trust: Trust,
}

impl Management {
    /// The server at `url` (`http://` or `https://`), trusting the Mozilla
    /// roots and the certificates of PEM file `ca` when given.
    pub fn new(url: &str, ca: Option<&Path>) -> Result<Management, ManagementError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(ManagementError::Setup(format!(
                "invalid management URL {url:?}: it must start with http:// or https://"
            )));
        }
        let trust = Trust::new(ca)
            .map_err(|e| ManagementError::Setup(format!("management CA (--management-ca): {e}")))?;
        Ok(Management {
            url: url.to_string(),
            trust,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn is_tls(&self) -> bool {
        self.url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// How the relay connection is dialled: marked, like every underlay
    /// socket, and a `rels://` relay checked against these roots.
    pub fn relay_dial(&self) -> DialOptions {
        DialOptions {
            mark: Some(crate::routing::mark::UNDERLAY_MARK),
            tls: Some(self.trust.client_config(&[HTTP1])),
        }
    }
}

/// The wall clock, as the envelope's replay window needs it.
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A connected, keyed session.
#[derive(Debug)]
pub struct Session {
    url: String,
    /// The connection, shared by the management and signal clients.
    channel: Channel,
    client: ManagementClient<Channel>,
    secret: SecretKey,
    key: String,
    /// The box between this peer's key and the server's, agreed once for
    /// every message of the session.
    pair: Pair,
    guard: ReplayGuard,
}

/// A Sync stream: maps, one per server message. The server sends one whole
/// map and then deltas, which the stream applies to the map it holds.
#[derive(Debug)]
pub struct MapStream {
    stream: Streaming<SealedMessage>,
    held: Option<HeldMap>,
}

/// The map a Sync stream holds, with the serial and digest of the answer
/// that brought it: a new stream names it so the server can send a delta
/// from it.
#[derive(Debug, Clone)]
pub struct HeldMap {
    pub serial: u64,
    pub digest: MapDigest,
    pub map: PeerMap,
}

impl MapStream {
    /// The map this stream holds once it ended, for the next stream; `None`
    /// after a delta that did not lead to the server's map, so the next
    /// stream starts with the whole map.
    pub fn into_held(self) -> Option<HeldMap> {
        self.held
    }
}

/// A WatchServices stream (proxy peers): the whole service table, again
/// after every change.
#[derive(Debug)]
pub struct ServiceStream {
    stream: Streaming<SealedMessage>,
}

impl Session {
    /// Connects to `server` and fetches its key.
    pub async fn connect(
        server: &Management,
        key: &PrivateKey,
    ) -> Result<Session, ManagementError> {
        let url = server.url();
        let unreachable = |reason: String| ManagementError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| unreachable(format!("invalid URL: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if server.is_tls() {
            endpoint = endpoint
                .tls_config_with_verifier(ClientTlsConfig::new(), server.trust.verifier())
                .map_err(|e| unreachable(error_chain(&e)))?;
        }
        // Marked, so an exit node never routes management into the tunnel;
        // tonic runs TLS over the marked socket.
        let channel = endpoint
            .connect_with_connector(crate::routing::mark::MarkedConnector)
            .await
            .map_err(|e| match meshplane_tls::handshake_failure(&e) {
                Some(failure) => tls_refused(url, &failure),
                None => unreachable(error_chain(&e)),
            })?;
        let mut client = ManagementClient::new(channel.clone());
        let answer = client
            .get_server_key(GetServerKeyRequest {})
            .await
            .map_err(|s| first_call_failed(server, s))?
            .into_inner();
        let protocol = |reason: String| ManagementError::Protocol {
            url: url.to_string(),
            reason,
        };
        let server = parse_public_key(&answer.key).map_err(|e| protocol(e.to_string()))?;
        let secret = parse_secret_key(&key.to_base64()).map_err(|e| protocol(e.to_string()))?;
        Ok(Session {
            url: url.to_string(),
            channel,
            client,
            key: key.public_key().to_string(),
            pair: Pair::new(&secret, &server),
            secret,
            guard: ReplayGuard::default(),
        })
    }

    fn seal<M: Message>(&self, message: &M) -> SealedMessage {
        self.pair.seal(message, &self.key, now(), &mut OsRng)
    }

    fn open<M: Message + Default>(&mut self, sealed: &SealedMessage) -> Result<M, ManagementError> {
        self.pair
            .open(sealed, &mut self.guard, now())
            .map_err(|e| ManagementError::Protocol {
                url: self.url.clone(),
                reason: e.to_string(),
            })
    }

    /// Registers with `setup_key`, or logs in (empty key) as the peer this
    /// WireGuard key already is, reporting `meta` about this host.
    pub async fn login(
        &mut self,
        setup_key: &str,
        meta: PeerSystemMeta,
    ) -> Result<LoginResponse, ManagementError> {
        let request = LoginRequest {
            setup_key: setup_key.to_string(),
            meta: Some(meta),
            extra_dns_labels: Vec::new(),
        };
        self.unary(&request, |mut client, sealed| async move {
            client.login(sealed).await
        })
        .await
    }

    /// Opens the Sync stream, reporting `meta` and naming `held`, the map
    /// an earlier stream left.
    pub async fn sync(
        &mut self,
        meta: PeerSystemMeta,
        held: Option<HeldMap>,
    ) -> Result<MapStream, ManagementError> {
        let request = SyncRequest {
            meta: Some(meta),
            accepts_deltas: true,
            entry_digests: true,
            folded_digests: true,
            held_serial: held.as_ref().map_or(0, |h| h.serial),
            held_digest: held
                .as_ref()
                .map(|h| digest_bytes(&h.digest))
                .unwrap_or_default(),
        };
        let stream = self
            .streaming(&request, |mut client, sealed| async move {
                client.sync(sealed).await
            })
            .await?;
        Ok(MapStream { stream, held })
    }

    /// The next map on `stream` and the process paths the server wants
    /// reported; `None` when the server ended it cleanly. A delta is
    /// applied to the map the stream holds and must lead to the digest the
    /// server sent; the map is then acknowledged (AckMap). A delta that
    /// does not fit is an error, after which the stream holds no map.
    pub async fn next_map(
        &mut self,
        stream: &mut MapStream,
    ) -> Result<Option<(PeerMap, Vec<String>)>, ManagementError> {
        let Some(response) = self.next_sealed::<SyncResponse>(&mut stream.stream).await? else {
            return Ok(None);
        };
        // Whatever goes wrong below, the stream no longer holds a map it
        // can prove.
        let held = stream.held.take();
        let held = received(held, &response).map_err(|reason| self.protocol(reason))?;
        self.ack_map(held.serial, &held.digest).await?;
        let map = held.map.clone();
        stream.held = Some(held);
        Ok(Some((map, response.process_check_paths)))
    }

    /// Tells the server this peer holds the map of `serial` and `digest`.
    async fn ack_map(&mut self, serial: u64, digest: &MapDigest) -> Result<(), ManagementError> {
        let request = AckMapRequest {
            serial,
            digest: digest_bytes(digest),
        };
        let _: AckMapResponse = self
            .unary(&request, |mut client, sealed| async move {
                client.ack_map(sealed).await
            })
            .await?;
        Ok(())
    }

    fn protocol(&self, reason: String) -> ManagementError {
        ManagementError::Protocol {
            url: self.url.clone(),
            reason,
        }
    }

    /// Reports a change of this host's meta since Login or Sync.
    pub async fn sync_meta(&mut self, meta: PeerSystemMeta) -> Result<(), ManagementError> {
        let request = SyncMetaRequest { meta: Some(meta) };
        let _: SyncMetaResponse = self
            .unary(&request, |mut client, sealed| async move {
                client.sync_meta(sealed).await
            })
            .await?;
        Ok(())
    }

    /// A signal client on this session's connection, as this peer.
    pub fn signal_client(&self) -> SignalClient {
        SignalClient::new(self.channel.clone(), self.secret.clone())
    }

    /// A fresh relay token (to renew the one from login before it expires).
    pub async fn relay_token(&mut self) -> Result<RelayConfig, ManagementError> {
        let answer: RelayTokenResponse = self
            .unary(&RelayTokenRequest {}, |mut client, sealed| async move {
                client.relay_token(sealed).await
            })
            .await?;
        answer.relay.ok_or_else(|| ManagementError::Protocol {
            url: self.url.clone(),
            reason: "RelayToken answered without a relay".to_string(),
        })
    }

    /// Sends a batch of flow events ([`crate::engine::flows`]); how many the
    /// server stored. Refused while the account does not log this peer's
    /// traffic.
    pub async fn report_traffic(
        &mut self,
        request: &ReportTrafficRequest,
    ) -> Result<u32, ManagementError> {
        let answer: ReportTrafficResponse = self
            .unary(request, |mut client, sealed| async move {
                client.report_traffic(sealed).await
            })
            .await?;
        Ok(answer.stored)
    }

    /// Asks the server to publish this peer's local `port` through the
    /// reverse proxy; the session it created.
    pub async fn create_expose(
        &mut self,
        request: &CreateExposeRequest,
    ) -> Result<ExposeSession, ManagementError> {
        let answer: CreateExposeResponse = self
            .unary(request, |mut client, sealed| async move {
                client.create_expose(sealed).await
            })
            .await?;
        answer.session.ok_or_else(|| ManagementError::Protocol {
            url: self.url.clone(),
            reason: "CreateExpose answered without a session".to_string(),
        })
    }

    /// Keeps the session of `domain` alive; when it now expires (ms since
    /// the Unix epoch).
    pub async fn renew_expose(&mut self, domain: &str) -> Result<i64, ManagementError> {
        let request = RenewExposeRequest {
            domain: domain.to_string(),
        };
        let answer: RenewExposeResponse = self
            .unary(&request, |mut client, sealed| async move {
                client.renew_expose(sealed).await
            })
            .await?;
        Ok(answer.expires_at_ms)
    }

    /// Ends the session of `domain`; the server removes its service.
    pub async fn stop_expose(&mut self, domain: &str) -> Result<(), ManagementError> {
        let request = StopExposeRequest {
            domain: domain.to_string(),
        };
        let _: StopExposeResponse = self
            .unary(&request, |mut client, sealed| async move {
                client.stop_expose(sealed).await
            })
            .await?;
        Ok(())
    }

    /// Opens the WatchServices stream for a proxy serving `domain`, where
    /// visitors reach it at `public_url`.
    pub async fn watch_services(
        &mut self,
        domain: &str,
        public_url: &str,
    ) -> Result<ServiceStream, ManagementError> {
        let request = WatchServicesRequest {
            domain: domain.to_string(),
            public_url: public_url.to_string(),
        };
        let stream = self
            .streaming(&request, |mut client, sealed| async move {
                client.watch_services(sealed).await
            })
            .await?;
        Ok(ServiceStream { stream })
    }

    /// The next service table on `stream`; `None` when the server ended it
    /// cleanly.
    pub async fn next_services(
        &mut self,
        stream: &mut ServiceStream,
    ) -> Result<Option<ServiceTable>, ManagementError> {
        self.next_sealed(&mut stream.stream).await
    }

    /// Opens a sealed server stream: seals `request` and makes the call
    /// with `call`.
    async fn streaming<Q, F, Fut>(
        &mut self,
        request: &Q,
        call: F,
    ) -> Result<Streaming<SealedMessage>, ManagementError>
    where
        Q: Message,
        F: FnOnce(ManagementClient<Channel>, SealedMessage) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<SealedMessage>>, Status>>,
    {
        let sealed = self.seal(request);
        call(self.client.clone(), sealed)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| refused(&self.url, s))
    }

    /// The next message of a sealed server stream, opened.
    async fn next_sealed<M: Message + Default>(
        &mut self,
        stream: &mut Streaming<SealedMessage>,
    ) -> Result<Option<M>, ManagementError> {
        match stream.message().await {
            Ok(Some(sealed)) => self.open(&sealed).map(Some),
            Ok(None) => Ok(None),
            Err(s) => Err(refused(&self.url, s)),
        }
    }

    /// A sealed unary call: seals `request`, makes the call with `call`
    /// and opens the answer.
    async fn unary<Q, A, F, Fut>(&mut self, request: &Q, call: F) -> Result<A, ManagementError>
    where
        Q: Message,
        A: Message + Default,
        F: FnOnce(ManagementClient<Channel>, SealedMessage) -> Fut,
        Fut: Future<Output = Result<tonic::Response<SealedMessage>, Status>>,
    {
        let sealed = self.seal(request);
        let answer = call(self.client.clone(), sealed)
            .await
            .map_err(|s| refused(&self.url, s))?
            .into_inner();
        self.open(&answer)
    }
}

/// The map after `response`, given the map held before it.
fn received(held: Option<HeldMap>, response: &SyncResponse) -> Result<HeldMap, String> {
    let map = match (&response.network_map, &response.delta) {
        (Some(map), _) => PeerMap::try_from(map.clone()).map_err(|e| e.to_string())?,
        (None, Some(delta)) => {
            let delta = MapDelta::try_from(delta.clone()).map_err(|e| e.to_string())?;
            let sent = from_digest_bytes("digest", &response.digest).map_err(|e| e.to_string())?;
            let mut held = held
                .ok_or("a map delta, but no map held to apply it to")?
                .map;
            apply_checked(&mut held, &delta, &sent).map_err(|e| format!("map delta: {e}"))?;
            held
        }
        (None, None) => {
            return Err(MapError::Missing {
                field: "network_map",
            }
            .to_string())
        }
    };
    let own = digest(&map);
    if !response.digest.is_empty() && response.digest.as_slice() != own.0.as_slice() {
        return Err("the whole map does not match its digest".to_string());
    }
    Ok(HeldMap {
        serial: response.serial,
        digest: own,
        map,
    })
}

/// A failed call: `Unavailable` (no connection, or the server going
/// away) means the server cannot be reached; anything else is the server's
/// own refusal, kept verbatim.
fn refused(url: &str, status: Status) -> ManagementError {
    if status.code() == Code::Unavailable {
        return ManagementError::Unreachable {
            url: url.to_string(),
            reason: status.message().to_string(),
        };
    }
    ManagementError::Refused(status.message().to_string())
}

/// The first call on a new connection failed. A status with a source is
/// the client's own (the connection broke; the server answered nothing),
/// which is how plain HTTP/2 sent to a TLS listener ends: say so.
fn first_call_failed(server: &Management, status: Status) -> ManagementError {
    if std::error::Error::source(&status).is_some() {
        let hint = if server.is_tls() {
            ""
        } else {
            " (if the server serves TLS, use its https:// URL)"
        };
        return ManagementError::Unreachable {
            url: server.url.clone(),
            reason: format!("{}{hint}", error_chain(&status)),
        };
    }
    refused(&server.url, status)
}

/// A handshake that failed on the server's certificate, with what to do
/// about the usual case.
fn tls_refused(url: &str, failure: &HandshakeFailure) -> ManagementError {
    let reason = match failure {
        HandshakeFailure::UntrustedIssuer => {
            format!("{failure}; give the CA that signed it with --management-ca FILE")
        }
        other => other.to_string(),
    };
    ManagementError::Tls {
        url: url.to_string(),
        reason,
    }
}

/// An error and its sources, so "transport error" shows its cause; a
/// source that only repeats the text before it is left out.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut last = text.clone();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if part != last {
            text.push_str(": ");
            text.push_str(&part);
        }
        last = part;
        source = s.source();
    }
    text
}
