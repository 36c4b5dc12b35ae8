//! Replays the sessions stock NetBird clients had with meshplane-server
//! (`conformance/netbird/*.json`, captured from clients built from
//! NetBird's public source: two peers registering, syncing, signalling and
//! connecting; one exposing a port with `netbird expose`) against the real
//! server binary.
//!
//! Every recorded request is first opened with the recorded keys (so the
//! file holds what the client really sent), then boxed again from the same
//! peer key to this server's key, sent, and its answer checked: the same
//! gRPC status, and an answer that decodes to what the client requires (a
//! server key, a peer address and the signal, STUN and relay addresses, a
//! map with the same remote peers and the same empty-list flags as
//! recorded, an expose session on this server's proxy domain). The
//! recorded REST changes (policies deleted, a peer deleted, expose enabled)
//! are made at the same points.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::client::{reusable, run, set_expose, PROMPT};
use common::Server;
use crypto_box::{PublicKey, SecretKey};
use meshplane_proto::envelope::{encode_public_key, open_box, parse_secret_key, seal_box};
use meshplane_proto::netbird::management_service_client::ManagementServiceClient;
use meshplane_proto::netbird::{
    Empty, EncryptedMessage, ExposeServiceRequest, ExposeServiceResponse, LoginRequest,
    LoginResponse, NetworkMap, RenewExposeRequest, ServerKeyResponse, StopExposeRequest,
    SyncResponse,
};
use meshplane_proto::signal;
use meshplane_proto::signal::signal_exchange_client::SignalExchangeClient;
use prost::Message;
use rand_core::OsRng;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

const SESSIONS: [&str; 2] = [
    include_str!("../../conformance/netbird/stock-client-session.json"),
    include_str!("../../conformance/netbird/stock-client-expose.json"),
];
/// The proxy domain of the test servers.
const PROXY_DOMAIN: &str = "proxy.localhost";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// What a map must match of the recorded one: the remote peers (the same
/// keys, replayed) and the flags that tell a client to drop what it has.
fn shape(map: &NetworkMap) -> (Vec<String>, bool, bool, usize) {
    let mut keys: Vec<String> = map
        .remote_peers
        .iter()
        .map(|p| p.wg_pub_key.clone())
        .collect();
    keys.sort();
    (
        keys,
        map.remote_peers_is_empty,
        map.firewall_rules_is_empty,
        map.firewall_rules.len(),
    )
}

/// What a stock client requires of a map: its own address and each remote
/// peer's as CIDR text.
fn check_map(map: &NetworkMap) {
    let own = map.peer_config.as_ref().unwrap();
    assert!(own.address.parse::<ipnet::Ipv4Net>().is_ok(), "{own:?}");
    for peer in &map.remote_peers {
        for ip in &peer.allowed_ips {
            assert!(ip.parse::<ipnet::Ipv4Net>().is_ok(), "{ip}");
        }
    }
    assert!(map.serial > 0);
}

struct Replay {
    server: Server,
    channel: Channel,
    authority: String,
    recorded_server: PublicKey,
    live_server: PublicKey,
    peers: HashMap<String, SecretKey>,
    recorded_setup_key: String,
    setup_key: String,
    streams: HashMap<String, Streaming<EncryptedMessage>>,
    /// Recorded expose domains and this server's for the same session.
    domains: HashMap<String, String>,
}

impl Replay {
    fn client(&self) -> ManagementServiceClient<Channel> {
        ManagementServiceClient::new(self.channel.clone())
    }

    fn peer(&self, step: &Value) -> (&SecretKey, String) {
        let name = step["peer"].as_str().unwrap();
        let secret = &self.peers[name];
        (secret, encode_public_key(&secret.public_key()))
    }

    /// Opens a recorded request with the recorded keys.
    fn recorded<M: Message + Default>(&self, step: &Value, field: &str) -> M {
        let (secret, key) = self.peer(step);
        let message =
            EncryptedMessage::decode(hex(step[field].as_str().unwrap()).as_slice()).unwrap();
        if field == "request" || field == "open" {
            assert_eq!(message.wg_pub_key, key);
        }
        let (_, plain) = open_box(&message.body, secret, &self.recorded_server).unwrap();
        M::decode(plain.as_slice()).unwrap()
    }

    /// `message` boxed from the step's peer to this server.
    fn sealed<M: Message>(&self, step: &Value, message: &M) -> EncryptedMessage {
        let (secret, key) = self.peer(step);
        EncryptedMessage {
            wg_pub_key: key,
            body: seal_box(
                &message.encode_to_vec(),
                secret,
                &self.live_server,
                &mut OsRng,
            ),
            version: 0,
        }
    }

    fn opened<M: Message + Default>(&self, step: &Value, message: &EncryptedMessage) -> M {
        let (secret, _) = self.peer(step);
        let (_, plain) = open_box(&message.body, secret, &self.live_server).unwrap();
        M::decode(plain.as_slice()).unwrap()
    }

    fn expect_status<T>(step: &Value, got: &Result<T, Status>) {
        let recorded = step["status"].as_i64().unwrap();
        let code = got.as_ref().err().map_or(Code::Ok, Status::code);
        assert_eq!(i64::from(i32::from(code)), recorded, "{step}");
    }

    async fn login(&mut self, step: &Value) {
        let mut request: LoginRequest = self.recorded(step, "request");
        if !request.setup_key.is_empty() {
            assert_eq!(request.setup_key, self.recorded_setup_key.to_lowercase());
            request.setup_key = self.setup_key.to_lowercase();
        }
        let got = self.client().login(self.sealed(step, &request)).await;
        Self::expect_status(step, &got);
        let Ok(answer) = got else { return };
        let recorded: LoginResponse = {
            let (secret, _) = self.peer(step);
            let message =
                EncryptedMessage::decode(hex(step["response"].as_str().unwrap()).as_slice())
                    .unwrap();
            let (_, plain) = open_box(&message.body, secret, &self.recorded_server).unwrap();
            LoginResponse::decode(plain.as_slice()).unwrap()
        };
        let live: LoginResponse = self.opened(step, &answer.into_inner());
        for response in [&recorded, &live] {
            let own = response.peer_config.as_ref().unwrap();
            assert!(own.address.parse::<ipnet::Ipv4Net>().is_ok(), "{own:?}");
            let config = response.netbird_config.as_ref().unwrap();
            let relay = config.relay.as_ref().unwrap();
            assert!(relay.token_payload.parse::<i64>().is_ok());
            assert_eq!(relay.urls.len(), 1);
        }
        let config = live.netbird_config.unwrap();
        assert_eq!(config.signal.unwrap().uri, self.authority);
        assert_eq!(config.stuns[0].uri, format!("stun:{}", self.authority));
        assert_eq!(
            config.relay.unwrap().urls,
            [format!("rel://{}", self.authority)]
        );
    }

    async fn sync_message(&mut self, step: &Value) {
        let recorded: SyncResponse = self.recorded(step, "message");
        let want = shape(recorded.network_map.as_ref().unwrap());
        let name = step["peer"].as_str().unwrap().to_string();
        loop {
            let stream = self.streams.get_mut(&name).unwrap();
            let sealed = tokio::time::timeout(PROMPT, stream.message())
                .await
                .expect("a map within 2 s")
                .unwrap()
                .unwrap();
            let live: SyncResponse = self.opened(step, &sealed);
            assert!(live.netbird_config.is_some());
            let Some(map) = live.network_map else {
                continue;
            };
            check_map(&map);
            if shape(&map) == want {
                return;
            }
        }
    }

    async fn sync_end(&mut self, step: &Value) {
        let name = step["peer"].as_str().unwrap().to_string();
        let stream = self.streams.get_mut(&name).unwrap();
        let status = loop {
            match tokio::time::timeout(PROMPT, stream.message())
                .await
                .unwrap()
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => break status,
            }
        };
        assert_eq!(
            i64::from(i32::from(status.code())),
            step["end"].as_i64().unwrap()
        );
    }

    async fn step(&mut self, step: &Value) {
        if let Some(rest) = step["rest"].as_str() {
            return self.rest(rest, step);
        }
        match step["call"].as_str().unwrap() {
            "GetServerKey" => {
                let recorded =
                    ServerKeyResponse::decode(hex(step["response"].as_str().unwrap()).as_slice())
                        .unwrap();
                assert_eq!(recorded.key, encode_public_key(&self.recorded_server));
                let live = self
                    .client()
                    .get_server_key(Empty {})
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(live.key, encode_public_key(&self.live_server));
                assert!(live.expires_at.is_some());
            }
            "Login" => self.login(step).await,
            "Sync" if step.get("open").is_some() => {
                let request: meshplane_proto::netbird::SyncRequest = self.recorded(step, "open");
                let stream = self
                    .client()
                    .sync(self.sealed(step, &request))
                    .await
                    .unwrap();
                let name = step["peer"].as_str().unwrap().to_string();
                self.streams.insert(name, stream.into_inner());
            }
            "Sync" if step.get("message").is_some() => self.sync_message(step).await,
            "Sync" => self.sync_end(step).await,
            "Job" => {
                let request: meshplane_proto::netbird::Empty = self.recorded(step, "request");
                let first = self.sealed(step, &request);
                let got = self
                    .client()
                    .job(tonic::codegen::tokio_stream::iter([first]))
                    .await;
                Self::expect_status(step, &got);
            }
            "CreateExpose" => {
                let request: ExposeServiceRequest = self.recorded(step, "request");
                let got = self
                    .client()
                    .create_expose(self.sealed(step, &request))
                    .await;
                Self::expect_status(step, &got);
                let Ok(answer) = got else { return };
                let live: ExposeServiceResponse = self.opened(step, &answer.into_inner());
                let recorded: ExposeServiceResponse = self.recorded(step, "response");
                for answer in [&live, &recorded] {
                    assert!(answer.domain.ends_with(PROXY_DOMAIN), "{answer:?}");
                    assert_eq!(answer.service_url, format!("https://{}", answer.domain));
                }
                self.domains.insert(recorded.domain, live.domain);
            }
            "RenewExpose" => {
                let mut request: RenewExposeRequest = self.recorded(step, "request");
                request.domain = self.domains[&request.domain].clone();
                let got = self
                    .client()
                    .renew_expose(self.sealed(step, &request))
                    .await;
                Self::expect_status(step, &got);
            }
            "StopExpose" => {
                let mut request: StopExposeRequest = self.recorded(step, "request");
                request.domain = self.domains[&request.domain].clone();
                let got = self.client().stop_expose(self.sealed(step, &request)).await;
                Self::expect_status(step, &got);
            }
            "signal.Send" => {
                let message = signal::EncryptedMessage::decode(
                    hex(step["request"].as_str().unwrap()).as_slice(),
                )
                .unwrap();
                assert_eq!(message.key, self.peer(step).1);
                let got = SignalExchangeClient::new(self.channel.clone())
                    .send(message)
                    .await;
                Self::expect_status(step, &got);
            }
            other => panic!("a step this replay does not know: {other}"),
        }
    }

    fn rest(&mut self, rest: &str, step: &Value) {
        let s = &self.server;
        match rest {
            "delete_policies" => {
                for policy in s.get("/api/policies").as_array().unwrap() {
                    s.delete(&format!("/api/policies/{}", policy["id"].as_str().unwrap()));
                }
            }
            "enable_expose" => set_expose(s, true, &[]),
            "delete_peer" => {
                let name = format!("nb-{}", step["peer"].as_str().unwrap());
                let peers = s.get("/api/peers");
                let peer = peers
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .unwrap();
                s.delete(&format!("/api/peers/{}", peer["id"].as_str().unwrap()));
            }
            other => panic!("a REST change this replay does not know: {other}"),
        }
    }
}

/// Replays `session` against a fresh server.
fn replay(session: &str) {
    let session: Value = serde_json::from_str(session).unwrap();
    let server = Server::start(common::Backend::Sqlite);
    run(async {
        let setup_key = reusable(&server);
        let channel = server.channel().await;
        let live = ManagementServiceClient::new(channel.clone())
            .get_server_key(Empty {})
            .await
            .unwrap()
            .into_inner();
        let recorded_server =
            parse_secret_key(session["server_private_key"].as_str().unwrap()).unwrap();
        let peers = session["peer_private_keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, key)| {
                (
                    name.clone(),
                    parse_secret_key(key.as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        let mut replay = Replay {
            authority: format!("127.0.0.1:{}", server.port),
            server,
            channel,
            recorded_server: recorded_server.public_key(),
            live_server: meshplane_proto::envelope::parse_public_key(&live.key).unwrap(),
            peers,
            recorded_setup_key: session["setup_key"].as_str().unwrap().to_string(),
            setup_key,
            streams: HashMap::new(),
            domains: HashMap::new(),
        };
        let steps = session["steps"].as_array().unwrap();
        assert!(steps.len() > 10);
        for step in steps {
            replay.step(step).await;
        }
    });
}

#[test]
fn two_stock_clients_session_replays() {
    replay(SESSIONS[0]);
}

#[test]
fn a_stock_clients_expose_session_replays() {
    replay(SESSIONS[1]);
}
