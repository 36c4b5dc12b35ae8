//! The harness end to end, as CI runs it: the real binary starts the real
//! server, registers 50 peers over the sealed gRPC path, leaves the streams
//! idle for a while (nothing may be sent on them), makes two policy changes
//! and two joins, and every peer must converge on each.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const LOADGEN: &str = env!("CARGO_BIN_EXE_meshplane-loadgen");

/// The figure between `before` and `after` in `line`.
fn figure(line: &str, before: &str, after: &str) -> f64 {
    let rest = line.split_once(before).unwrap().1;
    rest.split_once(after).unwrap().0.trim().parse().unwrap()
}

#[test]
fn fifty_peers_converge_on_two_policy_changes_and_two_joins() {
    let out = Command::new(LOADGEN)
        .args(["--peers", "50", "--policy-changes", "2"])
        .args(["--change-timeout-secs", "60", "--phase-timeout-secs", "120"])
        .args(["--idle-secs", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    let phase = |name: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in {stdout}"))
    };
    // Every peer's result is counted: 50 first maps, 2 × 50 policy
    // changes, 51 + 52 for the joins (the joining peer's own first map).
    assert!(phase("open streams").contains("over 50 peer results"));
    assert!(phase("policy change").contains("over 100 peer results"));
    assert!(phase("peer join").contains("over 103 peer results"));
    assert!(phase("policy change").contains("2 changes"));
    assert!(figure(phase("policy change"), "server CPU", " s (") > 0.0);
    assert!(
        phase("idle").contains("| 0 bytes in 0 messages |"),
        "{}",
        phase("idle")
    );

    let last = *lines.last().unwrap();
    assert!(last.starts_with("converged: max "), "{last}");
    let max_ms = figure(last, "converged: max", "ms per change");
    let bytes = figure(last, "ms per change,", "bytes per change");
    let rss = figure(last, "server peak RSS", "MiB");
    assert!(max_ms >= 0.0 && bytes > 0.0 && rss > 0.0, "{last}");
}

#[test]
fn a_missing_server_binary_says_how_to_build_it() {
    let out = Command::new(LOADGEN)
        .args([
            "--peers",
            "2",
            "--server-bin",
            "/nonexistent/meshplane-server",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/meshplane-server not found")
            && stderr.contains("cargo build --release -p meshplane-server"),
        "{stderr}"
    );
}
