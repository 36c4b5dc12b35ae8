//! A stock NetBird client's side of the management protocol, written from
//! its wire format for the tests: a tonic client of
//! `management.ManagementService` holding its own WireGuard key pair, which
//! boxes every request to the server key (24-byte nonce + NaCl box, no
//! timestamp) as NetBird clients do, and HTTP/2 keep-alive pings like
//! theirs. Beside it, the rest of a NetBird peer's data plane as far as the
//! tests need it: an ICE session with one remote peer over the signal
//! exchange ([`IceLink`]), and a WireGuard ping through a direct UDP path
//! or the relay ([`wireguard_ping`]).
//!
//! The server's tests use it on loopback; the daemon's namespace tests
//! include this same file (`daemon/tests/common/mod.rs`), so it names
//! nothing of either crate's other test helpers.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crypto_box::{PublicKey, SecretKey};
use meshplane_core::connect::Candidate;
use meshplane_proto::envelope::{encode_public_key, open_box, parse_public_key, seal_box};
use meshplane_proto::ice::{Credentials, IceAgent, Received as IceReceived};
use meshplane_proto::netbird::management_service_client::ManagementServiceClient;
use meshplane_proto::netbird::{
    Empty, EncryptedMessage, LoginRequest, LoginResponse, NetworkMap, PeerSystemMeta, SyncRequest,
    SyncResponse,
};
use meshplane_proto::signal::body::Type;
use meshplane_proto::signal::client::{Received, SignalClient, SignalStream};
use meshplane_proto::signal::Body;
use meshplane_proto::stun::{parse_ice_request, IceCheck};
use meshplane_relay::{PeerId, RelayReceiver, RelaySender};
use prost::Message;
use rand_core::OsRng;
use tokio::net::UdpSocket;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// How long a message the server owes may take.
const PROMPT: Duration = Duration::from_secs(2);
/// How long [`IceLink::answer`] waits for more candidates after the first
/// (a daemon sends them one after another).
const CANDIDATES_AFTER: Duration = Duration::from_millis(300);

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
pub async fn pinging_channel(url: &str, every: Duration) -> Channel {
    Endpoint::from_shared(url.to_string())
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

/// The next map on `stream` for which `done` holds, skipping the ones
/// computed before a change reached it.
pub async fn map_until(
    peer: &NbPeer,
    stream: &mut Streaming<EncryptedMessage>,
    done: impl Fn(&NetworkMap) -> bool,
) -> NetworkMap {
    loop {
        let response = peer.next_sync(stream).await.unwrap();
        if let Some(map) = response.network_map {
            if done(&map) {
                return map;
            }
        }
    }
}

/// A signal body of `kind` as a stock client sends it.
pub fn body(kind: Type, payload: &str) -> Body {
    Body {
        r#type: kind.into(),
        payload: payload.into(),
        wg_listen_port: 51820,
        net_bird_version: "0.60.0".into(),
        ..Body::default()
    }
}

/// The next message on `stream`, which must come within [`PROMPT`].
pub async fn next_signal(stream: &mut SignalStream) -> Received {
    tokio::time::timeout(PROMPT, stream.recv())
        .await
        .expect("a message within 2 s")
        .expect("no error")
        .expect("not the end")
}

/// A NetBird peer's ICE session with one remote peer: the UDP socket its
/// WireGuard uses (NetBird's agents check the address WireGuard will use),
/// its agent and its signal stream.
pub struct IceLink {
    pub socket: UdpSocket,
    pub agent: IceAgent<String>,
    /// The remote peer's key.
    pub remote: String,
    pub signal: SignalClient,
    stream: SignalStream,
}

/// What one [`IceLink::step`] saw.
#[derive(Debug, Default)]
pub struct Step {
    /// A check of the remote's for our credentials, answered.
    pub checked: Option<IceCheck>,
    /// The remote answered our check at this address.
    pub answered: Option<SocketAddr>,
}

impl IceLink {
    /// Opens `nb`'s signal stream and offers `remote` this session's
    /// credentials (with `socket`'s port as the WireGuard port), then
    /// `candidates`, one `CANDIDATE` each.
    pub async fn offer(
        nb: &NbPeer,
        channel: Channel,
        remote: &str,
        socket: UdpSocket,
        candidates: &[Candidate],
    ) -> IceLink {
        let agent = IceAgent::new(Credentials::random());
        let signal = SignalClient::new(channel, nb.secret.clone());
        let stream = signal.connect().await.unwrap();
        let mut offer = body(Type::Offer, &agent.local().to_string());
        offer.wg_listen_port = u32::from(socket.local_addr().unwrap().port());
        signal.send(remote, &offer).await.unwrap();
        for candidate in candidates {
            let announced = body(Type::Candidate, &candidate.to_string());
            signal.send(remote, &announced).await.unwrap();
        }
        IceLink {
            socket,
            agent,
            remote: remote.to_string(),
            signal,
            stream,
        }
    }

    /// The remote's credentials (from its answer, or its own offer) and
    /// its candidates, which a meshplane daemon (its version names
    /// `meshplane/`) sends within 10 s: those that came within
    /// [`CANDIDATES_AFTER`] of the first.
    pub async fn answer(&mut self) -> (Credentials, Vec<Candidate>) {
        let mut credentials = None;
        let mut candidates: Vec<Candidate> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut until = deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let got = match tokio::time::timeout(left, self.stream.recv()).await {
                Ok(got) => got.expect("no error").expect("not the end"),
                Err(_) => {
                    let credentials = credentials.expect("no answer within 10 s");
                    assert!(!candidates.is_empty(), "no candidate within 10 s");
                    return (credentials, candidates);
                }
            };
            if got.from != self.remote {
                continue;
            }
            match Type::try_from(got.body.r#type) {
                Ok(Type::Answer | Type::Offer) => {
                    assert!(got.body.net_bird_version.starts_with("meshplane/"));
                    credentials = Some(Credentials::parse(&got.body.payload).unwrap());
                }
                Ok(Type::Candidate) => {
                    candidates.push(got.body.payload.parse().unwrap());
                    until = until.min(Instant::now() + CANDIDATES_AFTER);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Whether the remote controls the checks: NetBird's rule, the higher
    /// key as base64 text.
    pub fn remote_controls(&self, own_key: &str) -> bool {
        self.remote.as_str() > own_key
    }

    /// Starts checking the remote at `targets` with its `credentials`, in
    /// the role NetBird's rule gives `own_key`.
    pub fn check(&mut self, own_key: &str, credentials: Credentials, targets: &[SocketAddr]) {
        let controlling = !self.remote_controls(own_key);
        let now = Instant::now();
        self.agent
            .set_remote(self.remote.clone(), credentials, controlling, now);
        self.agent.set_candidates(&self.remote, targets, now);
    }

    /// Sends the checks due, then takes what arrives within 100 ms:
    /// answers the remote's checks and counts its answers to ours
    /// (anything else, such as WireGuard probes, is dropped).
    pub async fn step(&mut self) -> Step {
        let mut step = Step::default();
        for (to, check) in self.agent.poll_transmit(Instant::now()) {
            self.socket.send_to(&check, to).await.unwrap();
        }
        let mut buf = [0u8; 1500];
        let wait =
            tokio::time::timeout(Duration::from_millis(100), self.socket.recv_from(&mut buf));
        let Ok(Ok((n, from))) = wait.await else {
            return step;
        };
        let packet = &buf[..n];
        let local = self.agent.local();
        let check = parse_ice_request(packet, &local.ufrag, &local.pwd);
        match self.agent.handle(packet, from, Instant::now()) {
            IceReceived::Answer(answer) => {
                self.socket.send_to(&answer, from).await.unwrap();
                step.checked = check;
            }
            IceReceived::Answered { peer, addr, .. } => {
                assert_eq!(peer, self.remote);
                step.answered = Some(addr);
            }
            IceReceived::NotOurs => {}
        }
        step
    }
}

/// The way [`wireguard_ping`]'s packets go.
pub enum Wire<'a> {
    /// UDP from the socket to the address.
    Direct(&'a UdpSocket, SocketAddr),
    /// Through the relay, to and from the peer with this id.
    Relayed(&'a RelaySender, &'a mut RelayReceiver, PeerId),
}

impl Wire<'_> {
    async fn send(&self, packet: &[u8]) {
        match self {
            Wire::Direct(socket, target) => {
                socket.send_to(packet, *target).await.unwrap();
            }
            Wire::Relayed(sender, _, to) => sender.send(to, packet).await.unwrap(),
        }
    }

    /// The next packet from the remote before `until`: its payload, and
    /// the UDP source it came from when direct.
    async fn recv_until(&mut self, until: Instant) -> Option<(Vec<u8>, Option<SocketAddr>)> {
        let until = tokio::time::Instant::from_std(until);
        match self {
            Wire::Direct(socket, _) => {
                let mut buf = [0u8; 2048];
                let got = tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await;
                let (n, from) = got.ok()?.ok()?;
                Some((buf[..n].to_vec(), Some(from)))
            }
            Wire::Relayed(_, receiver, remote) => loop {
                let (from, payload) = tokio::time::timeout_at(until, receiver.recv())
                    .await
                    .ok()?
                    .expect("the relay connection open");
                if from == *remote {
                    return Some((payload, None));
                }
            },
        }
    }
}

/// A WireGuard handshake between `nb` and the peer with key `remote_key`
/// over `wire`, then an ICMP echo request from `nb_ip` to `remote_ip`
/// answered through the tunnel (within 10 s).
pub async fn wireguard_ping(
    wire: &mut Wire<'_>,
    nb: &NbPeer,
    remote_key: &str,
    nb_ip: Ipv4Addr,
    remote_ip: Ipv4Addr,
) {
    use boringtun::noise::{Tunn, TunnResult};
    use boringtun::x25519::{PublicKey as WgPublic, StaticSecret};

    let remote = parse_public_key(remote_key).unwrap();
    let mut tunn = Tunn::new(
        StaticSecret::from(nb.secret.to_bytes()),
        WgPublic::from(*remote.as_bytes()),
        None,
        None,
        1,
        None,
    );
    let echo = echo_request(nb_ip, remote_ip, 0x1234, b"meshplane ice test");
    let mut out = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no echo reply through WireGuard");
        // Queued until the handshake is done; sent again every round.
        if let TunnResult::WriteToNetwork(p) = tunn.encapsulate(&echo, &mut out) {
            wire.send(p).await;
        }
        let until = Instant::now() + Duration::from_millis(300);
        while let Some((packet, from)) = wire.recv_until(until).await {
            let mut result = tunn.decapsulate(from.map(|f| f.ip()), &packet, &mut out);
            loop {
                match result {
                    TunnResult::WriteToNetwork(p) => {
                        wire.send(p).await;
                        // Packets queued behind the handshake follow.
                        result = tunn.decapsulate(None, &[], &mut out);
                    }
                    TunnResult::WriteToTunnelV4(packet, src) => {
                        // An echo reply (ICMP type 0) from the remote.
                        if src == remote_ip
                            && packet.len() > 20
                            && packet[9] == 1
                            && packet[20] == 0
                        {
                            return;
                        }
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// An IPv4 ICMP echo request from `src` to `dst` with identifier `ident`,
/// sequence number 1 and `payload`, both checksums filled in.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, payload: &[u8]) -> Vec<u8> {
    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&ident.to_be_bytes());
    icmp.extend_from_slice(&1u16.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = u16::try_from(20 + icmp.len()).unwrap();
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 0, 64, 1, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let sum = checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(&icmp);
    packet
}
