//! `meshplane expose` through `meshplane proxy`, end to end on loopback and
//! without privileges: the real management server (session TTL 3 s), a
//! proxy peer and a `--netstack` daemon as separate processes, a real local
//! HTTP server, and the CLI as a child process read line by line.
//!
//! The visitor's path is the product's: an HTTP request to the proxy with
//! the service's Host header, the proxy's dial through its own userspace
//! stack and the WireGuard tunnel to the daemon's mesh IP, the daemon's
//! forwarding to the local server on 127.0.0.1.
//!
//! The server binary is `meshplane-server` next to this test's directory;
//! a lone `cargo test -p meshplane` needs `cargo build -p meshplane-server`
//! first.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::procs::{
    accepts, backend, cli, free_port, log_file, wait_until, Daemon, Proc, Rest, ScratchDir, Server,
    MESHPLANE,
};
use serde_json::{json, Value};

/// The server's expose session TTL in this test.
const TTL: Duration = Duration::from_secs(3);
/// The server's default proxy domain.
const PROXY_DOMAIN: &str = "proxy.localhost";
/// Generous bound for anything that crosses processes on a loaded machine.
const WITHIN: Duration = Duration::from_secs(60);
const BODY: &str = "hello from the exposed service";
/// Where the proxy's login forms post to.
const LOGIN_PATH: &str = "/.meshplane/login";
const LIMIT_MESSAGE: &str = "peer has reached the maximum number of active expose sessions (10)";

/// The expose parts of the management server's REST API.
trait ExposeRest: Rest {
    /// Sets the account's peer expose switch and allowed groups.
    fn peer_expose(&self, enabled: bool, groups: &[&Value]) {
        let account = self.get("/api/accounts")[0].clone();
        let mut settings = account["settings"].clone();
        settings["peer_expose_enabled"] = json!(enabled);
        settings["peer_expose_groups"] = json!(groups);
        let id = account["id"].as_str().unwrap();
        self.call(
            "PUT",
            &format!("/api/accounts/{id}"),
            Some(json!({ "settings": settings })),
        );
    }

    /// The domains of the account's active services.
    fn services(&self) -> Vec<String> {
        let list = self.get("/api/reverse-proxies/services");
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["domain"].as_str().map(str::to_string))
            .collect()
    }

    /// Whether the audit log has an event `code` about `domain`.
    fn audited(&self, code: &str, domain: &str) -> bool {
        let events = self.get("/api/events/audit");
        events.as_array().into_iter().flatten().any(|e| {
            e["activity_code"] == code
                && e["meta"]
                    .as_object()
                    .is_some_and(|m| m.values().any(|v| v == domain))
        })
    }
}

impl<T: Rest> ExposeRest for T {}

/// What every test here starts from: the server with a short session TTL,
/// a proxy peer, a connected daemon whose group may expose, and a local
/// HTTP server answering [`BODY`].
struct World {
    server: Server,
    proxy: ProxyPeer,
    daemon: Daemon,
    /// The local HTTP server's port.
    port: String,
    proxies: Value,
    exposers: Value,
    /// Last, so the processes above are gone before it is removed.
    dir: ScratchDir,
}

impl World {
    fn start(tag: &str) -> World {
        let dir = ScratchDir::new(tag);
        let ttl = TTL.as_secs().to_string();
        let server = Server::start_with(&dir.0, &["--expose-ttl-secs", &ttl]);
        let proxies = server.new_group("proxies");
        let exposers = server.new_group("exposers");
        server.peer_expose(true, &[&exposers]);
        let proxy = ProxyPeer::start(
            dir.0.join("proxy"),
            &server.url,
            &server.reusable_key("expose test", &[&proxies]),
        );
        let daemon = Daemon::netstack(dir.0.join("daemon"), &["--expose-renew-secs", "1"]);
        daemon.ok(&[
            "up",
            "--management-url",
            &server.url,
            "--setup-key",
            &server.reusable_key("expose test", &[&exposers]),
        ]);
        wait_until(WITHIN, "the daemon connected", || {
            daemon.status()["management_connected"] == true
        });
        World {
            server,
            proxy,
            daemon,
            port: backend(BODY).to_string(),
            proxies,
            exposers,
            dir,
        }
    }
}

/// `meshplane proxy` on a free loopback port, plain HTTP, with its
/// metrics on another.
struct ProxyPeer {
    at: SocketAddrV4,
    metrics: SocketAddrV4,
    dir: PathBuf,
    process: Proc,
}

impl ProxyPeer {
    /// Starts the proxy with its setup key in a file, as the README
    /// advises; the key must not show in the process's command line.
    fn start(dir: PathBuf, url: &str, setup_key: &str) -> ProxyPeer {
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("setup-key");
        std::fs::write(&key_file, format!("{setup_key}\n")).unwrap();
        let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let process = Proc::spawn(
            Command::new(MESHPLANE)
                .args(["proxy", "--management-url", url, "--setup-key-file"])
                .arg(&key_file)
                .args(["--domain", PROXY_DOMAIN, "--listen", &at.to_string()])
                .args(["--metrics-listen", &metrics.to_string()])
                .arg("--state-dir")
                .arg(dir.join("state"))
                .env_remove("MESHPLANE_SETUP_KEY")
                .stdout(log_file(&dir.join("proxy.out")))
                .stderr(log_file(&dir.join("proxy.log"))),
        );
        let proxy = ProxyPeer {
            at,
            metrics,
            dir,
            process,
        };
        // It prints where it listens once it does.
        let printed = format!("listening on {at}");
        wait_until(WITHIN, "the proxy listening", || {
            std::fs::read_to_string(proxy.dir.join("proxy.out"))
                .is_ok_and(|out| out.contains(&printed))
        });
        assert!(accepts(at), "{}", proxy.log());
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", proxy.pid())).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(cmdline.contains("--setup-key-file"), "{cmdline}");
        assert!(!cmdline.contains(setup_key), "{cmdline}");
        proxy
    }

    fn pid(&self) -> u32 {
        self.process.pid().expect("the proxy runs")
    }

    /// The proxy process's peak resident memory (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    /// One request to the proxy for `domain`.
    fn request(&self, method: &str, domain: &str, path: &str, extra: &str, body: &str) -> Answer {
        http(self.at, method, domain, path, extra, body)
            .unwrap_or_else(|e| panic!("{method} {domain}{path}: {e}\n{}", self.log()))
    }

    /// The login form's body posting `secret` with `form`.
    fn login_body(form: &LoginForm, secret: &str) -> String {
        [
            ("method", form.method.as_str()),
            ("secret", secret),
            ("rd", form.rd.as_str()),
        ]
        .map(|(name, value)| format!("{name}={}", form_encoded(value)))
        .join("&")
    }

    fn get(&self, domain: &str) -> Answer {
        self.request("GET", domain, "/", "", "")
    }

    /// The login page for `domain` (whose service is protected by one
    /// `method`): the wrong secret, posted with the page's form, gets it
    /// again and no cookie; the right one a cookie that opens the service.
    fn passes_login(&self, domain: &str, method: &str, wrong: &str, right: &str) {
        self.wait_status(domain, 401);
        let page = self.get(domain);
        assert!(page.body.contains("<form"), "{}", page.body);
        assert!(!page.body.contains(BODY));
        let form = LoginForm::on(&page.body);
        assert_eq!(form.action, LOGIN_PATH, "{}", page.body);
        assert_eq!(form.method, method, "{}", page.body);
        let wrong = self.submit(domain, &form, wrong);
        assert_eq!(wrong.status, 401);
        assert!(!wrong.head.contains("meshplane_session="));
        let right = self.submit(domain, &form, right);
        let cookie = right
            .head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie")
                    .then(|| value.trim().split(';').next().unwrap_or("").to_string())
            })
            .unwrap_or_else(|| panic!("no cookie after the right {method}: {}", right.head));
        let content = self.request("GET", domain, "/", &format!("Cookie: {cookie}\r\n"), "");
        assert_eq!((content.status, content.body.as_str()), (200, BODY));
    }

    /// Posts the login `form` with `secret`, as a browser would.
    fn submit(&self, domain: &str, form: &LoginForm, secret: &str) -> Answer {
        self.submit_from(Ipv4Addr::LOCALHOST, domain, form, secret)
    }

    /// [`submit`](Self::submit) from the loopback address `source`.
    fn submit_from(
        &self,
        source: Ipv4Addr,
        domain: &str,
        form: &LoginForm,
        secret: &str,
    ) -> Answer {
        let stream = connect_from(source, self.at)
            .unwrap_or_else(|e| panic!("connect from {source}: {e}\n{}", self.log()));
        exchange(
            stream,
            "POST",
            domain,
            &form.action,
            FORM_TYPE,
            &Self::login_body(form, secret),
        )
        .unwrap_or_else(|e| panic!("login from {source}: {e}\n{}", self.log()))
    }

    /// Polls until the proxy answers `status` for `domain`; how long it took.
    fn wait_status(&self, domain: &str, status: u16) -> Duration {
        let started = Instant::now();
        loop {
            let answer = self.get(domain);
            if answer.status == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < WITHIN,
                "{domain} still answers {} {}, not {status}\n{}",
                answer.status,
                answer.body,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The first form of a login page.
struct LoginForm {
    action: String,
    method: String,
    rd: String,
}

impl LoginForm {
    fn on(page: &str) -> LoginForm {
        let value = |marker: &str| {
            let at = page
                .find(marker)
                .unwrap_or_else(|| panic!("no {marker} in {page}"));
            page[at + marker.len()..]
                .split('"')
                .next()
                .unwrap()
                .to_string()
        };
        LoginForm {
            action: value("action=\""),
            method: value("name=\"method\" value=\""),
            rd: value("name=\"rd\" value=\""),
        }
    }
}

/// `value` for an `application/x-www-form-urlencoded` body.
fn form_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An HTTP answer.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// The content type of a posted login form.
const FORM_TYPE: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

/// One HTTP/1.1 request with `Host: domain` over a fresh connection.
fn http(
    at: SocketAddrV4,
    method: &str,
    domain: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<Answer> {
    exchange(TcpStream::connect(at)?, method, domain, path, extra, body)
}

/// A connection to `at` from the loopback address `source` (every
/// 127.0.0.0/8 address is the machine's own), as from another client.
fn connect_from(source: Ipv4Addr, at: SocketAddrV4) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddrV4::new(source, 0).into())?;
    socket.connect(&at.into())?;
    Ok(socket.into())
}

/// One HTTP/1.1 request with `Host: domain` on `stream`, which it closes.
fn exchange(
    mut stream: TcpStream,
    method: &str,
    domain: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<Answer> {
    stream.set_read_timeout(Some(WITHIN))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {domain}\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(Answer {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    })
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A running `meshplane expose`, its standard output read line by line.
struct Exposing {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Exposing {
    fn start(socket: &Path, args: &[&str]) -> Exposing {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr = socket.with_file_name(format!("expose-{n}.err"));
        let mut child = Command::new(MESHPLANE)
            .arg("--socket")
            .arg(socket)
            .arg("expose")
            .args(args)
            .env_remove("MESHPLANE_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&stderr))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Exposing {
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next line of output; panics (with standard error) when the
    /// command ended or said nothing in time.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(WITHIN)
            .unwrap_or_else(|e| panic!("expose printed no line ({e}): {}", self.stderr()))
    }

    /// Reads the success block; its `Domain:` value.
    fn block(&self) -> (Vec<String>, String) {
        let mut block = Vec::new();
        loop {
            let line = self.line();
            let done = line == "Press Ctrl+C to stop exposing.";
            block.push(line);
            if done {
                break;
            }
        }
        let domain = block
            .iter()
            .find_map(|l| l.strip_prefix("  Domain:   "))
            .unwrap_or_else(|| panic!("no domain in {block:?}"))
            .to_string();
        (block, domain)
    }

    /// Sends `signal` (`-INT`, `-TERM`) to the CLI.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the CLI to exit; its status and the rest of its output.
    fn exit(&mut self) -> (ExitStatus, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < WITHIN,
                "expose did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let rest: Vec<String> = self.lines.try_iter().collect();
        (status, rest.join("\n"))
    }
}

impl Drop for Exposing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an expose that must fail; its standard error.
fn expose_fails(socket: &Path, args: &[&str]) -> String {
    let mut all = vec!["expose"];
    all.extend_from_slice(args);
    let out = cli(socket, &all);
    assert!(!out.status.success(), "expected a failure: {out:?}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8(out.stderr).unwrap().trim().to_string()
}

#[test]
fn exposed_services_are_served_by_the_proxy_for_as_long_as_the_session_lives() {
    let World {
        mut server,
        proxy,
        mut daemon,
        port,
        proxies,
        exposers,
        dir: _dir,
    } = World::start("expose-e2e");

    // Expose prints the seed's block, and the URL serves the local server.
    let mut plain = Exposing::start(&daemon.socket, &[&port, "--with-name-prefix", "demo"]);
    let (block, domain) = plain.block();
    let name = domain.strip_suffix(&format!(".{PROXY_DOMAIN}")).unwrap();
    assert!(
        name.starts_with("demo-") && name.len() == "demo-".len() + 4,
        "{name}"
    );
    assert_eq!(
        block,
        [
            "Service exposed successfully!".to_string(),
            format!("  Name:     {name}"),
            format!("  URL:      http://{domain}:{}", proxy.at.port()),
            format!("  Domain:   {domain}"),
            "  Protocol: http".to_string(),
            format!("  Port:     {port}"),
            String::new(),
            "Press Ctrl+C to stop exposing.".to_string(),
        ]
    );
    assert_eq!(server.services(), vec![domain.clone()]);
    let took = proxy.wait_status(&domain, 200);
    eprintln!("exposed service reachable through the proxy {took:?} after the CLI printed it");
    assert_eq!(proxy.get(&domain).body, BODY);
    assert_eq!(proxy.get("nothing.proxy.localhost").status, 404);
    // Renewals (every second) keep it alive past the 3 s TTL.
    std::thread::sleep(TTL * 2);
    assert_eq!(proxy.get(&domain).status, 200, "{}", daemon.log());

    // Ctrl+C: stopped at once, audited as unexposed.
    plain.signal("-INT");
    let (status, rest) = plain.exit();
    assert!(status.success(), "{status:?} {}", plain.stderr());
    assert_eq!(rest, "Service stopped.");
    let gone = proxy.wait_status(&domain, 404);
    eprintln!("service gone from the proxy {gone:?} after the CLI exited");
    assert!(server.audited("service.peer.expose", &domain));
    assert!(server.audited("service.peer.unexpose", &domain));
    assert!(server.services().is_empty());

    // A PIN: the login page first, the content after the right PIN.
    let pinned = Exposing::start(
        &daemon.socket,
        &[&port, "--with-pin", "123456", "--with-name-prefix", "pin"],
    );
    let (_, domain) = pinned.block();
    proxy.passes_login(&domain, "pin", "654321", "123456");
    // `down` stops the session before the daemon leaves the mesh.
    daemon.ok(&["down"]);
    let mut pinned = pinned;
    let (status, rest) = pinned.exit();
    assert!(status.success(), "{status:?} {}", pinned.stderr());
    assert_eq!(rest, "Service stopped.");
    assert!(server.audited("service.peer.unexpose", &domain));
    proxy.wait_status(&domain, 404);
    daemon.ok(&["up"]);
    wait_until(WITHIN, "the daemon connected again", || {
        daemon.status()["management_connected"] == true
    });

    // kill -9 of the daemon: no stop is sent; the TTL removes the service.
    let mut orphan = Exposing::start(&daemon.socket, &[&port, "--json"]);
    let session: Value = serde_json::from_str(&orphan.line()).unwrap();
    let domain = session["domain"].as_str().unwrap().to_string();
    // The proxy serves plain HTTP on its port, and the URL says so.
    assert_eq!(
        session["url"],
        format!("http://{domain}:{}", proxy.at.port())
    );
    assert_eq!(session["protocol"], "http");
    assert_eq!(session["port"].to_string(), port);
    assert!(session["name"].as_str().is_some_and(|n| n.len() == 12));
    assert!(session["expires_at"].is_string(), "{session}");
    proxy.wait_status(&domain, 200);
    daemon.kill();
    let killed = Instant::now();
    let (status, _) = orphan.exit();
    assert!(!status.success());
    wait_until(WITHIN, "the orphaned session expiring", || {
        server.services().is_empty()
    });
    eprintln!(
        "orphaned session expired {:?} after the daemon was killed (TTL {TTL:?})",
        killed.elapsed()
    );
    // (A request still routed to the dead peer waits out the proxy's
    // connect timeout, so this can take a while.)
    proxy.wait_status(&domain, 404);
    wait_until(WITHIN, "the expiry in the audit log", || {
        server.audited("service.peer.expose.expire", &domain)
    });
    daemon.launch();
    wait_until(WITHIN, "the restarted daemon connected", || {
        daemon.status()["management_connected"] == true
    });

    // Ten sessions at once; the eleventh is refused.
    let ten: Vec<Exposing> = (0..10)
        .map(|_| Exposing::start(&daemon.socket, &[&port]))
        .collect();
    for e in &ten {
        e.block();
    }
    assert_eq!(server.services().len(), 10);
    assert_eq!(expose_fails(&daemon.socket, &[&port]), LIMIT_MESSAGE);
    // SIGTERM stops a session as Ctrl+C does.
    let mut ten = ten;
    let mut first = ten.remove(0);
    first.signal("-TERM");
    let (status, rest) = first.exit();
    assert!(status.success(), "{status:?} {}", first.stderr());
    assert_eq!(rest, "Service stopped.");
    // Killed CLIs close their connections: the daemon stops their sessions.
    drop(ten);
    wait_until(WITHIN, "the ten sessions stopped", || {
        server.services().is_empty()
    });

    // Permission: the feature off, then on for a group the peer is not in.
    server.peer_expose(false, &[&exposers]);
    assert_eq!(expose_fails(&daemon.socket, &[&port]), "permission denied");
    server.peer_expose(true, &[&proxies]);
    assert_eq!(expose_fails(&daemon.socket, &[&port]), "permission denied");
    server.peer_expose(true, &[&exposers]);
    // The server's own refusals come through verbatim.
    assert_eq!(
        expose_fails(&daemon.socket, &[&port, "--with-user-groups", "nosuch"]),
        "unknown user group \"nosuch\""
    );

    // A management restart loses the sessions and their services at once;
    // the CLI's next renewal fails and it exits with the server's reason.
    let mut lost = Exposing::start(&daemon.socket, &[&port]);
    let (_, domain) = lost.block();
    proxy.wait_status(&domain, 200);
    server.kill();
    server.launch();
    proxy.wait_status(&domain, 404);
    assert!(server.services().is_empty());
    let (status, _) = lost.exit();
    assert_eq!(status.code(), Some(1));
    let stderr = lost.stderr();
    assert!(
        stderr.starts_with("cannot renew the expose session: "),
        "{stderr}"
    );
}

/// What the proxy answered to login attempts: the wrong secrets it
/// checked, per client address.
type Checked = std::collections::BTreeMap<Ipv4Addr, u32>;

impl ProxyPeer {
    /// Posts the wrong PIN once from each of `sources`, all at the same
    /// moment (connected first, then released together). Every answer must
    /// be 401 (checked) or 429 with a `Retry-After`; how many were checked.
    fn burst(&self, domain: &str, form: &LoginForm, sources: &[Ipv4Addr]) -> Checked {
        let release = std::sync::Barrier::new(sources.len());
        let answers: Vec<(Ipv4Addr, Answer)> = std::thread::scope(|s| {
            let threads: Vec<_> = sources
                .iter()
                .map(|&source| {
                    let release = &release;
                    s.spawn(move || {
                        let stream = connect_from(source, self.at);
                        release.wait();
                        let answer = exchange(
                            stream?,
                            "POST",
                            domain,
                            &form.action,
                            FORM_TYPE,
                            &Self::login_body(form, WRONG_PIN),
                        );
                        answer.map(|a| (source, a))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
                })
                .collect()
        });
        let mut checked = Checked::new();
        for (source, answer) in answers {
            match answer.status {
                401 => *checked.entry(source).or_default() += 1,
                429 => {
                    let retry = retry_after(&answer.head);
                    assert!((1..=60).contains(&retry), "{}", answer.head);
                }
                other => panic!("{other} to a wrong PIN: {}\n{}", answer.head, self.log()),
            }
        }
        checked
    }
}

/// The `Retry-After` seconds of an answer's head.
fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Retry-After in {head}"))
}

const WRONG_PIN: &str = "000000";

/// Wrong PINs sent all at once, as a guesser would: no more than the
/// documented limits (10 per address, 100 per service a minute) are ever
/// checked, the rest are answered 429 at once, the right PIN is refused
/// once the address has used up its attempts, and the proxy process's
/// memory stays far from what hundreds of concurrent argon2id hashes
/// (19 MiB each) would take.
#[test]
fn a_burst_of_wrong_pins_is_held_to_the_limits_and_the_proxy_stays_small() {
    let World {
        server: _server,
        proxy,
        daemon,
        port,
        dir: _dir,
        ..
    } = World::start("expose-burst");
    let pinned = Exposing::start(&daemon.socket, &[&port, "--with-pin", "123456"]);
    let (_, domain) = pinned.block();
    proxy.wait_status(&domain, 401);
    let form = LoginForm::on(&proxy.get(&domain).body);
    let before = proxy.peak_rss_kib();

    // 200 at once from one address: at most 10 checked.
    let one = Ipv4Addr::LOCALHOST;
    let checked = proxy.burst(&domain, &form, &[one; 200]);
    let mut from_one = checked.get(&one).copied().unwrap_or(0);
    eprintln!("burst of 200 wrong PINs from one address: {from_one} checked, the rest 429");
    assert!((1..=10).contains(&from_one), "{checked:?}");
    // One at a time, the address's attempts run out at exactly ten; then
    // even the right PIN is refused.
    loop {
        let answer = proxy.submit_from(one, &domain, &form, WRONG_PIN);
        match answer.status {
            401 => from_one += 1,
            429 => break,
            other => panic!("{other}: {}", answer.head),
        }
        assert!(from_one <= 10, "an eleventh wrong PIN was checked");
    }
    assert_eq!(from_one, 10);
    let right = proxy.submit_from(one, &domain, &form, "123456");
    assert_eq!(right.status, 429, "{}", right.head);
    assert!(!right.head.contains("meshplane_session="));

    // 300 at once from 30 other addresses: at most 10 each and 100 in all.
    let many: Vec<Ipv4Addr> = (0..300u16)
        .map(|i| Ipv4Addr::new(127, 0, 1, (i % 30) as u8 + 1))
        .collect();
    let checked = proxy.burst(&domain, &form, &many);
    let total: u32 = checked.values().sum();
    eprintln!("burst of 300 wrong PINs from 30 addresses: {total} checked, the rest 429");
    assert!(checked.values().all(|&n| n <= 10), "{checked:?}");
    assert!(from_one + total <= 100, "{checked:?}");

    let peak = proxy.peak_rss_kib();
    eprintln!(
        "proxy peak RSS: {} MiB before the bursts, {} MiB after",
        before / 1024,
        peak / 1024
    );
    assert!(peak < 1024 * 1024, "proxy peak RSS {peak} KiB");

    // Its metrics counted every check and every refusal.
    let text = ureq::get(&format!("http://{}/metrics", proxy.metrics))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let logins = |result: &str| {
        let prefix =
            format!(r#"meshplane_proxy_login_attempts_total{{method="pin",result="{result}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(logins("wrong"), f64::from(from_one + total), "{text}");
    assert!(logins("limited") >= 1.0, "{text}");
    assert!(
        text.lines().any(|l| l == "meshplane_proxy_services 1"),
        "{text}"
    );
    drop(pinned);
}

#[test]
fn passwords_and_custom_domains_work_through_the_proxy() {
    let World {
        server,
        proxy,
        daemon,
        port,
        dir: _dir,
        ..
    } = World::start("expose-auth");

    // A password: the login page, then the content after the right one.
    let guarded = Exposing::start(
        &daemon.socket,
        &[
            &port,
            "--with-password",
            "open sesame!",
            "--with-name-prefix",
            "pw",
        ],
    );
    let (_, domain) = guarded.block();
    assert!(domain.ends_with(&format!(".{PROXY_DOMAIN}")), "{domain}");
    proxy.passes_login(&domain, "password", "open sesame", "open sesame!");
    drop(guarded);
    wait_until(WITHIN, "the password session stopped", || {
        server.services().is_empty()
    });

    // A registered custom domain: the service lives under it, and the
    // proxy (which serves every service of its table by exact host) serves
    // it there and not under its own domain.
    let custom = "apps.example.test";
    let registered = server.post("/api/reverse-proxies/domains", json!({ "domain": custom }));
    assert_eq!(registered["type"], "custom", "{registered}");
    let mut own = Exposing::start(
        &daemon.socket,
        &[
            &port,
            "--with-custom-domain",
            custom,
            "--with-name-prefix",
            "own",
        ],
    );
    let (block, domain) = own.block();
    let name = domain.strip_suffix(&format!(".{custom}")).unwrap();
    assert!(name.starts_with("own-"), "{domain}");
    assert!(
        block.contains(&format!("  URL:      http://{domain}:{}", proxy.at.port())),
        "{block:?}"
    );
    assert_eq!(server.services(), vec![domain.clone()]);
    proxy.wait_status(&domain, 200);
    assert_eq!(proxy.get(&domain).body, BODY);
    assert_eq!(proxy.get(&format!("{name}.{PROXY_DOMAIN}")).status, 404);
    own.signal("-INT");
    let (status, rest) = own.exit();
    assert!(status.success(), "{status:?} {}", own.stderr());
    assert_eq!(rest, "Service stopped.");
    proxy.wait_status(&domain, 404);

    // A domain the account never registered: the server's refusal.
    assert_eq!(
        expose_fails(
            &daemon.socket,
            &[&port, "--with-custom-domain", "other.example.test"]
        ),
        "custom domain \"other.example.test\" is not registered to the account"
    );
    assert!(server.services().is_empty());
}

#[test]
fn bad_flags_and_a_daemon_that_is_down_fail_with_the_seed_messages() {
    let dir = ScratchDir::new("expose-flags");
    let daemon = Daemon::netstack(dir.0.join("daemon"), &[]);
    let socket = &daemon.socket;
    let port = "8080";
    assert_eq!(
        expose_fails(socket, &[port, "--with-name-prefix", "Bad_Prefix"]),
        "generate service name: invalid name prefix \"Bad_Prefix\": must be lowercase \
         alphanumeric with optional hyphens, 1-32 characters"
    );
    assert_eq!(
        expose_fails(socket, &[port, "--with-name-prefix", "-demo"]),
        "generate service name: invalid name prefix \"-demo\": must be lowercase \
         alphanumeric with optional hyphens, 1-32 characters"
    );
    for bad in ["0", "65536", "-1", "http"] {
        assert_eq!(
            expose_fails(socket, &[bad]),
            "invalid port number: must be between 1 and 65535",
            "port {bad}"
        );
    }
    assert_eq!(
        expose_fails(socket, &[port, "--protocol", "tcp"]),
        "unsupported protocol"
    );
    for bad in ["12345", "1234567", "12a456"] {
        assert_eq!(
            expose_fails(socket, &[port, "--with-pin", bad]),
            "invalid pin: must be exactly 6 digits"
        );
    }
    assert_eq!(
        expose_fails(socket, &[port, "--with-password", ""]),
        "password cannot be empty"
    );
    assert_eq!(
        expose_fails(socket, &[port, "--with-user-groups", ""]),
        "user groups cannot be empty"
    );
    // Valid flags, but the daemon is not up.
    assert_eq!(
        expose_fails(socket, &[port, "--with-name-prefix", "demo"]),
        "client is not running, run 'meshplane up' first"
    );
    // No daemon at all.
    let none = dir.0.join("none.sock");
    assert_eq!(
        expose_fails(&none, &[port]),
        "the meshplane daemon is not running (start it with 'meshplane daemon')"
    );
}
