//! Black-box tests of how the REST API reads what clients send: account
//! settings (the network range, settings left out of a PUT), bodies shaped
//! as a third-party client builds them, and the size limits on stored
//! values. The real binary over HTTP, on both stores.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::client::{reusable, run, Peer};
use common::Server;
use serde_json::{json, Value};

both_stores!(
    network_range_refusals,
    network_range_change_moves_peers,
    settings_left_out_keep_their_values,
    third_party_client_bodies,
    size_limits
);

/// The account's path and its settings as stored.
fn account(s: &Server) -> (String, Value) {
    let account = s.get("/api/accounts")[0].clone();
    let path = format!("/api/accounts/{}", account["id"].as_str().unwrap());
    (path, account["settings"].clone())
}

/// `settings` with `network_range` set to `range`, as a PUT body.
fn with_range(settings: &Value, range: &str) -> Value {
    let mut settings = settings.clone();
    settings["network_range"] = json!(range);
    json!({ "settings": settings })
}

fn not_private(range: &str) -> String {
    format!(
        "network range {range} must be inside 100.64.0.0/10, 10.0.0.0/8, 172.16.0.0/12 \
         or 192.168.0.0/16"
    )
}

fn network_range_refusals(s: &mut Server) {
    let (path, settings) = account(s);
    let stored = settings["network_range"].clone();
    let refusals = [
        ("0.0.0.0/0", not_private("0.0.0.0/0")),
        ("127.0.0.0/8", not_private("127.0.0.0/8")),
        ("224.0.0.0/4", not_private("224.0.0.0/4")),
        ("8.8.8.0/24", not_private("8.8.8.0/24")),
        (
            "100.64.0.1/32",
            "network range 100.64.0.1/32 is too small: it has room for 0 peers and the \
             account has 0"
                .to_string(),
        ),
        (
            "10.0.0",
            "invalid CIDR \"10.0.0\": must be an IPv4 prefix such as 10.0.0.0/24".to_string(),
        ),
    ];
    for (range, message) in &refusals {
        s.expect_error(
            "PUT",
            &path,
            Some(with_range(&settings, range)),
            422,
            message,
        );
    }
    // Three peers do not fit in a /30 (two host addresses).
    let base = stored
        .as_str()
        .unwrap()
        .trim_end_matches("0.0/16")
        .to_string();
    for n in 1..=3 {
        s.insert_peer(
            &format!("p{n}"),
            &format!("p{n}"),
            &format!("{base}0.{n}"),
            &[],
        );
    }
    s.expect_error(
        "PUT",
        &path,
        Some(with_range(&settings, "10.1.1.0/30")),
        422,
        "network range 10.1.1.0/30 is too small: it has room for 2 peers and the account has 3",
    );
    // Nothing changed: neither the range nor any peer's address.
    assert_eq!(account(s).1["network_range"], stored);
    let peers = s.get("/api/peers");
    for p in peers.as_array().unwrap() {
        assert!(p["ip"].as_str().unwrap().starts_with(&base), "{p}");
    }
    // A /29 holds them.
    let moved = s.put(&path, with_range(&settings, "10.1.1.0/29"));
    assert_eq!(moved["settings"]["network_range"], "10.1.1.0/29");
}

fn network_range_change_moves_peers(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut a = Peer::connect(s, "alpha").await;
        let la = a.login(&key).await.unwrap();
        let mut b = Peer::connect(s, "beta").await;
        b.login(&key).await.unwrap();
        let mut sa = a.sync().await;
        let before = a.next_map(&mut sa).await;
        assert_eq!(before["peer_config"]["address"], la.address.as_str());

        // Host bits are cleared; every peer moves into the new range.
        let (path, settings) = account(s);
        let updated = s.put(&path, with_range(&settings, "10.77.3.4/16"));
        assert_eq!(updated["settings"]["network_range"], "10.77.0.0/16");
        let peers = s.get("/api/peers");
        let ips: Vec<&str> = peers
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ip"].as_str().unwrap())
            .collect();
        assert_eq!(ips.len(), 2);
        assert_ne!(ips[0], ips[1]);
        for ip in &ips {
            assert!(ip.starts_with("10.77."), "{ip}");
            assert!(!["10.77.0.0", "10.77.255.255"].contains(ip), "{ip}");
        }
        assert!(s
            .activities()
            .contains(&"account.network.range.update".to_string()));

        // The open stream gets a map with the new addresses.
        let map = a.next_map(&mut sa).await;
        let own = map["peer_config"]["address"].as_str().unwrap();
        assert!(own.starts_with("10.77."), "{map}");
        assert!(own.ends_with("/16"), "{map}");
        let other = map["peers"][0]["ip"].as_str().unwrap();
        assert!(ips.contains(&other), "{map}");
        // And a new login answers the new address.
        let again = a.login("").await.unwrap();
        assert_eq!(again.address, own);
    });
}

fn settings_left_out_keep_their_values(s: &mut Server) {
    let (path, settings) = account(s);
    let mut custom = settings.clone();
    custom["dns_domain"] = json!("corp.example");
    custom["lazy_connection_enabled"] = json!(true);
    custom["jwt_groups_claim_name"] = json!("roles");
    custom["extra"]["peer_approval_enabled"] = json!(true);
    s.put(&path, json!({ "settings": custom }));

    // What the PyPI `netbird` client sends for
    // `AccountSettings(peer_login_expiration_enabled=True, peer_login_expiration=3600)`.
    let sparse = json!({"settings": {"peer_login_expiration_enabled": true,
        "peer_login_expiration": 3600}});
    let after = s.put(&path, sparse)["settings"].clone();
    assert_eq!(after["peer_login_expiration"], 3600);
    assert_eq!(after["dns_domain"], "corp.example");
    assert_eq!(after["lazy_connection_enabled"], true);
    assert_eq!(after["jwt_groups_claim_name"], "roles");
    assert_eq!(after["extra"]["peer_approval_enabled"], true);
    assert_eq!(after["network_range"], settings["network_range"]);
    assert_eq!(account(s).1, after, "stored as answered");

    // null and an empty range are no change either.
    let mut body = after.clone();
    body["network_range"] = json!("");
    body["dns_domain"] = Value::Null;
    body["extra"] = Value::Null;
    let again = s.put(&path, json!({ "settings": body }))["settings"].clone();
    assert_eq!(again, after);
}

/// Bodies exactly as the PyPI `netbird` client (1.4.0) builds them: it
/// sends `model_dump(exclude_unset=True)`, so every field the caller did
/// not set is left out, defaults included.
fn third_party_client_bodies(s: &mut Server) {
    let all = s.all_group();

    // PolicyCreate(name=..., rules=[PolicyRule(name=..., action=...,
    // protocol=..., ports=[...], sources=[...], destinations=[...])]):
    // no `enabled` anywhere, no `bidirectional`.
    let policy = s.post(
        "/api/policies",
        json!({"name": "web", "rules": [{"name": "http", "action": "accept",
            "protocol": "tcp", "ports": ["80"], "sources": [all], "destinations": [all]}]}),
    );
    assert_eq!(policy["enabled"], false);
    assert_eq!(policy["rules"][0]["enabled"], false);
    assert_eq!(policy["rules"][0]["bidirectional"], false);
    assert_eq!(policy["rules"][0]["ports"], json!(["80"]));
    // PolicyUpdate(rules=[...]) without a name: the zero name is refused,
    // as the reference refuses it.
    let id = policy["id"].as_str().unwrap();
    s.expect_error(
        "PUT",
        &format!("/api/policies/{id}"),
        Some(json!({"rules": [{"action": "accept", "protocol": "all",
            "sources": [all], "destinations": [all]}]})),
        422,
        "policy name shouldn't be empty",
    );
    // A wrong type is still refused.
    let (status, body) = s.call(
        "POST",
        "/api/policies",
        Some(json!({"name": "bad", "enabled": "yes", "rules": []})),
    );
    assert_eq!(status, 422, "{body}");

    // GroupCreate(name=...).
    let group = s.post("/api/groups", json!({"name": "ops"}));
    assert_eq!(group["peers_count"], 0);
    let ops = group["id"].as_str().unwrap().to_string();

    // SetupKeyCreate(name=..., type=..., expires_in=...) and
    // SetupKeyUpdate(revoked=True).
    let key = s.post(
        "/api/setup-keys",
        json!({"name": "ci", "type": "reusable", "expires_in": 86400}),
    );
    assert_eq!(key["auto_groups"], json!([]));
    assert_eq!(key["usage_limit"], 0);
    let key_id = key["id"].as_str().unwrap();
    let revoked = s.put(
        &format!("/api/setup-keys/{key_id}"),
        json!({"revoked": true}),
    );
    assert_eq!(revoked["revoked"], true);

    // RouteCreate(network_id=..., network_type=..., network=...,
    // peer_groups=[...], groups=[...], metric=...).
    let route = s.post(
        "/api/routes",
        json!({"network_id": "lan", "network_type": "ipv4", "network": "192.168.10.0/24",
            "peer_groups": [ops], "groups": [ops], "metric": 9999}),
    );
    assert_eq!(route["enabled"], false);
    assert_eq!(route["masquerade"], false);
    assert_eq!(route["description"], "");

    // NetworkCreate(name=...).
    let network = s.post("/api/networks", json!({"name": "office"}));
    assert_eq!(network["description"], "");

    // UserCreate(email=..., role=...) and UserUpdate(role=...).
    let user = s.post(
        "/api/users",
        json!({"email": "bob@example.com", "role": "user"}),
    );
    assert_eq!(user["auto_groups"], json!([]));
    assert_eq!(user["is_service_user"], false);
    let user_id = user["id"].as_str().unwrap();
    let admin = s.put(&format!("/api/users/{user_id}"), json!({"role": "admin"}));
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["is_blocked"], false);

    // PeerUpdate(name=...).
    s.insert_peer("peer-1", "laptop", "100.64.0.1", &[]);
    let peer = s.put("/api/peers/peer-1", json!({"name": "renamed"}));
    assert_eq!(peer["name"], "renamed");
    assert_eq!(peer["ssh_enabled"], false);
}

/// A PUT or POST body `body` is refused with 422 `message`, and the
/// collection at `list` is unchanged.
fn refused(s: &Server, method: &str, path: &str, body: Value, message: &str, list: &str) {
    let before = s.get(list);
    s.expect_error(method, path, Some(body), 422, message);
    assert_eq!(s.get(list), before, "nothing stored");
}

fn size_limits(s: &mut Server) {
    let all = s.all_group();
    let long = "n".repeat(256);
    refused(
        s,
        "POST",
        "/api/groups",
        json!({"name": "g".repeat(1_900_000)}),
        "group name is too long: at most 255 characters",
        "/api/groups",
    );
    // 255 characters are fine.
    s.post("/api/groups", json!({"name": "n".repeat(255)}));
    let rule = |ports: Vec<String>| {
        json!({"name": "r", "enabled": true, "action": "accept", "bidirectional": true,
            "protocol": "tcp", "ports": ports, "sources": [all], "destinations": [all]})
    };
    let many: Vec<String> = (1..=100_000).map(|p| (p % 65535 + 1).to_string()).collect();
    refused(
        s,
        "POST",
        "/api/policies",
        json!({"name": "p", "enabled": true, "rules": [rule(many)]}),
        "too many ports and port ranges: at most 256",
        "/api/policies",
    );
    refused(
        s,
        "POST",
        "/api/policies",
        json!({"name": long, "enabled": true, "rules": [rule(vec!["22".into()])]}),
        "policy name is too long: at most 255 characters",
        "/api/policies",
    );
    refused(
        s,
        "POST",
        "/api/policies",
        json!({"name": "p", "description": "d".repeat(1025), "enabled": true,
            "rules": [rule(vec!["22".into()])]}),
        "policy description is too long: at most 1024 characters",
        "/api/policies",
    );
    let sources: Vec<String> = (0..1001).map(|_| all.clone()).collect();
    refused(
        s,
        "POST",
        "/api/policies",
        json!({"name": "p", "enabled": true, "rules": [{"name": "r", "action": "accept",
            "protocol": "all", "sources": sources, "destinations": [all]}]}),
        "too many sources: at most 1000",
        "/api/policies",
    );
    refused(
        s,
        "POST",
        "/api/setup-keys",
        json!({"name": long, "type": "reusable", "expires_in": 0}),
        "setup key name is too long: at most 255 characters",
        "/api/setup-keys",
    );
    refused(
        s,
        "POST",
        "/api/networks",
        json!({"name": "n", "description": "d".repeat(1025)}),
        "network description is too long: at most 1024 characters",
        "/api/networks",
    );
    refused(
        s,
        "POST",
        "/api/posture-checks",
        json!({"name": long, "checks": {"nb_version_check": {"min_version": "0.1.0"}}}),
        "posture check name is too long: at most 255 characters",
        "/api/posture-checks",
    );
    let me = s.get("/api/users/current")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = format!("/api/users/{me}/tokens");
    refused(
        s,
        "POST",
        &tokens,
        json!({"name": long, "expires_in": 30}),
        "token name is too long: at most 255 characters",
        &tokens,
    );
    // An update over a limit leaves the stored value as it was.
    let group = s.post("/api/groups", json!({"name": "keep"}));
    let id = group["id"].as_str().unwrap();
    s.expect_error(
        "PUT",
        &format!("/api/groups/{id}"),
        Some(json!({"name": long})),
        422,
        "group name is too long: at most 255 characters",
    );
    assert_eq!(s.get(&format!("/api/groups/{id}"))["name"], "keep");
    // A body over the request size limit is refused before it is read: the
    // answer comes while the client has sent only the head.
    let (status, body) = s.head_only("POST", "/api/groups", 5 << 20);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], 413, "{body}");
    assert_eq!(
        body["message"],
        format!("request body is too large: at most {} bytes", 4 << 20)
    );
}
