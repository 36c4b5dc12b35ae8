//! The management server. The REST API, gRPC service and store are the
//! subject of their own work; this binary reports that plainly.

fn main() {
    eprintln!(
        "meshplane-server {}: the management API is not built yet; meshplane-core offers {} operations",
        env!("CARGO_PKG_VERSION"),
        meshplane_core::api::ops().len()
    );
    std::process::exit(2);
}
