//! Stock NetBird clients' protocol against the real server binary, driven
//! by our own NetBird-protocol client ([`common::netbird`]): registration
//! with a setup key after the PERMISSION_DENIED a stock client expects,
//! maps on the Sync stream, candidates through the signal exchange,
//! packets through the relay with NetBird's HMAC tokens, and the map,
//! signal and login following REST changes (a policy deleted, a user
//! blocked, a peer deleted or logged out), `netbird expose`'s calls
//! served by the same sessions as our daemons', and a NetBird peer and a
//! `meshplane daemon` in one mesh.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::client::{assert_status, now, reusable, run, set_expose, Peer, PROMPT};
use common::netbird::{
    body, map_until, next_signal, pinging_channel, wireguard_ping, IceLink, NbPeer, Wire,
};
use common::{meshplane_binary, Server};
use meshplane_proto::netbird::{
    DeviceAuthorizationFlowRequest, Empty, ExposeServiceRequest, ExposeServiceResponse, NetworkMap,
    PkceAuthorizationFlowRequest, RenewExposeRequest, StopExposeRequest, SyncResponse,
};
use meshplane_proto::signal::body::Type;
use meshplane_proto::signal::client::{SignalClient, SignalError};
use meshplane_relay::{PeerId, RelayClient, Token};
use serde_json::json;
use tonic::{Code, Streaming};

/// A NetBird peer's Sync stream.
type SyncStream = Streaming<meshplane_proto::netbird::EncryptedMessage>;

/// The proxy domain of the test servers.
const PROXY_DOMAIN: &str = "proxy.localhost";

/// The remote peers' keys of a map.
fn keys(map: &NetworkMap) -> Vec<&str> {
    map.remote_peers
        .iter()
        .map(|p| p.wg_pub_key.as_str())
        .collect()
}

/// The map of a Sync message, which must carry one.
fn map_of(response: SyncResponse) -> NetworkMap {
    response.network_map.expect("a map in the response")
}

/// The REST record of the peer called `name`.
fn rest_peer(s: &Server, name: &str) -> serde_json::Value {
    s.get("/api/peers")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {name}"))
}

/// The status a stream ends with.
async fn ended(peer: &NbPeer, stream: &mut SyncStream) -> tonic::Status {
    loop {
        match peer.next_sync(stream).await {
            Ok(_) => continue,
            Err(status) => return status,
        }
    }
}

/// Sends until the server refuses with `code` (visibility follows store
/// changes a moment after the REST call returns).
async fn until_refused(from: &SignalClient, to: &str, code: Code) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match from.send(to, &body(Type::Candidate, "probe")).await {
            Err(SignalError::Status(status)) if status.code() == code => return,
            other => assert!(
                Instant::now() < deadline,
                "still not refused with {code:?}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn netbird_peers_register_sync_signal_and_relay() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        // Pings every second: the server must take them as stock clients'
        // 30 s pings, without closing the connection.
        let channel = pinging_channel(&s.base, Duration::from_secs(1)).await;
        let mut a = NbPeer::connect(channel.clone(), "nb-alpha").await;
        let mut b = NbPeer::connect(channel.clone(), "nb-beta").await;

        // Unknown and without a key: exactly PERMISSION_DENIED.
        assert_status(
            a.login("").await,
            Code::PermissionDenied,
            "peer is not registered: a setup key is required to register it",
        );
        let login = a.up(&key).await.unwrap();
        b.up(&key).await.unwrap();
        // Registered: a login without a key now succeeds.
        a.login("").await.unwrap();

        let own = login.peer_config.unwrap();
        assert!(own.address.starts_with("100."), "{}", own.address);
        assert!(own.address.ends_with("/16"), "{}", own.address);
        assert!(own.fqdn.starts_with("nb-alpha."), "{}", own.fqdn);
        let config = login.netbird_config.unwrap();
        let authority = format!("127.0.0.1:{}", s.port);
        assert_eq!(config.signal.unwrap().uri, authority);
        assert_eq!(config.stuns.len(), 1);
        assert_eq!(config.stuns[0].uri, format!("stun:{authority}"));
        let relay = config.relay.unwrap();
        assert_eq!(relay.urls, [format!("rel://{authority}")]);
        let expiry: i64 = relay.token_payload.parse().unwrap();
        assert!(expiry > now().as_millis() / 1000);

        // Each sees the other, with its address as a /32.
        let mut a_sync = a.sync().await.unwrap();
        let mut b_sync = b.sync().await.unwrap();
        let first = a.next_sync(&mut a_sync).await.unwrap();
        assert!(first.netbird_config.is_some());
        assert_eq!(
            first.peer_config,
            first.network_map.as_ref().unwrap().peer_config
        );
        let a_map = map_of(first);
        assert_eq!(keys(&a_map), [b.key.as_str()]);
        assert!(!a_map.remote_peers_is_empty);
        let b_ip = rest_peer(&s, "nb-beta")["ip"].as_str().unwrap().to_string();
        assert_eq!(a_map.remote_peers[0].allowed_ips, [format!("{b_ip}/32")]);
        assert!(!a_map.firewall_rules_is_empty);
        // The default policy joins everyone: one rule each way for every
        // peer (0.0.0.0, and 0.0.0.0/0 compact).
        for rule in &a_map.firewall_rules {
            assert_eq!(rule.peer_ip, "0.0.0.0");
            assert_eq!(rule.source_prefixes, [vec![0, 0, 0, 0, 0]]);
        }
        assert!(a_map.serial > 0);
        let b_first = b.next_sync(&mut b_sync).await.unwrap();
        let b_relay = b_first.netbird_config.clone().unwrap().relay.unwrap();
        let b_relay = Token {
            payload: b_relay.token_payload,
            signature: b_relay.token_signature,
        };
        let b_map = map_of(b_first);
        assert_eq!(keys(&b_map), [a.key.as_str()]);

        // Candidates through the signal exchange, as stock clients send
        // them (no proof of the key: NetBird's wire has none).
        let a_signal = SignalClient::new(channel.clone(), a.secret.clone());
        let b_signal = SignalClient::new(channel.clone(), b.secret.clone());
        let mut a_in = a_signal.connect().await.unwrap();
        let mut b_in = b_signal.connect().await.unwrap();
        let offer = body(Type::Offer, "ufrag:pwd");
        a_signal.send(&b.key, &offer).await.unwrap();
        let got = next_signal(&mut b_in).await;
        assert_eq!((got.from.as_str(), &got.body), (a.key.as_str(), &offer));
        let candidate = body(
            Type::Candidate,
            "candidate:1 1 udp 1 127.0.0.1 51820 typ host",
        );
        b_signal.send(&a.key, &candidate).await.unwrap();
        assert_eq!(next_signal(&mut a_in).await.body, candidate);

        // Packets through the relay on the same port, with NetBird's HMAC
        // tokens from the login and from b's Sync.
        let a_token = Token {
            payload: relay.token_payload.clone(),
            signature: relay.token_signature.clone(),
        };
        let (to_b, mut at_a) = RelayClient::connect(&relay.urls[0], &a.key, &a_token)
            .await
            .unwrap();
        let (to_a, mut at_b) = RelayClient::connect(&relay.urls[0], &b.key, &b_relay)
            .await
            .unwrap();
        let (id_a, id_b) = (
            PeerId::from_public_key(&a.key),
            PeerId::from_public_key(&b.key),
        );
        to_b.send(&id_b, b"wireguard for b").await.unwrap();
        let got = tokio::time::timeout(PROMPT, at_b.recv()).await.unwrap();
        assert_eq!(got, Some((id_a, b"wireguard for b".to_vec())));
        to_a.send(&id_a, b"wireguard for a").await.unwrap();
        let got = tokio::time::timeout(PROMPT, at_a.recv()).await.unwrap();
        assert_eq!(got, Some((id_b, b"wireguard for a".to_vec())));
        // A token whose expiry was moved no longer matches its tag.
        let forged = Token {
            payload: (expiry + 1).to_string(),
            signature: relay.token_signature.clone(),
        };
        assert!(RelayClient::connect(&relay.urls[0], &a.key, &forged)
            .await
            .is_err());

        // Three seconds of keep-alive pings every second: the connection
        // and its streams stay (the Sync streams receive the next change).
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Deleting the policies takes each out of the other's map, with the
        // lists flagged empty so clients drop what they had; signal
        // between them is refused.
        for policy in s.get("/api/policies").as_array().unwrap() {
            s.delete(&format!("/api/policies/{}", policy["id"].as_str().unwrap()));
        }
        let a_map = map_until(&a, &mut a_sync, |m| m.remote_peers.is_empty()).await;
        assert!(a_map.remote_peers_is_empty);
        assert!(a_map.firewall_rules_is_empty);
        map_until(&b, &mut b_sync, |m| m.remote_peers.is_empty()).await;
        until_refused(&a_signal, &b.key, Code::PermissionDenied).await;

        // A peer whose user is blocked is cut off and refused.
        let user = s.post(
            "/api/users",
            json!({"email": "nb@example.com", "name": "nb", "role": "user",
                "auto_groups": [], "is_service_user": false}),
        );
        let user_id = user["id"].as_str().unwrap();
        let b_id = rest_peer(&s, "nb-beta")["id"].as_str().unwrap().to_string();
        // A direct store write, from outside the runtime.
        std::thread::scope(|t| t.spawn(|| s.set_peer_user(&b_id, user_id)).join().unwrap());
        s.put(
            &format!("/api/users/{user_id}"),
            json!({"role": "user", "auto_groups": [], "is_blocked": true}),
        );
        assert_eq!(ended(&b, &mut b_sync).await.code(), Code::PermissionDenied);
        assert_status(b.login("").await, Code::PermissionDenied, "user is blocked");
        assert_eq!(b.sync().await.unwrap_err().code(), Code::PermissionDenied);

        a.client.is_healthy(Empty {}).await.unwrap();
    });
}

#[test]
fn netbird_requests_are_checked_and_peers_leave() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let channel = s.channel().await;
        let mut a = NbPeer::connect(channel.clone(), "nb-gamma").await;
        a.up(&key).await.unwrap();

        // The same encrypted request twice: the second is a replay.
        let sealed = a.seal(&a.login_request(""));
        a.client.login(sealed.clone()).await.unwrap();
        assert_status(
            a.client.login(sealed).await,
            Code::Unauthenticated,
            "message was already received",
        );
        // A request boxed by another key than the one it names.
        let thief = NbPeer::connect(channel.clone(), "thief").await;
        let mut forged = thief.seal(&a.login_request(""));
        forged.wg_pub_key = a.key.clone();
        assert_status(
            a.client.login(forged).await,
            Code::Unauthenticated,
            "message could not be authenticated",
        );

        // No SSO flow is configured: NOT_FOUND, as NetBird's server says
        // when it has none, which makes clients use the setup key.
        let pkce = a.seal(&PkceAuthorizationFlowRequest {});
        let got = a.client.get_pkce_authorization_flow(pkce).await;
        assert_eq!(got.unwrap_err().code(), Code::NotFound);
        let device = a.seal(&DeviceAuthorizationFlowRequest {});
        let got = a.client.get_device_authorization_flow(device).await;
        assert_eq!(got.unwrap_err().code(), Code::NotFound);
        // Jobs are not offered.
        let job = a.client.job(tokio_stream_once(a.seal(&Empty {}))).await;
        assert_eq!(job.unwrap_err().code(), Code::Unimplemented);
        // The server key comes with the time to fetch it again.
        let server_key = a
            .client
            .get_server_key(Empty {})
            .await
            .unwrap()
            .into_inner();
        assert!(server_key.expires_at.unwrap().seconds > now().as_millis() / 1000);

        // Deleted over REST: the stream ends and a login is refused with
        // PERMISSION_DENIED, which makes a stock client stop.
        let mut stream = a.sync().await.unwrap();
        a.next_sync(&mut stream).await.unwrap();
        let id = rest_peer(&s, "nb-gamma")["id"]
            .as_str()
            .unwrap()
            .to_string();
        s.delete(&format!("/api/peers/{id}"));
        assert_eq!(ended(&a, &mut stream).await.code(), Code::PermissionDenied);
        assert_eq!(
            a.login("").await.unwrap_err().code(),
            Code::PermissionDenied
        );

        // Registered again, then logged out: the peer is gone.
        a.up(&key).await.unwrap();
        rest_peer(&s, "nb-gamma");
        let logout = a.seal(&Empty {});
        a.client.logout(logout).await.unwrap();
        let names: Vec<String> = s
            .get("/api/peers")
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        assert!(!names.contains(&"nb-gamma".to_string()), "{names:?}");
        assert_eq!(
            a.login("").await.unwrap_err().code(),
            Code::PermissionDenied
        );
    });
}

/// A client stream of one message.
fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl tonic::codegen::tokio_stream::Stream<Item = T> {
    tonic::codegen::tokio_stream::iter([item])
}

#[test]
fn netbird_expose_uses_the_same_sessions() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let channel = s.channel().await;
        let mut a = NbPeer::connect(channel.clone(), "nb-laptop").await;
        a.up(&key).await.unwrap();
        let request = ExposeServiceRequest {
            port: 8080,
            name_prefix: "demo".into(),
            ..ExposeServiceRequest::default()
        };

        // Off for the account: refused with our daemons' message.
        let refused = a.client.create_expose(a.seal(&request)).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

        set_expose(&s, true, &[]);
        let mut proxy = Peer::connect(&s, "proxy").await;
        let proxy_id = proxy.login(&key).await.unwrap().peer_id;
        s.post(
            "/api/groups",
            json!({"name": "proxies", "peers": [proxy_id]}),
        );
        let mut tables = proxy.watch_services(PROXY_DOMAIN).await.unwrap();
        assert!(proxy.next_table(&mut tables).await.services.is_empty());

        let answer = a.client.create_expose(a.seal(&request)).await.unwrap();
        let created: ExposeServiceResponse = a.open(&answer.into_inner());
        assert!(created.domain.starts_with("demo-"), "{created:?}");
        assert!(created.domain.ends_with(PROXY_DOMAIN), "{created:?}");
        assert_eq!(created.service_url, format!("https://{}", created.domain));
        assert!(!created.port_auto_assigned);
        // The proxy serves it; REST lists it.
        let table = proxy.next_table(&mut tables).await;
        assert_eq!(table.services.len(), 1);
        assert_eq!(
            s.get("/api/reverse-proxies/services")
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let renew = RenewExposeRequest {
            domain: created.domain.clone(),
        };
        a.client.renew_expose(a.seal(&renew)).await.unwrap();
        let stop = StopExposeRequest {
            domain: created.domain.clone(),
        };
        a.client.stop_expose(a.seal(&stop)).await.unwrap();
        assert!(proxy.next_table(&mut tables).await.services.is_empty());
        let gone = a.client.renew_expose(a.seal(&renew)).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    });
}

/// A `meshplane daemon --netstack` process, stopped when dropped.
struct Daemon {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(s: &Server) -> Daemon {
        let dir = s.data_dir().join("daemon");
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("control.sock");
        let child = std::process::Command::new(meshplane_binary())
            .arg("daemon")
            .arg("--netstack")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the daemon never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, socket }
    }

    /// A daemon started and brought up on `s` with setup key `key`; its
    /// WireGuard public key and mesh address.
    fn joined(s: &Server, key: &str) -> (Daemon, String, Ipv4Addr) {
        let daemon = Daemon::start(s);
        daemon.cli(
            &["up", "--management-url", &s.base],
            &[("MESHPLANE_SETUP_KEY", key)],
        );
        let status = daemon.status();
        let public_key = status["public_key"].as_str().unwrap().to_string();
        let ip = status["ip"].as_str().unwrap().parse().unwrap();
        (daemon, public_key, ip)
    }

    /// Runs the CLI against this daemon; its stdout.
    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = std::process::Command::new(meshplane_binary())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli(&["status", "--json"], &[])).unwrap()
    }
}

#[test]
fn a_netbird_peer_and_a_meshplane_daemon_share_a_mesh() {
    let s = Server::start(common::Backend::Sqlite);
    let key = reusable(&s);
    let (daemon, daemon_key, daemon_ip) = Daemon::joined(&s, &key);
    run(async {
        let channel = s.channel().await;
        let mut nb = NbPeer::connect(channel.clone(), "nb-mixed").await;
        nb.up(&key).await.unwrap();
        let mut stream = nb.sync().await.unwrap();
        let map = map_until(&nb, &mut stream, |m| !m.remote_peers.is_empty()).await;
        assert_eq!(keys(&map), [daemon_key.as_str()]);
        assert_eq!(map.remote_peers[0].allowed_ips, [format!("{daemon_ip}/32")]);
        // The daemon lists the NetBird peer from its own map.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = tokio::task::block_in_place(|| daemon.status());
            let listed = status["peers"].as_array().unwrap().iter().any(|p| {
                p["fqdn"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("nb-mixed."))
            });
            if listed {
                break;
            }
            assert!(Instant::now() < deadline, "{status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Signal passes between them.
        let signal = SignalClient::new(channel, nb.secret.clone());
        signal
            .send(&daemon_key, &body(Type::Offer, "ufrag:pwd"))
            .await
            .unwrap();
    });
}

/// A NetBird peer checks its path to a meshplane daemon with ICE, as
/// NetBird's clients do before they use a direct path: the daemon answers
/// checks keyed by the credentials of its answer, checks the NetBird peer
/// with the credentials of the peer's offer, in the role NetBird's rule
/// gives it, and nominates when it controls. The daemon's socket listens on
/// every address, so the checks go to it over loopback at the port of its
/// candidates.
///
/// Both roles: one NetBird peer whose key sorts above the daemon's (it
/// controls) and one whose key sorts below (the daemon controls).
#[test]
fn a_meshplane_daemon_answers_and_sends_ice_checks() {
    let s = Server::start(common::Backend::Sqlite);
    let key = reusable(&s);
    let (daemon, daemon_key, daemon_ip) = Daemon::joined(&s, &key);
    run(async {
        for daemon_controls in [true, false] {
            let channel = s.channel().await;
            let mut nb = NbPeer::connect(channel.clone(), "nb-ice").await;
            while (daemon_key > nb.key) != daemon_controls {
                nb = NbPeer::connect(channel.clone(), "nb-ice").await;
            }
            // Once: the path stays direct on ICE checks alone.
            let hold = daemon_controls.then_some(&daemon);
            ice_checks(&key, &daemon_key, &daemon_ip, nb, channel, hold).await;
        }
    });
}

/// Registers `nb`, offers the daemon ICE credentials and checks with it
/// until the daemon answered, checked back, and (when it controls)
/// nominated; then pings the daemon through WireGuard over the checked
/// address. With `hold`, it then stays idle but for the ICE checks, as a
/// NetBird client's idle path is (it sends no WireGuard keep-alives), past
/// the path machine's 6 s `dead_after`, and the daemon must still reach it
/// directly.
async fn ice_checks(
    key: &str,
    daemon_key: &str,
    daemon_ip: &Ipv4Addr,
    mut nb: NbPeer,
    channel: tonic::transport::Channel,
    hold: Option<&Daemon>,
) {
    use meshplane_core::connect::Candidate;
    use meshplane_proto::stun::IceRole;

    let login = nb.up(key).await.unwrap();
    let address = login.peer_config.unwrap().address;
    let nb_ip: Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    let mut sync = nb.sync().await.unwrap();
    map_until(&nb, &mut sync, |m| {
        m.remote_peers.iter().any(|p| p.wg_pub_key == daemon_key)
    })
    .await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let host = [Candidate::host(local)];
    let mut ice = IceLink::offer(&nb, channel, daemon_key, socket, &host).await;

    // The daemon's answer carries its credentials, then its candidates.
    let (remote, candidates) = ice.answer().await;
    let target: std::net::SocketAddr = ([127, 0, 0, 1], candidates[0].addr.port()).into();
    let daemon_controls = ice.remote_controls(&nb.key);
    ice.check(&nb.key, remote, &[target]);

    let mut answered = false;
    let mut checked = false;
    let mut nominated = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(answered && checked && nominated == daemon_controls) {
        assert!(
            Instant::now() < deadline,
            "answered {answered}, checked {checked}, nominated {nominated}"
        );
        let step = ice.step().await;
        if let Some(check) = step.checked {
            // The daemon's role is NetBird's rule's.
            match check.role {
                Some(IceRole::Controlling(_)) => assert!(daemon_controls),
                Some(IceRole::Controlled(_)) => assert!(!daemon_controls),
                None => panic!("a check without a role"),
            }
            checked = true;
            nominated |= check.use_candidate;
        }
        if let Some(addr) = step.answered {
            assert_eq!(addr, target);
            answered = true;
        }
    }
    let mut wire = Wire::Direct(&ice.socket, target);
    wireguard_ping(&mut wire, &nb, daemon_key, nb_ip, *daemon_ip).await;
    let Some(daemon) = hold else {
        return;
    };
    // The daemon's WireGuard keep-alives go unanswered, as NetBird's do.
    let idle_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < idle_until {
        ice.step().await;
    }
    let status = tokio::task::block_in_place(|| daemon.status());
    let peer = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["public_key"] == nb.key.as_str())
        .unwrap()
        .clone();
    assert_eq!(peer["connection"], "direct", "{peer}");
}

/// NetBird peers `nb-alpha` and `nb-beta` registered with a reusable
/// key, each with its Sync stream open.
async fn alpha_and_beta(
    s: &Server,
    channel: &tonic::transport::Channel,
) -> ((NbPeer, SyncStream), (NbPeer, SyncStream)) {
    let key = reusable(s);
    let mut synced = Vec::new();
    for name in ["nb-alpha", "nb-beta"] {
        let mut peer = NbPeer::connect(channel.clone(), name).await;
        peer.up(&key).await.unwrap();
        let stream = peer.sync().await.unwrap();
        synced.push((peer, stream));
    }
    let b = synced.pop().unwrap();
    (synced.pop().unwrap(), b)
}

/// Approval as for our daemons: a NetBird peer that must be approved
/// reaches nothing and is reached by nothing (its map and the other peer's
/// lose each other), and approving it gives both back, all on the open
/// Sync streams.
#[test]
fn a_netbird_peer_pending_approval_reaches_nothing_until_approved() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let channel = s.channel().await;
        let ((a, mut a_sync), (b, mut b_sync)) = alpha_and_beta(&s, &channel).await;
        let sees = |key: &str| {
            let key = key.to_string();
            move |m: &NetworkMap| keys(m) == [key.as_str()]
        };
        map_until(&a, &mut a_sync, sees(&b.key)).await;
        map_until(&b, &mut b_sync, sees(&a.key)).await;

        let b_id = rest_peer(&s, "nb-beta")["id"].as_str().unwrap().to_string();
        let approval = |required: bool| json!({"name": "nb-beta", "approval_required": required});
        s.put(&format!("/api/peers/{b_id}"), approval(true));
        let a_map = map_until(&a, &mut a_sync, |m| m.remote_peers.is_empty()).await;
        assert!(a_map.remote_peers_is_empty);
        map_until(&b, &mut b_sync, |m| m.remote_peers.is_empty()).await;

        s.put(&format!("/api/peers/{b_id}"), approval(false));
        map_until(&a, &mut a_sync, sees(&b.key)).await;
        map_until(&b, &mut b_sync, sees(&a.key)).await;
    });
}

/// The shortest login expiration the API takes, in seconds.
const LOGIN_EXPIRATION: i64 = 3600;
/// What the server answers a peer whose login expired, as NetBird's does.
const LOGIN_EXPIRED: &str = "peer login has expired, please log in once more";

/// Turns login expiry on or off for the account, at [`LOGIN_EXPIRATION`].
fn login_expiry(s: &Server, enabled: bool) {
    let account = s.get("/api/accounts")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let settings = json!({"peer_login_expiration_enabled": enabled,
        "peer_login_expiration": LOGIN_EXPIRATION});
    s.put(
        &format!("/api/accounts/{account}"),
        json!({ "settings": settings }),
    );
}

/// A new user of the account (not blocked); its id.
fn new_user(s: &Server) -> String {
    let user = s.post(
        "/api/users",
        json!({"email": "nb@example.com", "name": "nb", "role": "user",
            "auto_groups": [], "is_service_user": false}),
    );
    user["id"].as_str().unwrap().to_string()
}

/// Sets, straight in the store (from a thread of its own, off the
/// caller's runtime), the last login of the peer `name` to `last_login`
/// (Unix milliseconds) with login expiry on for it, and makes it `user`'s
/// when given, as a peer that logged in through the identity provider is.
/// The server is not told of writes to its database file, so a group
/// created over REST afterwards makes it load the account again.
fn last_login(s: &Server, name: &str, last_login: i64, user: Option<&str>) {
    let id = rest_peer(s, name)["id"].as_str().unwrap().to_string();
    let edit = |peer: &mut serde_json::Value| {
        peer["last_login"] = json!(last_login);
        peer["login_expiration_enabled"] = json!(true);
        if let Some(user) = user {
            peer["user_id"] = json!(user);
        }
    };
    std::thread::scope(|t| {
        t.spawn(|| {
            s.edit_peer(&id, edit);
            s.post(
                "/api/groups",
                json!({ "name": format!("seen-{name}-{last_login}-{}", user.unwrap_or("none")) }),
            );
        })
        .join()
        .unwrap()
    });
}

/// The offline peers' keys of a map.
fn offline(map: &NetworkMap) -> Vec<&str> {
    map.offline_peers
        .iter()
        .map(|p| p.wg_pub_key.as_str())
        .collect()
}

/// Login expiry for a NetBird peer. It applies to peers a user added
/// through the identity provider, never to setup-key peers (SEMANTICS.md,
/// as in NetBird), and a NetBird client registers here with a setup key
/// only (the server offers no SSO flow): such a peer logs in whatever its
/// last login. Made a user's in the store, as a peer that logged in
/// through the identity provider is, with its last login two hours back
/// under a one-hour expiration, it is cut off: its open Sync stream ends,
/// Login and Sync answer PERMISSION_DENIED with NetBird's message (what
/// makes a NetBird client ask for a new login), signal to it is refused,
/// REST marks it `login_expired`, and the other peer's map lists it as an
/// offline peer only. Turning expiry off for the account lets it back.
#[test]
fn a_netbird_peer_whose_login_expired_is_refused_and_listed_offline() {
    let s = Server::start(common::Backend::Sqlite);
    login_expiry(&s, true);
    run(async {
        let channel = s.channel().await;
        let ((a, mut a_sync), (mut b, mut b_sync)) = alpha_and_beta(&s, &channel).await;
        map_until(&a, &mut a_sync, |m| keys(m) == [b.key.as_str()]).await;
        let two_hours_ago = now().as_millis() - 2 * LOGIN_EXPIRATION * 1000;

        // A setup-key peer does not expire.
        last_login(&s, "nb-beta", two_hours_ago, None);
        assert_eq!(rest_peer(&s, "nb-beta")["login_expired"], false);
        b.login("").await.unwrap();

        // A user's peer whose last login is older than the expiration is.
        let user = new_user(&s);
        last_login(&s, "nb-beta", two_hours_ago, Some(&user));
        assert_eq!(ended(&b, &mut b_sync).await.code(), Code::PermissionDenied);
        assert_status(b.login("").await, Code::PermissionDenied, LOGIN_EXPIRED);
        assert_status(b.sync().await, Code::PermissionDenied, LOGIN_EXPIRED);
        assert_eq!(rest_peer(&s, "nb-beta")["login_expired"], true);
        let a_map = map_until(&a, &mut a_sync, |m| m.remote_peers.is_empty()).await;
        assert_eq!(offline(&a_map), [b.key.as_str()]);
        let a_signal = SignalClient::new(channel.clone(), a.secret.clone());
        until_refused(&a_signal, &b.key, Code::PermissionDenied).await;

        // Expiry off for the account: the same peer logs in and is back.
        login_expiry(&s, false);
        b.login("").await.unwrap();
        map_until(&a, &mut a_sync, |m| keys(m) == [b.key.as_str()]).await;
    });
}

/// A NetBird peer's login expiring with time alone, nothing changing in
/// the store: its Sync stream ends with PERMISSION_DENIED and NetBird's
/// message once the expiration passed (the server wakes at the instant the
/// next login of the account expires), and the other peer's map lists it
/// as offline.
#[test]
fn a_netbird_peer_is_cut_off_when_its_login_expires_with_time_alone() {
    const LEFT_MS: i64 = 2000;
    let s = Server::start(common::Backend::Sqlite);
    login_expiry(&s, true);
    run(async {
        let channel = s.channel().await;
        let ((a, mut a_sync), (b, mut b_sync)) = alpha_and_beta(&s, &channel).await;
        map_until(&a, &mut a_sync, |m| keys(m) == [b.key.as_str()]).await;
        let user = new_user(&s);
        let expires = Instant::now() + Duration::from_millis(LEFT_MS as u64);
        let logged_in = now().as_millis() - LOGIN_EXPIRATION * 1000 + LEFT_MS;
        last_login(&s, "nb-beta", logged_in, Some(&user));

        let end = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match b_sync.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the stream ended without a status"),
                    Err(status) => return status,
                }
            }
        });
        let status = end.await.expect("the stream ends within 20 s");
        let ended = Instant::now();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), LOGIN_EXPIRED);
        assert!(ended >= expires, "cut off before the login expired");
        eprintln!("cut off {:?} after the expiry", ended - expires);
        let a_map = map_until(&a, &mut a_sync, |m| m.remote_peers.is_empty()).await;
        assert_eq!(offline(&a_map), [b.key.as_str()]);
    });
}

/// The relay token refresh on NetBird Sync streams, shortened to a second
/// with `--relay-token-refresh-secs`: the stream brings configuration-only
/// messages (no map) with tokens expiring later each time.
#[test]
fn netbird_sync_streams_get_fresh_relay_tokens() {
    let mut s = Server::start(common::Backend::Sqlite);
    s.restart_with(&["--relay-token-refresh-secs", "1"]);
    run(async {
        let key = reusable(&s);
        let mut nb = NbPeer::connect(s.channel().await, "nb-refresh").await;
        nb.up(&key).await.unwrap();
        let mut stream = nb.sync().await.unwrap();
        let expiry = |response: &SyncResponse| -> i64 {
            let relay = response.netbird_config.as_ref().unwrap().relay.as_ref();
            relay.unwrap().token_payload.parse().unwrap()
        };
        let first = nb.next_sync(&mut stream).await.unwrap();
        let mut last = expiry(&first);
        let mut refreshes = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        while refreshes < 2 {
            assert!(Instant::now() < deadline, "{refreshes} refreshes");
            let response = nb.next_sync(&mut stream).await.unwrap();
            if response.network_map.is_some() {
                continue;
            }
            let now = expiry(&response);
            assert!(now >= last, "{now} after {last}");
            refreshes += 1;
            last = now;
        }
        assert!(last > expiry(&first), "the tokens never moved on");
    });
}
