//! The `meshplane` binary end to end on loopback, without privileges: the
//! real management server, two `meshplane daemon --netstack` processes and
//! the CLI, all as separate processes. Two peers join with one setup key
//! and complete a WireGuard handshake over real UDP; `down` takes a peer
//! down and a restart keeps it down; a daemon killed with SIGKILL comes
//! back up by itself as the same peer; the
//! daemons reconnect after the server restarts; `status` prints its
//! formats and filters its peers; the daemon's metrics move with traffic;
//! and the error paths print clear messages and exit non-zero.
//!
//! The server binary is `meshplane-server` next to this test's directory
//! (`target/<profile>/`); `cargo test --workspace` builds it, and a lone
//! `cargo test -p meshplane` needs `cargo build -p meshplane-server` first.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::procs::{cli, free_port, Daemon, Rest, ScratchDir, Server, MESHPLANE};
use serde_json::{json, Value};

/// How long two peers may take from `up` to a completed handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(20);

/// How long a daemon may take to notice the server going and coming back.
const RECONNECT_WITHIN: Duration = Duration::from_secs(15);

/// A command that must fail: its standard error.
fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Whether `status` lists the peer with mesh IP `ip` with a handshake done
/// over a direct path (one of its addresses on this host).
fn handshake_with(status: &Value, ip: &Value) -> bool {
    status["peers"].as_array().is_some_and(|peers| {
        peers.iter().any(|p| {
            p["mesh_ip"] == *ip
                && p["connected"] == true
                && p["last_handshake"].is_string()
                && p["rx_bytes"].as_u64() > Some(0)
                && p["tx_bytes"].as_u64() > Some(0)
                && p["connection"] == "direct"
                && p["endpoint"].is_string()
        })
    })
}

#[test]
fn two_daemons_join_handshake_go_down_and_restart_as_the_same_peer() {
    let scratch = ScratchDir::new("cli-join");
    let mut server = Server::start(&scratch.0);
    let key = server.reusable_key("cli test", &[]);
    let mut a = Daemon::netstack(scratch.0.join("a"), &[]);
    let mut b = Daemon::netstack(scratch.0.join("b"), &[]);

    let before = a.status();
    assert_eq!(before["up"], false);
    assert_eq!(before["management_connected"], false);

    let up_a = a.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    // From b's `up` (a is already up) to the first packet through the
    // tunnel, which in netstack mode is the WireGuard handshake.
    let started = Instant::now();
    let up_b = b.ok(&["up", "-m", &server.url, "-k", &key]);
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
    let text = a.ok(&["status", "--detail"]);
    assert!(text.contains("Status: Connected"), "{text}");
    assert!(text.contains(ip_b.as_str().unwrap()), "{text}");

    // `up` again with the same server only reports who the peer is.
    let again = a.ok(&["up", "--management-url", &server.url]);
    assert!(again.contains(ip_a.as_str().unwrap()), "{again}");

    // kill -9 of b and a fresh daemon on its state: it was up and nobody
    // ran `down`, so it reconnects by itself, as a system service does, as
    // the same peer with the same IP, and shakes hands with a again.
    b.kill();
    b.launch();
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
    server.kill();
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
    assert!(text.contains("Daemon status: Down"), "{text}");

    // `down` is remembered: a restarted a stays down until `up`, which
    // needs no setup key.
    a.kill();
    a.launch();
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
    let scratch = ScratchDir::new("cli-errors");
    let nowhere = scratch.0.join("none.sock");
    let out = cli(&nowhere, &["status"]);
    assert_eq!(
        fails(&out).trim(),
        "the meshplane daemon is not running (start it with 'meshplane daemon')"
    );
    let out = cli(&nowhere, &["up", "--setup-key", "x"]);
    assert!(fails(&out).contains("the meshplane daemon is not running"));

    let server = Server::start(&scratch.0);
    let d = Daemon::netstack(scratch.0.join("daemon"), &[]);

    // `up` with nothing saved yet and no URL.
    let out = cli(&d.socket, &["up"]);
    assert!(fails(&out).contains("pass --management-url"));

    // A wrong setup key: the server's message, verbatim.
    let out = cli(
        &d.socket,
        &[
            "up",
            "--management-url",
            &server.url,
            "--setup-key",
            "A2C8E62B-38F5-4553-B31E-DD66C696CEBB",
        ],
    );
    assert_eq!(
        fails(&out).trim(),
        "couldn't add peer: setup key is invalid"
    );
    // No setup key for a peer the server does not know.
    let out = cli(&d.socket, &["up", "--management-url", &server.url]);
    assert_eq!(
        fails(&out).trim(),
        "peer is not registered: a setup key is required to register it"
    );

    // Nothing listens on this port.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let out = cli(
        &d.socket,
        &[
            "up",
            "--management-url",
            &unreachable,
            "--setup-key",
            &server.reusable_key("cli test", &[]),
        ],
    );
    let message = fails(&out);
    assert!(
        message.starts_with(&format!(
            "cannot reach the management server at {unreachable}"
        )),
        "{message}"
    );

    // A setup key file that cannot be read, or holds nothing.
    let missing = scratch.0.join("no-such-key");
    let missing = missing.to_str().unwrap();
    let out = cli(&d.socket, &["up", "--setup-key-file", missing]);
    let message = fails(&out);
    assert!(
        message.starts_with(&format!("cannot read the setup key file {missing}: ")),
        "{message}"
    );
    let key_file = scratch.0.join("setup-key");
    std::fs::write(&key_file, "\n").unwrap();
    let key_path = key_file.to_str().unwrap();
    let out = cli(&d.socket, &["up", "--setup-key-file", key_path]);
    assert_eq!(
        fails(&out).trim(),
        format!("the setup key file {key_path} is empty")
    );

    // None of it brought the daemon up, and it still works afterwards,
    // with the key read from the file (trimmed).
    assert_eq!(d.status()["up"], false);
    std::fs::write(
        &key_file,
        format!("{}\n", server.reusable_key("cli test", &[])),
    )
    .unwrap();
    d.ok(&[
        "up",
        "--management-url",
        &server.url,
        "--setup-key-file",
        key_path,
    ]);
    assert_eq!(d.status()["up"], true);

    // Another daemon on a socket in use is refused.
    let out = Command::new(MESHPLANE)
        .args(["daemon", "--netstack", "--no-host-dns", "--state-dir"])
        .arg(scratch.0.join("other"))
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(fails(&out).contains("already running"));
}

#[test]
fn completion_scripts_generate_and_bash_accepts_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(MESHPLANE)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", fails(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["expose", "status", "management-url"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let script = Command::new(MESHPLANE)
        .args(["completion", "bash"])
        .output()
        .unwrap()
        .stdout;
    let dir = ScratchDir::new("completion");
    let path = dir.0.join("meshplane.bash");
    std::fs::write(&path, script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", fails(&check));
}

#[test]
fn service_install_writes_a_unit_for_this_binary_and_uninstall_removes_it() {
    let scratch = ScratchDir::new("service");
    let units = scratch.0.join("units");
    let dir = units.to_str().unwrap();
    let run = |verb: &str| {
        Command::new(MESHPLANE)
            .args(["service", verb, "--unit-dir", dir, "--no-systemctl"])
            .output()
            .unwrap()
    };
    let out = run("install");
    assert!(out.status.success(), "{}", fails(&out));
    let unit_path = units.join("meshplane.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.contains(&format!("ExecStart={MESHPLANE} daemon")),
        "{unit}"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let check = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_path)
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", fails(&check));
    }
    let out = run("uninstall");
    assert!(out.status.success(), "{}", fails(&out));
    assert!(!unit_path.exists());
}

/// The value of the Prometheus sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn scrape(at: &str) -> String {
    ureq::get(&format!("http://{at}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

/// The peers in `status --json` output `text`.
fn peers_in(text: &str) -> usize {
    let status: Value = serde_json::from_str(text).unwrap();
    status["peers"].as_array().unwrap().len()
}

#[test]
fn status_formats_filters_and_daemon_metrics() {
    let scratch = ScratchDir::new("cli-status");
    let server = Server::start(&scratch.0);
    let key = server.reusable_key("status test", &[]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let a = Daemon::netstack(scratch.0.join("a"), &["--metrics-listen", &metrics]);
    let b = Daemon::netstack(scratch.0.join("b"), &[]);
    for d in [&a, &b] {
        d.ok(&["up", "-m", &server.url, "-k", &key]);
    }
    let sb = b.status();
    let ip_b = sb["ip"].clone();
    let sa = a.wait_for(HANDSHAKE_WITHIN, "a's handshake with b", |s| {
        s["signal_connected"] == true && handshake_with(s, &ip_b)
    });
    let (ip_a, fqdn_a) = (sa["ip"].as_str().unwrap(), sa["fqdn"].as_str().unwrap());
    let (ip_b, fqdn_b) = (ip_b.as_str().unwrap(), sb["fqdn"].as_str().unwrap());

    // The summary: this peer and a count, no peer list.
    let text = a.ok(&["status"]);
    for line in [
        "Daemon status: Up".to_string(),
        format!("Management: Connected to {}", server.url),
        "Signal: Connected".to_string(),
        format!("FQDN: {fqdn_a}"),
        format!("Mesh IP: {ip_a}"),
        "Interface type: Userspace (netstack)".to_string(),
        "Peers count: 1/1 Connected".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    assert!(!text.contains(fqdn_b), "{text}");

    // The detail: every peer, with relative times.
    let text = a.ok(&["status", "-d"]);
    for line in [
        format!(" {fqdn_b}:"),
        format!("  Mesh IP: {ip_b}"),
        "  Status: Connected".to_string(),
        "  Connection type: P2P".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    let handshake = text
        .lines()
        .find_map(|l| l.strip_prefix("  Last WireGuard handshake: "))
        .unwrap();
    assert!(
        handshake == "Now" || handshake.ends_with(" ago"),
        "{handshake}"
    );
    assert!(
        text.contains("  Transfer status (received/sent): "),
        "{text}"
    );
    assert!(text.contains("Peers count: 1/1 Connected"), "{text}");

    // JSON and YAML carry the same report.
    let json: Value = serde_json::from_str(&a.ok(&["status", "--json"])).unwrap();
    let yaml: Value = serde_norway::from_str(&a.ok(&["status", "--yaml"])).unwrap();
    for field in ["ip", "fqdn", "public_key", "peer_id", "management_url"] {
        assert_eq!(yaml[field], json[field], "{field}: {yaml:#}");
    }
    assert_eq!(yaml["peers"][0]["mesh_ip"], ip_b, "{yaml:#}");
    assert_eq!(a.ok(&["status", "-4"]).trim(), ip_a);

    // Filters, in every format.
    let b_label = fqdn_b.split('.').next().unwrap().to_uppercase();
    for (args, kept) in [
        (vec!["--filter-by-status", "connected"], 1),
        (vec!["-S", "idle"], 0),
        (vec!["--filter-by-names", &b_label], 1),
        (vec!["-N", "nobody,else"], 0),
        (vec!["--filter-by-ips", ip_b], 1),
        (vec!["-I", "100.64.255.254"], 0),
        (vec!["--filter-by-connection-type", "P2P"], 1),
        (vec!["-T", "relayed"], 0),
    ] {
        let mut json = vec!["status", "--json"];
        json.extend(&args);
        assert_eq!(peers_in(&a.ok(&json)), kept, "{args:?}");
        let mut detail = vec!["status", "-d"];
        detail.extend(&args);
        let text = a.ok(&detail);
        assert_eq!(text.contains(fqdn_b), kept == 1, "{args:?}: {text}");
        let count = format!("Peers count: {kept}/{kept} Connected");
        assert!(text.contains(&count), "{args:?}: {text}");
    }
    let out = cli(&a.socket, &["status", "-S", "connecting"]);
    assert!(fails(&out).contains("invalid value 'connecting'"));

    // Metrics: state, the peer, its bytes and handshakes.
    let text = scrape(&metrics);
    assert_eq!(sample(&text, "meshplane_up "), 1.0, "{text}");
    assert_eq!(
        sample(&text, "meshplane_management_connected "),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"meshplane_peers_connected{connection="direct"}"#),
        1.0,
        "{text}"
    );
    let labels = format!(r#"{{peer="{ip_b}",fqdn="{fqdn_b}"}}"#);
    let received = format!("meshplane_peer_received_bytes_total{labels}");
    let sent = format!("meshplane_peer_sent_bytes_total{labels}");
    let handshakes = format!("meshplane_peer_handshakes_total{labels}");
    let before = (sample(&text, &received), sample(&text, &sent));
    assert!(before.0 > 0.0 && before.1 > 0.0, "{text}");
    assert!(sample(&text, &handshakes) >= 1.0, "{text}");
    a.ok(&["ping", ip_b, "-c", "2"]);
    let text = scrape(&metrics);
    assert!(sample(&text, &received) > before.0, "{text}");
    assert!(sample(&text, &sent) > before.1, "{text}");

    // Only TCP to port 9 allowed: pings either way are dropped, and a's
    // firewall counts them.
    let dropped = "meshplane_firewall_dropped_packets_total ";
    assert_eq!(sample(&text, dropped), 0.0, "{text}");
    let old = server.get("/api/policies");
    server.allow_tcp_port(&server.group_id("All"), 9);
    for p in old.as_array().unwrap() {
        server.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));
    }
    common::procs::wait_until(HANDSHAKE_WITHIN, "a's firewall dropping pings", || {
        cli(&a.socket, &["ping", ip_b, "-c", "1", "-W", "0.3"]);
        cli(&b.socket, &["ping", ip_a, "-c", "1", "-W", "0.3"]);
        sample(&scrape(&metrics), dropped) > 0.0
    });
    assert!(a.status()["firewall_dropped"].as_u64() > Some(0));
}
