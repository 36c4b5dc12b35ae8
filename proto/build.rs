//! Compiles the management protocols (ours and NetBird's) and the signal
//! protocol with protox (a pure-Rust protobuf compiler), so building needs
//! no `protoc` on the machine.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let protos = [
        "proto/meshplane/management/v1/management.proto",
        "proto/signalexchange/signalexchange.proto",
        "proto/management/management.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
