//! The `meshplane` binary: the daemon and its CLI (see [`meshplane::cli`]).

fn main() {
    std::process::exit(meshplane::cli::main());
}
