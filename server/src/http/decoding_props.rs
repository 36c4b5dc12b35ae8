//! Property test of the REST request decoders: arbitrary methods, paths and
//! bodies sent through the whole router, with the owner's token, never get
//! a server error, and every error answer is the API's JSON
//! `{"message", "code"}` with `code` the HTTP status.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use meshplane_core::Duration;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};
use tower::ServiceExt as _;

use super::{router, App};
use crate::expose::{Expose, ExposeConfig};
use crate::store::Store;

/// Routes that decode a body or a path id; `{id}` is filled in.
const PATHS: &[&str] = &[
    "/api/accounts/{id}",
    "/api/groups",
    "/api/groups/{id}",
    "/api/policies",
    "/api/policies/{id}",
    "/api/posture-checks",
    "/api/posture-checks/{id}",
    "/api/routes",
    "/api/routes/{id}",
    "/api/networks",
    "/api/networks/{id}",
    "/api/networks/{id}/resources",
    "/api/networks/{id}/routers",
    "/api/setup-keys",
    "/api/setup-keys/{id}",
    "/api/dns/nameservers",
    "/api/dns/nameservers/{id}",
    "/api/dns/settings",
    "/api/users",
    "/api/users/{id}",
    "/api/users/{id}/tokens",
    "/api/users/{id}/invite",
    "/api/peers/{id}",
    "/api/peers/{id}/temporary-access",
    "/api/peers/{id}/ingress/ports",
    "/api/ingress/peers",
    "/api/reverse-proxies/domains",
    "/api/reverse-proxies/services/{id}",
    "/api/events/network-traffic?page={id}&page_size={id}",
];

/// Field names of the request bodies, so generated objects reach past
/// the first missing field.
const FIELDS: &[&str] = &[
    "name",
    "description",
    "peers",
    "resources",
    "groups",
    "enabled",
    "rules",
    "sources",
    "destinations",
    "sourceResource",
    "destinationResource",
    "bidirectional",
    "action",
    "protocol",
    "ports",
    "port_ranges",
    "start",
    "end",
    "source_posture_checks",
    "type",
    "expires_in",
    "auto_groups",
    "usage_limit",
    "ephemeral",
    "allow_extra_dns_labels",
    "revoked",
    "settings",
    "network_range",
    "peer_login_expiration",
    "peer_login_expiration_enabled",
    "dns_domain",
    "role",
    "email",
    "is_service_user",
    "is_blocked",
    "network_id",
    "network_type",
    "network",
    "peer",
    "peer_groups",
    "metric",
    "masquerade",
    "keep_route",
    "domains",
    "nameservers",
    "ip",
    "ns_type",
    "port",
    "primary",
    "search_domains_enabled",
    "disabled_management_groups",
    "address",
    "checks",
    "id",
    "domain",
    "ssh_enabled",
    "approval_required",
    "inactivity_expiration_enabled",
    "login_expiration_enabled",
    "extra",
];

/// Values the decoders give meaning to.
const WORDS: &[&str] = &[
    "All",
    "accept",
    "drop",
    "tcp",
    "udp",
    "icmp",
    "all",
    "reusable",
    "one-off",
    "owner",
    "admin",
    "user",
    "auditor",
    "100.64.0.0/10",
    "0.0.0.0/0",
    "10.0.0.1",
    "::1",
    "example.com",
    "*.example.com",
    "80",
    "1-65535",
    "",
];

/// A server's router on a fresh SQLite store, its runtime and the owner's
/// token and ids.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    token: String,
    ids: Vec<String>,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("meshplane-decoding-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        let (app, token) = runtime.block_on(async {
            let store = Store::open(&url).await.unwrap();
            let token = crate::bootstrap::admin_token(&store, "decoding")
                .await
                .unwrap();
            let expose = Expose::start(
                store.clone(),
                ExposeConfig {
                    ttl: Duration::from_secs(90),
                    proxy_domain: "proxy.localhost".parse().unwrap(),
                    proxy_group: "proxies".to_string(),
                },
            )
            .await
            .unwrap();
            (
                router(App {
                    store,
                    expose,
                    dashboard: false,
                }),
                token,
            )
        });
        let mut fixture = Fixture {
            runtime,
            app,
            token,
            ids: Vec::new(),
            dir,
        };
        let account = fixture.call(Method::GET, "/api/accounts", None).1;
        let owner = fixture.call(Method::GET, "/api/users/current", None).1;
        let group = fixture.call(Method::GET, "/api/groups", None).1;
        fixture.ids = vec![
            account[0]["id"].as_str().unwrap().to_string(),
            owner["id"].as_str().unwrap().to_string(),
            group[0]["id"].as_str().unwrap().to_string(),
        ];
        fixture
    }

    /// One request through the router: the status and the body.
    fn call(&self, method: Method, uri: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("Authorization", format!("Token {}", self.token));
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header("Content-Type", content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let request = request.body(body).unwrap();
        self.runtime.block_on(async {
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u32..70_000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC{0,24}".prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            object(inner),
        ]
    })
}

fn object(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
    ];
    prop::collection::btree_map(field, values, 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// A body: mostly a JSON object of known fields, else any JSON or text.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => object(json()).prop_map(|v| v.to_string().into_bytes()),
        2 => json().prop_map(|v| v.to_string().into_bytes()),
        1 => "\\PC{0,64}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A method; `None` for the one that sends a body to the path (PUT to an
/// item, POST to a collection).
fn method() -> impl Strategy<Value = Option<Method>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some(Method::POST)),
        1 => Just(Some(Method::PUT)),
        1 => Just(Some(Method::GET)),
        1 => Just(Some(Method::DELETE)),
        1 => Just(Some(Method::PATCH)),
    ]
}

/// A path of [`PATHS`] with each `{id}` a known id (by index) or a made-up
/// segment.
fn path() -> impl Strategy<Value = (usize, Vec<Result<usize, String>>)> {
    let id = prop_oneof![
        (0usize..3).prop_map(Ok),
        "[A-Za-z0-9._~-]{0,24}".prop_map(Err),
        "(%[0-9A-F]{2}){1,4}".prop_map(Err),
    ];
    (0..PATHS.len(), prop::collection::vec(id, 2))
}

#[test]
fn any_request_gets_a_shaped_answer_and_no_server_error() {
    let fixture = Fixture::new();
    let content_type = prop_oneof![
        8 => Just("application/json"),
        1 => Just("text/plain"),
        1 => Just("application/json; charset=utf-8"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    // Statuses seen, to show the inputs reach past the extractors.
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let outcome = runner.run(
        &(method(), path(), content_type, body()),
        |(method, (template, ids), content_type, body)| {
            let mut uri = PATHS[template].to_string();
            let method = method.unwrap_or(if uri.ends_with("{id}") {
                Method::PUT
            } else {
                Method::POST
            });
            for id in &ids {
                let id = match id {
                    Ok(known) => fixture.ids[*known].clone(),
                    Err(made_up) => made_up.clone(),
                };
                uri = uri.replacen("{id}", &id, 1);
            }
            let (status, answer) = fixture.call(method.clone(), &uri, Some((content_type, body)));
            *seen.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(status < 500, "{method} {uri}: {status} {answer}");
            if status >= 400 {
                prop_assert!(
                    answer["message"].is_string(),
                    "{method} {uri}: {status} {answer}"
                );
                prop_assert_eq!(&answer["code"], &Value::from(status), "{} {}", method, uri);
            }
            Ok(())
        },
    );
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let seen = seen.into_inner();
    eprintln!("statuses: {seen:?}");
    for status in [200, 400, 404, 422] {
        assert!(seen.contains_key(&status), "no {status} among {seen:?}");
    }
}
