//! Embeds the dashboard's built assets (`dashboard/dist`, made by
//! `npm run build` in `dashboard/`) into the binary: writes a table of
//! `(path, bytes)` into OUT_DIR that `http::dashboard` includes. Without a
//! built dashboard the table is empty and the server says so on `/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dashboard = manifest.join("../dashboard");
    let dist = dashboard.join("dist");
    // Watching the dashboard directory too notices a first build of dist.
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.exists() && dashboard.exists() {
        println!("cargo:rerun-if-changed={}", dashboard.display());
    }
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut table = String::from("/// The dashboard's files by path under dist (sorted).\n");
    table.push_str("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        let _ = writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("dashboard_assets.rs"), table).expect("write the asset table");
}

/// Every file under `dir`, as (path relative to `root` with `/`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).expect("read dashboard/dist");
    for entry in entries {
        let path = entry.expect("read dashboard/dist").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path
                .strip_prefix(root)
                .expect("under dist")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = path.canonicalize().expect("canonical path");
            files.push((name, absolute));
        }
    }
}
