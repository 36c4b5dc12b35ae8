//! Peer expose on the real server binary: sealed CreateExpose / RenewExpose
//! / StopExpose from registered peers, the proxy's WatchServices stream,
//! the grants in the Sync maps, the REST services and domains, the audit
//! log, expiry at the TTL and a restart that clears everything (on SQLite;
//! on PostgreSQL sessions outlive one server: `tests/multi_instance.rs`).

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{assert_status, reusable, run, set_expose, Peer, PROMPT};
use common::{sorted_ids, Server};
use meshplane_proto::v1::{CreateExposeRequest, ExposeSession};
use serde_json::{json, Value};
use tonic::Code;

const PROXY_DOMAIN: &str = "proxy.localhost";
const LIMIT: &str = "peer has reached the maximum number of active expose sessions (10)";

/// A registered peer named `name` and its id.
async fn joined(s: &Server, key: &str, name: &str) -> (Peer, String) {
    let mut p = Peer::connect(s, name).await;
    let id = p.login(key).await.unwrap().peer_id;
    (p, id)
}

/// A new group `name` holding `peers`; its id.
fn group(s: &Server, name: &str, peers: &[&str]) -> String {
    s.post("/api/groups", json!({"name": name, "peers": peers}))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn http(port: u32) -> CreateExposeRequest {
    CreateExposeRequest {
        port,
        ..CreateExposeRequest::default()
    }
}

fn services(s: &Server) -> Vec<Value> {
    s.get("/api/reverse-proxies/services")
        .as_array()
        .unwrap()
        .clone()
}

/// The newest audit event with `code`, waiting for it (the audit log is
/// written just after the call answers).
fn audited(s: &Server, code: &str) -> Value {
    let deadline = Instant::now() + PROMPT;
    loop {
        let events = s.get("/api/events/audit");
        if let Some(e) = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["activity_code"] == code)
        {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "no {code} event: {events}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (generously) until the REST services list has `n` entries.
fn wait_for_services(s: &Server, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while services(s).len() != n {
        assert!(
            Instant::now() < deadline,
            "services never became {n}: {:?}",
            services(s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `map` has an IN tcp rule on `port` from `ip`.
fn lets_in(map: &Value, ip: &str, port: u32) -> bool {
    map["firewall_rules"].as_array().unwrap().iter().any(|r| {
        r["direction"] == "in" && r["protocol"] == "tcp" && r["port"] == port && r["peer_ip"] == ip
    })
}

fn peer_ip(s: &Server, id: &str) -> String {
    s.get(&format!("/api/peers/{id}"))["ip"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Create, the REST view, the proxy's table, the maps of both ends, renew,
/// refused renew/stop, stop, and a deleted peer's sessions.
fn sessions_reach_rest_proxy_and_maps(s: &mut Server) {
    run(async {
        let key = reusable(s);
        set_expose(s, true, &[]);
        let (mut a, a_id) = joined(s, &key, "laptop").await;
        let (mut b, b_id) = joined(s, &key, "desktop").await;
        let (mut x, x_id) = joined(s, &key, "proxy").await;
        let devs = group(s, "devs", &[]);
        group(s, "proxies", &[&x_id]);
        let x_ip = peer_ip(s, &x_id);
        let a_ip = peer_ip(s, &a_id);

        // Only a proxy may watch, and only for this server's proxy domain.
        assert_status(
            a.watch_services(PROXY_DOMAIN).await,
            Code::PermissionDenied,
            "peer is not a reverse proxy",
        );
        assert_status(
            x.watch_services("proxy.example.net").await,
            Code::FailedPrecondition,
            "the proxy serves \"proxy.example.net\" but this server's proxy domain is \"proxy.localhost\"",
        );
        let mut tables = x.watch_services(PROXY_DOMAIN).await.unwrap();
        let first = x.next_table(&mut tables).await;
        assert!(first.services.is_empty());

        let mut sa = a.sync().await;
        let before = a.next_map(&mut sa).await;
        assert!(!lets_in(&before, &x_ip, 8080));
        // Without sessions the proxy sees nobody, even under Default.
        let mut sx = x.sync().await;
        assert_eq!(x.next_map(&mut sx).await["peers"], json!([]));

        let created: ExposeSession = a
            .create_expose(CreateExposeRequest {
                name_prefix: "demo".into(),
                pin: Some("123456".into()),
                user_groups: vec!["devs".into()],
                ..http(8080)
            })
            .await
            .unwrap();
        assert!(created.domain.starts_with("demo-"), "{created:?}");
        assert!(created.domain.ends_with(".proxy.localhost"));
        assert_eq!(created.url, format!("https://{}", created.domain));
        assert_eq!((created.protocol.as_str(), created.port), ("http", 8080));

        // REST: the service, marked as an ephemeral session of `a`.
        let listed = services(s);
        assert_eq!(listed.len(), 1, "{listed:?}");
        // Stored only where servers may share the database: a SQLite
        // server keeps its sessions in memory.
        assert_eq!(s.stored_sessions(), usize::from(s.shared()));
        let service = &listed[0];
        assert_eq!(service["id"], created.domain.as_str());
        assert_eq!(service["domain"], created.domain.as_str());
        assert_eq!(service["source"], "ephemeral");
        assert_eq!(service["source_peer"], a_id.as_str());
        assert_eq!(service["proxy_cluster"], PROXY_DOMAIN);
        assert_eq!(service["mode"], "http");
        assert_eq!(service["meta"]["status"], "active");
        let target = &service["targets"][0];
        assert_eq!(target["target_id"], a_id.as_str());
        assert_eq!(target["target_type"], "peer");
        assert_eq!(target["host"], a_ip.as_str());
        assert_eq!(target["port"], 8080);
        assert_eq!(service["auth"]["pin_auth"]["enabled"], true);
        assert_eq!(service["auth"]["pin_auth"]["pin"], "");
        assert_eq!(service["auth"]["password_auth"]["enabled"], false);
        assert_eq!(
            service["auth"]["bearer_auth"]["distribution_groups"],
            json!([devs])
        );
        let path = format!("/api/reverse-proxies/services/{}", created.domain);
        assert_eq!(&s.get(&path), service);
        s.expect_error(
            "GET",
            "/api/reverse-proxies/services/nope.proxy.localhost",
            None,
            404,
            "service nope.proxy.localhost not found",
        );
        let exposed = audited(s, "service.peer.expose");
        assert_eq!(exposed["meta"]["peer_name"], "laptop");
        assert_eq!(exposed["meta"]["domain"], created.domain.as_str());
        assert_eq!(exposed["meta"]["auth_enabled"], "true");

        // The proxy's table.
        let table = x.next_table(&mut tables).await;
        assert!(table.revision > first.revision);
        assert_eq!(table.services.len(), 1);
        let svc = &table.services[0];
        assert_eq!(svc.domain, created.domain);
        assert_eq!(svc.source_peer_id, a_id);
        assert_eq!(
            (svc.target_ip.as_str(), svc.target_port),
            (a_ip.as_str(), 8080)
        );
        assert!(svc.pin_hash.starts_with("$argon2id$"), "{svc:?}");
        assert!(svc.password_hash.is_empty());
        assert_eq!(svc.user_group_ids, std::slice::from_ref(&devs));
        assert_eq!(svc.user_group_names, ["devs"]);

        // The maps: the proxy may reach `a` on 8080, and nothing else.
        assert!(lets_in(&a.next_map(&mut sa).await, &x_ip, 8080));
        let proxy_map = x.next_map(&mut sx).await;
        let keys: Vec<&str> = proxy_map["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, [a.key.as_str()]);
        let rules = proxy_map["firewall_rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "{proxy_map}");
        assert_eq!(rules[0]["direction"], "out");
        assert_eq!(rules[0]["port"], 8080);
        // REST reachability agrees with the maps.
        let reachable = |id: &str| -> Vec<String> {
            sorted_ids(&s.get(&format!("/api/peers/{id}/accessible-peers")))
        };
        assert_eq!(reachable(&x_id), std::slice::from_ref(&a_id));
        assert!(reachable(&a_id).contains(&x_id));
        assert!(!reachable(&b_id).contains(&x_id));

        // Renewal moves the deadline; others may neither renew nor stop.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let renewed = a.renew_expose(&created.domain).await.unwrap();
        assert!(renewed > created.expires_at_ms);
        assert_status(
            b.renew_expose(&created.domain).await,
            Code::PermissionDenied,
            "permission denied",
        );
        assert_status(
            b.stop_expose(&created.domain).await,
            Code::PermissionDenied,
            "permission denied",
        );
        assert_status(
            a.renew_expose("unknown.proxy.localhost").await,
            Code::NotFound,
            "no active expose session for service unknown.proxy.localhost",
        );

        // Stop: gone everywhere, audited.
        a.stop_expose(&created.domain).await.unwrap();
        assert!(services(s).is_empty());
        assert!(x.next_table(&mut tables).await.services.is_empty());
        assert!(!lets_in(&a.next_map(&mut sa).await, &x_ip, 8080));
        let unexposed = audited(s, "service.peer.unexpose");
        assert_eq!(unexposed["meta"]["domain"], created.domain.as_str());
        assert_status(
            a.stop_expose(&created.domain).await,
            Code::NotFound,
            &format!("no active expose session for service {}", created.domain),
        );

        // A deleted peer's sessions end with it.
        let other = b.create_expose(http(9000)).await.unwrap();
        assert_eq!(x.next_table(&mut tables).await.services.len(), 1);
        s.delete(&format!("/api/peers/{b_id}"));
        assert!(services(s).is_empty());
        // Its key no longer acts, though it acted a moment ago.
        assert_status(
            b.renew_expose(&other.domain).await,
            Code::NotFound,
            "peer is not registered",
        );
        assert!(x.next_table(&mut tables).await.services.is_empty());
        let events = s.get("/api/events/audit");
        assert!(events.as_array().unwrap().iter().any(|e| {
            e["activity_code"] == "service.peer.unexpose" && e["meta"]["domain"] == other.domain
        }));

        // A peer taken out of the proxy group loses its stream.
        let proxies = s.get("/api/groups?name=proxies")[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        s.put(
            &format!("/api/groups/{proxies}"),
            json!({"name": "proxies", "peers": []}),
        );
        let end = tokio::time::timeout(PROMPT, tables.message())
            .await
            .expect("the stream ends");
        assert_status(end, Code::PermissionDenied, "peer is not a reverse proxy");
    });
}

/// Service URLs use the scheme and port the account's proxy says it
/// serves on; a public URL of another host is refused.
fn service_urls_follow_the_proxy(s: &mut Server) {
    run(async {
        let key = reusable(s);
        set_expose(s, true, &[]);
        let (mut a, _) = joined(s, &key, "laptop").await;
        let (mut x, x_id) = joined(s, &key, "proxy").await;
        group(s, "proxies", &[&x_id]);
        assert_status(
            x.watch_services_at(PROXY_DOMAIN, "http://other.example:8081")
                .await,
            Code::InvalidArgument,
            "public URL \"http://other.example:8081\": its host must be the proxy domain \"proxy.localhost\"",
        );
        assert_status(
            x.watch_services_at(PROXY_DOMAIN, "http://proxy.localhost:8081/app")
                .await,
            Code::InvalidArgument,
            "public URL \"http://proxy.localhost:8081/app\": only scheme, host and port are allowed (no path, query or user)",
        );
        // Nothing said yet: HTTPS on 443.
        let first = a.create_expose(http(8080)).await.unwrap();
        assert_eq!(first.url, format!("https://{}", first.domain));

        let plain = x
            .watch_services_at(PROXY_DOMAIN, "http://proxy.localhost:8081")
            .await
            .unwrap();
        let second = a.create_expose(http(8081)).await.unwrap();
        assert_eq!(second.url, format!("http://{}:8081", second.domain));
        // The REST views show where each is served now.
        let urls: Vec<Value> = services(s).iter().map(|v| v["url"].clone()).collect();
        let mut expected = vec![
            json!(format!("http://{}:8081", first.domain)),
            json!(second.url),
        ];
        expected.sort_by_key(ToString::to_string);
        let mut urls = urls;
        urls.sort_by_key(ToString::to_string);
        assert_eq!(urls, expected);
        drop(plain);

        // A default port is left out.
        let _tls = x
            .watch_services_at(PROXY_DOMAIN, "HTTPS://Proxy.Localhost:443/")
            .await
            .unwrap();
        let third = a.create_expose(http(8082)).await.unwrap();
        assert_eq!(third.url, format!("https://{}", third.domain));
    });
}

/// Every refusal of CreateExpose, with the SEMANTICS.md message.
fn create_refusals(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let (mut a, a_id) = joined(s, &key, "laptop").await;
        assert_status(
            a.create_expose(http(8080)).await,
            Code::PermissionDenied,
            "permission denied",
        );
        let allowed = group(s, "allowed", &[]);
        set_expose(s, true, &[&allowed]);
        let enabled = audited(s, "account.setting.peer.expose.enable");
        assert_eq!(enabled["meta"]["groups"], allowed.as_str());
        assert_status(
            a.create_expose(http(8080)).await,
            Code::PermissionDenied,
            "permission denied",
        );
        s.put(
            &format!("/api/groups/{allowed}"),
            json!({"name": "allowed", "peers": [a_id]}),
        );
        group(s, "devs", &[]);

        let invalid = [
            (http(0), "invalid port number: must be between 1 and 65535"),
            (http(70_000), "invalid port number: must be between 1 and 65535"),
            (
                CreateExposeRequest {
                    protocol: "tcp".into(),
                    ..http(80)
                },
                "unsupported protocol",
            ),
            (
                CreateExposeRequest {
                    pin: Some("12ab".into()),
                    ..http(80)
                },
                "invalid pin: must be exactly 6 digits",
            ),
            (
                CreateExposeRequest {
                    password: Some(String::new()),
                    ..http(80)
                },
                "password cannot be empty",
            ),
            (
                CreateExposeRequest {
                    user_groups: vec![" ".into()],
                    ..http(80)
                },
                "user groups cannot be empty",
            ),
            (
                CreateExposeRequest {
                    user_groups: vec!["ops".into()],
                    ..http(80)
                },
                "unknown user group \"ops\"",
            ),
            (
                CreateExposeRequest {
                    name_prefix: "Bad_Prefix".into(),
                    ..http(80)
                },
                "invalid name prefix \"Bad_Prefix\": must be lowercase alphanumeric with optional hyphens, 1-32 characters",
            ),
            (
                CreateExposeRequest {
                    custom_domain: "apps.example.org".into(),
                    ..http(80)
                },
                "custom domain \"apps.example.org\" is not registered to the account",
            ),
        ];
        for (request, message) in invalid {
            assert_status(
                a.create_expose(request).await,
                Code::InvalidArgument,
                message,
            );
        }

        // Ten sessions, then the limit.
        for port in 1..=10 {
            let request = CreateExposeRequest {
                password: Some("secret".into()),
                user_groups: vec!["devs".into()],
                ..http(8000 + port)
            };
            a.create_expose(request).await.unwrap();
        }
        assert_status(
            a.create_expose(http(9000)).await,
            Code::ResourceExhausted,
            LIMIT,
        );
        assert_eq!(services(s).len(), 10);

        set_expose(s, false, &[]);
        let disabled = audited(s, "account.setting.peer.expose.disable");
        assert_eq!(disabled["meta"]["groups"], "");
        assert_status(
            a.create_expose(http(8080)).await,
            Code::PermissionDenied,
            "permission denied",
        );
        // An unregistered key is refused too.
        let mut stranger = Peer::connect(s, "stranger").await;
        assert_status(
            stranger.create_expose(http(8080)).await,
            Code::NotFound,
            "peer is not registered",
        );
    });
}

/// Without renewals a session ends at the TTL (2 s here), audited as
/// expired; renewals keep one alive; stopping the server ends the proxy's
/// stream; a restart clears everything on SQLite, while on PostgreSQL
/// (shared by several servers) the sessions outlive it and expire by TTL.
fn expiry_and_restart(s: &mut Server) {
    s.restart_with(&["--expose-ttl-secs", "2"]);
    run(async {
        let key = reusable(s);
        set_expose(s, true, &[]);
        let (mut a, _) = joined(s, &key, "laptop").await;
        let (mut x, x_id) = joined(s, &key, "proxy").await;
        group(s, "proxies", &[&x_id]);
        let mut tables = x.watch_services(PROXY_DOMAIN).await.unwrap();
        assert!(x.next_table(&mut tables).await.services.is_empty());
        let lapsed = a.create_expose(http(8080)).await.unwrap();
        let created = Instant::now();
        let kept = a.create_expose(http(8081)).await.unwrap();
        // Renew `kept` every half second while `lapsed` runs out.
        while services(s).len() == 2 {
            assert!(created.elapsed() < Duration::from_secs(30), "never expired");
            a.renew_expose(&kept.domain).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(created.elapsed() >= Duration::from_millis(1500));
        let left = services(s);
        assert_eq!(left[0]["domain"], kept.domain.as_str());
        let expired = audited(s, "service.peer.expose.expire");
        assert_eq!(expired["meta"]["domain"], lapsed.domain.as_str());
        assert_eq!(expired["meta"]["peer_name"], "laptop");
        assert_eq!(expired["meta"]["auth_enabled"], "false");
        assert_status(
            a.renew_expose(&lapsed.domain).await,
            Code::NotFound,
            &format!("no active expose session for service {}", lapsed.domain),
        );
        // The proxy saw both sessions come and the lapsed one go.
        let mut seen = x.next_table(&mut tables).await;
        while seen.services.len() != 1 || seen.services[0].domain != kept.domain {
            seen = x.next_table(&mut tables).await;
        }

        let stopped = s.terminate(Duration::from_secs(10));
        assert!(stopped.is_some_and(|st| st.success()), "{stopped:?}");
        let end = tokio::time::timeout(PROMPT, tables.message())
            .await
            .expect("the stream ends");
        assert_status(end, Code::Unavailable, "the server is shutting down");
    });
    s.crash_and_restart();
    if s.shared() {
        // Sessions outlive one server of several: without renewals the
        // kept one expires by its TTL (2 s), audited once.
        wait_for_services(s, 0, Duration::from_secs(10));
        let expired: Vec<Value> = s
            .get("/api/events/audit")
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["activity_code"] == "service.peer.expose.expire")
            .cloned()
            .collect();
        assert_eq!(expired.len(), 2, "{expired:?}");
    } else {
        assert!(services(s).is_empty());
        wait_for_services(s, 0, PROMPT);
    }
}

/// Custom domains: listed beside the free proxy domain, validated,
/// unique, usable with --with-custom-domain, removable.
fn custom_domains(s: &mut Server) {
    let domains = s.get("/api/reverse-proxies/domains");
    assert_eq!(domains.as_array().unwrap().len(), 1);
    assert_eq!(domains[0]["domain"], PROXY_DOMAIN);
    assert_eq!(domains[0]["type"], "free");
    s.expect_error(
        "POST",
        "/api/reverse-proxies/domains",
        Some(json!({"domain": "not a domain", "target_cluster": PROXY_DOMAIN})),
        422,
        "invalid domain \"not a domain\": must be a DNS name of labels a-z, 0-9 and hyphens, at most 253 characters",
    );
    s.expect_error(
        "POST",
        "/api/reverse-proxies/domains",
        Some(json!({"domain": "*.example.org", "target_cluster": PROXY_DOMAIN})),
        422,
        "domain \"*.example.org\" is a wildcard: register the domain services live under",
    );
    let made = s.post(
        "/api/reverse-proxies/domains",
        json!({"domain": "apps.example.org", "target_cluster": PROXY_DOMAIN}),
    );
    assert_eq!(made["type"], "custom");
    assert_eq!(made["domain"], "apps.example.org");
    for taken in ["apps.example.org", PROXY_DOMAIN] {
        s.expect_error(
            "POST",
            "/api/reverse-proxies/domains",
            Some(json!({"domain": taken, "target_cluster": PROXY_DOMAIN})),
            409,
            &format!("domain \"{taken}\" already exists"),
        );
    }
    assert_eq!(
        s.get("/api/reverse-proxies/domains")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    run(async {
        let key = reusable(s);
        set_expose(s, true, &[]);
        let (mut a, _) = joined(s, &key, "laptop").await;
        let session = a
            .create_expose(CreateExposeRequest {
                custom_domain: "apps.example.org".into(),
                name_prefix: "shop".into(),
                ..http(3000)
            })
            .await
            .unwrap();
        assert!(session.domain.starts_with("shop-"));
        assert!(session.domain.ends_with(".apps.example.org"), "{session:?}");
    });
    let id = made["id"].as_str().unwrap();
    let path = format!("/api/reverse-proxies/domains/{id}");
    let deleted = ureq::delete(&format!("{}{path}", s.base))
        .set("Authorization", &format!("Token {}", s.token))
        .call()
        .unwrap();
    assert_eq!(deleted.status(), 204);
    s.expect_error(
        "DELETE",
        &path,
        None,
        404,
        &format!("domain {id} not found"),
    );
    assert_eq!(
        s.get("/api/reverse-proxies/domains")
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

both_stores!(
    sessions_reach_rest_proxy_and_maps,
    service_urls_follow_the_proxy,
    create_refusals,
    expiry_and_restart,
    custom_domains,
);
