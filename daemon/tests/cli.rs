//! The `meshplane` binary end to end on loopback, without privileges: the
//! real management server, two `meshplane daemon --netstack` processes and
//! the CLI, all as separate processes. Two peers join with one setup key
//! and complete a WireGuard handshake over real UDP; `down` takes a peer
//! down and a restart keeps it down; a daemon killed with SIGKILL comes
//! back up by itself as the same peer; the
//! daemons reconnect after the server restarts; and the
//! error paths print clear messages and exit non-zero.
//!
//! The server binary is `meshplane-server` next to this test's directory
//! (`target/<profile>/`); `cargo test --workspace` builds it, and a lone
//! `cargo test -p meshplane` needs `cargo build -p meshplane-server` first.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const MESHPLANE: &str = env!("CARGO_BIN_EXE_meshplane");
/// How long two peers may take from `up` to a completed handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(20);

/// How long a daemon may take to notice the server going and coming back.
const RECONNECT_WITHIN: Duration = Duration::from_secs(15);

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mp-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The server binary in the same target directory as this test.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("meshplane-server");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p meshplane-server` first",
        bin.display()
    );
    bin
}

/// A child process and its scratch directory: killed on drop, and the
/// directory removed unless the test failed (its logs are kept to read).
struct Scratch {
    child: Option<Child>,
    dir: PathBuf,
}

impl Scratch {
    fn new(what: &str) -> Scratch {
        Scratch {
            child: None,
            dir: scratch_dir(what),
        }
    }

    /// `kill -9` and wait.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A log file to hand to a child as its standard error.
    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.join(name)).unwrap()
    }

    fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running management server with an owner token.
struct Server {
    process: Scratch,
    bin: PathBuf,
    port: u16,
    url: String,
    token: String,
}

impl Server {
    fn start() -> Server {
        let bin = server_binary();
        let process = Scratch::new("server");
        let out = Command::new(&bin)
            .arg("--data-dir")
            .arg(process.dir.join("data"))
            .arg("admin-token")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "admin-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let port = free_port();
        let mut s = Server {
            process,
            bin,
            port,
            url: format!("http://127.0.0.1:{port}"),
            token,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let child = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(self.process.dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env_remove("MESHPLANE_CONFIG")
            .stdout(Stdio::null())
            .stderr(self.process.log_file("server.log"))
            .spawn()
            .unwrap();
        self.process.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new reusable setup key.
    fn setup_key(&self) -> String {
        let body = json!({"name": "cli test", "type": "reusable", "expires_in": 0,
            "auto_groups": [], "usage_limit": 0});
        let key: Value = ureq::post(&format!("{}/api/setup-keys", self.url))
            .set("Authorization", &format!("Token {}", self.token))
            .send_json(body)
            .unwrap()
            .into_json()
            .unwrap();
        key["key"].as_str().unwrap().to_string()
    }
}

/// A `meshplane daemon --netstack` process with its own state directory.
struct Daemon {
    process: Scratch,
    socket: PathBuf,
}

impl Daemon {
    fn start() -> Daemon {
        let process = Scratch::new("daemon");
        let mut d = Daemon {
            socket: process.dir.join("control.sock"),
            process,
        };
        d.launch();
        d
    }

    fn launch(&mut self) {
        let child = Command::new(MESHPLANE)
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.process.dir.join("state"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--netstack")
            .stdout(Stdio::null())
            .stderr(self.process.log_file("daemon.log"))
            .spawn()
            .unwrap();
        self.process.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the daemon did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.process.read_log("daemon.log")
    }

    /// `kill -9`, then a fresh daemon on the same state directory.
    fn crash_and_restart(&mut self) {
        self.process.kill();
        self.launch();
    }

    fn cli(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "meshplane {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// Polls `status` until `check` holds, within `within`.
    fn wait_for(&self, within: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status();
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {within:?}: {status:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(MESHPLANE)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("MESHPLANE_SOCKET")
        .output()
        .unwrap()
}

/// A command that must fail: its standard error.
fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Whether `status` lists the peer with mesh IP `ip` with a handshake done.
fn handshake_with(status: &Value, ip: &Value) -> bool {
    status["peers"].as_array().is_some_and(|peers| {
        peers.iter().any(|p| {
            p["mesh_ip"] == *ip
                && p["connected"] == true
                && p["last_handshake"].is_string()
                && p["rx_bytes"].as_u64() > Some(0)
                && p["tx_bytes"].as_u64() > Some(0)
                && p["endpoint"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("127.0.0.1:"))
        })
    })
}

#[test]
fn two_daemons_join_handshake_go_down_and_restart_as_the_same_peer() {
    let mut server = Server::start();
    let key = server.setup_key();
    let mut a = Daemon::start();
    let mut b = Daemon::start();

    let before = a.status();
    assert_eq!(before["up"], false);
    assert_eq!(before["management_connected"], false);

    let up_a = a.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    // From b's `up` (a is already up) to the first packet through the
    // tunnel, which in netstack mode is the WireGuard handshake.
    let started = Instant::now();
    let up_b = b.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    let up_returned = started.elapsed();
    let sa = a.status();
    let sb = b.status();
    for (printed, status) in [(&up_a, &sa), (&up_b, &sb)] {
        assert_eq!(status["up"], true);
        assert_eq!(status["mode"], "netstack");
        assert!(
            printed.contains(status["ip"].as_str().unwrap()),
            "{printed}"
        );
        assert!(
            printed.contains(status["fqdn"].as_str().unwrap()),
            "{printed}"
        );
    }
    assert_ne!(sa["peer_id"], sb["peer_id"]);
    assert_ne!(sa["ip"], sb["ip"]);

    // Each sees the other with a WireGuard handshake over loopback UDP.
    let ip_a = sa["ip"].clone();
    let ip_b = sb["ip"].clone();
    let seen = a.wait_for(HANDSHAKE_WITHIN, "a's handshake with b", |s| {
        s["management_connected"] == true && handshake_with(s, &ip_b)
    });
    assert_eq!(seen["peers"][0]["id"], sb["peer_id"]);
    assert_eq!(seen["peers"][0]["fqdn"], sb["fqdn"]);
    b.wait_for(HANDSHAKE_WITHIN, "b's handshake with a", |s| {
        handshake_with(s, &ip_a)
    });
    eprintln!(
        "up to first packet: both handshakes done {:?} after b's `up` started \
         (the `up` command returned after {up_returned:?})",
        started.elapsed()
    );

    // The human form shows the same facts.
    let text = a.ok(&["status"]);
    assert!(text.contains("connected"), "{text}");
    assert!(text.contains(ip_b.as_str().unwrap()), "{text}");

    // `up` again with the same server only reports who the peer is.
    let again = a.ok(&["up", "--management-url", &server.url]);
    assert!(again.contains(ip_a.as_str().unwrap()), "{again}");

    // kill -9 of b and a fresh daemon on its state: it was up and nobody
    // ran `down`, so it reconnects by itself, as a system service does, as
    // the same peer with the same IP, and shakes hands with a again.
    b.crash_and_restart();
    let sb2 = b.wait_for(RECONNECT_WITHIN, "b coming back up by itself", |s| {
        s["up"] == true && s["management_connected"] == true
    });
    let back = b.ok(&["up", "--management-url", &server.url]);
    assert_eq!(sb2["peer_id"], sb["peer_id"]);
    assert_eq!(sb2["ip"], ip_b);
    assert_eq!(sb2["public_key"], sb["public_key"]);
    assert!(back.contains(ip_b.as_str().unwrap()), "{back}");
    b.wait_for(
        HANDSHAKE_WITHIN,
        "the restarted b's handshake with a",
        |s| handshake_with(s, &ip_a),
    );

    // The server goes away: the daemons say so, keep the tunnel, and
    // reconnect (with backoff) once it is back.
    server.process.kill();
    let lost = a.wait_for(RECONNECT_WITHIN, "a noticing the server is gone", |s| {
        s["management_connected"] == false
    });
    assert!(lost["management_error"].is_string(), "{lost:#}");
    assert_eq!(lost["up"], true);
    assert!(handshake_with(&lost, &ip_b), "{lost:#}");
    std::thread::sleep(Duration::from_secs(1));
    server.launch();
    for d in [&a, &b] {
        d.wait_for(RECONNECT_WITHIN, "reconnecting to the server", |s| {
            s["management_connected"] == true && s["management_error"].is_null()
        });
    }

    // `down` closes the stream and stops the engine.
    let down = a.ok(&["down"]);
    assert!(down.contains("down"), "{down}");
    let after = a.status();
    assert_eq!(after["up"], false);
    assert_eq!(after["management_connected"], false);
    assert_eq!(after["peers"], json!([]));
    assert_eq!(after["peer_id"], sa["peer_id"]);
    let text = a.ok(&["status"]);
    assert!(text.contains("down"), "{text}");

    // `down` is remembered: a restarted a stays down until `up`, which
    // needs no setup key.
    a.crash_and_restart();
    std::thread::sleep(Duration::from_secs(2));
    let restarted = a.status();
    assert_eq!(restarted["up"], false, "{restarted:#}");
    assert_eq!(restarted["peer_id"], sa["peer_id"]);
    a.ok(&["up"]);
    assert_eq!(a.status()["ip"], ip_a);
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    // No daemon on the socket.
    let nowhere = scratch_dir("nowhere");
    let out = cli(&nowhere.join("none.sock"), &["status"]);
    assert_eq!(
        fails(&out).trim(),
        "the meshplane daemon is not running (start it with 'meshplane daemon')"
    );
    let out = cli(&nowhere.join("none.sock"), &["up", "--setup-key", "x"]);
    assert!(fails(&out).contains("the meshplane daemon is not running"));
    std::fs::remove_dir_all(&nowhere).unwrap();

    let server = Server::start();
    let d = Daemon::start();

    // `up` with nothing saved yet and no URL.
    let out = d.cli(&["up"]);
    assert!(fails(&out).contains("pass --management-url"));

    // A wrong setup key: the server's message, verbatim.
    let out = d.cli(&[
        "up",
        "--management-url",
        &server.url,
        "--setup-key",
        "A2C8E62B-38F5-4553-B31E-DD66C696CEBB",
    ]);
    assert_eq!(
        fails(&out).trim(),
        "couldn't add peer: setup key is invalid"
    );
    // No setup key for a peer the server does not know.
    let out = d.cli(&["up", "--management-url", &server.url]);
    assert_eq!(
        fails(&out).trim(),
        "peer is not registered: a setup key is required to register it"
    );

    // Nothing listens on this port.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let out = d.cli(&[
        "up",
        "--management-url",
        &unreachable,
        "--setup-key",
        &server.setup_key(),
    ]);
    let message = fails(&out);
    assert!(
        message.starts_with(&format!(
            "cannot reach the management server at {unreachable}"
        )),
        "{message}"
    );

    // None of it brought the daemon up, and it still works afterwards.
    assert_eq!(d.status()["up"], false);
    d.ok(&[
        "up",
        "--management-url",
        &server.url,
        "--setup-key",
        &server.setup_key(),
    ]);
    assert_eq!(d.status()["up"], true);

    // Another daemon on a socket in use is refused.
    let out = Command::new(MESHPLANE)
        .args(["daemon", "--netstack", "--state-dir"])
        .arg(d.process.dir.join("other"))
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(fails(&out).contains("already running"));
}
