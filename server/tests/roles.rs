//! Roles against the running server: every role against every endpoint
//! family, reading and writing, with the exact status; a regular user's own
//! peers and `regular_users_view_blocked`; tokens of one's own; the owner
//! kept from admins.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{sorted_ids, Server};
use serde_json::{json, Value};

/// The roles, in the column order of [`ENDPOINTS`].
const ROLES: [&str; 6] = [
    "owner",
    "admin",
    "network_admin",
    "auditor",
    "user",
    "billing_admin",
];

/// One request and the status each role gets. `{me}` in a path is the
/// caller's user id, `{account}` the account id, `{role}` in a body the
/// caller's role (names stay unique).
struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    statuses: [u16; 6],
}

const fn ep(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    statuses: [u16; 6],
) -> Endpoint {
    Endpoint {
        method,
        path,
        body,
        statuses,
    }
}

const OK: u16 = 200;
const NO: u16 = 403;
/// Allowed, and then not found: the permission layer let it through.
const GONE: u16 = 404;

#[rustfmt::skip]
const ENDPOINTS: &[Endpoint] = &[
    //                                                                           owner admin net_admin auditor user billing_admin
    // accounts
    ep("GET", "/api/accounts", None,                                                 [OK, OK, OK, OK, NO, NO]),
    ep("PUT", "/api/accounts/{account}", Some("{settings}"),                         [OK, OK, NO, NO, NO, NO]),
    // users
    ep("GET", "/api/users", None,                                                    [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/users", Some(r#"{"name": "svc-{role}", "role": "user", "auto_groups": [], "is_service_user": true}"#),
                                                                                     [OK, OK, NO, NO, NO, NO]),
    ep("POST", "/api/users/nobody/invite", None,                                     [GONE, GONE, NO, NO, NO, NO]),
    ep("GET", "/api/users/current", None,                                            [OK, OK, OK, OK, OK, OK]),
    // tokens: one's own
    ep("GET", "/api/users/{me}/tokens", None,                                        [OK, OK, OK, OK, OK, OK]),
    ep("POST", "/api/users/{me}/tokens", Some(r#"{"name": "extra", "expires_in": 1}"#),
                                                                                     [OK, OK, OK, OK, OK, OK]),
    // peers
    ep("GET", "/api/peers", None,                                                    [OK, OK, NO, OK, OK, OK]),
    ep("GET", "/api/peers/p-key", None,                                              [OK, OK, NO, OK, GONE, GONE]),
    ep("GET", "/api/peers/p-key/accessible-peers", None,                             [OK, OK, NO, OK, GONE, GONE]),
    ep("PUT", "/api/peers/p-key", Some(r#"{"name": "key-peer", "ssh_enabled": false, "login_expiration_enabled": false, "inactivity_expiration_enabled": false}"#),
                                                                                     [OK, OK, NO, NO, NO, NO]),
    ep("POST", "/api/peers/nobody/temporary-access", Some(r#"{"name": "t", "wg_pub_key": "k", "rules": ["all"]}"#),
                                                                                     [GONE, GONE, NO, NO, NO, NO]),
    // groups
    ep("GET", "/api/groups", None,                                                   [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/groups", Some(r#"{"name": "g-{role}"}"#),                       [OK, OK, NO, NO, NO, NO]),
    // setup keys
    ep("GET", "/api/setup-keys", None,                                               [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/setup-keys", Some(r#"{"name": "k-{role}", "type": "reusable", "expires_in": 0, "auto_groups": [], "usage_limit": 0}"#),
                                                                                     [OK, OK, NO, NO, NO, NO]),
    // policies, posture checks, locations
    ep("GET", "/api/policies", None,                                                 [OK, OK, OK, OK, NO, NO]),
    ep("DELETE", "/api/policies/nobody", None,                                       [GONE, GONE, GONE, NO, NO, NO]),
    ep("GET", "/api/posture-checks", None,                                           [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/posture-checks", Some(r#"{"name": "pc-{role}", "checks": {"nb_version_check": {"min_version": "0.40.0"}}}"#),
                                                                                     [OK, OK, OK, NO, NO, NO]),
    ep("GET", "/api/locations/countries", None,                                      [OK, OK, OK, OK, NO, NO]),
    // routes
    ep("GET", "/api/routes", None,                                                   [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/routes", Some(r#"{"description": "", "network_id": "r-{role}", "enabled": true, "peer_groups": ["{all}"], "network": "10.{n}.0.0/24", "metric": 9999, "masquerade": true, "groups": ["{all}"], "keep_route": false}"#),
                                                                                     [OK, OK, OK, NO, NO, NO]),
    // networks
    ep("GET", "/api/networks", None,                                                 [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/networks", Some(r#"{"name": "n-{role}"}"#),                     [OK, OK, OK, NO, NO, NO]),
    ep("GET", "/api/networks/routers", None,                                         [OK, OK, OK, OK, NO, NO]),
    // DNS settings and nameserver groups
    ep("GET", "/api/dns/settings", None,                                             [OK, OK, OK, OK, NO, NO]),
    ep("PUT", "/api/dns/settings", Some(r#"{"disabled_management_groups": []}"#),    [OK, OK, OK, NO, NO, NO]),
    ep("GET", "/api/dns/nameservers", None,                                          [OK, OK, OK, OK, NO, NO]),
    ep("POST", "/api/dns/nameservers", Some(r#"{"name": "ns-{role}", "description": "", "nameservers": [{"ip": "8.8.8.8", "ns_type": "udp", "port": 53}], "enabled": true, "groups": ["{all}"], "primary": true, "domains": [], "search_domains_enabled": false}"#),
                                                                                     [OK, OK, OK, NO, NO, NO]),
    // events
    ep("GET", "/api/events/audit", None,                                             [OK, OK, OK, OK, NO, NO]),
    ep("GET", "/api/events/network-traffic", None,                                   [OK, OK, OK, OK, NO, NO]),
    // ingress
    ep("GET", "/api/ingress/peers", None,                                            [OK, OK, NO, OK, NO, NO]),
    ep("GET", "/api/peers/p-key/ingress/ports", None,                                [OK, OK, NO, OK, NO, NO]),
    ep("DELETE", "/api/ingress/peers/nobody", None,                                  [GONE, GONE, NO, NO, NO, NO]),
    // reverse proxies
    ep("GET", "/api/reverse-proxies/services", None,                                 [OK, OK, NO, OK, NO, NO]),
    ep("GET", "/api/reverse-proxies/domains", None,                                  [OK, OK, NO, OK, NO, NO]),
    ep("DELETE", "/api/reverse-proxies/domains/nobody", None,                        [GONE, GONE, NO, NO, NO, NO]),
];

/// A caller: its role, user id and `Authorization` header.
struct Member {
    role: &'static str,
    id: String,
    auth: String,
}

/// The owner, and a service user with a token for each other role.
fn members(s: &Server) -> Vec<Member> {
    let owner = s.get("/api/users/current")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut out = vec![Member {
        role: "owner",
        id: owner,
        auth: format!("Token {}", s.token),
    }];
    for role in &ROLES[1..] {
        let user = s.post(
            "/api/users",
            json!({"name": format!("as-{role}"), "role": role, "auto_groups": [], "is_service_user": true}),
        );
        let id = user["id"].as_str().unwrap().to_string();
        let token = s.post(
            &format!("/api/users/{id}/tokens"),
            json!({"name": "t", "expires_in": 1}),
        );
        let auth = format!("Token {}", token["plain_token"].as_str().unwrap());
        out.push(Member { role, id, auth });
    }
    out
}

/// The account's id and its settings as a `PUT /api/accounts/{id}` body.
fn account(s: &Server) -> (String, Value) {
    let account = &s.get("/api/accounts")[0];
    let id = account["id"].as_str().unwrap().to_string();
    (id, json!({"settings": account["settings"]}))
}

/// Turns the account's `regular_users_view_blocked` on or off.
fn view_blocked(s: &Server, on: bool) {
    let (id, mut body) = account(s);
    body["settings"]["regular_users_view_blocked"] = json!(on);
    let updated = s.put(&format!("/api/accounts/{id}"), body);
    assert_eq!(updated["settings"]["regular_users_view_blocked"], on);
}

fn every_role_against_every_family(s: &Server, members: &[Member]) {
    let all = s.all_group();
    let (account_id, settings) = account(s);

    for (n, member) in members.iter().enumerate() {
        for e in ENDPOINTS {
            let path = e
                .path
                .replace("{me}", &member.id)
                .replace("{account}", &account_id);
            let body = e.body.map(|b| match b {
                "{settings}" => settings.clone(),
                b => serde_json::from_str(
                    &b.replace("{role}", member.role)
                        .replace("{all}", &all)
                        .replace("{n}", &n.to_string()),
                )
                .expect("a JSON body"),
            });
            let (status, out) = s.call_as(Some(&member.auth), e.method, &path, body);
            let want = e.statuses[n];
            assert_eq!(status, want, "{} {} {path}: {out}", member.role, e.method);
            if want == NO {
                let message = out["message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with(&format!(
                        "permission denied: the {} role may not ",
                        member.role
                    )),
                    "{} {} {path}: {out}",
                    member.role,
                    e.method
                );
            }
        }
    }

    // The exact wording, once.
    let auditor = &members[3];
    let (status, out) = s.call_as(
        Some(&auditor.auth),
        "POST",
        "/api/groups",
        Some(json!({"name": "x"})),
    );
    assert_eq!(status, 403);
    assert_eq!(
        out,
        json!({"code": 403, "message": "permission denied: the auditor role may not change groups"})
    );
    // `/api/users/current` is each caller itself.
    for member in members {
        let (status, me) = s.call_as(Some(&member.auth), "GET", "/api/users/current", None);
        assert_eq!((status, me["role"].as_str()), (200, Some(member.role)));
        assert_eq!(me["id"], member.id.as_str());
    }
}

fn regular_users_see_their_own_peers(s: &Server, members: &[Member]) {
    let (owner, auditor, user, billing) = (&members[0], &members[3], &members[4], &members[5]);
    let listed = |auth: &str| -> Vec<String> {
        let (status, out) = s.call_as(Some(auth), "GET", "/api/peers", None);
        assert_eq!(status, 200, "{out}");
        sorted_ids(&out)
    };
    let get = |auth: &str, path: &str| s.call_as(Some(auth), "GET", path, None);

    // New accounts hide peers from regular users.
    assert_eq!(
        s.get("/api/accounts")[0]["settings"]["regular_users_view_blocked"],
        true
    );
    assert!(listed(&user.auth).is_empty());
    let (status, out) = get(&user.auth, "/api/peers/p-mine");
    assert_eq!(
        (status, out["message"].as_str()),
        (404, Some("peer p-mine not found"))
    );

    view_blocked(s, false);
    assert_eq!(listed(&user.auth), ["p-mine"]);
    assert!(listed(&billing.auth).is_empty());
    assert_eq!(listed(&auditor.auth), ["p-key", "p-mine", "p-owners"]);
    assert_eq!(listed(&owner.auth), ["p-key", "p-mine", "p-owners"]);
    let (status, out) = get(&user.auth, "/api/peers/p-mine");
    assert_eq!((status, out["id"].as_str()), (200, Some("p-mine")));
    let (status, _) = get(&user.auth, "/api/peers/p-mine/accessible-peers");
    assert_eq!(status, 200);
    for other in ["p-owners", "p-key"] {
        for path in [
            format!("/api/peers/{other}"),
            format!("/api/peers/{other}/accessible-peers"),
        ] {
            let (status, out) = get(&user.auth, &path);
            let message = format!("peer {other} not found");
            assert_eq!(
                (status, out["message"].as_str()),
                (404, Some(message.as_str())),
                "{path}"
            );
        }
    }
    // Seeing is not changing.
    let rename = json!({"name": "mine2", "ssh_enabled": false, "login_expiration_enabled": false, "inactivity_expiration_enabled": false});
    let (status, out) = s.call_as(Some(&user.auth), "PUT", "/api/peers/p-mine", Some(rename));
    assert_eq!(status, 403, "{out}");
    let (status, _) = s.call_as(Some(&user.auth), "DELETE", "/api/peers/p-mine", None);
    assert_eq!(status, 403);

    // Switched back on, the user's own peer is hidden again.
    view_blocked(s, true);
    assert!(listed(&user.auth).is_empty());
    assert_eq!(get(&user.auth, "/api/peers/p-mine").0, 404);
    assert_eq!(listed(&auditor.auth).len(), 3);
}

fn tokens_are_ones_own(s: &Server, members: &[Member]) {
    let (owner, admin, net_admin, auditor, user) = (
        &members[0],
        &members[1],
        &members[2],
        &members[3],
        &members[4],
    );
    let tokens = |m: &Member| format!("/api/users/{}/tokens", m.id);
    let new_token = json!({"name": "mine", "expires_in": 7});

    // An auditor makes, uses and deletes its own token...
    let (status, created) = s.call_as(
        Some(&auditor.auth),
        "POST",
        &tokens(auditor),
        Some(new_token.clone()),
    );
    assert_eq!(status, 200, "{created}");
    let fresh = format!("Token {}", created["plain_token"].as_str().unwrap());
    let (status, me) = s.call_as(Some(&fresh), "GET", "/api/users/current", None);
    assert_eq!((status, me["role"].as_str()), (200, Some("auditor")));
    let token_id = created["personal_access_token"]["id"].as_str().unwrap();
    let (status, _) = s.call_as(
        Some(&auditor.auth),
        "DELETE",
        &format!("{}/{token_id}", tokens(auditor)),
        None,
    );
    assert_eq!(status, 200);
    // ...reads a service user's tokens, as it reads everything...
    let (status, _) = s.call_as(Some(&auditor.auth), "GET", &tokens(user), None);
    assert_eq!(status, 200);
    // ...and makes none for anybody else.
    let (status, out) = s.call_as(
        Some(&auditor.auth),
        "POST",
        &tokens(user),
        Some(new_token.clone()),
    );
    assert_eq!(
        (status, out["message"].as_str()),
        (
            403,
            Some("only the user or an admin managing a service user can manage tokens")
        )
    );
    // A network admin and a regular user have only their own.
    for member in [net_admin, user] {
        for (method, body) in [("GET", None), ("POST", Some(new_token.clone()))] {
            let (status, _) = s.call_as(Some(&member.auth), method, &tokens(auditor), body);
            assert_eq!(status, 403, "{} {method}", member.role);
        }
    }
    // An admin manages service users' tokens, never the owner's.
    let (status, _) = s.call_as(
        Some(&admin.auth),
        "POST",
        &tokens(user),
        Some(new_token.clone()),
    );
    assert_eq!(status, 200);
    let (status, _) = s.call_as(Some(&admin.auth), "GET", &tokens(owner), None);
    assert_eq!(status, 403);
}

fn admins_cannot_touch_the_owner(s: &Server, members: &[Member]) {
    let (owner, admin) = (&members[0], &members[1]);
    let path = format!("/api/users/{}", owner.id);
    for (method, body, message) in [
        (
            "PUT",
            Some(json!({"role": "admin", "auto_groups": [], "is_blocked": false})),
            "the owner role can't be changed",
        ),
        (
            "PUT",
            Some(json!({"role": "owner", "auto_groups": [], "is_blocked": true})),
            "the owner and the caller can't be blocked",
        ),
        ("DELETE", None, "the account owner can't be deleted"),
    ] {
        let (status, out) = s.call_as(Some(&admin.auth), method, &path, body);
        assert_eq!(
            (status, out["message"].as_str()),
            (422, Some(message)),
            "{method}"
        );
    }
    let (status, me) = s.call_as(Some(&owner.auth), "GET", "/api/users/current", None);
    assert_eq!(
        (status, me["role"].as_str(), me["is_blocked"].as_bool()),
        (200, Some("owner"), Some(false))
    );
    // Nor can an admin delete the account: that is the owner's alone.
    let (id, _) = account(s);
    let (status, _) = s.call_as(
        Some(&admin.auth),
        "DELETE",
        &format!("/api/accounts/{id}"),
        None,
    );
    assert_eq!(status, 403);
}

/// One server per backend for all the role cases: a member of each role,
/// a peer of the regular user's, one of the owner's and one registered with
/// a setup key (no user).
fn roles(s: &mut Server) {
    let members = members(s);
    for (id, name, ip) in [
        ("p-mine", "mine", "100.64.0.11"),
        ("p-owners", "owners", "100.64.0.12"),
        ("p-key", "key-peer", "100.64.0.13"),
    ] {
        s.insert_peer(id, name, ip, &[]);
    }
    s.set_peer_user("p-mine", &members[4].id);
    s.set_peer_user("p-owners", &members[0].id);

    every_role_against_every_family(s, &members);
    regular_users_see_their_own_peers(s, &members);
    tokens_are_ones_own(s, &members);
    admins_cannot_touch_the_owner(s, &members);
}

both_stores!(roles);
