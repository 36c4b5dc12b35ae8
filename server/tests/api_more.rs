//! Black-box tests of the REST API beyond the core resources: user
//! invitations, temporary access peers, ingress ports and locations. The
//! real binary over HTTP, on both stores.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{sorted_ids, Server};
use serde_json::{json, Value};

both_stores!(
    user_invite,
    temporary_access,
    ingress_ports,
    locations,
    peer_list_follows_writes,
    names_and_references_checked_by_row
);

/// A WireGuard public key (32 bytes, base64) no peer has.
const WG_KEY: &str = "jGYxw1lJ8Y9qv9Xn2QH1eFv6yBZ2b3n0S5bWv8m3Jx4=";

/// The network prefix (`a.b.`) of the account, for peer addresses.
fn prefix(s: &Server) -> String {
    let range = s.get("/api/accounts")[0]["settings"]["network_range"]
        .as_str()
        .unwrap()
        .to_string();
    range.trim_end_matches("0.0/16").to_string()
}

fn user_invite(s: &mut Server) {
    let person = s.post(
        "/api/users",
        json!({"email": "ann@example.com", "name": "Ann", "role": "user", "auto_groups": [], "is_service_user": false}),
    );
    let id = person["id"].as_str().unwrap();
    let (status, body) = s.call("POST", &format!("/api/users/{id}/invite"), None);
    assert_eq!((status, body), (200, json!({})));
    let invites = s
        .activities()
        .iter()
        .filter(|c| c.as_str() == "user.invite")
        .count();
    assert_eq!(invites, 2, "the creation and the resend are both recorded");

    let svc = s.post(
        "/api/users",
        json!({"name": "robot", "role": "user", "auto_groups": [], "is_service_user": true}),
    );
    s.expect_error(
        "POST",
        &format!("/api/users/{}/invite", svc["id"].as_str().unwrap()),
        None,
        422,
        "service users can't be invited",
    );
    let me = s.get("/api/users/current")["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.expect_error(
        "POST",
        &format!("/api/users/{me}/invite"),
        None,
        412,
        "can't invite a user with an activated account",
    );
    s.expect_error(
        "POST",
        "/api/users/ghost/invite",
        None,
        404,
        "user ghost not found",
    );
}

/// The ids of the peers `peer` can reach, sorted.
fn reachable(s: &Server, peer: &str) -> Vec<String> {
    sorted_ids(&s.get(&format!("/api/peers/{peer}/accessible-peers")))
}

/// How many `policy.delete` events the audit log holds.
fn policy_removals(s: &Server) -> usize {
    s.activities()
        .iter()
        .filter(|c| c.as_str() == "policy.delete")
        .count()
}

fn temporary_access(s: &mut Server) {
    let net = prefix(s);
    s.insert_peer("target", "target", &format!("{net}0.10"), &[]);
    s.insert_peer("bystander", "bystander", &format!("{net}0.11"), &[]);
    let policies_before = s.get("/api/policies").as_array().unwrap().len();

    let req =
        json!({"name": "temp-host-1", "wg_pub_key": WG_KEY, "rules": ["tcp/80", "udp/5000-5010"]});
    let made = s.post("/api/peers/target/temporary-access", req.clone());
    assert_eq!(made["name"], "temp-host-1");
    assert_eq!(made["rules"], json!(["tcp/80", "udp/5000-5010"]));
    let temp = made["id"].as_str().unwrap().to_string();

    let peer = s.get(&format!("/api/peers/{temp}"));
    assert_eq!(peer["ephemeral"], true);
    assert_eq!(peer["name"], "temp-host-1");
    assert_eq!(peer["groups"], json!([]), "not even in All");
    // It reaches the target and nothing else; the target sees it back.
    assert_eq!(reachable(s, &temp), vec!["target".to_string()]);
    assert!(reachable(s, "target").contains(&temp));
    assert!(!reachable(s, "bystander").contains(&temp));

    let policies = s.get("/api/policies");
    let mine: Vec<&Value> = policies
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "Temporary access policy for peer temp-host-1")
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0]["rules"][0]["sourceResource"]["id"], temp.as_str());
    assert_eq!(mine[0]["rules"][0]["destinationResource"]["id"], "target");
    let codes = s.activities();
    assert!(codes.contains(&"peer.user.add".to_string()), "{codes:?}");
    assert!(codes.contains(&"policy.add".to_string()), "{codes:?}");

    // The same key again, bad rules, bad names, an unknown target.
    let cases = [
        (
            json!({"name": "t", "wg_pub_key": WG_KEY, "rules": ["tcp/22"]}),
            409,
            "peer has been already registered".to_string(),
        ),
        (
            json!({"name": "t", "wg_pub_key": "nope", "rules": ["tcp/22"]}),
            422,
            "invalid WireGuard public key: must be 32 bytes in base64".to_string(),
        ),
        (
            json!({"name": " ", "wg_pub_key": WG_KEY, "rules": ["tcp/22"]}),
            422,
            "peer name shouldn't be empty".to_string(),
        ),
        (
            json!({"name": "t", "wg_pub_key": WG_KEY, "rules": []}),
            422,
            "at least one access rule is required".to_string(),
        ),
        (
            json!({"name": "t", "wg_pub_key": WG_KEY, "rules": ["tcp/0"]}),
            422,
            "invalid rule \"tcp/0\": ports must be between 1 and 65535, start not above end"
                .to_string(),
        ),
        (
            json!({"name": "t", "wg_pub_key": WG_KEY, "rules": ["sctp/9"]}),
            422,
            "invalid rule \"sctp/9\": protocol must be all, icmp, tcp or udp".to_string(),
        ),
        (
            json!({"name": "t", "wg_pub_key": WG_KEY, "rules": ["tcp"]}),
            422,
            "invalid rule \"tcp\": expected all, icmp, or tcp/udp followed by /port or /start-end"
                .to_string(),
        ),
    ];
    for (body, status, message) in cases {
        s.expect_error(
            "POST",
            "/api/peers/target/temporary-access",
            Some(body),
            status,
            &message,
        );
    }
    s.expect_error(
        "POST",
        "/api/peers/ghost/temporary-access",
        Some(req),
        404,
        "peer ghost not found",
    );
    let (status, _) = s.call(
        "POST",
        "/api/peers/target/temporary-access",
        Some(json!({"name": "t"})),
    );
    assert_eq!(status, 422, "missing fields");

    // Deleting the temporary peer takes its policies with it.
    let removed_before = policy_removals(s);
    s.delete(&format!("/api/peers/{temp}"));
    assert_eq!(policy_removals(s), removed_before + 2);
    assert_eq!(
        s.get("/api/policies").as_array().unwrap().len(),
        policies_before
    );
}

fn ingress_ports(s: &mut Server) {
    let net = prefix(s);
    for (n, id) in ["edge", "app", "other"].iter().enumerate() {
        s.insert_peer(id, id, &format!("{net}0.{}", n + 20), &[]);
    }
    let full = 64512;
    let edge = s.post(
        "/api/ingress/peers",
        json!({"peer_id": "edge", "enabled": true, "fallback": false}),
    );
    assert_eq!(edge["peer_id"], "edge");
    assert_eq!(edge["available_ports"], json!({"tcp": full, "udp": full}));
    assert_eq!(edge["connected"], false);
    assert_eq!(edge["region"], "");
    let eid = edge["id"].as_str().unwrap().to_string();
    let epath = format!("/api/ingress/peers/{eid}");
    assert_eq!(s.get(&epath)["id"], eid.as_str());
    assert_eq!(s.get("/api/ingress/peers").as_array().unwrap().len(), 1);
    s.expect_error(
        "POST",
        "/api/ingress/peers",
        Some(json!({"peer_id": "edge", "enabled": true, "fallback": true})),
        409,
        "peer edge is already an ingress peer",
    );
    s.expect_error(
        "POST",
        "/api/ingress/peers",
        Some(json!({"peer_id": "ghost", "enabled": true, "fallback": true})),
        422,
        "peer ghost not found",
    );
    s.expect_error(
        "POST",
        "/api/ingress/peers",
        Some(json!({"enabled": true, "fallback": true})),
        422,
        "peer_id should be provided",
    );

    // Neither in the peer's (unknown) region nor a fallback: nothing forwards.
    let ports = "/api/peers/app/ingress/ports";
    let web = json!({"name": "web", "enabled": true, "port_ranges": [{"start": 80, "end": 89, "protocol": "tcp"}]});
    s.expect_error(
        "POST",
        ports,
        Some(web.clone()),
        412,
        "no enabled ingress peer can forward ports of this peer",
    );
    let updated = s.put(&epath, json!({"enabled": true, "fallback": true}));
    assert_eq!(updated["fallback"], true);
    assert_eq!(updated["peer_id"], "edge");

    let made = s.post(ports, web);
    assert_eq!(made["ingress_peer_id"], eid.as_str());
    assert_eq!(
        made["port_range_mappings"],
        json!([{"translated_start": 80, "translated_end": 89, "ingress_start": 1024, "ingress_end": 1033, "protocol": "tcp"}])
    );
    let web_id = made["id"].as_str().unwrap().to_string();
    let dns = s.post(ports, json!({"name": "dns", "enabled": true,
        "port_ranges": [{"start": 53, "end": 53, "protocol": "udp"}], "direct_port": {"count": 2, "protocol": "tcp"}}));
    assert_eq!(
        dns["port_range_mappings"],
        json!([
        {"translated_start": 53, "translated_end": 53, "ingress_start": 1024, "ingress_end": 1024, "protocol": "udp"},
        {"translated_start": 1034, "translated_end": 1035, "ingress_start": 1034, "ingress_end": 1035, "protocol": "tcp"}])
    );
    assert_eq!(
        s.get(&format!("{ports}?name=web"))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.get(ports).as_array().unwrap().len(), 2);
    assert_eq!(
        s.get(&epath)["available_ports"],
        json!({"tcp": full - 12, "udp": full - 1})
    );

    // An update keeps the ports of the range it asks for again.
    let web_path = format!("{ports}/{web_id}");
    let moved = s.put(&web_path, json!({"name": "web", "enabled": false, "port_ranges": [
        {"start": 80, "end": 89, "protocol": "tcp"}, {"start": 443, "end": 443, "protocol": "tcp"}]}));
    assert_eq!(moved["enabled"], false);
    assert_eq!(moved["port_range_mappings"][0]["ingress_start"], 1024);
    assert_eq!(moved["port_range_mappings"][1]["ingress_start"], 1036);
    assert_eq!(s.get(&web_path)["name"], "web");
    s.expect_error(
        "GET",
        &format!("/api/peers/other/ingress/ports/{web_id}"),
        None,
        404,
        &format!("ingress allocation {web_id} not found"),
    );
    s.expect_error(
        "GET",
        "/api/peers/ghost/ingress/ports",
        None,
        404,
        "peer ghost not found",
    );

    let range = |start: i64, end: i64| json!({"name": "x", "enabled": true, "port_ranges": [{"start": start, "end": end, "protocol": "tcp"}]});
    let cases = [
        (
            range(90, 80),
            422,
            "invalid port range 90-80: ports must be between 1 and 65535, start not above end",
        ),
        (
            range(0, 10),
            422,
            "invalid port range 0-10: ports must be between 1 and 65535, start not above end",
        ),
        (
            range(1, 65536),
            422,
            "invalid port range 1-65536: ports must be between 1 and 65535, start not above end",
        ),
        (
            json!({"name": "x", "enabled": true}),
            422,
            "either port_ranges or direct_port should be provided",
        ),
        (
            json!({"name": "x", "enabled": true, "direct_port": {"count": 0, "protocol": "udp"}}),
            422,
            "invalid direct port count 0: must be between 1 and 64512",
        ),
        (
            json!({"name": " ", "enabled": true, "direct_port": {"count": 1, "protocol": "udp"}}),
            422,
            "allocation name shouldn't be empty",
        ),
        (
            range(1, 65535),
            409,
            "not enough free ingress ports for this allocation on any ingress peer",
        ),
    ];
    for (body, status, message) in cases {
        s.expect_error("POST", ports, Some(body), status, message);
    }
    let (status, _) = s.call(
        "POST",
        ports,
        Some(
            json!({"name": "x", "enabled": true, "direct_port": {"count": 1, "protocol": "sctp"}}),
        ),
    );
    assert_eq!(status, 422);

    // What still uses an ingress peer keeps it.
    s.expect_error(
        "DELETE",
        &epath,
        None,
        409,
        "ingress peer is used by port allocations: dns, web",
    );
    s.expect_error(
        "DELETE",
        "/api/peers/edge",
        None,
        400,
        &format!("peer has been linked to ingress peer: {eid}"),
    );
    s.delete(&web_path);
    // Deleting the forwarded peer releases its ports.
    s.delete("/api/peers/app");
    assert_eq!(
        s.get(&epath)["available_ports"],
        json!({"tcp": full, "udp": full})
    );
    s.delete(&epath);
    assert_eq!(s.get("/api/ingress/peers"), json!([]));
    let codes = s.activities();
    for code in [
        "ingress.peer.create",
        "ingress.peer.update",
        "ingress.peer.delete",
        "ingress.ports.create",
        "ingress.ports.update",
        "ingress.ports.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn locations(s: &mut Server) {
    let countries = s.get("/api/locations/countries");
    let codes: Vec<&str> = countries
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(codes.len() > 240, "{}", codes.len());
    assert!(codes.contains(&"DE") && codes.contains(&"JP"));
    assert!(codes.iter().all(|c| c.len() == 2));
    for path in [
        "/api/locations/countries/DE/cities",
        "/api/locations/countries/de/cities",
    ] {
        let cities = s.get(path);
        assert!(cities
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!({"geoname_id": 2950159, "city_name": "Berlin"})));
    }
    s.expect_error(
        "GET",
        "/api/locations/countries/XX/cities",
        None,
        404,
        "country XX not found",
    );
    for bad in ["DEU", "1A", "D"] {
        s.expect_error(
            "GET",
            &format!("/api/locations/countries/{bad}/cities"),
            None,
            422,
            &format!(
                "invalid country code \"{bad}\": must be an ISO 3166-1 alpha-2 code (two letters)"
            ),
        );
    }
    let (status, _) = s.call_as(None, "GET", "/api/locations/countries", None);
    assert_eq!(status, 401);
}

/// The peer list reuses the decoded account until something writes.
fn peer_list_follows_writes(s: &mut Server) {
    let net = prefix(s);
    let g = s.post("/api/groups", json!({"name": "web"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.insert_peer("a", "alpha", &format!("{net}0.5"), &[&g]);
    let names = |s: &Server| -> Vec<String> {
        s.get("/api/peers")
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(s), ["alpha"]);
    let listed = s.get("/api/peers");
    let peer = &listed[0];
    let groups: Vec<&str> = peer["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{peer}");
    assert!(groups.contains(&"All") && groups.contains(&"web"));
    assert_eq!(peer["accessible_peers_count"], 0);
    assert_eq!(peer["last_login"], "0001-01-01T00:00:00Z");
    assert_eq!(peer["dns_label"], "alpha.netbird.selfhosted");
    s.put(
        "/api/peers/a",
        json!({"name": "renamed", "ssh_enabled": true, "login_expiration_enabled": false,
            "inactivity_expiration_enabled": false}),
    );
    assert_eq!(names(s), ["renamed"]);
    s.insert_peer("b", "beta", &format!("{net}0.6"), &[]);
    assert_eq!(names(s), ["renamed", "beta"]);
    assert_eq!(s.get("/api/peers")[0]["accessible_peers_count"], 1);
    s.put(
        &format!("/api/groups/{g}"),
        json!({"name": "web2", "peers": ["a"]}),
    );
    assert_eq!(
        s.get("/api/peers/a")["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["name"] == "web2")
            .count(),
        1
    );
    s.delete("/api/peers/a");
    assert_eq!(names(s), ["beta"]);
}

/// Writes check names and referenced ids with queries on the rows concerned
/// (an `IN` list in chunks, a name compared in SQL): the answers must be
/// those of a check over every row, for any name and any number of ids.
fn names_and_references_checked_by_row(s: &mut Server) {
    let odd = "He said \"hi\" \\ ü 名 'x'";
    let g = s.post("/api/groups", json!({"name": odd}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let taken = format!("group with name \"{odd}\" already exists");
    s.expect_error(
        "POST",
        "/api/groups",
        Some(json!({"name": odd})),
        409,
        &taken,
    );
    s.put(&format!("/api/groups/{g}"), json!({"name": odd}));
    let other = s.post("/api/groups", json!({"name": "he said"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/groups/{other}");
    s.expect_error("PUT", &path, Some(json!({"name": odd})), 409, &taken);
    // Names are compared exactly, as before.
    s.post("/api/groups", json!({"name": "HE SAID"}));

    // More ids than one IN list holds.
    let net = prefix(s);
    let peers: Vec<(String, String, String, Vec<String>)> = (0..600)
        .map(|n| {
            let ip = format!("{net}{}.{}", n / 250 + 1, n % 250 + 1);
            (format!("p{n:03}"), format!("peer{n}"), ip, vec![])
        })
        .collect();
    s.insert_peers(peers);
    let mut ids: Vec<String> = (0..600).rev().map(|n| format!("p{n:03}")).collect();
    ids.push("p007".to_string());
    let group = s.post("/api/groups", json!({"name": "many", "peers": ids}));
    assert_eq!(group["peers_count"], 600);
    let listed = group["peers"].as_array().unwrap();
    assert_eq!(listed[0], json!({"id": "p000", "name": "peer0"}));
    assert_eq!(listed[599], json!({"id": "p599", "name": "peer599"}));
    ids.insert(300, "ghost".to_string());
    ids.insert(0, "zombie".to_string());
    s.expect_error(
        "POST",
        "/api/groups",
        Some(json!({"name": "more", "peers": ids})),
        422,
        // The ids are sorted before they are checked.
        "peer ghost not found",
    );

    // A policy answers with the groups its rules name, and names the first
    // missing one.
    let rule = |from: &str, to: &str| {
        json!({"name": "p", "enabled": true, "rules": [{"name": "r", "enabled": true,
            "action": "accept", "bidirectional": true, "protocol": "all",
            "sources": [from], "destinations": [to]}]})
    };
    let policy = s.post("/api/policies", rule(&g, &other));
    let rule0 = &policy["rules"][0];
    assert_eq!(rule0["sources"][0]["name"], odd);
    assert_eq!(rule0["destinations"][0]["name"], "he said");
    s.expect_error(
        "POST",
        "/api/policies",
        Some(rule(&g, "nowhere")),
        422,
        "group nowhere not found",
    );
}
