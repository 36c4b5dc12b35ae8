//! The engine fed with network maps computed by the core from an account,
//! as the daemon will be: a one-way policy allowing TCP 8080 from A to B
//! lets A reach B's 8080 and nothing else, and deleting the policy (a new
//! map for each peer) stops the traffic. Maps say nothing of where peers
//! are: each engine gets the other's address as a signalled candidate.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::{echo_server, Side, IP_A, IP_B};
use ipnet::Ipv4Net;
use meshplane::engine::netstack::Netstack;
use meshplane::engine::wg::NetworkUpdate;
use meshplane_core::index::AccountIndex;
use meshplane_core::model::Account;
use meshplane_core::netmap::{network_map, PeerMap};
use meshplane_core::Timestamp;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const BLOCKED: Duration = Duration::from_secs(2);

fn account(a: &Side, b: &Side, with_policy: bool) -> Account {
    let peer = |id: &str, side: &Side| {
        json!({
            "id": id, "name": id, "ip": side.ip, "dns_label": id,
            "key": side.key.public_key().to_string()
        })
    };
    let policies = if with_policy {
        json!([{
            "id": "p-web", "name": "web", "enabled": true,
            "rules": [{
                "id": "r-web", "name": "web", "enabled": true, "action": "accept",
                "bidirectional": false, "protocol": "tcp",
                "sources": ["g-a"], "destinations": ["g-b"], "ports": ["8080"]
            }]
        }])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "id": "acc", "serial": 1,
        "peers": [peer("a", a), peer("b", b)],
        "groups": [
            {"id": "g-a", "name": "a", "peers": ["a"]},
            {"id": "g-b", "name": "b", "peers": ["b"]}
        ],
        "policies": policies
    }))
    .expect("account")
}

/// Computes both peers' maps from `account` and hands them to the engines,
/// each with the other's address as its candidate (what signal would do).
async fn push_maps(account: &Account, sides: [(&str, &Side); 2]) {
    let index = AccountIndex::new(account);
    for (i, (id, side)) in sides.iter().enumerate() {
        let map = network_map(&index, id, Timestamp::from_secs(1_750_000_000)).expect("map");
        let update = NetworkUpdate::from_map(&PeerMap::from(&map));
        side.engine.update(update).await.expect("engine runs");
        let other = sides[1 - i].1;
        side.engine
            .candidates(other.key.public_key(), vec![other.engine.local_addr()])
            .await
            .expect("engine runs");
    }
}

async fn reaches(from: &Netstack, to: Ipv4Addr, port: u16) -> bool {
    match timeout(BLOCKED, from.connect(SocketAddrV4::new(to, port))).await {
        Ok(Ok(mut s)) => {
            s.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            matches!(timeout(WAIT, s.read_exact(&mut buf)).await, Ok(Ok(_)))
        }
        _ => false,
    }
}

#[tokio::test]
async fn maps_from_the_core_drive_the_engine() {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let (a, tunnel_a) = Side::start(IP_A, loopback).await;
    let (b, tunnel_b) = Side::start(IP_B, loopback).await;
    let net = |ip| Ipv4Net::new(ip, 16).expect("prefix");
    let stack_a = Netstack::start(net(IP_A), tunnel_a);
    let stack_b = Netstack::start(net(IP_B), tunnel_b);
    for port in [8080, 22] {
        echo_server(&stack_a, port);
        echo_server(&stack_b, port);
    }

    push_maps(&account(&a, &b, true), [("a", &a), ("b", &b)]).await;
    assert!(reaches(&stack_a, IP_B, 8080).await, "A reaches B:8080");
    assert!(!reaches(&stack_a, IP_B, 22).await, "B:22 is closed to A");
    assert!(
        !reaches(&stack_b, IP_A, 8080).await,
        "the policy is one-way"
    );

    push_maps(&account(&a, &b, false), [("a", &a), ("b", &b)]).await;
    assert!(a.engine.status().await.unwrap().peers.is_empty());
    assert!(
        !reaches(&stack_a, IP_B, 8080).await,
        "no policy, no traffic"
    );
}
