//! The tonic service `management.ManagementService`: opens each encrypted
//! request ([`super::sealed`]), serves it with the same logic as our own
//! service ([`crate::grpc`]: login and registration, the map streams and
//! their update fan-out, expose sessions), and answers in NetBird's
//! messages.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use crypto_box::PublicKey;
use meshplane_proto::netbird::management_service_server::ManagementService;
use meshplane_proto::netbird::{
    self as nb, Empty, EncryptedMessage, LoginRequest, ServerKeyResponse, SyncMetaRequest,
    SyncRequest,
};
use meshplane_proto::netbird_map;
use prost::Message;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status, Streaming};

use super::config::netbird_config;
use super::expose;
use super::peer::{self, login_request, peer_meta};
use super::sealed::{open, seal, Nonces, Opened};
use crate::grpc::{self, MapDeltas, MapFrame as Frame, Shared};
use crate::ids;
use crate::relay::Authority;

/// How long a client may keep the server key before asking again.
const SERVER_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A stream of encrypted messages, as Sync answers.
pub type EncryptedStream = Pin<Box<dyn Stream<Item = Result<EncryptedMessage, Status>> + Send>>;

/// The `ManagementService` service.
#[derive(Debug, Clone)]
pub struct NetBird {
    shared: Arc<Shared>,
    nonces: Arc<Nonces>,
}

impl NetBird {
    pub fn new(shared: Arc<Shared>) -> NetBird {
        NetBird {
            shared,
            nonces: Arc::default(),
        }
    }

    fn open<M: Message + Default>(&self, sealed: &EncryptedMessage) -> Result<Opened<M>, Status> {
        Ok(open(sealed, self.shared.pairs(), &self.nonces)?)
    }

    fn seal<M: Message>(&self, message: &M, to: &PublicKey) -> EncryptedMessage {
        seal(message, self.shared.pairs(), to)
    }

    /// Opens the Sync stream `request` asks for; `authority` is the address
    /// the client dialled (the relay and signal URLs it is given use it).
    async fn open_sync(
        &self,
        authority: Option<Authority>,
        request: &EncryptedMessage,
    ) -> Result<EncryptedStream, Status> {
        let opened = self.open::<SyncRequest>(request)?;
        let (shared, to, key) = (
            self.shared.clone(),
            opened.sender.clone(),
            opened.key.clone(),
        );
        let render = move |frame: Frame<'_>| {
            let config = netbird_config(authority.as_ref(), shared.relay(), ids::now());
            let mut response = match frame.map {
                Some(map) => netbird_map::sync_response(map, &key, Some(config), frame.serial),
                // A refresh of the relay token alone.
                None => nb::SyncResponse {
                    netbird_config: Some(config),
                    ..Default::default()
                },
            };
            // The paths the client reports on (`files` of its meta), as
            // NetBird's server lists them for process checks.
            response.checks = vec![nb::Checks {
                files: frame.paths.to_vec(),
            }];
            seal(&response, shared.pairs(), &to)
        };
        // Renewed well before the token expires (`--relay-token-refresh-secs`).
        let refresh = self.shared.relay().refresh();
        let meta = opened.message.meta.map(peer_meta);
        let stream = grpc::open_map_stream(
            self.shared.clone(),
            &opened.key,
            meta,
            Some(refresh),
            MapDeltas::Off,
            render,
        )
        .await
        .map_err(as_netbird)?;
        let stream = ReceiverStream::new(stream).map(|item| item.map_err(as_netbird));
        Ok(Box::pin(stream))
    }

    /// [`NetBird::open_sync`] for a call framed by [`grpc::framing`].
    pub async fn open_framed_sync(
        &self,
        request: axum::extract::Request,
    ) -> Result<EncryptedStream, Status> {
        let authority = request.extensions().get::<Authority>().cloned();
        let sealed = grpc::framing::message::<EncryptedMessage>(request).await?;
        self.open_sync(authority, &sealed).await
    }
}

/// NetBird clients take PERMISSION_DENIED, not NOT_FOUND, for an unknown or
/// deleted peer: it is what makes them register (or stop and ask for a
/// login) instead of retrying forever.
fn as_netbird(status: Status) -> Status {
    if status.code() == Code::NotFound {
        Status::permission_denied(status.message())
    } else {
        status
    }
}

/// The Unix time of `now + after`.
fn timestamp_after(after: Duration) -> prost_types::Timestamp {
    let now = ids::now().as_millis() / 1000;
    prost_types::Timestamp {
        seconds: now.saturating_add(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
        nanos: 0,
    }
}

#[tonic::async_trait]
impl ManagementService for NetBird {
    async fn login(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        let from = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let authority = request.extensions().get::<Authority>().cloned();
        let opened = self.open::<LoginRequest>(request.get_ref())?;
        let req = login_request(&opened.message);
        let answer = grpc::log_in(&self.shared, &opened.key, req, from)
            .await
            .map_err(as_netbird)?;
        let response = nb::LoginResponse {
            netbird_config: Some(netbird_config(
                authority.as_ref(),
                self.shared.relay(),
                ids::now(),
            )),
            peer_config: Some(peer::peer_config(&answer)),
            checks: Vec::new(),
            session_expires_at: None,
        };
        Ok(Response::new(self.seal(&response, &opened.sender)))
    }

    type SyncStream = EncryptedStream;

    async fn sync(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedStream>, Status> {
        let authority = request.extensions().get::<Authority>().cloned();
        Ok(Response::new(
            self.open_sync(authority, request.get_ref()).await?,
        ))
    }

    async fn get_server_key(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<ServerKeyResponse>, Status> {
        Ok(Response::new(ServerKeyResponse {
            key: self.shared.public().to_string(),
            expires_at: Some(timestamp_after(SERVER_KEY_TTL)),
            version: 0,
        }))
    }

    async fn is_healthy(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn get_device_authorization_flow(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        self.open::<nb::DeviceAuthorizationFlowRequest>(request.get_ref())?;
        Err(no_sso())
    }

    async fn get_pkce_authorization_flow(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        self.open::<nb::PkceAuthorizationFlowRequest>(request.get_ref())?;
        Err(no_sso())
    }

    async fn sync_meta(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<Empty>, Status> {
        let opened = self.open::<SyncMetaRequest>(request.get_ref())?;
        let meta = opened.message.meta.map(peer_meta);
        // The same bounds, rate limit and store as our own SyncMeta.
        grpc::sync_meta(
            &self.shared,
            &opened.key,
            meshplane_proto::v1::SyncMetaRequest { meta },
        )
        .await
        .map_err(as_netbird)?;
        Ok(Response::new(Empty {}))
    }

    async fn logout(&self, request: Request<EncryptedMessage>) -> Result<Response<Empty>, Status> {
        let opened = self.open::<Empty>(request.get_ref())?;
        peer::log_out(&self.shared, &opened.key)
            .await
            .map_err(as_netbird)?;
        Ok(Response::new(Empty {}))
    }

    type JobStream = EncryptedStream;

    async fn job(
        &self,
        _request: Request<Streaming<EncryptedMessage>>,
    ) -> Result<Response<EncryptedStream>, Status> {
        // The client logs that jobs are not supported and stops asking.
        Err(Status::unimplemented(
            "jobs are not supported by this server",
        ))
    }

    async fn extend_auth_session(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        self.open::<nb::ExtendAuthSessionRequest>(request.get_ref())?;
        Err(no_sso())
    }

    async fn create_expose(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        let opened = self.open::<nb::ExposeServiceRequest>(request.get_ref())?;
        let shared = &self.shared;
        let answer =
            expose::create(&shared.expose, &shared.store, &opened.key, opened.message).await?;
        Ok(Response::new(self.seal(&answer, &opened.sender)))
    }

    async fn renew_expose(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        let opened = self.open::<nb::RenewExposeRequest>(request.get_ref())?;
        let answer = expose::renew(&self.shared.expose, &opened.key, opened.message).await?;
        Ok(Response::new(self.seal(&answer, &opened.sender)))
    }

    async fn stop_expose(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        let opened = self.open::<nb::StopExposeRequest>(request.get_ref())?;
        let answer = expose::stop(&self.shared.expose, &opened.key, opened.message).await?;
        Ok(Response::new(self.seal(&answer, &opened.sender)))
    }
}

/// What NetBird's server answers when no identity provider is configured:
/// the client then registers with a setup key only.
fn no_sso() -> Status {
    Status::not_found("no SSO authorization flow is configured on this server")
}
