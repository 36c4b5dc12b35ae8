//! The PIN / password / SSO gate in front of protected services.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::issuer::{Issuer, SigningAlg, CLIENT_ID, CLIENT_SECRET};
use common::*;
use http::{Request, StatusCode, Uri};
use meshplane_proxy::{OidcConfig, Service, Tls};

const LOGIN: &str = "/.meshplane/login";

fn protected(
    domain: &str,
    target: std::net::SocketAddrV4,
    pin: Option<&str>,
    password: Option<&str>,
) -> Service {
    let mut s = service(domain, target);
    s.pin_hash = pin.map(hash);
    s.password_hash = password.map(hash);
    s
}

/// Posts the login form.
async fn login(p: &TestProxy, host: &str, method: &str, secret: &str, rd: &str) -> Reply {
    let form = [("method", method), ("secret", secret), ("rd", rd)];
    send(p.addr, post_form(host, LOGIN, &form)).await
}

fn with_cookie(host: &str, path: &str, cookie: &str) -> Request<TestBody> {
    Request::get(path)
        .header("host", host)
        .header(
            "cookie",
            http::HeaderValue::from_bytes(cookie.as_bytes()).unwrap(),
        )
        .body(empty())
        .unwrap()
}

fn session(token: &str) -> String {
    format!("{}={token}", meshplane_proxy::COOKIE_NAME)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_flow() {
    let echo = echo_backend("app").await;
    let p = start_proxy(vec![
        protected("app.proxy.test", echo, Some("123456"), None),
        protected("other.proxy.test", echo, Some("123456"), None),
    ])
    .await;

    // No cookie: the login page, offering the PIN only.
    let page = send(p.addr, get("app.proxy.test", "/docs?page=2")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let html = page.text();
    assert!(html.contains("name=\"method\" value=\"pin\""), "{html}");
    assert!(!html.contains("value=\"password\""), "{html}");
    assert!(!html.contains("SSO"), "{html}");
    assert!(html.contains(&format!("action=\"{LOGIN}\"")), "{html}");
    assert!(
        html.contains("name=\"rd\" value=\"/docs?page=2\""),
        "{html}"
    );

    // Wrong PIN: 401 and the page again with an error line.
    let wrong = login(&p, "app.proxy.test", "pin", "000000", "/docs?page=2").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Wrong PIN."), "{}", wrong.text());
    assert!(wrong.headers.get("set-cookie").is_none());

    // Right PIN: 303 back with the session cookie.
    let ok = login(&p, "app.proxy.test", "pin", "123456", "/docs?page=2").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.header("location"), Some("/docs?page=2"));
    let (token, attrs) = set_cookie(&ok);
    // A plain-HTTP proxy: no `Secure`, or the browser would never send the
    // cookie back (a TLS proxy adds it; see the session module's tests).
    assert!(!attrs.iter().any(|a| a == "Secure"), "{attrs:?}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(
            attrs.iter().any(|a| a == flag),
            "missing {flag} in {attrs:?}"
        );
    }
    assert!(
        !attrs
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("domain")),
        "{attrs:?}"
    );

    // The cookie gives the content; the backend never sees the token.
    let reply = send(
        p.addr,
        with_cookie(
            "app.proxy.test",
            "/docs",
            &format!("theme=dark; {}", session(&token)),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["name"], "app");
    assert_eq!(reply.json()["headers"]["cookie"][0], "theme=dark");

    // The same cookie on another service is refused.
    let other = send(
        p.addr,
        with_cookie("other.proxy.test", "/", &session(&token)),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);

    // Tampered and garbage cookies are refused with the login page.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [tampered.as_str(), "garbage", "", "a.b.c", "caf\u{e9}"] {
        let reply = send(p.addr, with_cookie("app.proxy.test", "/", &session(bad))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "cookie {bad:?}");
    }

    // Turning the PIN off ends its sessions.
    p.services
        .send(Arc::new(vec![protected(
            "app.proxy.test",
            echo,
            None,
            Some("pw"),
        )]))
        .unwrap();
    let reply = send(p.addr, with_cookie("app.proxy.test", "/", &session(&token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_flow_and_garbage_forms() {
    let echo = echo_backend("pw").await;
    let p = start_proxy(vec![protected(
        "pw.proxy.test",
        echo,
        None,
        Some("correct horse"),
    )])
    .await;
    let page = send(p.addr, get("pw.proxy.test", "/")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.text().contains("value=\"password\""));
    assert!(!page.text().contains("value=\"pin\""));

    let wrong = login(&p, "pw.proxy.test", "password", "wrong", "/").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Wrong password."));

    // Open redirects are refused: the return path falls back to `/`.
    let ok = login(
        &p,
        "pw.proxy.test",
        "password",
        "correct horse",
        "//evil.example/",
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.header("location"), Some("/"));
    let (token, _) = set_cookie(&ok);
    let reply = send(
        p.addr,
        with_cookie("pw.proxy.test", "/in", &session(&token)),
    )
    .await;
    assert_eq!(reply.json()["path"], "/in");

    // A method the service does not enable, garbage and oversized forms.
    let pin = login(&p, "pw.proxy.test", "pin", "1", "/").await;
    assert_eq!(pin.status, StatusCode::BAD_REQUEST);
    for body in [
        &b"%%%\xff\xfe"[..],
        b"method=password",
        b"",
        &vec![b'a'; 100_000][..],
    ] {
        let req = Request::post(LOGIN)
            .header("host", "pw.proxy.test")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(full(body.to_vec()))
            .unwrap();
        assert_eq!(send(p.addr, req).await.status, StatusCode::BAD_REQUEST);
    }
    // Reserved paths of a protected service are not forwarded.
    assert_eq!(
        send(p.addr, get("pw.proxy.test", "/.meshplane/other"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_methods_offered_and_either_works() {
    let echo = echo_backend("both").await;
    let p = start_proxy(vec![protected(
        "both.proxy.test",
        echo,
        Some("424242"),
        Some("hunter2"),
    )])
    .await;
    let page = send(p.addr, get("both.proxy.test", "/")).await.text();
    assert!(
        page.contains("value=\"pin\"") && page.contains("value=\"password\""),
        "{page}"
    );
    for (method, secret) in [("pin", "424242"), ("password", "hunter2")] {
        let ok = login(&p, "both.proxy.test", method, secret, "/").await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{method}");
        let (token, _) = set_cookie(&ok);
        assert_eq!(
            send(
                p.addr,
                with_cookie("both.proxy.test", "/", &session(&token))
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    // The PIN is not accepted as the password.
    let cross = login(&p, "both.proxy.test", "password", "424242", "/").await;
    assert_eq!(cross.status, StatusCode::UNAUTHORIZED);
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_limited_per_client_and_service() {
    let echo = echo_backend("rl").await;
    let p = start_proxy(vec![
        protected("rl.proxy.test", echo, Some("111111"), None),
        protected("rl2.proxy.test", echo, Some("111111"), None),
    ])
    .await;
    // Fifty wrong PINs at once: counted as they are admitted, so no more
    // than ten are checked; the rest are refused with a Retry-After.
    let burst = (0..50).map(|_| {
        let p = &p;
        async move { login(p, "rl.proxy.test", "pin", "999999", "/").await }
    });
    let answers = futures_util::future::join_all(burst).await;
    let mut checked = 0;
    for answer in &answers {
        match answer.status {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
            }
            other => panic!("{other}: {}", answer.text()),
        }
    }
    assert!((1..=10).contains(&checked), "{checked} checked");
    // One at a time, the attempts run out at exactly ten.
    while login(&p, "rl.proxy.test", "pin", "999999", "/")
        .await
        .status
        == StatusCode::UNAUTHORIZED
    {
        checked += 1;
        assert!(checked <= 10, "an eleventh attempt was checked");
    }
    assert_eq!(checked, 10);
    // The eleventh attempt in the minute is refused, even with the right PIN.
    let blocked = login(&p, "rl.proxy.test", "pin", "111111", "/").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another service is counted separately.
    assert_eq!(
        login(&p, "rl2.proxy.test", "pin", "111111", "/")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_groups_without_oidc_say_sso_is_not_configured() {
    let echo = echo_backend("g").await;
    let mut s = protected("g.proxy.test", echo, Some("123123"), None);
    s.user_groups = vec!["engineering".into()];
    let p = start_proxy(vec![s]).await;
    let page = send(p.addr, get("g.proxy.test", "/")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.text().contains("SSO is not configured on this proxy"),
        "{}",
        page.text()
    );
    assert!(!page.text().contains("/.meshplane/sso"), "{}", page.text());
    assert_eq!(
        send(p.addr, get("g.proxy.test", "/.meshplane/sso?rd=/"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let ok = login(&p, "g.proxy.test", "pin", "123123", "/").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    p.proxy.shutdown().await;
}

/// GETs an absolute URL on the issuer.
async fn issuer_get(url: &str) -> Reply {
    let uri: Uri = url.parse().unwrap();
    let addr = uri.authority().unwrap().as_str().parse().unwrap();
    send(
        addr,
        get(
            uri.authority().unwrap().as_str(),
            uri.path_and_query().unwrap().as_str(),
        ),
    )
    .await
}

/// Runs the SSO flow for `/dash` on `host` through `issuer`; returns the
/// proxy's answer to the callback.
async fn sso_login(p: &TestProxy, host: &str) -> Reply {
    let page = send(p.addr, get(host, "/dash")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.text().contains("href=\"/.meshplane/sso?rd=%2Fdash\""),
        "{}",
        page.text()
    );

    let start = send(p.addr, get(host, "/.meshplane/sso?rd=%2Fdash")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.text());
    let authorize = issuer_get(start.header("location").unwrap()).await;
    assert_eq!(authorize.status, StatusCode::FOUND);
    let back: Uri = authorize.header("location").unwrap().parse().unwrap();
    assert_eq!(back.authority().unwrap().as_str(), host);
    assert_eq!(back.path(), "/.meshplane/sso/callback");
    let callback = send(p.addr, get(host, back.path_and_query().unwrap().as_str())).await;
    // The state is single use.
    let replay = send(p.addr, get(host, back.path_and_query().unwrap().as_str())).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    callback
}

async fn sso_proxy(issuer: &Issuer) -> TestProxy {
    let echo = echo_backend("team").await;
    let mut s = service("team.proxy.test", echo);
    s.user_groups = vec!["admins".into(), "devops".into()];
    let oidc = OidcConfig {
        issuer: issuer.url.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        groups_claim: "groups".into(),
    };
    start_proxy_with(vec![s], Tls::Plain, Some(oidc)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_user_in_group_gets_in() {
    for alg in [SigningAlg::Rs256, SigningAlg::EdDsa] {
        let issuer = Issuer::start(&["staff", "devops"], alg).await;
        let p = sso_proxy(&issuer).await;
        let callback = sso_login(&p, "team.proxy.test").await;
        assert_eq!(
            callback.status,
            StatusCode::SEE_OTHER,
            "{alg:?}: {}",
            callback.text()
        );
        assert_eq!(callback.header("location"), Some("/dash"));
        let (token, attrs) = set_cookie(&callback);
        assert!(attrs.iter().any(|a| a == "HttpOnly"));
        let reply = send(
            p.addr,
            with_cookie("team.proxy.test", "/dash", &session(&token)),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["name"], "team");
        assert_eq!(issuer.tokens_issued(), 1);
        // Dropping the group that admitted the user ends the session.
        let mut table = p.services.borrow().as_ref().clone();
        table[0].user_groups = vec!["admins".into()];
        p.services.send(Arc::new(table)).unwrap();
        let reply = send(
            p.addr,
            with_cookie("team.proxy.test", "/dash", &session(&token)),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        p.proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_user_outside_groups_is_denied() {
    let issuer = Issuer::start(&["staff"], SigningAlg::Rs256).await;
    let p = sso_proxy(&issuer).await;
    let callback = sso_login(&p, "team.proxy.test").await;
    assert_eq!(callback.status, StatusCode::FORBIDDEN);
    assert!(callback.headers.get("set-cookie").is_none());
    assert!(
        callback.text().contains("not in a group"),
        "{}",
        callback.text()
    );
    // A forged callback with an unknown state is refused.
    let forged = send(
        p.addr,
        get(
            "team.proxy.test",
            "/.meshplane/sso/callback?code=code-1&state=forged",
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    p.proxy.shutdown().await;
}
