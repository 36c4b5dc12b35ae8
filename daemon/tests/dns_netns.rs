//! DNS on the peer, with real processes in network namespaces: the
//! management server and a nameserver for `upstream.test` (the host's
//! original resolver) and one for `corp.test` (a match-domain nameserver
//! group) in one namespace, daemons A and B (kernel TUN mode) in two more,
//! on a bridge on 10.213.80.0/24.
//!
//! A's resolver on its mesh IP answers B's name with B's mesh IP (any
//! case, UDP and TCP) and NXDOMAIN for unknown mesh names; forwards other
//! names to the host's original nameserver; forwards `corp.test` to the
//! nameserver group once one is created over REST; follows a rename of B.
//! A configures its host's resolver — `/etc/netns/<ns>/resolv.conf`, which
//! is `/etc/resolv.conf` inside the namespace, made and removed by the
//! test — so `getent hosts` inside A's namespace finds B; DNS management
//! switched off for the group stops the resolver and restores the file, on
//! again brings both back; `down` writes the
//! original back, and so does the next start after a `kill -9`. B runs
//! with `--no-host-dns` like every other test daemon.
//!
//! Needs root, `ip netns` and `getent`; prints `SKIPPED …` and passes
//! otherwise.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::dns::{addresses, ask_tcp, ask_udp, query, ZoneServer};
use common::netns::{exec_in, in_netns, unsupported, Lan, LAN_SRV};
use common::netns_mesh::{ns_daemon, ns_daemon_configuring_host_dns, NsServer};
use common::procs::{mesh_ip, wait_until, Rest, ScratchDir};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::json;

/// How long two fresh peers may take to see each other's names.
const JOIN_WITHIN: Duration = Duration::from_secs(20);
/// A generous limit for a REST change to reach the answers (the time it
/// took is printed).
const CHANGE_WITHIN: Duration = Duration::from_secs(10);
/// What the host's original nameserver answers for `*.upstream.test`.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// What the match-domain nameserver answers for `*.corp.test`.
const CORP_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const CORP_PORT: u16 = 5353;
/// A's resolv.conf before the daemon touches it.
const ORIGINAL: &str = "nameserver 10.213.80.1\nsearch lan.test\noptions ndots:1\n";

/// `/etc/netns/<ns>/resolv.conf`, which `ip netns exec` binds over
/// `/etc/resolv.conf`; removed on drop.
struct NetnsResolvConf(PathBuf);

impl NetnsResolvConf {
    fn create(ns: &str, text: &str) -> NetnsResolvConf {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("/etc/netns/<ns>");
        let file = NetnsResolvConf(dir);
        std::fs::write(file.path(), text).expect("resolv.conf");
        file
    }

    fn path(&self) -> PathBuf {
        self.0.join("resolv.conf")
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap_or_default()
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asks `server` from inside `ns` over UDP (or TCP).
fn ask_in(ns: &str, server: SocketAddr, name: &str, tcp: bool) -> Option<Message> {
    let request = query(name, RecordType::A);
    in_netns(ns, move || {
        if tcp {
            ask_tcp(server, &request)
        } else {
            ask_udp(server, &request)
        }
    })
    .join()
    .expect("query thread")
    .ok()
}

/// The addresses `server` gives for `name`, asked from `ns` over UDP;
/// empty on any failure.
fn resolve(ns: &str, server: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    ask_in(ns, server, name, false)
        .map(|m| addresses(&m))
        .unwrap_or_default()
}

/// `getent hosts <name>` inside `ns`: the address it printed.
fn getent(ns: &str, name: &str) -> Option<Ipv4Addr> {
    let out = exec_in(ns, "getent").args(["hosts", name]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next()?.parse().ok()
}

/// A zone server bound inside `ns`.
fn zone_server(ns: &str, at: SocketAddrV4, zone: &'static str, ip: Ipv4Addr) -> ZoneServer {
    let socket = in_netns(ns, move || UdpSocket::bind(at))
        .join()
        .expect("bind thread")
        .expect("bind the zone server");
    ZoneServer::serve(socket, zone, ip)
}

fn missing_tools() -> Option<String> {
    let found = Command::new("getent").arg("--version").output().is_ok();
    (!found).then(|| "`getent` is not installed".into())
}

#[test]
fn the_peer_resolver_answers_mesh_names_forwards_the_rest_and_configures_the_host() {
    if let Some(why) = unsupported().or_else(missing_tools) {
        println!("SKIPPED DNS namespace test: {why}");
        return;
    }
    let lan = Lan::create("dns");
    let scratch = ScratchDir::new("dns-netns");
    let dir = &scratch.0;
    let conf = NetnsResolvConf::create(&lan.a, ORIGINAL);
    let _upstream = zone_server(
        &lan.srv,
        SocketAddrV4::new(LAN_SRV, 53),
        "upstream.test",
        UPSTREAM_ANSWER,
    );
    let corp = zone_server(
        &lan.srv,
        SocketAddrV4::new(LAN_SRV, CORP_PORT),
        "corp.test",
        CORP_ANSWER,
    );

    let server = NsServer::start(&lan.srv, SocketAddrV4::new(LAN_SRV, 33073), dir);
    let group = server.new_group("dns");
    let key = server.reusable_key("dns", &[&group]);
    let mut a = ns_daemon_configuring_host_dns(&lan.a, dir.join("a"));
    let b = ns_daemon(&lan.b, dir.join("b"));
    a.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    b.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    let ip_a = mesh_ip(&a.status());
    let sb = b.status();
    let ip_b = mesh_ip(&sb);
    let fqdn_b = sb["fqdn"].as_str().expect("B's FQDN").to_string();
    let resolver = SocketAddr::from((ip_a, 53));

    // B's name, from the map.
    let took = wait_until(JOIN_WITHIN, "A's resolver answering B's name", || {
        resolve(&lan.a, resolver, &fqdn_b) == [ip_b]
    });
    eprintln!("B's name answered {took:?} after both were up");
    assert_eq!(
        resolve(&lan.a, resolver, &fqdn_b.to_uppercase()),
        [ip_b],
        "names are case-insensitive"
    );
    let over_tcp = ask_in(&lan.a, resolver, &fqdn_b, true).expect("an answer over TCP");
    assert_eq!(addresses(&over_tcp), [ip_b]);
    assert!(over_tcp.metadata.authoritative);
    let domain = fqdn_b.split_once('.').expect("a domain").1.to_string();
    let nobody = ask_in(&lan.a, resolver, &format!("nobody.{domain}"), false).expect("answer");
    assert_eq!(nobody.metadata.response_code, ResponseCode::NXDomain);

    // What `status` says.
    let status = a.status();
    let dns = &status["dns"];
    assert_eq!(dns["listen"], format!("{ip_a}:53"), "{status:#}");
    assert_eq!(dns["host"], "resolv_conf", "{status:#}");
    assert_eq!(dns["zones"], json!([domain]), "{status:#}");
    assert_eq!(
        dns["host_upstream"],
        json!(["10.213.80.1:53"]),
        "{status:#}"
    );
    assert!(a
        .ok(&["status"])
        .contains(&format!("Nameserver: {ip_a}:53")));
    // B reports its resolver once its own map is applied, which may come
    // after A already answers B's name.
    wait_until(
        JOIN_WITHIN,
        "B reporting that it leaves its host alone",
        || b.status()["dns"]["host"] == "untouched",
    );

    // Everything else goes to the host's original nameserver; corp.test
    // too, while no group takes it (that nameserver refuses it).
    assert_eq!(
        resolve(&lan.a, resolver, "www.upstream.test"),
        [UPSTREAM_ANSWER]
    );
    let refused = ask_in(&lan.a, resolver, "git.corp.test", false).expect("an answer");
    assert_eq!(refused.metadata.response_code, ResponseCode::ServFail);

    // A nameserver group for corp.test takes its names.
    let since = Instant::now();
    server.post(
        "/api/dns/nameservers",
        json!({"name": "corp", "description": "", "enabled": true, "primary": false,
            "nameservers": [{"ip": LAN_SRV.to_string(), "ns_type": "udp", "port": CORP_PORT}],
            "groups": [group], "domains": ["corp.test"], "search_domains_enabled": false}),
    );
    wait_until(CHANGE_WITHIN, "corp.test answered by its group", || {
        resolve(&lan.a, resolver, "git.corp.test") == [CORP_ANSWER]
    });
    eprintln!(
        "match domain answered {:?} after the group was created",
        since.elapsed()
    );
    let status = a.status();
    assert_eq!(
        status["dns"]["match_domains"],
        json!([{"domain": "corp.test", "nameservers": [corp.at.to_string()]}]),
        "{status:#}"
    );

    // The host's programs resolve through the peer's resolver.
    let ours = conf.text();
    assert!(ours.contains(&format!("nameserver {ip_a}\n")), "{ours}");
    assert!(
        ours.contains(&format!("search {domain} lan.test\n")),
        "{ours}"
    );
    assert_eq!(getent(&lan.a, &fqdn_b), Some(ip_b), "getent hosts {fqdn_b}");
    assert_eq!(getent(&lan.a, "git.corp.test"), Some(CORP_ANSWER));

    // Renaming B over REST changes its name in A's answers.
    let peer_b = server.peer_by_ip(ip_b);
    let since = Instant::now();
    server.call(
        "PUT",
        &format!("/api/peers/{}", peer_b["id"].as_str().expect("B's id")),
        Some(json!({"name": "renamed-b", "ssh_enabled": false,
            "login_expiration_enabled": false, "inactivity_expiration_enabled": false})),
    );
    let renamed = format!("renamed-b.{domain}");
    wait_until(CHANGE_WITHIN, "B's new name answered", || {
        resolve(&lan.a, resolver, &renamed) == [ip_b]
    });
    eprintln!("rename answered {:?} after the REST call", since.elapsed());
    let old = ask_in(&lan.a, resolver, &fqdn_b, false).expect("an answer");
    assert_eq!(old.metadata.response_code, ResponseCode::NXDomain);

    // DNS management switched off for the peers' group: no resolver, the
    // host's file as it was; switched on again: both back.
    let since = Instant::now();
    server.call(
        "PUT",
        "/api/dns/settings",
        Some(json!({"disabled_management_groups": [group]})),
    );
    a.wait_for(CHANGE_WITHIN, "A's resolver stopped", |s| {
        s["dns"].is_null()
    });
    eprintln!(
        "DNS management off: resolver stopped {:?} later",
        since.elapsed()
    );
    assert_eq!(conf.text(), ORIGINAL);
    assert!(ask_in(&lan.a, resolver, &renamed, false).is_none());
    server.call(
        "PUT",
        "/api/dns/settings",
        Some(json!({"disabled_management_groups": []})),
    );
    // The resolver starts first, then the host is pointed at it.
    wait_until(
        CHANGE_WITHIN,
        "A's resolver back and in resolv.conf",
        || {
            resolve(&lan.a, resolver, &renamed) == [ip_b]
                && conf.text().contains(&format!("nameserver {ip_a}\n"))
        },
    );

    // `down` gives the host its resolv.conf back and stops the resolver.
    a.ok(&["down"]);
    assert_eq!(conf.text(), ORIGINAL);
    assert!(ask_in(&lan.a, resolver, &renamed, false).is_none());

    // A daemon killed while its resolv.conf is in place: the next start
    // (here with --no-host-dns, so it does not write ours again) writes
    // the original back before anything else.
    a.ok(&["up"]);
    wait_until(CHANGE_WITHIN, "A's resolv.conf in place again", || {
        conf.text().contains(&format!("nameserver {ip_a}\n"))
    });
    a.kill();
    assert_ne!(conf.text(), ORIGINAL, "a killed daemon restores nothing");
    let again = ns_daemon(&lan.a, dir.join("a"));
    assert_eq!(
        conf.text(),
        ORIGINAL,
        "the next start restores the original"
    );
    again.wait_for(JOIN_WITHIN, "A back up by itself", |s| s["up"] == true);
    assert_eq!(conf.text(), ORIGINAL, "--no-host-dns leaves it alone");
}
