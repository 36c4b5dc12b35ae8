//! The relay over real WebSocket connections on loopback: a relay served
//! by `meshplane_relay::server::serve`, clients with tokens minted by a
//! signing key the test holds, and raw WebSocket clients for what a
//! well-behaved client never sends.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use futures_util::{SinkExt as _, StreamExt as _};
use meshplane_relay::protocol::{self, MsgType, ServerFrame, MAX_MESSAGE_SIZE};
use meshplane_relay::{
    Limits, PeerId, Relay, RelayClient, RelayError, RelayReceiver, RelaySender, Token, TokenSigner,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Generous bound on anything the relay should do at once.
const PROMPT: Duration = Duration::from_secs(10);

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A relay on a loopback port and the key its tokens are signed with.
struct TestRelay {
    url: String,
    addr: SocketAddr,
    signer: TokenSigner,
    relay: Relay,
}

impl TestRelay {
    async fn start(limits: Limits) -> TestRelay {
        let signer = TokenSigner::generate().unwrap();
        let relay = Relay::new(signer.verifier(), limits);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(meshplane_relay::server::serve(
            listener,
            relay.clone(),
            Router::new(),
            std::future::pending(),
        ));
        TestRelay {
            url: format!("rel://{addr}"),
            addr,
            signer,
            relay,
        }
    }

    /// A token for the holder of `key`.
    fn token(&self, key: &str) -> Token {
        self.signer
            .mint(&PeerId::from_public_key(key), unix_now() + 600)
    }

    async fn connect(&self, key: &str) -> (RelaySender, RelayReceiver) {
        RelayClient::connect(&self.url, key, &self.token(key))
            .await
            .unwrap()
    }

    /// A raw WebSocket to the relay.
    async fn raw(
        &self,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/relay", self.addr))
            .await
            .unwrap();
        socket
    }
}

/// The next payload, within [`PROMPT`].
async fn next(receiver: &mut RelayReceiver) -> Option<(PeerId, Vec<u8>)> {
    tokio::time::timeout(PROMPT, receiver.recv()).await.unwrap()
}

/// The next binary frame from a raw socket (None when it closed).
async fn next_raw<S>(socket: &mut S) -> Option<Vec<u8>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(PROMPT, socket.next()).await.unwrap() {
            Some(Ok(Message::Binary(frame))) => return Some(frame.to_vec()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn packets_reach_the_named_peer_with_the_senders_id() {
    let relay = TestRelay::start(Limits::default()).await;
    let (a, mut from_a) = relay.connect("key-a").await;
    let (b, mut from_b) = relay.connect("key-b").await;
    assert_eq!(a.instance_url(), relay.url);
    let (id_a, id_b) = (
        PeerId::from_public_key("key-a"),
        PeerId::from_public_key("key-b"),
    );
    a.send(&id_b, b"hello b").await.unwrap();
    assert_eq!(next(&mut from_b).await, Some((id_a, b"hello b".to_vec())));
    b.send(&id_a, b"hello a").await.unwrap();
    assert_eq!(next(&mut from_a).await, Some((id_b, b"hello a".to_vec())));
    // The data plane's non-waiting send.
    assert!(a.try_send(&id_b, b"no wait").unwrap());
    assert_eq!(next(&mut from_b).await, Some((id_a, b"no wait".to_vec())));
    // The largest payload passes whole.
    let big = vec![7; protocol::MAX_PAYLOAD_SIZE];
    a.send(&id_b, &big).await.unwrap();
    assert_eq!(next(&mut from_b).await, Some((id_a, big)));
    assert!(matches!(
        a.send(&id_b, &[0; protocol::MAX_PAYLOAD_SIZE + 1]).await,
        Err(RelayError::Protocol(_))
    ));
    assert_eq!(relay.relay.peers(), 2);
}

/// A userspace TCP sender puts its whole window on the wire at once:
/// hundreds of full-size packets. The relay must pass such a burst whole
/// (its queue is bounded in bytes, not in frames), or the sender's TCP
/// stalls on the losses.
#[tokio::test]
async fn a_burst_of_a_windows_packets_passes_whole() {
    const PACKETS: usize = 300;
    let relay = TestRelay::start(Limits::default()).await;
    let (a, _from_a) = relay.connect("key-a").await;
    let (_b, mut from_b) = relay.connect("key-b").await;
    let id_b = PeerId::from_public_key("key-b");
    let received = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < PACKETS {
            match tokio::time::timeout(Duration::from_secs(2), from_b.recv()).await {
                Ok(Some((_, packet))) => got.push(packet),
                Ok(None) | Err(_) => break,
            }
        }
        got
    });
    // Neither client drops what it is given here: only the relay could.
    for i in 0..PACKETS {
        a.send(&id_b, &vec![(i % 251) as u8; 1400]).await.unwrap();
    }
    let got = received.await.unwrap();
    assert_eq!(got.len(), PACKETS, "packets dropped at the relay");
    for (i, packet) in got.iter().enumerate() {
        assert_eq!(packet, &vec![(i % 251) as u8; 1400], "packet {i}");
    }
}

#[tokio::test]
async fn a_peer_receives_only_what_is_addressed_to_it() {
    let relay = TestRelay::start(Limits::default()).await;
    let (a, _from_a) = relay.connect("key-a").await;
    let (_b, mut from_b) = relay.connect("key-b").await;
    let (_c, mut from_c) = relay.connect("key-c").await;
    let (id_b, id_c) = (
        PeerId::from_public_key("key-b"),
        PeerId::from_public_key("key-c"),
    );
    // The relay handles one connection's frames in order: had the first
    // reached C, it would arrive before the second.
    a.send(&id_b, b"for b only").await.unwrap();
    a.send(&id_c, b"for c").await.unwrap();
    assert_eq!(next(&mut from_c).await.unwrap().1, b"for c");
    assert_eq!(next(&mut from_b).await.unwrap().1, b"for b only");
    // A frame for a peer that is not connected goes nowhere, and the
    // sender's connection carries on.
    a.send(&PeerId::from_public_key("nobody"), b"lost")
        .await
        .unwrap();
    a.send(&id_c, b"still here").await.unwrap();
    assert_eq!(next(&mut from_c).await.unwrap().1, b"still here");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let relay = TestRelay::start(Limits::default()).await;
    let refused = |result: Result<(RelaySender, RelayReceiver), RelayError>| match result {
        Err(RelayError::Refused(why)) => why,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("accepted"),
    };
    // Expired.
    let expired = relay
        .signer
        .mint(&PeerId::from_public_key("key-a"), unix_now() - 1);
    let why = refused(RelayClient::connect(&relay.url, "key-a", &expired).await);
    assert_eq!(why, "relay token expired");
    // Another peer's token: B cannot pose as A, nor A use B's token.
    let b_token = relay.token("key-b");
    let why = refused(RelayClient::connect(&relay.url, "key-a", &b_token).await);
    assert_eq!(why, "relay token was issued for another peer");
    // Signed by another key (another management server).
    let stranger = TokenSigner::generate().unwrap();
    let forged = stranger.mint(&PeerId::from_public_key("key-a"), unix_now() + 600);
    let why = refused(RelayClient::connect(&relay.url, "key-a", &forged).await);
    assert_eq!(why, "relay token signature does not verify");
    // A payload changed after signing.
    let mut tampered = relay.token("key-a");
    tampered.payload = tampered.payload.replacen('1', "9", 1);
    let why = refused(RelayClient::connect(&relay.url, "key-a", &tampered).await);
    assert_eq!(why, "relay token signature does not verify");
    // No token at all, and a first frame that is no auth frame.
    let mut raw = relay.raw().await;
    let auth = protocol::auth(&PeerId::from_public_key("key-a"), &[]).unwrap();
    raw.send(Message::Binary(auth.into())).await.unwrap();
    assert_eq!(next_raw(&mut raw).await, None);
    let mut raw = relay.raw().await;
    let transport = protocol::transport(&PeerId::from_public_key("key-b"), b"x").unwrap();
    raw.send(Message::Binary(transport.into())).await.unwrap();
    assert_eq!(next_raw(&mut raw).await, None);
    assert_eq!(relay.relay.peers(), 0);
    // The one with a good token gets in.
    relay.connect("key-a").await;
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older() {
    let relay = TestRelay::start(Limits::default()).await;
    let (_old, mut old_in) = relay.connect("key-a").await;
    let (_new, mut new_in) = relay.connect("key-a").await;
    // The old connection is closed by the relay.
    assert_eq!(next(&mut old_in).await, None);
    let (b, _) = relay.connect("key-b").await;
    b.send(&PeerId::from_public_key("key-a"), b"to the new one")
        .await
        .unwrap();
    assert_eq!(next(&mut new_in).await.unwrap().1, b"to the new one");
    assert_eq!(relay.relay.peers(), 2);
}

#[tokio::test]
async fn connection_caps_hold() {
    let limits = Limits {
        max_connections_per_address: 2,
        ..Limits::default()
    };
    let relay = TestRelay::start(limits).await;
    let _one = relay.connect("key-a").await;
    let _two = relay.connect("key-b").await;
    match RelayClient::connect(&relay.url, "key-c", &relay.token("key-c")).await {
        Err(RelayError::WebSocket(why)) => assert!(why.contains("429"), "{why}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a third connection from one address was accepted"),
    }
    // A slot frees when a connection ends.
    drop(_one);
    let deadline = tokio::time::Instant::now() + PROMPT;
    while relay.relay.connections() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.connect("key-c").await;
}

#[tokio::test]
async fn silent_and_oversized_clients_are_closed() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let relay = TestRelay::start(limits).await;
    // Never authenticates.
    let mut silent = relay.raw().await;
    assert_eq!(next_raw(&mut silent).await, None);
    // A frame above the maximum ends the connection.
    let (_a, _) = relay.connect("key-a").await;
    let mut raw = relay.raw().await;
    let token = relay.token("key-z").to_wire().unwrap();
    let auth = protocol::auth(&PeerId::from_public_key("key-z"), &token).unwrap();
    raw.send(Message::Binary(auth.into())).await.unwrap();
    let response = next_raw(&mut raw).await.unwrap();
    assert!(matches!(
        ServerFrame::parse(&response),
        Ok(ServerFrame::AuthResponse { .. })
    ));
    let mut huge = protocol::transport(&PeerId::from_public_key("key-a"), &[]).unwrap();
    huge.resize(MAX_MESSAGE_SIZE + 1, 0);
    let _ = raw.send(Message::Binary(huge.into())).await;
    assert_eq!(next_raw(&mut raw).await, None);
}

#[tokio::test]
async fn unanswered_health_checks_close_the_connection() {
    let limits = Limits {
        health_interval: Duration::from_millis(100),
        // Generous for a loaded machine: the answering clients must never
        // miss it.
        health_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let relay = TestRelay::start(limits).await;
    // The client answers health checks on its own.
    let (a, _) = relay.connect("key-a").await;
    let (_b, mut from_b) = relay.connect("key-b").await;
    // A raw client that never answers is asked, then closed.
    let mut raw = relay.raw().await;
    let token = relay.token("key-z").to_wire().unwrap();
    let auth = protocol::auth(&PeerId::from_public_key("key-z"), &token).unwrap();
    raw.send(Message::Binary(auth.into())).await.unwrap();
    let mut asked = 0;
    while let Some(frame) = next_raw(&mut raw).await {
        if ServerFrame::parse(&frame) == Ok(ServerFrame::HealthCheck) {
            asked += 1;
        }
    }
    assert!(asked >= 1);
    // By now several checks went by: the answering clients still work.
    a.send(&PeerId::from_public_key("key-b"), b"alive")
        .await
        .unwrap();
    assert_eq!(next(&mut from_b).await.unwrap().1, b"alive");
}

#[tokio::test]
async fn peer_state_subscriptions_are_answered() {
    let relay = TestRelay::start(Limits::default()).await;
    let (b, _) = relay.connect("key-b").await;
    let (id_b, id_c) = (
        PeerId::from_public_key("key-b"),
        PeerId::from_public_key("key-c"),
    );
    let mut raw = relay.raw().await;
    let token = relay.token("key-a").to_wire().unwrap();
    let auth = protocol::auth(&PeerId::from_public_key("key-a"), &token).unwrap();
    raw.send(Message::Binary(auth.into())).await.unwrap();
    next_raw(&mut raw).await.unwrap();
    let subscribe = protocol::peer_state(MsgType::SubscribePeerState, &[id_b, id_c]).unwrap();
    raw.send(Message::Binary(subscribe[0].clone().into()))
        .await
        .unwrap();
    let online = next_raw(&mut raw).await.unwrap();
    assert_eq!(
        ServerFrame::parse(&online),
        Ok(ServerFrame::PeersOnline(vec![id_b]))
    );
    // C comes online: announced once.
    let (_c, _) = relay.connect("key-c").await;
    let online = next_raw(&mut raw).await.unwrap();
    assert_eq!(
        ServerFrame::parse(&online),
        Ok(ServerFrame::PeersOnline(vec![id_c]))
    );
    // B leaves.
    drop(b);
    let offline = next_raw(&mut raw).await.unwrap();
    assert_eq!(
        ServerFrame::parse(&offline),
        Ok(ServerFrame::PeersWentOffline(vec![id_b]))
    );
}

#[tokio::test]
async fn shutdown_closes_connections_with_a_close_frame() {
    let relay = TestRelay::start(Limits::default()).await;
    let (a, mut from_a) = relay.connect("key-a").await;
    relay.relay.shutdown();
    assert_eq!(next(&mut from_a).await, None);
    assert!(matches!(
        a.send(&PeerId::from_public_key("key-b"), b"x").await,
        Err(RelayError::Closed)
    ));
    assert!(a.is_closed());
    assert!(
        RelayClient::connect(&relay.url, "key-b", &relay.token("key-b"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn plain_requests_are_told_to_upgrade() {
    let relay = TestRelay::start(Limits::default()).await;
    let mut stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(b"GET /relay HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(answer.contains("WebSocket"), "{answer}");
}
