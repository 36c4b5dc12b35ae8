//! A stock NetBird client's side of the management protocol, written from
//! its wire format for the tests: a tonic client of
//! `management.ManagementService` holding its own WireGuard key pair, which
//! boxes every request to the server key (24-byte nonce + NaCl box, no
//! timestamp) as NetBird clients do, and HTTP/2 keep-alive pings like
//! theirs.

use std::time::Duration;

use crypto_box::{PublicKey, SecretKey};
use meshplane_proto::envelope::{encode_public_key, open_box, parse_public_key, seal_box};
use meshplane_proto::netbird::management_service_client::ManagementServiceClient;
use meshplane_proto::netbird::{
    Empty, EncryptedMessage, LoginRequest, LoginResponse, PeerSystemMeta, SyncRequest, SyncResponse,
};
use prost::Message;
use rand_core::OsRng;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use super::client::PROMPT;
use super::Server;

/// A NetBird client: its key pair and its management connection.
pub struct NbPeer {
    pub hostname: String,
    pub secret: SecretKey,
    pub key: String,
    pub server: PublicKey,
    pub client: ManagementServiceClient<Channel>,
}

/// A channel to the server that pings every `every` even while idle (stock
/// clients ping every 30 s).
pub async fn pinging_channel(s: &Server, every: Duration) -> Channel {
    Endpoint::from_shared(s.base.clone())
        .unwrap()
        .http2_keep_alive_interval(every)
        .keep_alive_while_idle(true)
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

impl NbPeer {
    /// A new key pair; fetches the server key over `channel`.
    pub async fn connect(channel: Channel, hostname: &str) -> NbPeer {
        let mut client = ManagementServiceClient::new(channel);
        let answer = client.get_server_key(Empty {}).await.unwrap().into_inner();
        let secret = SecretKey::generate(&mut OsRng);
        NbPeer {
            hostname: hostname.to_string(),
            key: encode_public_key(&secret.public_key()),
            secret,
            server: parse_public_key(&answer.key).unwrap(),
            client,
        }
    }

    pub fn seal<M: Message>(&self, message: &M) -> EncryptedMessage {
        EncryptedMessage {
            wg_pub_key: self.key.clone(),
            body: seal_box(
                &message.encode_to_vec(),
                &self.secret,
                &self.server,
                &mut OsRng,
            ),
            version: 0,
        }
    }

    pub fn open<M: Message + Default>(&self, sealed: &EncryptedMessage) -> M {
        let (_, plain) = open_box(&sealed.body, &self.secret, &self.server).unwrap();
        M::decode(plain.as_slice()).unwrap()
    }

    /// The login request a stock client sends: the setup key in lower case
    /// (empty for a login), its system facts and its keys.
    pub fn login_request(&self, setup_key: &str) -> LoginRequest {
        LoginRequest {
            setup_key: setup_key.to_lowercase(),
            meta: Some(PeerSystemMeta {
                hostname: self.hostname.clone(),
                go_os: "linux".into(),
                os: "Debian GNU/Linux".into(),
                os_version: "12".into(),
                kernel_version: "6.1.0".into(),
                netbird_version: "0.60.0".into(),
                ..PeerSystemMeta::default()
            }),
            peer_keys: Some(meshplane_proto::netbird::PeerKeys {
                ssh_pub_key: Vec::new(),
                wg_pub_key: self.key.as_bytes().to_vec(),
            }),
            ..LoginRequest::default()
        }
    }

    pub async fn login(&mut self, setup_key: &str) -> Result<LoginResponse, Status> {
        let sealed = self.seal(&self.login_request(setup_key));
        let answer = self.client.login(sealed).await?.into_inner();
        Ok(self.open(&answer))
    }

    /// What a stock client does on `netbird up -k`: log in, and register
    /// when the server answers PERMISSION_DENIED.
    pub async fn up(&mut self, setup_key: &str) -> Result<LoginResponse, Status> {
        match self.login("").await {
            Err(e) if e.code() == tonic::Code::PermissionDenied => self.login(setup_key).await,
            other => other,
        }
    }

    pub async fn sync(&mut self) -> Result<Streaming<EncryptedMessage>, Status> {
        let sealed = self.seal(&SyncRequest::default());
        Ok(self.client.sync(sealed).await?.into_inner())
    }

    /// The next message on `stream`, which must come within [`PROMPT`].
    pub async fn next_sync(
        &self,
        stream: &mut Streaming<EncryptedMessage>,
    ) -> Result<SyncResponse, Status> {
        let sealed = tokio::time::timeout(PROMPT, stream.message())
            .await
            .expect("a message within 2 s")?
            .expect("a message, not the end");
        Ok(self.open(&sealed))
    }
}
