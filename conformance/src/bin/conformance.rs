//! `conformance [DIR]`: runs every vector (default: this crate's vectors)
//! against meshplane-core and prints failures and the closing count line
//! that the bindings' runners are compared with. Exits 1 on any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use meshplane_conformance::{run_dir, vectors_dir};

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(vectors_dir);
    match run_dir(&dir) {
        Ok(report) => {
            println!("{}", report.summarise());
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("conformance: {e}");
            ExitCode::FAILURE
        }
    }
}
