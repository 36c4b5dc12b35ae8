//! The dashboard at `/` over real HTTP: its files with the strict
//! Content-Security-Policy and their content types, client-side routes
//! answered with the page, the API untouched (its 404s stay JSON), and
//! `--no-dashboard` turning it off. A server built before
//! `dashboard/dist` exists says on `/` how to build it.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, Server};

const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Status, content type, CSP header and body of a GET without a token.
fn get(s: &Server, path: &str) -> (u16, String, Option<String>, Vec<u8>) {
    let response = match ureq::get(&format!("{}{path}", s.base)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = response.status();
    let content_type = response.content_type().to_string();
    let csp = response
        .header("content-security-policy")
        .map(str::to_string);
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
    (status, content_type, csp, body)
}

/// The built dashboard the server embedded, if there was one at build time.
fn built_dist() -> Option<std::path::PathBuf> {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/dist");
    dist.join("index.html").is_file().then_some(dist)
}

#[test]
fn the_dashboard_is_served_at_the_root_with_a_strict_policy() {
    let s = Server::start(Backend::Sqlite);
    let (status, content_type, csp, page) = get(&s, "/");
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html");
    assert_eq!(csp.as_deref(), Some(CSP));
    let page = String::from_utf8(page).unwrap();
    match built_dist() {
        Some(dist) => {
            assert_eq!(
                page,
                std::fs::read_to_string(dist.join("index.html")).unwrap()
            );
            for (file, want) in [
                ("app.js", "text/javascript"),
                ("app.css", "text/css"),
                ("meshplane_wasm_bg.wasm", "application/wasm"),
            ] {
                let (status, content_type, csp, body) = get(&s, &format!("/{file}"));
                assert_eq!((status, content_type.as_str()), (200, want), "{file}");
                assert_eq!(csp.as_deref(), Some(CSP), "{file}");
                let built = std::fs::read(dist.join(file)).unwrap();
                assert!(body == built, "/{file} is not dashboard/dist/{file}");
            }
            // A client-side route is the page itself; a missing file is not.
            let (status, _, _, routed) = get(&s, "/peers/some-peer");
            assert_eq!(status, 200);
            assert_eq!(String::from_utf8(routed).unwrap(), page);
            let (status, _, _, _) = get(&s, "/missing.js");
            assert_eq!(status, 404);
        }
        None => assert!(
            page.contains("built without the dashboard"),
            "no dist at build time, yet / is {page}"
        ),
    }
    // The API keeps its routes and its JSON errors.
    let (status, content_type, csp, body) = get(&s, "/api/no-such-thing");
    assert_eq!(
        (status, content_type.as_str(), csp),
        (404, "application/json", None)
    );
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "no such endpoint");
    let (status, _) = s.call("GET", "/api/groups", None);
    assert_eq!(status, 200);
}

#[test]
fn no_dashboard_turns_the_root_into_a_404() {
    let mut s = Server::start(Backend::Sqlite);
    s.restart_with(&["--no-dashboard"]);
    for path in ["/", "/peers", "/app.js"] {
        let (status, _, csp, _) = get(&s, path);
        assert_eq!((status, csp), (404, None), "{path}");
    }
    let (status, _) = s.call("GET", "/api/groups", None);
    assert_eq!(status, 200);
}
