//! A daemon's side of the management protocol for the tests: a real tonic
//! client holding its own X25519 (WireGuard) key pair, sealing every call
//! to the server's key, plus the functions the gRPC tests share.

use std::future::Future;
use std::time::Duration;

use crypto_box::{PublicKey, SecretKey};
use meshplane_core::netmap::PeerMap;
use meshplane_core::Timestamp;
use meshplane_proto::envelope::{encode_public_key, open, parse_public_key, seal, ReplayGuard};
use meshplane_proto::v1::management_client::ManagementClient;
use meshplane_proto::v1::{
    CreateExposeRequest, CreateExposeResponse, ExposeSession, GetServerKeyRequest, LoginRequest,
    LoginResponse, PeerSystemMeta, RenewExposeRequest, RenewExposeResponse, SealedMessage,
    ServiceTable, StopExposeRequest, StopExposeResponse, SyncRequest, SyncResponse,
    WatchServicesRequest,
};
use meshplane_proto::PROTOCOL_VERSION;
use prost::Message;
use rand_core::OsRng;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::Server;

/// How long a change may take to reach an open stream.
pub const PROMPT: Duration = Duration::from_secs(2);

pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap())
}

/// Runs `body` on a runtime with worker threads, so the client's connection
/// keeps going while the test blocks on a REST call.
pub fn run<F: Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

/// A daemon's side of the protocol: a WireGuard key pair and a client.
pub struct Peer {
    pub hostname: String,
    pub secret: SecretKey,
    pub key: String,
    pub server: PublicKey,
    pub client: ManagementClient<Channel>,
    pub guard: ReplayGuard,
}

impl Peer {
    pub async fn connect(s: &Server, hostname: &str) -> Peer {
        let mut client = ManagementClient::connect(s.base.clone()).await.unwrap();
        let answer = client
            .get_server_key(GetServerKeyRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.version, PROTOCOL_VERSION);
        let secret = SecretKey::generate(&mut OsRng);
        Peer {
            hostname: hostname.to_string(),
            key: encode_public_key(&secret.public_key()),
            secret,
            server: parse_public_key(&answer.key).unwrap(),
            client,
            guard: ReplayGuard::default(),
        }
    }

    /// The same peer (the same key) calling `s`: a daemon whose next call
    /// lands on another server sharing the database.
    pub async fn on(&self, s: &Server) -> Peer {
        let mut other = Peer::connect(s, &self.hostname).await;
        assert_eq!(
            other.server.as_bytes(),
            self.server.as_bytes(),
            "servers sharing a database share their key"
        );
        other.secret = self.secret.clone();
        other.key = self.key.clone();
        other
    }

    pub fn seal<M: Message>(&self, message: &M) -> SealedMessage {
        seal(
            message,
            &self.key,
            &self.secret,
            &self.server,
            now(),
            &mut OsRng,
        )
    }

    pub fn open<M: Message + Default>(&mut self, sealed: &SealedMessage) -> M {
        open(sealed, &self.secret, &self.server, &mut self.guard, now()).unwrap()
    }

    pub fn login_request(&self, setup_key: &str) -> LoginRequest {
        LoginRequest {
            setup_key: setup_key.to_string(),
            meta: Some(PeerSystemMeta {
                hostname: self.hostname.clone(),
                os: "linux".into(),
                os_version: "12".into(),
                kernel_version: "6.1.0".into(),
                client_version: "0.1.0".into(),
                ..PeerSystemMeta::default()
            }),
            extra_dns_labels: Vec::new(),
        }
    }

    pub async fn login(&mut self, setup_key: &str) -> Result<LoginResponse, Status> {
        let sealed = self.seal(&self.login_request(setup_key));
        let answer = self.client.login(sealed).await?.into_inner();
        Ok(self.open(&answer))
    }

    pub async fn sync(&mut self) -> Streaming<SealedMessage> {
        let sealed = self.seal(&SyncRequest::default());
        self.client.sync(sealed).await.unwrap().into_inner()
    }

    /// The next map on `stream`, which must come within [`PROMPT`], in the
    /// core's JSON form.
    pub async fn next_map(&mut self, stream: &mut Streaming<SealedMessage>) -> Value {
        let sealed = tokio::time::timeout(PROMPT, stream.message())
            .await
            .expect("a map within 2 s")
            .expect("a map, not an error")
            .expect("a map, not the end");
        let response: SyncResponse = self.open(&sealed);
        assert!(response.serial > 0);
        let map = response.network_map.expect("a map in the response");
        serde_json::to_value(PeerMap::try_from(map).expect("the map decodes")).unwrap()
    }
}

/// The WireGuard keys of the peers a map lists.
pub fn listed(map: &Value) -> Vec<&str> {
    map["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect()
}

/// A new setup key of `kind` (`reusable`, `one-off`) valid for
/// `expires_in` seconds (0: forever): its plain value and id.
pub fn setup_key(s: &Server, kind: &str, expires_in: i64) -> (String, String) {
    let body = json!({"name": format!("{kind} key"), "type": kind,
        "expires_in": expires_in, "auto_groups": [], "usage_limit": 0});
    let k = s.post("/api/setup-keys", body);
    (
        k["key"].as_str().unwrap().to_string(),
        k["id"].as_str().unwrap().to_string(),
    )
}

pub fn reusable(s: &Server) -> String {
    setup_key(s, "reusable", 0).0
}

/// Sets peer expose on the account: `enabled`, limited to `groups`.
pub fn set_expose(s: &Server, enabled: bool, groups: &[&str]) {
    let account = s.get("/api/accounts")[0].clone();
    let mut settings = account["settings"].clone();
    settings["peer_expose_enabled"] = json!(enabled);
    settings["peer_expose_groups"] = json!(groups);
    let id = account["id"].as_str().unwrap();
    s.put(
        &format!("/api/accounts/{id}"),
        json!({ "settings": settings }),
    );
}

pub fn assert_status(got: Result<impl std::fmt::Debug, Status>, code: Code, message: &str) {
    let status = got.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

impl Peer {
    /// CreateExpose; the session, or the server's refusal.
    pub async fn create_expose(
        &mut self,
        request: CreateExposeRequest,
    ) -> Result<ExposeSession, Status> {
        let sealed = self.seal(&request);
        let answer = self.client.create_expose(sealed).await?.into_inner();
        let response: CreateExposeResponse = self.open(&answer);
        Ok(response.session.expect("a session"))
    }

    /// RenewExpose of `domain`; when it now expires (ms).
    pub async fn renew_expose(&mut self, domain: &str) -> Result<i64, Status> {
        let sealed = self.seal(&RenewExposeRequest {
            domain: domain.to_string(),
        });
        let answer = self.client.renew_expose(sealed).await?.into_inner();
        let response: RenewExposeResponse = self.open(&answer);
        Ok(response.expires_at_ms)
    }

    /// StopExpose of `domain`.
    pub async fn stop_expose(&mut self, domain: &str) -> Result<(), Status> {
        let sealed = self.seal(&StopExposeRequest {
            domain: domain.to_string(),
        });
        let answer = self.client.stop_expose(sealed).await?.into_inner();
        let _: StopExposeResponse = self.open(&answer);
        Ok(())
    }

    /// WatchServices as a proxy serving `domain` that says nothing of
    /// where visitors reach it.
    pub async fn watch_services(
        &mut self,
        domain: &str,
    ) -> Result<Streaming<SealedMessage>, Status> {
        self.watch_services_at(domain, "").await
    }

    /// WatchServices as a proxy serving `domain` at `public_url`.
    pub async fn watch_services_at(
        &mut self,
        domain: &str,
        public_url: &str,
    ) -> Result<Streaming<SealedMessage>, Status> {
        let sealed = self.seal(&WatchServicesRequest {
            domain: domain.to_string(),
            public_url: public_url.to_string(),
        });
        Ok(self.client.watch_services(sealed).await?.into_inner())
    }

    /// The next service table on `stream`, which must come within
    /// [`PROMPT`].
    pub async fn next_table(&mut self, stream: &mut Streaming<SealedMessage>) -> ServiceTable {
        let sealed = tokio::time::timeout(PROMPT, stream.message())
            .await
            .expect("a table within 2 s")
            .expect("a table, not an error")
            .expect("a table, not the end");
        self.open(&sealed)
    }
}
