//! Posture checks deciding for real, with the real management server and
//! two real `meshplane daemon` processes (kernel TUN), each in a network
//! namespace this test creates (the bridge of `common::netns::Lan`).
//!
//! A policy from A's group to B's group requires a posture check of A:
//! - a process check naming a copy of `sleep` at a path only this test
//!   uses: while it does not run, A has no access to B (ping through the
//!   mesh fails, B is not in A's map); the test starts it inside A's
//!   namespace and A reaches B; the test stops it and A is cut off again;
//! - a network-range check allowing 10.213.81.0/24: A's namespace has no
//!   such address, so A is cut off; the test adds 10.213.81.7/24 to A's
//!   interface and A reaches B; it removes it and A is cut off again.
//!
//! The server also shows what A reports: its kernel release and OS version
//! as the host has them.
//!
//! Needs root, `ip netns` and `ping`; prints `SKIPPED …` and passes
//! otherwise. Every process is killed and every namespace deleted on drop.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;
use std::time::Duration;

use common::netns::{exec_in, ip, ping_once, unsupported, Lan, LAN_SRV};
use common::netns_mesh::{ns_daemon, NsServer};
use common::procs::{installed, mesh_ip, wait_until, Daemon, Proc, Rest, ScratchDir};
use serde_json::{json, Value};

/// How long a change of A's host may take to decide its access: the
/// daemon looks every 3 s, then the server pushes new maps. Generous, as
/// CI machines are slow.
const DECIDED_WITHIN: Duration = Duration::from_secs(20);
/// How long two fresh peers may take to come up.
const UP_WITHIN: Duration = Duration::from_secs(20);
/// The range the network-range check allows, and the address the test
/// gives A inside it.
const RANGE: &str = "10.213.81.0/24";
const IN_RANGE: &str = "10.213.81.7/24";

/// The peer ids in a daemon's map, from `status --json`.
fn map_peers(d: &Daemon) -> Vec<String> {
    d.status()["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect()
}

/// Waits until A reaches B through the mesh and lists it in its map.
fn wait_reaches(a: &Daemon, ns_a: &str, b_id: &str, ip_b: Ipv4Addr, why: &str) {
    let took = wait_until(DECIDED_WITHIN, &format!("a reaching b ({why})"), || {
        map_peers(a).iter().any(|p| p == b_id) && ping_once(ns_a, ip_b)
    });
    eprintln!("{why}: a reaches b {took:?} later");
}

/// Waits until A no longer has B in its map, then checks that ping fails.
fn wait_cut_off(a: &Daemon, ns_a: &str, b_id: &str, ip_b: Ipv4Addr, why: &str) {
    let took = wait_until(DECIDED_WITHIN, &format!("a cut off from b ({why})"), || {
        !map_peers(a).iter().any(|p| p == b_id)
    });
    eprintln!("{why}: b left a's map {took:?} later");
    assert!(!ping_once(ns_a, ip_b), "{why}: a still pings b");
}

/// A group, a reusable setup key putting peers in it; (group id, key).
fn group_with_key(server: &NsServer, name: &str) -> (Value, String) {
    let group = server.new_group(name);
    let key = server.reusable_key(name, &[&group]);
    (group, key)
}

/// The policy body: everything between `src` and `dst`, for sources that
/// pass `check`.
fn guarded(src: &Value, dst: &Value, check: &Value) -> Value {
    json!({"name": "guarded", "enabled": true, "source_posture_checks": [check],
        "rules": [{"name": "a to b", "enabled": true, "action": "accept",
            "bidirectional": true, "protocol": "all",
            "sources": [src], "destinations": [dst]}]})
}

#[test]
fn posture_checks_on_processes_and_network_ranges_decide_access() {
    if let Some(why) = unsupported()
        .or_else(|| (!installed("ping")).then(|| "`ping` is not installed".to_string()))
    {
        println!("SKIPPED posture namespace test: {why}");
        return;
    }
    let lan = Lan::create("posture");
    let scratch = ScratchDir::new("posture-netns");
    let dir = &scratch.0;
    // The process the check asks for: a copy of sleep at a path of its own.
    let agent = dir.join("posture-agent");
    std::fs::copy("/bin/sleep", &agent).expect("copy sleep");
    // The kernel reports the resolved path.
    let agent = std::fs::canonicalize(&agent).expect("agent path");
    let agent_path = agent.to_str().expect("UTF-8 path").to_string();

    let server = NsServer::start(&lan.srv, SocketAddrV4::new(LAN_SRV, 33074), dir);
    server.delete_policies();
    let (src, key_a) = group_with_key(&server, "src");
    let (dst, key_b) = group_with_key(&server, "dst");
    let process_check = server.post(
        "/api/posture-checks",
        json!({"name": "agent running", "checks": {"process_check": {"processes": [
            {"linux_path": agent_path}]}}}),
    )["id"]
        .clone();
    let policy = server.post("/api/policies", guarded(&src, &dst, &process_check));
    let policy_path = format!("/api/policies/{}", policy["id"].as_str().expect("id"));

    let a = ns_daemon(&lan.a, dir.join("a"));
    let b = ns_daemon(&lan.b, dir.join("b"));
    a.ok(&["up", "--management-url", &server.url, "--setup-key", &key_a]);
    b.ok(&["up", "--management-url", &server.url, "--setup-key", &key_b]);
    let sa = a.wait_for(UP_WITHIN, "a following its map", |s| {
        s["management_connected"] == true
    });
    let sb = b.wait_for(UP_WITHIN, "b following its map", |s| {
        s["management_connected"] == true
    });
    let ip_b = mesh_ip(&sb);
    let b_id = sb["peer_id"].as_str().expect("b's id").to_string();

    // What A reports, as the server shows it.
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let rest_a = server.peer_by_ip(mesh_ip(&sa));
    assert_eq!(rest_a["kernel_version"], kernel.trim(), "{rest_a:#}");
    assert!(
        rest_a["os"]
            .as_str()
            .is_some_and(|os| os.starts_with("linux")),
        "{rest_a:#}"
    );

    // The process check: A fails it until the agent runs in A's namespace.
    wait_cut_off(&a, &lan.a, &b_id, ip_b, "agent not running");
    let mut running = Proc::spawn(
        exec_in(&lan.a, &agent)
            .arg("600")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_reaches(&a, &lan.a, &b_id, ip_b, "agent started");
    running.kill();
    wait_cut_off(&a, &lan.a, &b_id, ip_b, "agent stopped");

    // The network-range check in its place: A is outside the range until
    // its interface gets an address inside it.
    let range_check = server.post(
        "/api/posture-checks",
        json!({"name": "office network", "checks": {"peer_network_range_check": {
            "action": "allow", "ranges": [RANGE]}}}),
    )["id"]
        .clone();
    server.call("PUT", &policy_path, Some(guarded(&src, &dst, &range_check)));
    wait_cut_off(&a, &lan.a, &b_id, ip_b, "outside the range");
    ip(&["-n", &lan.a, "addr", "add", IN_RANGE, "dev", "mpeth0"]);
    wait_reaches(&a, &lan.a, &b_id, ip_b, "address in the range added");
    ip(&["-n", &lan.a, "addr", "del", IN_RANGE, "dev", "mpeth0"]);
    wait_cut_off(&a, &lan.a, &b_id, ip_b, "address in the range removed");
}
