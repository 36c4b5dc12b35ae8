//! The `meshplane` daemon and CLI. The data plane and the CLI are the subject
//! of their own work; this binary reports that plainly.

fn main() {
    eprintln!(
        "meshplane {}: the daemon is not built yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
