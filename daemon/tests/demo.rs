//! The README's main job, `scripts/demo.sh`, run twice in a row on the same
//! data directory with the debug binaries: the second run starts over on the
//! first one's leftovers, both reach the exposed page through the proxy,
//! the server's log stays out of the narrative, and a directory the demo
//! did not make is refused untouched.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::procs::{free_port, ScratchDir, MESHPLANE};

fn demo(data: &Path) -> Output {
    let bin = Path::new(MESHPLANE).parent().unwrap();
    assert!(
        bin.join("meshplane-server").exists(),
        "build meshplane-server first (cargo build -p meshplane-server)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo.sh");
    Command::new("bash")
        .arg(script)
        .arg(data)
        .env("MESHPLANE_DEMO_BIN", bin)
        .env("MESHPLANE_DEMO_EXIT", "1")
        .env("MESHPLANE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "MESHPLANE_PROXY_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("MESHPLANE_DEMO_WEB_PORT", free_port().to_string())
        .output()
        .unwrap()
}

fn narrative(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_demo_runs_twice_in_a_row_and_refuses_foreign_data() {
    let scratch = ScratchDir::new("demo");
    let data = scratch.0.join("data");
    for run in 1..=2 {
        let out = demo(&data);
        let text = narrative(&out);
        assert!(out.status.success(), "run {run} failed:\n{text}");
        assert!(
            text.contains("Hello from the laptop's local server"),
            "run {run}: {text}"
        );
        assert_eq!(
            run == 2,
            text.contains("resetting the previous demo's data"),
            "{text}"
        );
        // It ends with where the dashboard is and the token to sign in with.
        assert!(
            text.contains("== The dashboard: open http://127.0.0.1:"),
            "run {run}: {text}"
        );
        // The server's own log lines go to its file, named at the end.
        assert!(!text.contains("meshplane_server"), "run {run}: {text}");
        assert!(text.contains("server.log"), "{text}");
        let log = std::fs::read_to_string(data.join("server.log")).unwrap();
        assert!(log.contains("meshplane-server listening"), "{log}");
        assert!(!log.contains("not audited"), "{log}");
    }

    let foreign = scratch.0.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "mine").unwrap();
    let out = demo(&foreign);
    assert!(!out.status.success());
    assert!(narrative(&out).contains("holds data this demo did not make"));
    assert_eq!(
        std::fs::read_to_string(foreign.join("keep.txt")).unwrap(),
        "mine"
    );
}
