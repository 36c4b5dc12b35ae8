//! Black-box tests of the REST API: the real binary over HTTP.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use serde_json::{json, Value};

both_stores!(
    auth_failures,
    unknown_routes_and_bad_bodies,
    accounts,
    groups,
    linked_groups,
    setup_keys,
    tokens,
    users,
    regular_users_are_kept_out,
    policies,
    audit_log,
    restart_keeps_everything,
    posture_checks,
    routes,
    networks,
    dns,
    peers,
    user_approval,
);

fn auth_failures(s: &mut Server) {
    let path = "/api/groups";
    let cases: [(Option<&str>, &str); 6] = [
        (None, "no valid authentication provided"),
        (Some("Basic abc"), "no valid authentication provided"),
        (Some("Token nbp_short"), "PAT has incorrect length"),
        (
            Some("Token xbp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000"),
            "PAT has wrong prefix",
        ),
        (
            Some("Token nbp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000"),
            "PAT checksum does not match",
        ),
        (Some("Token"), "no valid authentication provided"),
    ];
    for (auth, message) in cases {
        let (status, body) = s.call_as(auth, "GET", path, None);
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body, json!({"code": 401, "message": message}));
    }
    // A well-formed token that this store never issued: one from another
    // server's store.
    let mut other = Server::start(common::Backend::Sqlite);
    let foreign = std::mem::take(&mut other.token);
    let (status, body) = s.call_as(Some(&format!("Token {foreign}")), "GET", path, None);
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("invalid token"))
    );

    // Both schemes work, and the token's last_used is recorded.
    let (status, _) = s.call_as(Some(&format!("Bearer {}", s.token)), "GET", path, None);
    assert_eq!(status, 200);
    let me = s.get("/api/users/current");
    let tokens = s.get(&format!("/api/users/{}/tokens", me["id"].as_str().unwrap()));
    assert!(tokens[0]["last_used"].is_string(), "{tokens}");
}

fn unknown_routes_and_bad_bodies(s: &mut Server) {
    let (status, body) = s.call("GET", "/api/nothing-here", None);
    assert_eq!((status, &body["code"]), (404, &json!(404)));
    let (status, body) = s.call("PATCH", "/api/groups", None);
    assert_eq!((status, &body["code"]), (405, &json!(405)));
    let (status, body) = s.raw("POST", "/api/groups", "application/json", "{");
    assert_eq!((status, &body["code"]), (400, &json!(400)), "{body}");
    let (status, body) = s.raw("POST", "/api/groups", "text/plain", "{\"name\":\"x\"}");
    assert_eq!((status, &body["code"]), (400, &json!(400)), "{body}");
    let (status, body) = s.raw("POST", "/api/groups", "application/json", "{\"peers\":[]}");
    assert_eq!((status, &body["code"]), (422, &json!(422)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("name"), "{body}");
    let (status, body) = s.raw("POST", "/api/groups", "application/json", "[1,2]");
    assert_eq!(status, 422, "{body}");
    let (status, body) = s.call("GET", "/api/users?service_user=maybe", None);
    assert_eq!((status, &body["code"]), (400, &json!(400)), "{body}");
}

fn accounts(s: &mut Server) {
    let accounts = s.get("/api/accounts");
    assert_eq!(accounts.as_array().unwrap().len(), 1);
    let account = &accounts[0];
    let id = account["id"].as_str().unwrap();
    let settings = &account["settings"];
    assert_eq!(settings["dns_domain"], "netbird.selfhosted");
    assert_eq!(settings["peer_login_expiration_enabled"], true);
    assert_eq!(settings["peer_login_expiration"], 86400);
    assert_eq!(settings["peer_expose_enabled"], false);
    let range = settings["network_range"].as_str().unwrap();
    let octets: Vec<&str> = range.trim_end_matches(".0.0/16").split('.').collect();
    assert_eq!(octets[0], "100", "{range}");
    let second: u8 = octets[1].parse().unwrap();
    assert!((64..128).contains(&second), "{range}");
    assert!(range.ends_with(".0.0/16"), "{range}");

    let path = format!("/api/accounts/{id}");
    let mut req = json!({"settings": settings.clone()});
    req["settings"]["peer_expose_enabled"] = json!(true);
    // Enabled with no groups: every peer may expose.
    let open = s.put(&path, req.clone());
    assert_eq!(open["settings"]["peer_expose_enabled"], true);
    assert_eq!(open["settings"]["peer_expose_groups"], json!([]));
    req["settings"]["peer_expose_groups"] = json!(["nope"]);
    s.expect_error("PUT", &path, Some(req.clone()), 422, "group nope not found");
    let all = s.all_group();
    req["settings"]["peer_expose_groups"] = json!([all]);
    let updated = s.put(&path, req.clone());
    assert_eq!(updated["settings"]["peer_expose_enabled"], true);
    assert_eq!(updated["settings"]["peer_expose_groups"], json!([all]));
    assert_eq!(
        s.get("/api/accounts")[0]["settings"]["peer_expose_groups"],
        json!([all])
    );
    assert!(s
        .activities()
        .contains(&"account.setting.peer.expose.enable".to_string()));

    req["settings"]["peer_login_expiration"] = json!(60);
    s.expect_error(
        "PUT",
        &path,
        Some(req.clone()),
        422,
        "peer login expiration can't be smaller than one hour",
    );
    req["settings"]["peer_login_expiration"] = json!(181 * 86400);
    s.expect_error(
        "PUT",
        &path,
        Some(req.clone()),
        422,
        "peer login expiration can't be larger than 180 days",
    );
    req["settings"]["peer_login_expiration"] = json!(7200);
    req["settings"]["peer_inactivity_expiration"] = json!(i64::MAX);
    s.expect_error(
        "PUT",
        &path,
        Some(req.clone()),
        422,
        "peer inactivity expiration must be between 0 and 180 days",
    );
    req["settings"]["peer_inactivity_expiration"] = json!(600);
    req["settings"]["dns_domain"] = json!("Not A Domain");
    let (status, _) = s.call("PUT", &path, Some(req.clone()));
    assert_eq!(status, 422);
    s.expect_error(
        "PUT",
        "/api/accounts/other",
        Some(req),
        404,
        "account other not found",
    );

    // Deleting the account removes everything, the caller's token included.
    s.expect_error(
        "DELETE",
        "/api/accounts/other",
        None,
        404,
        "account other not found",
    );
    s.delete(&path);
    let (status, _) = s.call("GET", "/api/accounts", None);
    assert_eq!(status, 401);
}

fn groups(s: &mut Server) {
    let all = s.all_group();
    s.expect_error(
        "PUT",
        &format!("/api/groups/{all}"),
        Some(json!({"name": "x"})),
        422,
        "updating group ALL is not allowed",
    );
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{all}"),
        None,
        422,
        "deleting group ALL is not allowed",
    );

    let g = s.post("/api/groups", json!({"name": "devs"}));
    let id = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["name"], "devs");
    assert_eq!(g["peers_count"], 0);
    assert_eq!(g["resources_count"], 0);
    assert_eq!(g["peers"], json!([]));
    assert_eq!(g["issued"], "api");
    assert_eq!(s.get(&format!("/api/groups/{id}")), g);

    s.expect_error(
        "POST",
        "/api/groups",
        Some(json!({"name": "  "})),
        422,
        "group name shouldn't be empty",
    );
    s.expect_error(
        "POST",
        "/api/groups",
        Some(json!({"name": "devs"})),
        409,
        "group with name \"devs\" already exists",
    );
    s.expect_error(
        "POST",
        "/api/groups",
        Some(json!({"name": "x", "peers": ["p1"]})),
        422,
        "peer p1 not found",
    );
    s.expect_error(
        "POST",
        "/api/groups",
        Some(json!({"name": "x", "resources": [{"id": "r1", "type": "host"}]})),
        422,
        "resource r1 not found",
    );

    let renamed = s.put(
        &format!("/api/groups/{id}"),
        json!({"name": "developers", "peers": []}),
    );
    assert_eq!(renamed["name"], "developers");
    s.post("/api/groups", json!({"name": "ops"}));
    let found = s.get("/api/groups?name=developers");
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    assert_eq!(s.get("/api/groups").as_array().unwrap().len(), 3);
    assert_eq!(s.get("/api/groups?name=none"), json!([]));

    s.delete(&format!("/api/groups/{id}"));
    s.expect_error(
        "GET",
        &format!("/api/groups/{id}"),
        None,
        404,
        &format!("group {id} not found"),
    );
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{id}"),
        None,
        404,
        &format!("group {id} not found"),
    );
    s.expect_error(
        "PUT",
        &format!("/api/groups/{id}"),
        Some(json!({"name": "y"})),
        404,
        &format!("group {id} not found"),
    );
}

fn linked_groups(s: &mut Server) {
    let g = s.post("/api/groups", json!({"name": "web"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rule = json!({"name": "r", "enabled": true, "action": "accept", "bidirectional": false,
        "protocol": "tcp", "ports": ["443"], "sources": [g], "destinations": [g]});
    let p = s.post(
        "/api/policies",
        json!({"name": "web access", "enabled": true, "rules": [rule]}),
    );
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{g}"),
        None,
        400,
        "group has been linked to policy: web access",
    );
    s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));

    let k = s.post("/api/setup-keys", json!({"name": "ci", "type": "reusable", "expires_in": 0, "auto_groups": [g], "usage_limit": 0}));
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{g}"),
        None,
        400,
        "group has been linked to setup key: ci",
    );
    s.delete(&format!("/api/setup-keys/{}", k["id"].as_str().unwrap()));

    let u = s.post(
        "/api/users",
        json!({"name": "robot", "role": "user", "auto_groups": [g], "is_service_user": true}),
    );
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{g}"),
        None,
        400,
        "group has been linked to user: robot",
    );
    s.delete(&format!("/api/users/{}", u["id"].as_str().unwrap()));

    s.delete(&format!("/api/groups/{g}"));
}

fn setup_keys(s: &mut Server) {
    let g = s.post("/api/groups", json!({"name": "servers"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let created = s.post("/api/setup-keys", json!({"name": "fleet", "type": "reusable", "expires_in": 86400, "auto_groups": [g], "usage_limit": 5, "ephemeral": true}));
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 36, "{created}");
    assert_eq!(key, key.to_uppercase());
    assert_eq!(created["state"], "valid");
    assert_eq!(created["valid"], true);
    assert_eq!(created["usage_limit"], 5);
    assert_eq!(created["ephemeral"], true);
    assert_eq!(created["auto_groups"], json!([g]));
    let id = created["id"].as_str().unwrap().to_string();

    let masked = format!("{}****", &key[..5]);
    let listed = s.get("/api/setup-keys");
    assert_eq!(listed[0]["key"], masked.as_str());
    let one = s.get(&format!("/api/setup-keys/{id}"));
    assert_eq!(one["key"], masked.as_str());
    assert!(!one.to_string().contains(&key), "plain key leaked: {one}");

    let one_off = s.post("/api/setup-keys", json!({"name": "once", "type": "one-off", "expires_in": 0, "auto_groups": [], "usage_limit": 0}));
    assert_eq!(one_off["usage_limit"], 1);
    assert_eq!(one_off["type"], "one-off");
    assert_eq!(one_off["expires"], "0001-01-01T00:00:00Z");

    let bad =
        |body: Value, msg: &str| s.expect_error("POST", "/api/setup-keys", Some(body), 422, msg);
    let base = json!({"name": "k", "type": "reusable", "expires_in": 0, "auto_groups": [], "usage_limit": 0});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    bad(
        with("expires_in", json!(-1)),
        "expires_in can't be negative",
    );
    bad(
        with("usage_limit", json!(-1)),
        "usage_limit can't be negative",
    );
    bad(
        with("type", json!("forever")),
        "invalid setup key type \"forever\": must be reusable or one-off",
    );
    bad(with("name", json!("")), "setup key name shouldn't be empty");
    bad(
        with("auto_groups", json!([s.all_group()])),
        "auto_groups can't contain the All group",
    );
    bad(
        with("auto_groups", json!(["missing"])),
        "group missing not found",
    );

    // Only auto_groups and revoked change; other fields are ignored.
    let path = format!("/api/setup-keys/{id}");
    let updated = s.put(
        &path,
        json!({"revoked": false, "auto_groups": [], "name": "renamed", "usage_limit": 99}),
    );
    assert_eq!(updated["auto_groups"], json!([]));
    assert_eq!(updated["name"], "fleet");
    assert_eq!(updated["usage_limit"], 5);
    let revoked = s.put(&path, json!({"revoked": true, "auto_groups": [g]}));
    assert_eq!(
        (
            revoked["revoked"].as_bool(),
            revoked["state"].as_str(),
            revoked["valid"].as_bool()
        ),
        (Some(true), Some("revoked"), Some(false))
    );
    s.expect_error(
        "PUT",
        &path,
        Some(json!({"revoked": false, "auto_groups": []})),
        422,
        "a revoked setup key can't be un-revoked",
    );

    s.delete(&path);
    s.expect_error(
        "GET",
        &path,
        None,
        404,
        &format!("setup key {id} not found"),
    );
    let codes = s.activities();
    for code in [
        "setupkey.add",
        "setupkey.update",
        "setupkey.revoke",
        "setupkey.delete",
        "setupkey.group.add",
        "setupkey.group.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn tokens(s: &mut Server) {
    let me = s.get("/api/users/current")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/users/{me}/tokens");
    let created = s.post(&path, json!({"name": "ci", "expires_in": 30}));
    let plain = created["plain_token"].as_str().unwrap().to_string();
    assert!(plain.starts_with("nbp_") && plain.len() == 40, "{created}");
    let token = &created["personal_access_token"];
    assert_eq!(token["name"], "ci");
    assert_eq!(token["created_by"], me.as_str());
    let id = token["id"].as_str().unwrap().to_string();

    // Shown once: never again in list or get.
    let listed = s.get(&path);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&plain[4..]));
    assert!(listed[0].get("hashed_token").is_none());
    let one = s.get(&format!("{path}/{id}"));
    assert_eq!(one["id"], id.as_str());
    assert!(one.get("plain_token").is_none());

    // The new token works.
    let (status, body) = s.call_as(
        Some(&format!("Token {plain}")),
        "GET",
        "/api/users/current",
        None,
    );
    assert_eq!((status, body["id"].as_str()), (200, Some(me.as_str())));

    s.expect_error(
        "POST",
        &path,
        Some(json!({"name": "x", "expires_in": 0})),
        422,
        "expiration has to be between 1 and 365",
    );
    s.expect_error(
        "POST",
        &path,
        Some(json!({"name": "x", "expires_in": 366})),
        422,
        "expiration has to be between 1 and 365",
    );
    s.expect_error(
        "POST",
        &path,
        Some(json!({"name": " ", "expires_in": 3})),
        422,
        "name should not be empty",
    );
    s.expect_error(
        "GET",
        &format!("{path}/nope"),
        None,
        404,
        "token nope not found",
    );
    s.expect_error(
        "GET",
        "/api/users/nobody/tokens",
        None,
        404,
        "user nobody not found",
    );

    s.delete(&format!("{path}/{id}"));
    let (status, body) = s.call_as(
        Some(&format!("Token {plain}")),
        "GET",
        "/api/users/current",
        None,
    );
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("invalid token"))
    );
    let codes = s.activities();
    assert!(codes.contains(&"personal.access.token.create".to_string()));
    assert!(codes.contains(&"personal.access.token.delete".to_string()));

    // An admin manages a service user's tokens, but not another person's.
    let svc = s.post(
        "/api/users",
        json!({"name": "bot", "role": "admin", "auto_groups": [], "is_service_user": true}),
    );
    let svc_path = format!("/api/users/{}/tokens", svc["id"].as_str().unwrap());
    s.post(&svc_path, json!({"name": "bot token", "expires_in": 1}));
    let person = s.post("/api/users", json!({"email": "ann@example.com", "name": "Ann", "role": "user", "auto_groups": [], "is_service_user": false}));
    let person_path = format!("/api/users/{}/tokens", person["id"].as_str().unwrap());
    let (status, _) = s.call(
        "POST",
        &person_path,
        Some(json!({"name": "t", "expires_in": 1})),
    );
    assert_eq!(status, 403);
}

fn users(s: &mut Server) {
    let me = s.get("/api/users/current");
    assert_eq!(me["role"], "owner");
    assert_eq!(me["is_current"], true);
    assert_eq!(me["status"], "active");

    let svc = s.post(
        "/api/users",
        json!({"name": "deployer", "role": "admin", "auto_groups": [], "is_service_user": true}),
    );
    assert_eq!(svc["is_service_user"], true);
    assert_eq!(svc["is_current"], false);
    let person = s.post("/api/users", json!({"email": "bob@example.com", "name": "Bob", "role": "user", "auto_groups": [], "is_service_user": false}));
    assert_eq!(person["status"], "invited");

    let all = s.get("/api/users");
    assert_eq!(all.as_array().unwrap().len(), 3);
    let services = s.get("/api/users?service_user=true");
    assert_eq!(services.as_array().unwrap().len(), 1);
    assert_eq!(services[0]["name"], "deployer");
    let people = s.get("/api/users?service_user=false");
    assert_eq!(people.as_array().unwrap().len(), 2);

    s.expect_error(
        "POST",
        "/api/users",
        Some(json!({"name": "x", "role": "wizard", "auto_groups": [], "is_service_user": true})),
        422,
        "invalid user role \"wizard\"",
    );
    s.expect_error(
        "POST",
        "/api/users",
        Some(json!({"name": "x", "role": "owner", "auto_groups": [], "is_service_user": true})),
        422,
        "the owner role can't be assigned",
    );
    s.expect_error(
        "POST",
        "/api/users",
        Some(json!({"role": "user", "auto_groups": [], "is_service_user": true})),
        422,
        "service user name should not be empty",
    );
    s.expect_error("POST", "/api/users", Some(json!({"email": "bob@example.com", "role": "user", "auto_groups": [], "is_service_user": false})), 409, "user with email bob@example.com already exists");
    s.expect_error(
        "POST",
        "/api/users",
        Some(json!({"email": "nope", "role": "user", "auto_groups": [], "is_service_user": false})),
        422,
        "a valid email is required to invite a user",
    );

    let g = s.post("/api/groups", json!({"name": "staff"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = person["id"].as_str().unwrap();
    let updated = s.put(
        &format!("/api/users/{pid}"),
        json!({"role": "admin", "auto_groups": [g], "is_blocked": true}),
    );
    assert_eq!(updated["role"], "admin");
    assert_eq!(updated["auto_groups"], json!([g]));
    assert_eq!(updated["is_blocked"], true);
    assert_eq!(updated["status"], "blocked");
    let my_id = me["id"].as_str().unwrap();
    s.expect_error(
        "PUT",
        &format!("/api/users/{my_id}"),
        Some(json!({"role": "admin", "auto_groups": [], "is_blocked": false})),
        422,
        "the owner role can't be changed",
    );
    s.expect_error(
        "PUT",
        &format!("/api/users/{my_id}"),
        Some(json!({"role": "owner", "auto_groups": [], "is_blocked": true})),
        422,
        "the owner and the caller can't be blocked",
    );
    s.expect_error(
        "PUT",
        "/api/users/ghost",
        Some(json!({"role": "user", "auto_groups": [], "is_blocked": false})),
        404,
        "user ghost not found",
    );
    s.expect_error(
        "DELETE",
        &format!("/api/users/{my_id}"),
        None,
        422,
        "a user can't delete themselves",
    );

    s.delete(&format!("/api/users/{pid}"));
    s.expect_error(
        "DELETE",
        &format!("/api/users/{pid}"),
        None,
        404,
        &format!("user {pid} not found"),
    );
    let codes = s.activities();
    for code in [
        "service.user.create",
        "user.invite",
        "user.role.update",
        "user.block",
        "user.group.add",
        "user.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn regular_users_are_kept_out(s: &mut Server) {
    let svc = s.post(
        "/api/users",
        json!({"name": "viewer", "role": "user", "auto_groups": [], "is_service_user": true}),
    );
    let id = svc["id"].as_str().unwrap();
    // Only the user may create its own tokens; an admin may for service users.
    let token = s.post(
        &format!("/api/users/{id}/tokens"),
        json!({"name": "t", "expires_in": 1}),
    )["plain_token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("Token {token}");
    let (status, body) = s.call_as(Some(&auth), "GET", "/api/users/current", None);
    assert_eq!((status, body["role"].as_str()), (200, Some("user")));
    for (method, path) in [
        ("GET", "/api/groups"),
        ("GET", "/api/users"),
        ("GET", "/api/setup-keys"),
        ("POST", "/api/groups"),
        ("GET", "/api/events/audit"),
    ] {
        let body = (method == "POST").then(|| json!({"name": "x"}));
        let (status, out) = s.call_as(Some(&auth), method, path, body);
        assert_eq!(status, 403, "{method} {path}: {out}");
        assert_eq!(out["code"], 403);
    }
    // Blocked users are refused outright.
    s.put(
        &format!("/api/users/{id}"),
        json!({"role": "user", "auto_groups": [], "is_blocked": true}),
    );
    let (status, _) = s.call_as(Some(&auth), "GET", "/api/users/current", None);
    assert_eq!(status, 403);
}

fn policies(s: &mut Server) {
    let all = s.all_group();
    let list = s.get("/api/policies");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let default = &list[0];
    assert_eq!(default["name"], "Default");
    assert_eq!(default["enabled"], true);
    let rule = &default["rules"][0];
    assert_eq!(rule["protocol"], "all");
    assert_eq!(rule["bidirectional"], true);
    assert_eq!(rule["action"], "accept");
    assert_eq!(rule["sources"][0]["id"], all.as_str());
    assert_eq!(rule["sources"][0]["name"], "All");
    assert_eq!(rule["destinations"][0]["name"], "All");
    assert!(rule["sources"][0]["peers_count"].is_number());

    let g = s.post("/api/groups", json!({"name": "db"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rule = |protocol: &str, extra: Value| {
        let mut r = json!({"name": "r1", "enabled": true, "action": "accept", "bidirectional": true,
            "protocol": protocol, "sources": [all], "destinations": [g]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        json!({"name": "db access", "description": "d", "enabled": true, "rules": [r]})
    };
    let created = s.post("/api/policies", rule("tcp", json!({"ports": ["5432"]})));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["rules"][0]["ports"], json!(["5432"]));
    assert_eq!(created["rules"][0]["destinations"][0]["name"], "db");
    assert!(created["rules"][0]["id"].is_string());
    assert_eq!(s.get(&format!("/api/policies/{id}")), created);

    let bad =
        |body: Value, msg: &str| s.expect_error("POST", "/api/policies", Some(body), 422, msg);
    bad(
        rule("all", json!({"ports": ["80"]})),
        "for ALL or ICMP protocol ports is not allowed",
    );
    bad(
        rule("tcp", json!({"ports": ["0"]})),
        "valid port value is in 1..65535 range",
    );
    bad(
        rule(
            "tcp",
            json!({"ports": ["80"], "port_ranges": [{"start": 1, "end": 2}]}),
        ),
        "specify either individual ports or port ranges, not both",
    );
    bad(
        rule("tcp", json!({"sources": ["ghost"]})),
        "group ghost not found",
    );
    bad(
        rule(
            "tcp",
            json!({"sourceResource": {"id": "r", "type": "host"}}),
        ),
        "specify either sources or source resources, not both",
    );
    bad(
        json!({"name": "empty", "enabled": true, "rules": []}),
        "policy must have at least one rule",
    );
    bad(
        json!({"name": "p", "enabled": true, "source_posture_checks": ["pc"], "rules": rule("tcp", json!({}))["rules"]}),
        "posture check pc not found",
    );
    let (status, _) = s.call("POST", "/api/policies", Some(rule("smtp", json!({}))));
    assert_eq!(status, 422);

    let rule_id = created["rules"][0]["id"].as_str().unwrap().to_string();
    let mut change = rule(
        "udp",
        json!({"port_ranges": [{"start": 1000, "end": 2000}]}),
    );
    change["rules"][0]["id"] = json!(rule_id);
    let updated = s.put(&format!("/api/policies/{id}"), change);
    assert_eq!(updated["rules"][0]["protocol"], "udp");
    assert_eq!(updated["rules"][0]["id"], rule_id.as_str());
    assert_eq!(
        updated["rules"][0]["port_ranges"],
        json!([{"start": 1000, "end": 2000}])
    );

    s.delete(&format!("/api/policies/{id}"));
    s.expect_error(
        "GET",
        &format!("/api/policies/{id}"),
        None,
        404,
        &format!("policy {id} not found"),
    );
    s.expect_error(
        "PUT",
        &format!("/api/policies/{id}"),
        Some(rule("tcp", json!({}))),
        404,
        &format!("policy {id} not found"),
    );
    let codes = s.activities();
    for code in ["policy.add", "policy.update", "policy.delete"] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn audit_log(s: &mut Server) {
    let me = s.get("/api/users/current");
    let g = s.post("/api/groups", json!({"name": "audited"}));
    let events = s.get("/api/events/audit");
    let newest = &events[0];
    assert_eq!(newest["activity_code"], "group.add");
    assert_eq!(newest["activity"], "Group created");
    assert_eq!(newest["target_id"], g["id"]);
    assert_eq!(newest["initiator_id"], me["id"]);
    assert_eq!(newest["initiator_name"], me["name"]);
    assert_eq!(newest["meta"]["name"], "audited");
    assert!(newest["timestamp"].as_str().unwrap().ends_with('Z'));
    let oldest = events.as_array().unwrap().last().unwrap();
    assert_eq!(oldest["activity_code"], "account.create");
    // Rejected mutations record nothing.
    let before = events.as_array().unwrap().len();
    let (status, _) = s.call("POST", "/api/groups", Some(json!({"name": ""})));
    assert_eq!(status, 422);
    assert_eq!(s.get("/api/events/audit").as_array().unwrap().len(), before);
}

fn restart_keeps_everything(s: &mut Server) {
    let g = s.post("/api/groups", json!({"name": "durable"}));
    let k = s.post("/api/setup-keys", json!({"name": "k", "type": "reusable", "expires_in": 0, "auto_groups": [], "usage_limit": 0}));
    let events = s.get("/api/events/audit");
    s.crash_and_restart();
    assert_eq!(
        s.get(&format!("/api/groups/{}", g["id"].as_str().unwrap())),
        g
    );
    assert_eq!(
        s.get(&format!("/api/setup-keys/{}", k["id"].as_str().unwrap()))["name"],
        "k"
    );
    assert_eq!(s.get("/api/events/audit"), events);

    // admin-token on an existing store reuses the account and its owner.
    let account = s.get("/api/accounts")[0]["id"].clone();
    s.token = s.admin_token();
    let accounts = s.get("/api/accounts");
    assert_eq!(accounts.as_array().unwrap().len(), 1);
    assert_eq!(accounts[0]["id"], account);
    assert_eq!(s.get("/api/users").as_array().unwrap().len(), 1);
}

fn posture_checks(s: &mut Server) {
    let body = json!({"name": "new clients", "description": "min version",
        "checks": {"nb_version_check": {"min_version": "0.40.0"},
                   "peer_network_range_check": {"ranges": ["10.0.0.0/8"], "action": "allow"}}});
    let created = s.post("/api/posture-checks", body.clone());
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["checks"]["nb_version_check"]["min_version"],
        "0.40.0"
    );
    assert_eq!(s.get(&format!("/api/posture-checks/{id}")), created);
    assert_eq!(s.get("/api/posture-checks").as_array().unwrap().len(), 1);

    let bad = |b: Value, status: u16, msg: &str| {
        s.expect_error("POST", "/api/posture-checks", Some(b), status, msg)
    };
    bad(
        body.clone(),
        409,
        "posture check with name \"new clients\" already exists",
    );
    bad(
        json!({"name": "", "description": ""}),
        422,
        "posture check name shouldn't be empty",
    );
    bad(
        json!({"name": "x", "description": "", "checks": {}}),
        422,
        "posture checks shouldn't be empty",
    );
    bad(
        json!({"name": "x", "description": "", "checks": {"geo_location_check": {"locations": [{"country_code": "germany"}], "action": "allow"}}}),
        422,
        "invalid country code \"germany\": must be ISO 3166-1 alpha-2",
    );
    let (status, _) = s.call(
        "POST",
        "/api/posture-checks",
        Some(json!({"name": "x", "description": "",
        "checks": {"peer_network_range_check": {"ranges": ["nonsense"], "action": "allow"}}})),
    );
    assert_eq!(status, 422);

    let all = s.all_group();
    let p = s.post("/api/policies", json!({"name": "checked", "enabled": true, "source_posture_checks": [id],
        "rules": [{"name": "r", "enabled": true, "action": "accept", "bidirectional": true, "protocol": "all", "sources": [all], "destinations": [all]}]}));
    assert_eq!(p["source_posture_checks"], json!([id]));
    s.expect_error(
        "DELETE",
        &format!("/api/posture-checks/{id}"),
        None,
        400,
        "posture checks have been linked to policy: checked",
    );
    s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));

    let mut changed = body;
    changed["name"] = json!("renamed");
    assert_eq!(
        s.put(&format!("/api/posture-checks/{id}"), changed)["name"],
        "renamed"
    );
    s.delete(&format!("/api/posture-checks/{id}"));
    s.expect_error(
        "GET",
        &format!("/api/posture-checks/{id}"),
        None,
        404,
        &format!("posture check {id} not found"),
    );
    let codes = s.activities();
    for code in [
        "posture.check.create",
        "posture.check.update",
        "posture.check.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn routes(s: &mut Server) {
    let all = s.all_group();
    let routers = s.post("/api/groups", json!({"name": "routers"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"description": "office", "network_id": "office-lan", "enabled": true,
        "peer_groups": [routers], "network": "192.168.1.0/24", "metric": 9999, "masquerade": true,
        "groups": [all], "keep_route": false});
    let created = s.post("/api/routes", body.clone());
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["network_type"], "IPv4");
    assert_eq!(created["network"], "192.168.1.0/24");
    assert_eq!(created["peer_groups"], json!([routers]));
    assert_eq!(s.get(&format!("/api/routes/{id}")), created);
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{routers}"),
        None,
        400,
        "group has been linked to route: office-lan",
    );

    let with = |k: &str, v: Value| {
        let mut b = body.clone();
        b[k] = v;
        b
    };
    let bad = |b: Value, msg: &str| s.expect_error("POST", "/api/routes", Some(b), 422, msg);
    bad(
        with("metric", json!(0)),
        "metric should be between 1 and 9999",
    );
    bad(
        with("network_id", json!("")),
        "identifier should be between 1 and 40",
    );
    bad(
        with("domains", json!(["example.com"])),
        "only one of 'network' or 'domains' should be provided",
    );
    bad(
        with("network", json!("")),
        "either 'network' or 'domains' should be provided",
    );
    bad(
        with("peer", json!("p1")),
        "only one of peer or peer_groups should be provided",
    );
    bad(
        with("peer_groups", json!([])),
        "either peer or peer_groups should be provided",
    );
    bad(
        with("groups", json!([])),
        "route should have at least one distribution group",
    );
    bad(with("groups", json!(["nope"])), "group nope not found");
    let (status, _) = s.call(
        "POST",
        "/api/routes",
        Some(with("network", json!("300.1.1.0/24"))),
    );
    assert_eq!(status, 422);

    let mut domains = with("network", Value::Null);
    domains["domains"] = json!(["example.com"]);
    let d = s.put(&format!("/api/routes/{id}"), domains);
    assert_eq!(d["network_type"], "Domain");
    assert_eq!(d["domains"], json!(["example.com"]));
    assert!(d.get("network").is_none(), "{d}");
    s.delete(&format!("/api/routes/{id}"));
    s.expect_error(
        "GET",
        &format!("/api/routes/{id}"),
        None,
        404,
        &format!("route {id} not found"),
    );
    let codes = s.activities();
    for code in ["route.add", "route.update", "route.delete"] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn networks(s: &mut Server) {
    let net = s.post(
        "/api/networks",
        json!({"name": "office", "description": "HQ"}),
    );
    let nid = net["id"].as_str().unwrap().to_string();
    assert_eq!(net["routers"], json!([]));
    assert_eq!(net["resources"], json!([]));
    assert_eq!(net["routing_peers_count"], 0);
    s.expect_error(
        "POST",
        "/api/networks",
        Some(json!({"name": ""})),
        422,
        "network name shouldn't be empty",
    );

    let g = s.post("/api/groups", json!({"name": "printers"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/api/networks/{nid}");
    let host = s.post(
        &format!("{base}/resources"),
        json!({"name": "printer", "address": "10.0.0.5", "enabled": true, "groups": [g]}),
    );
    assert_eq!(host["type"], "host");
    assert_eq!(host["groups"][0]["id"], g.as_str());
    assert_eq!(host["groups"][0]["resources_count"], 1);
    let rid = host["id"].as_str().unwrap().to_string();
    let subnet = s.post(
        &format!("{base}/resources"),
        json!({"name": "lan", "address": "10.0.0.0/24", "enabled": true, "groups": []}),
    );
    assert_eq!(subnet["type"], "subnet");
    let domain = s.post(
        &format!("{base}/resources"),
        json!({"name": "wiki", "address": "*.wiki.example.com", "enabled": true, "groups": []}),
    );
    assert_eq!(domain["type"], "domain");
    s.expect_error(
        "POST",
        &format!("{base}/resources"),
        Some(json!({"name": "x", "address": "not an address", "enabled": true, "groups": []})),
        422,
        "invalid address \"not an address\": must be an IP address, a CIDR or a domain",
    );
    s.expect_error(
        "POST",
        &format!("{base}/resources"),
        Some(json!({"name": "x", "address": "10.0.0.9", "enabled": true, "groups": ["nope"]})),
        422,
        "group nope not found",
    );
    assert_eq!(
        s.get(&format!("/api/groups/{g}"))["resources"],
        json!([{"id": rid, "type": "host"}])
    );
    assert_eq!(
        s.get(&format!("{base}/resources"))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(s.get(&format!("{base}/resources/{rid}")), host);

    // A policy towards the resource shows on the network and blocks deletion.
    let all = s.all_group();
    let p = s.post("/api/policies", json!({"name": "print", "enabled": true, "rules": [{"name": "r", "enabled": true,
        "action": "accept", "bidirectional": false, "protocol": "tcp", "ports": ["631"], "sources": [all],
        "destinationResource": {"id": rid, "type": "host"}}]}));
    assert_eq!(p["rules"][0]["destinationResource"]["id"], rid.as_str());
    assert_eq!(s.get(&base)["policies"], json!([p["id"]]));
    s.expect_error(
        "DELETE",
        &format!("{base}/resources/{rid}"),
        None,
        400,
        "resource has been linked to policy: print",
    );
    s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));

    // Moving the resource out of its group.
    let moved = s.put(
        &format!("{base}/resources/{rid}"),
        json!({"name": "printer2", "address": "10.0.0.6", "enabled": false, "groups": []}),
    );
    assert_eq!(moved["groups"], json!([]));
    assert_eq!(moved["name"], "printer2");
    assert_eq!(s.get(&format!("/api/groups/{g}"))["resources_count"], 0);

    // Routers.
    let router = s.post(
        &format!("{base}/routers"),
        json!({"peer_groups": [g], "metric": 100, "masquerade": true, "enabled": true}),
    );
    let router_id = router["id"].as_str().unwrap().to_string();
    assert_eq!(router["metric"], 100);
    s.expect_error(
        "POST",
        &format!("{base}/routers"),
        Some(json!({"metric": 100, "masquerade": true, "enabled": true})),
        422,
        "either peer or peer_groups should be provided",
    );
    s.expect_error(
        "POST",
        &format!("{base}/routers"),
        Some(json!({"peer": "ghost", "metric": 100, "masquerade": true, "enabled": true})),
        422,
        "peer ghost not found",
    );
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{g}"),
        None,
        400,
        &format!("group has been linked to network router: {router_id}"),
    );
    assert_eq!(
        s.get(&format!("{base}/routers")).as_array().unwrap().len(),
        1
    );
    assert_eq!(s.get("/api/networks/routers")[0]["id"], router_id.as_str());
    assert_eq!(s.get(&format!("{base}/routers/{router_id}")), router);
    let changed = s.put(
        &format!("{base}/routers/{router_id}"),
        json!({"peer_groups": [g], "metric": 5, "masquerade": false, "enabled": true}),
    );
    assert_eq!(changed["metric"], 5);
    assert_eq!(s.get(&base)["routers"], json!([router_id]));

    let renamed = s.put(&base, json!({"name": "office2"}));
    assert_eq!(renamed["name"], "office2");
    assert_eq!(s.get("/api/networks").as_array().unwrap().len(), 1);

    // Deleting the network takes its resources and routers with it.
    s.delete(&base);
    s.expect_error("GET", &base, None, 404, &format!("network {nid} not found"));
    assert_eq!(s.get("/api/networks/routers"), json!([]));
    s.delete(&format!("/api/groups/{g}"));
    let codes = s.activities();
    for code in [
        "network.create",
        "network.update",
        "network.delete",
        "network.resource.create",
        "network.resource.update",
        "network.resource.delete",
        "network.router.create",
        "network.router.update",
        "network.router.delete",
        "resource.group.add",
        "resource.group.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn dns(s: &mut Server) {
    let all = s.all_group();
    let body = json!({"name": "google", "description": "public", "nameservers": [{"ip": "8.8.8.8", "ns_type": "udp", "port": 53}],
        "enabled": true, "groups": [all], "primary": true, "domains": [], "search_domains_enabled": false});
    let created = s.post("/api/dns/nameservers", body.clone());
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["nameservers"][0]["ip"], "8.8.8.8");
    assert_eq!(s.get(&format!("/api/dns/nameservers/{id}")), created);
    assert_eq!(s.get("/api/dns/nameservers").as_array().unwrap().len(), 1);

    let with = |k: &str, v: Value| {
        let mut b = body.clone();
        b["name"] = json!("other");
        b[k] = v;
        b
    };
    let bad = |b: Value, status: u16, msg: &str| {
        s.expect_error("POST", "/api/dns/nameservers", Some(b), status, msg)
    };
    bad(
        body.clone(),
        409,
        "nameserver group with name \"google\" already exists",
    );
    bad(
        with("name", json!("")),
        422,
        "nameserver group name should be between 1 and 40",
    );
    bad(
        with("nameservers", json!([])),
        422,
        "the list of nameservers should be 1 to 3",
    );
    bad(
        with("domains", json!(["example.com"])),
        422,
        "a primary nameserver group can't have domains",
    );
    bad(
        with("primary", json!(false)),
        422,
        "a nameserver group should be primary or have at least one domain",
    );
    bad(
        with("groups", json!([])),
        422,
        "a nameserver group should have at least one distribution group",
    );
    bad(
        with(
            "nameservers",
            json!([{"ip": "dns.google", "ns_type": "udp", "port": 53}]),
        ),
        422,
        "invalid nameserver IP \"dns.google\"",
    );
    bad(
        with(
            "nameservers",
            json!([{"ip": "8.8.8.8", "ns_type": "tcp", "port": 53}]),
        ),
        422,
        "invalid nameserver type \"tcp\": only udp is supported",
    );
    bad(
        with(
            "nameservers",
            json!([{"ip": "8.8.8.8", "ns_type": "udp", "port": 0}]),
        ),
        422,
        "invalid port number: must be between 1 and 65535",
    );

    let g = s.post("/api/groups", json!({"name": "no-dns"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut scoped = with("primary", json!(false));
    scoped["domains"] = json!(["corp.example.com"]);
    scoped["groups"] = json!([g]);
    let updated = s.put(&format!("/api/dns/nameservers/{id}"), scoped);
    assert_eq!(updated["domains"], json!(["corp.example.com"]));
    assert_eq!(updated["name"], "other");
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{g}"),
        None,
        400,
        "group has been linked to name server groups: other",
    );
    s.delete(&format!("/api/dns/nameservers/{id}"));
    s.expect_error(
        "GET",
        &format!("/api/dns/nameservers/{id}"),
        None,
        404,
        &format!("nameserver group {id} not found"),
    );

    assert_eq!(
        s.get("/api/dns/settings"),
        json!({"disabled_management_groups": []})
    );
    let set = s.put(
        "/api/dns/settings",
        json!({"disabled_management_groups": [g]}),
    );
    assert_eq!(set, json!({"disabled_management_groups": [g]}));
    assert_eq!(s.get("/api/dns/settings"), set);
    s.expect_error(
        "PUT",
        "/api/dns/settings",
        Some(json!({"disabled_management_groups": ["nope"]})),
        422,
        "group nope not found",
    );
    s.expect_error(
        "DELETE",
        &format!("/api/groups/{g}"),
        None,
        400,
        "group has been linked to dns settings: disabled management groups",
    );
    s.put(
        "/api/dns/settings",
        json!({"disabled_management_groups": []}),
    );
    s.delete(&format!("/api/groups/{g}"));
    let codes = s.activities();
    for code in [
        "nameserver.group.add",
        "nameserver.group.update",
        "nameserver.group.delete",
        "dns.setting.disabled.management.group.add",
        "dns.setting.disabled.management.group.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn peers(s: &mut Server) {
    assert_eq!(s.get("/api/peers"), json!([]));
    let range = s.get("/api/accounts")[0]["settings"]["network_range"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = range.trim_end_matches("0.0/16");
    let ip = |last: u8| format!("{prefix}0.{last}");
    let web = s.post("/api/groups", json!({"name": "web"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let db = s.post("/api/groups", json!({"name": "db"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.insert_peer("p1", "alpha", &ip(1), &[&web]);
    s.insert_peer("p2", "beta", &ip(2), &[&db]);
    s.insert_peer("p3", "gamma", &ip(3), &[]);

    let list = s.get("/api/peers");
    assert_eq!(list.as_array().unwrap().len(), 3);
    let alpha = &list[0];
    assert_eq!(alpha["name"], "alpha");
    assert_eq!(alpha["ip"], ip(1).as_str());
    assert_eq!(alpha["dns_label"], "alpha.netbird.selfhosted");
    assert_eq!(alpha["os"], "linux 6.1");
    // The Default policy (All <-> All) lets everyone see everyone.
    assert_eq!(alpha["accessible_peers_count"], 2);
    let names: Vec<&str> = alpha["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"All") && names.contains(&"web"),
        "{names:?}"
    );

    assert_eq!(s.get("/api/peers?name=beta")[0]["id"], "p2");
    assert_eq!(s.get(&format!("/api/peers?ip={}", ip(3)))[0]["id"], "p3");
    assert_eq!(s.get("/api/peers?name=nobody"), json!([]));
    let one = s.get("/api/peers/p1");
    assert_eq!(one["id"], "p1");
    assert!(one.get("accessible_peers_count").is_none());
    s.expect_error("GET", "/api/peers/nope", None, 404, "peer nope not found");

    // Only web -> db once the Default policy is gone.
    let default = s.get("/api/policies")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.delete(&format!("/api/policies/{default}"));
    s.post("/api/policies", json!({"name": "web to db", "enabled": true, "rules": [{"name": "r", "enabled": true,
        "action": "accept", "bidirectional": false, "protocol": "tcp", "ports": ["5432"], "sources": [web], "destinations": [db]}]}));
    let reach = s.get("/api/peers/p1/accessible-peers");
    assert_eq!(reach.as_array().unwrap().len(), 1, "{reach}");
    assert_eq!(reach[0]["id"], "p2");
    assert_eq!(reach[0]["dns_label"], "beta.netbird.selfhosted");
    assert_eq!(s.get("/api/peers/p3/accessible-peers"), json!([]));
    assert_eq!(
        s.get("/api/peers?name=gamma")[0]["accessible_peers_count"],
        0
    );

    // Rename, SSH, address.
    let body = json!({"name": "Alpha Prime", "ssh_enabled": true, "login_expiration_enabled": false,
        "inactivity_expiration_enabled": false, "ip": ip(9)});
    let updated = s.put("/api/peers/p1", body.clone());
    assert_eq!(updated["name"], "Alpha Prime");
    assert_eq!(updated["ssh_enabled"], true);
    assert_eq!(updated["ip"], ip(9).as_str());
    assert_eq!(updated["dns_label"], "alpha-prime.netbird.selfhosted");
    let mut taken = body.clone();
    taken["ip"] = json!(ip(2));
    s.expect_error(
        "PUT",
        "/api/peers/p1",
        Some(taken),
        409,
        &format!("IP {} is already used by another peer", ip(2)),
    );
    let mut outside = body.clone();
    outside["ip"] = json!("10.0.0.1");
    s.expect_error(
        "PUT",
        "/api/peers/p1",
        Some(outside),
        422,
        &format!("IP 10.0.0.1 is not a host address of the account network {range}"),
    );
    let mut empty = body;
    empty["name"] = json!("");
    s.expect_error(
        "PUT",
        "/api/peers/p1",
        Some(empty),
        422,
        "peer name shouldn't be empty",
    );

    let route = s.post("/api/routes", json!({"description": "", "network_id": "via-beta", "enabled": true, "peer": "p2",
        "network": "10.9.0.0/16", "metric": 1, "masquerade": false, "groups": [db], "keep_route": false}));
    s.expect_error(
        "DELETE",
        "/api/peers/p2",
        None,
        400,
        "peer has been linked to route: via-beta",
    );
    s.delete(&format!("/api/routes/{}", route["id"].as_str().unwrap()));

    s.delete("/api/peers/p3");
    s.expect_error("GET", "/api/peers/p3", None, 404, "peer p3 not found");
    assert_eq!(
        s.get(&format!("/api/groups/{}", s.all_group()))["peers_count"],
        2
    );
    let codes = s.activities();
    for code in [
        "peer.rename",
        "peer.ssh.enable",
        "peer.ip.update",
        "user.peer.delete",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }
}

fn user_approval(s: &mut Server) {
    for (id, email) in [
        ("u-wait", "wait@example.com"),
        ("u-spam", "spam@example.com"),
    ] {
        s.insert_object(
            "user",
            &json!({"id": id, "email": email, "name": id, "role": "user",
            "status": "invited", "pending_approval": true, "issued": "jwt"}),
        );
    }
    let waiting = s.get("/api/users?service_user=false");
    assert!(waiting
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == "u-wait" && u["pending_approval"] == true));

    let approved = s.post("/api/users/u-wait/approve", json!({}));
    assert_eq!(approved["pending_approval"], false);
    assert_eq!(approved["status"], "active");
    s.expect_error(
        "POST",
        "/api/users/u-wait/approve",
        None,
        422,
        "user u-wait is not pending approval",
    );
    s.expect_error(
        "DELETE",
        "/api/users/u-wait/reject",
        None,
        422,
        "user u-wait is not pending approval",
    );
    s.expect_error(
        "POST",
        "/api/users/ghost/approve",
        None,
        404,
        "user ghost not found",
    );

    s.delete("/api/users/u-spam/reject");
    s.expect_error(
        "DELETE",
        "/api/users/u-spam/reject",
        None,
        404,
        "user u-spam not found",
    );
    let codes = s.activities();
    assert!(codes.contains(&"user.approve".to_string()), "{codes:?}");
    assert!(codes.contains(&"user.reject".to_string()), "{codes:?}");
}
