//! A management server serving TLS with a certificate of a private CA, and
//! the daemon and the proxy reaching it at `https://` with
//! `--management-ca`, as separate processes on loopback without
//! privileges:
//!
//! - two `--netstack --relay-only` daemons join, get the server's relay as
//!   `rels://` and ping each other through it;
//! - another CA, a name the certificate does not carry, and a CA file that
//!   is no certificate each fail `up` with a message that says so;
//! - `meshplane proxy` joins over `https://` too, and `meshplane expose`
//!   prints the URL the proxy serves (plain HTTP on its port, then HTTPS
//!   on its port): fetching that exact URL, with its host resolved to
//!   loopback, reaches the exposed service; the REST view shows the same
//!   URL.
//!
//! The server binary is `meshplane-server` next to this test's directory;
//! a lone `cargo test -p meshplane` needs `cargo build -p meshplane-server`
//! first. REST and the visitor's requests go through curl.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::procs::{
    backend, cli, free_port, log_file, wait_until, Daemon, Proc, Rest, ScratchDir, Server,
    MESHPLANE,
};
use serde_json::{json, Value};

/// Generous bound for anything that crosses processes on a loaded machine.
const WITHIN: Duration = Duration::from_secs(60);
/// The server's default proxy domain.
const PROXY_DOMAIN: &str = "proxy.localhost";
const BODY: &str = "hello over the exposed service";

/// A CA and a server certificate it signed for `localhost`, as PEM files
/// in `dir`: (ca, cert, key).
fn private_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `meshplane up` that must fail; its standard error.
fn up_fails(daemon: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    let out = cli(&daemon.socket, &all);
    assert!(!out.status.success(), "expected a failure: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn daemons_join_over_https_and_ping_through_the_tls_relay() {
    let scratch = ScratchDir::new("tls-join");
    let (ca, cert, key) = private_ca(&scratch.0.join("pki"), "mesh");
    let server = Server::start_tls(&scratch.0, &cert, &key, &ca);
    let setup_key = server.reusable_key("tls", &[]);
    let up = [
        "up",
        "-m",
        &server.url,
        "--management-ca",
        path(&ca),
        "-k",
        &setup_key,
    ];
    let a = Daemon::netstack(scratch.0.join("a"), &["--relay-only"]);
    let b = Daemon::netstack(scratch.0.join("b"), &["--relay-only"]);
    a.ok(&up);
    b.ok(&up);
    let b_ip = b.status()["ip"].clone();
    for d in [&a, &b] {
        let status = d.wait_for(WITHIN, "the TLS relay connected", |s| {
            s["management_connected"] == true && s["relay_connected"] == true
        });
        assert_eq!(status["management_url"], server.url.as_str());
        let relay = status["relay"].as_str().unwrap();
        assert!(relay.starts_with("rels://localhost:"), "{relay}");
    }
    wait_until(WITHIN, "A pings B through the relay", || {
        cli(
            &a.socket,
            &["ping", b_ip.as_str().unwrap(), "-c", "1", "-W", "2"],
        )
        .status
        .success()
    });

    // Once up, a restarted daemon comes back with the saved URL and CA.
    let mut a = a;
    a.kill();
    a.launch();
    a.wait_for(WITHIN, "A back over https", |s| {
        s["management_connected"] == true
    });

    // What a user gets wrong, each said in words; nothing is joined.
    let c = Daemon::netstack(scratch.0.join("c"), &[]);
    let (other_ca, _, _) = private_ca(&scratch.0.join("pki"), "other");
    let err = up_fails(
        &c,
        &[
            "-m",
            &server.url,
            "--management-ca",
            path(&other_ca),
            "-k",
            &setup_key,
        ],
    );
    assert!(err.contains("not signed by a trusted CA"), "{err}");
    assert!(err.contains("--management-ca"), "{err}");
    let err = up_fails(&c, &["-m", &server.url, "-k", &setup_key]);
    assert!(err.contains("not signed by a trusted CA"), "{err}");
    let by_ip = server.url.replace("localhost", "127.0.0.1");
    let err = up_fails(
        &c,
        &["-m", &by_ip, "--management-ca", path(&ca), "-k", &setup_key],
    );
    eprintln!("a name the certificate does not carry: {err}");
    assert!(err.contains("not valid for 127.0.0.1"), "{err}");
    assert!(err.contains("localhost"), "{err}");
    let err = up_fails(
        &c,
        &[
            "-m",
            &server.url,
            "--management-ca",
            path(&key),
            "-k",
            &setup_key,
        ],
    );
    assert!(err.contains("management CA"), "{err}");
    assert!(err.contains("no certificate"), "{err}");
    let err = up_fails(
        &c,
        &["-m", &server.url, "--management-ca", "/nonexistent/ca.pem"],
    );
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let plain = server.url.replace("https://", "http://");
    let err = up_fails(&c, &["-m", &plain, "-k", &setup_key]);
    assert!(err.contains("cannot reach the management server"), "{err}");
    assert!(err.contains("use its https:// URL"), "{err}");
    assert_eq!(c.status()["up"], false);
    assert_eq!(server.get("/api/peers").as_array().unwrap().len(), 2);
}

/// `meshplane proxy` for [`PROXY_DOMAIN`] on `port`, joined over the
/// server's `https://` URL with `ca`, with further `flags`; waits until it
/// prints where it listens.
fn proxy(dir: &Path, server: &Server, ca: &Path, key: &str, port: u16, flags: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("proxy.out");
    let _ = std::fs::remove_file(&out);
    let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).to_string();
    let process = Proc::spawn(
        Command::new(MESHPLANE)
            .args(["proxy", "-m", &server.url, "--management-ca", path(ca)])
            .args(["-k", key, "--domain", PROXY_DOMAIN, "--listen", &at])
            .args(flags)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env_remove("MESHPLANE_SETUP_KEY")
            .stdout(log_file(&out))
            .stderr(log_file(&dir.join("proxy.log"))),
    );
    let printed = format!("listening on {at}");
    wait_until(WITHIN, "the proxy listening", || {
        std::fs::read_to_string(&out).is_ok_and(|o| o.contains(&printed))
    });
    process
}

/// `meshplane expose PORT --json`, running until dropped.
struct Exposing(Child);

impl Exposing {
    /// Starts it; the session it printed.
    fn start(daemon: &Daemon, port: u16) -> (Exposing, Value) {
        let mut child = Command::new(MESHPLANE)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["expose", &port.to_string(), "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        match serde_json::from_str(&line) {
            Ok(session) => (Exposing(child), session),
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("expose: {e}: {line:?} {out:?}")
            }
        }
    }
}

impl Drop for Exposing {
    /// Ctrl+C: the CLI stops the session before it exits.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// GET `url` as a visitor would, its host resolved to loopback: the status
/// and the body (`-k`: the HTTPS proxy's certificate is self-signed; the
/// scheme and port are what is tested here).
fn visit(url: &str) -> (String, String) {
    let rest = url.split_once("://").unwrap().1;
    let (host, port) = rest.split_once(':').unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-m", "5", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1"), url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
    (code.to_string(), body.to_string())
}

#[test]
fn the_proxy_joins_over_https_and_expose_prints_the_url_it_serves() {
    let scratch = ScratchDir::new("tls-expose");
    let (ca, cert, key) = private_ca(&scratch.0.join("pki"), "mesh");
    let server = Server::start_tls(&scratch.0, &cert, &key, &ca);
    let proxies = server.new_group("proxies");
    let exposers = server.new_group("exposers");
    let account = server.get("/api/accounts")[0].clone();
    let mut settings = account["settings"].clone();
    settings["peer_expose_enabled"] = json!(true);
    settings["peer_expose_groups"] = json!([exposers]);
    server.call(
        "PUT",
        &format!("/api/accounts/{}", account["id"].as_str().unwrap()),
        Some(json!({ "settings": settings })),
    );
    let proxy_key = server.reusable_key("proxy", &[&proxies]);
    let proxy_dir = scratch.0.join("proxy");

    // The wrong CA: the proxy says why and stops.
    let (other_ca, _, _) = private_ca(&scratch.0.join("pki"), "other");
    let out = Command::new(MESHPLANE)
        .args([
            "proxy",
            "-m",
            &server.url,
            "--management-ca",
            path(&other_ca),
        ])
        .args(["-k", &proxy_key, "--domain", PROXY_DOMAIN, "--listen"])
        .arg(SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()).to_string())
        .arg("--state-dir")
        .arg(proxy_dir.join("state"))
        .env_remove("MESHPLANE_SETUP_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not signed by a trusted CA"), "{err}");
    // A public URL for another host than its domain is refused at start.
    let out = Command::new(MESHPLANE)
        .args(["proxy", "-m", &server.url, "--domain", PROXY_DOMAIN])
        .args([
            "--listen",
            "127.0.0.1:1",
            "--public-url",
            "http://other.test",
        ])
        .arg("--state-dir")
        .arg(proxy_dir.join("state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--public-url"), "{err}");
    assert!(err.contains("host must be the proxy domain"), "{err}");

    let daemon = Daemon::netstack(scratch.0.join("daemon"), &[]);
    daemon.ok(&[
        "up",
        "-m",
        &server.url,
        "--management-ca",
        path(&ca),
        "-k",
        &server.reusable_key("exposer", &[&exposers]),
    ]);
    daemon.wait_for(WITHIN, "the daemon connected", |s| {
        s["management_connected"] == true
    });
    let local = backend(BODY);

    // Plain HTTP on its own port: that is the URL, and it serves.
    let port = free_port();
    let mut plain = proxy(&proxy_dir, &server, &ca, &proxy_key, port, &[]);
    let check = |expected_scheme: &str| {
        let (exposing, session) = Exposing::start(&daemon, local);
        let domain = session["domain"].as_str().unwrap();
        let url = session["url"].as_str().unwrap();
        assert_eq!(url, format!("{expected_scheme}://{domain}:{port}"));
        let last = std::cell::RefCell::new((String::new(), String::new()));
        wait_until(WITHIN, "the exposed service served at its URL", || {
            last.replace(visit(url));
            last.borrow().0 == "200"
        });
        assert_eq!(last.borrow().1, BODY);
        let services = server.get("/api/reverse-proxies/services");
        assert_eq!(services[0]["url"], url, "{services}");
        drop(exposing);
        assert_eq!(server.get("/api/reverse-proxies/services"), json!([]));
    };
    check("http");
    plain.kill();

    // The same proxy serving HTTPS on the same port: https://, with it.
    let _tls = proxy(
        &proxy_dir,
        &server,
        &ca,
        &proxy_key,
        port,
        &["--self-signed"],
    );
    check("https");
}
