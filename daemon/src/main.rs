//! The `meshplane` binary. The data plane is in the library; the daemon and
//! CLI commands that drive it (`daemon`, `up`, `down`, `status`) are not
//! wired yet, so this binary says so plainly rather than pretending.

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V" | "version") => println!("meshplane {version}"),
        _ => {
            eprintln!(
                "meshplane {version}\n\
                 usage: meshplane --version\n\n\
                 The daemon and its commands (daemon, up, down, status) are not available \
                 in this build yet; the WireGuard data plane exists as a library only."
            );
            std::process::exit(2);
        }
    }
}
