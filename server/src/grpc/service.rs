//! The tonic service: opens each sealed request with the sender's claimed
//! WireGuard key and the server's secret, hands the message to the call's
//! module, and seals the answer back to that key.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ConnectInfo;

use crypto_box::{PublicKey, SecretKey};
use meshplane_proto::envelope::{encode_public_key, parse_public_key, ReplayGuard};
use meshplane_proto::signal::check_proof;
use meshplane_proto::v1::management_server;
use meshplane_proto::v1::{
    AckMapRequest, CreateExposeRequest, GetServerKeyRequest, GetServerKeyResponse, LoginRequest,
    RelayTokenRequest, RelayTokenResponse, RenewExposeRequest, ReportTrafficRequest,
    ReportTrafficResponse, SealedMessage, StopExposeRequest, SyncMetaRequest, SyncRequest,
    WatchServicesRequest,
};
use meshplane_proto::PROTOCOL_VERSION;
use prost::Message;
use rand_core::OsRng;
use tokio::sync::watch;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pairs::Pairs;
use super::peer_streams::PeerStreams;
use super::updates::Hubs;
use super::{internal, login, meta, sync, traffic};
use crate::expose::{self, Expose};
use crate::ids;
use crate::relay::{Authority, Issuer};
use crate::secrets;
use crate::store::{Store, StoreError};

/// A stream of sealed messages, as Sync and WatchServices answer.
pub type SealedStream = ReceiverStream<Result<SealedMessage, Status>>;

/// What every call shares.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    /// The server key, and its box with each recent peer key.
    pairs: Pairs,
    /// One guard for the whole process: a sealed message is accepted once,
    /// whichever call it is sent to.
    guard: Mutex<ReplayGuard>,
    pub hubs: Hubs,
    /// The expose sessions.
    pub expose: Expose,
    /// Becomes true when the server stops.
    pub closing: watch::Receiver<bool>,
    /// The open Sync streams by peer key.
    pub syncs: PeerStreams,
    /// The open WatchServices streams by peer key.
    watchers: PeerStreams,
    /// Mints relay tokens.
    relay: Arc<Issuer>,
    /// The per-peer rate limit of SyncMeta.
    pub meta_limiter: meta::Limiter,
}

/// A request opened: who sent it (their key, and its canonical base64 form)
/// and what they asked.
#[derive(Debug)]
pub struct Opened<M> {
    pub sender: PublicKey,
    pub key: String,
    pub message: M,
}

impl Shared {
    /// Opens `sealed`, refusing forgeries, stale messages and replays.
    pub fn open<M: Message + Default>(&self, sealed: &SealedMessage) -> Result<Opened<M>, Status> {
        let sender = parse_public_key(&sealed.wg_pub_key)?;
        let message = self.pairs.open(&sender, |pair| {
            let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
            pair.open(sealed, &mut guard, ids::now())
        })?;
        Ok(Opened {
            key: encode_public_key(&sender),
            sender,
            message,
        })
    }

    /// Checks a signal stream's proof that its caller holds `key`
    /// ([`meshplane_proto::signal::check_proof`]) against this server's key
    /// and replay guard.
    pub fn check_signal_proof(&self, header: &str, key: &PublicKey) -> Result<(), Status> {
        let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
        check_proof(header, key, self.pairs.secret(), &mut guard, ids::now()).map_err(Status::from)
    }

    /// The server key's boxes, which NetBird's service opens and seals
    /// with too.
    pub fn pairs(&self) -> &Pairs {
        &self.pairs
    }

    /// The server's public key, base64.
    pub fn public(&self) -> &str {
        self.pairs.public()
    }

    /// The relay token issuer.
    pub fn relay(&self) -> &Issuer {
        &self.relay
    }

    /// Seals `message` to the peer holding `to`.
    pub fn seal<M: Message>(&self, message: &M, to: &PublicKey) -> SealedMessage {
        self.pairs
            .pair(to)
            .seal(message, "", ids::now(), &mut OsRng)
    }
}

/// The `Management` service.
#[derive(Debug, Clone)]
pub struct Management {
    shared: Arc<Shared>,
}

impl Management {
    /// What every call shares.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The service over `store`, with the server key loaded (or created).
    pub async fn start(
        store: &Store,
        expose: &Expose,
        closing: watch::Receiver<bool>,
        streams_per_peer: u32,
        relay: Arc<Issuer>,
    ) -> Result<Management, StoreError> {
        let secret = SecretKey::from(secrets::load_or_create(store, "management").await?);
        Ok(Management {
            shared: Arc::new(Shared {
                store: store.clone(),
                pairs: Pairs::new(secret),
                guard: Mutex::new(ReplayGuard::default()),
                hubs: Hubs::new(store.clone(), expose.clone()),
                expose: expose.clone(),
                closing,
                syncs: PeerStreams::new(streams_per_peer),
                watchers: PeerStreams::new(streams_per_peer),
                relay,
                meta_limiter: meta::Limiter::default(),
            }),
        })
    }
}

#[tonic::async_trait]
impl management_server::Management for Management {
    async fn get_server_key(
        &self,
        _request: Request<GetServerKeyRequest>,
    ) -> Result<Response<GetServerKeyResponse>, Status> {
        Ok(Response::new(GetServerKeyResponse {
            key: self.shared.public().to_string(),
            version: PROTOCOL_VERSION,
        }))
    }

    async fn login(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        // Present when the server runs with connect info (see `main`).
        let from = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let authority = request.extensions().get::<Authority>().cloned();
        let opened = self.shared.open::<LoginRequest>(request.get_ref())?;
        let mut answer = login::login(&self.shared, &opened.key, opened.message, from).await?;
        let relay = self
            .shared
            .relay
            .config(&opened.key, authority.as_ref(), ids::now());
        answer.relay = Some(relay);
        Ok(Response::new(self.shared.seal(&answer, &opened.sender)))
    }

    type SyncStream = SealedStream;

    async fn sync(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedStream>, Status> {
        let opened = self.shared.open::<SyncRequest>(request.get_ref())?;
        let stream = sync::start(self.shared.clone(), opened).await?;
        Ok(Response::new(stream))
    }

    async fn create_expose(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<CreateExposeRequest>(request.get_ref())?;
        let answer =
            expose::create(&shared.expose, &shared.store, &opened.key, opened.message).await?;
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    async fn renew_expose(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<RenewExposeRequest>(request.get_ref())?;
        let answer = expose::renew(&shared.expose, &opened.key, opened.message).await?;
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    async fn stop_expose(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<StopExposeRequest>(request.get_ref())?;
        let answer = expose::stop(&shared.expose, &opened.key, opened.message).await?;
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    async fn report_traffic(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<ReportTrafficRequest>(request.get_ref())?;
        let stored = traffic::report(shared, &opened.key, opened.message).await?;
        let answer = ReportTrafficResponse { stored };
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    async fn relay_token(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let authority = request.extensions().get::<Authority>().cloned();
        let opened = shared.open::<RelayTokenRequest>(request.get_ref())?;
        // Only a peer that may log in now gets a token.
        let mut tx = shared.store.read().await.map_err(internal)?;
        login::checked_peer(&mut tx, &opened.key, ids::now()).await?;
        drop(tx);
        let relay = shared
            .relay
            .config(&opened.key, authority.as_ref(), ids::now());
        let answer = RelayTokenResponse { relay: Some(relay) };
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    async fn sync_meta(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<SyncMetaRequest>(request.get_ref())?;
        let answer = meta::sync_meta(shared, &opened.key, opened.message).await?;
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    async fn ack_map(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedMessage>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<AckMapRequest>(request.get_ref())?;
        let answer = sync::ack(shared, &opened.key, opened.message)?;
        Ok(Response::new(shared.seal(&answer, &opened.sender)))
    }

    type WatchServicesStream = SealedStream;

    async fn watch_services(
        &self,
        request: Request<SealedMessage>,
    ) -> Result<Response<SealedStream>, Status> {
        let shared = &self.shared;
        let opened = shared.open::<WatchServicesRequest>(request.get_ref())?;
        let (sealer, to) = (shared.clone(), opened.sender.clone());
        let stream = expose::watch(
            &shared.expose,
            &shared.store,
            &opened.key,
            opened.message,
            shared.closing.clone(),
            || shared.watchers.open(&opened.key),
            move |table| sealer.seal(table, &to),
        )
        .await?;
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}
