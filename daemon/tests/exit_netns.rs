//! Exit nodes in network namespaces this test creates.
//!
//! `policy_routing_sends_unmarked_traffic_into_the_tunnel` checks the
//! kernel's routing decisions with the exit route on and off, and that a
//! run that died with the exit on leaves nothing behind the next start.
//!
//! Needs root and `ip netns`; prints `SKIPPED …` and passes otherwise.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use common::netns::{in_netns, unsupported, Namespaces, UNDERLAY_B};
use ipnet::Ipv4Net;
use meshplane::kernel_tun::KernelTun;
use meshplane::key::PrivateKey;
use meshplane::routing::exit::{ExitRouting, PRIORITY_MAIN, PRIORITY_TUNNEL};
use meshplane::routing::mark::UNDERLAY_MARK;
use meshplane::wg::{Engine, EngineConfig};

/// An address on no network of the test: only a default route reaches it.
const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface the kernel would send a packet to `to` out of, for a
/// socket with `mark`.
fn route_dev(ns: &str, to: Ipv4Addr, mark: Option<u32>) -> String {
    let to = to.to_string();
    let mark = mark.map(|m| m.to_string());
    let mut args = vec!["route", "get", to.as_str()];
    if let Some(m) = &mark {
        args.extend(["mark", m.as_str()]);
    }
    let out = ip(ns, &args);
    out.split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Whether any of our policy rules is installed.
fn has_our_rules(ns: &str) -> bool {
    ip(ns, &["rule", "list"]).lines().any(|l| {
        l.starts_with(&format!("{PRIORITY_MAIN}:")) || l.starts_with(&format!("{PRIORITY_TUNNEL}:"))
    })
}

#[test]
fn policy_routing_sends_unmarked_traffic_into_the_tunnel() {
    if let Some(why) = unsupported() {
        println!("SKIPPED exit policy routing test: {why}");
        return;
    }
    let ns = Namespaces::create("exitpol");
    let a = ns.a.clone();
    let gateway = UNDERLAY_B.to_string();
    ip(&a, &["route", "add", "default", "via", &gateway]);
    let check = a.clone();
    in_netns(&a, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mesh_ip = Ipv4Addr::new(100, 64, 0, 1);
            let (_engine, tunnel) = Engine::start(EngineConfig {
                private_key: PrivateKey::generate(),
                listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                mesh_ip,
            })
            .await
            .expect("engine starts");
            let address = Ipv4Net::new(mesh_ip, 10).expect("valid prefix");
            let _tun = KernelTun::start("mp0", address, tunnel).expect("tun starts");
            let ns = check.as_str();
            let underlay = "mpveth-a";
            assert_eq!(route_dev(ns, INTERNET, None), underlay, "before");

            let mut exit = ExitRouting::start("mp0").await.expect("netlink");
            exit.set(true).await.expect("exit on");
            assert_eq!(route_dev(ns, INTERNET, None), "mp0", "internet: tunnel");
            assert_eq!(
                route_dev(ns, INTERNET, Some(UNDERLAY_MARK)),
                underlay,
                "our own marked sockets keep the host's path"
            );
            assert_eq!(
                route_dev(ns, UNDERLAY_B, None),
                underlay,
                "the LAN stays on the LAN"
            );
            assert_eq!(
                route_dev(ns, Ipv4Addr::new(100, 64, 0, 2), None),
                "mp0",
                "the mesh stays on the TUN"
            );
            // Twice is once.
            exit.set(true).await.expect("exit still on");

            exit.set(false).await.expect("exit off");
            assert_eq!(route_dev(ns, INTERNET, None), underlay, "off: own path");
            assert!(!has_our_rules(ns), "off: no rules left");

            // A run that dies with the exit on: the next start cleans up.
            exit.set(true).await.expect("exit on again");
            drop(exit);
            assert!(has_our_rules(ns), "a dead run's rules are still there");
            let _next = ExitRouting::start("mp0").await.expect("netlink");
            assert!(!has_our_rules(ns), "the next start removed them");
            assert_eq!(route_dev(ns, INTERNET, None), underlay, "own path again");
        });
    })
    .join()
    .expect("test thread");
}
