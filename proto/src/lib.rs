//! The `meshplane.management.v1` protocol: the generated messages and tonic
//! service ([`v1`]), the sealed envelope every peer call travels in
//! ([`envelope`]), the network map's conversion between the core's type and
//! its messages ([`map`]) and so for its deltas ([`delta`]), and the mapping
//! of core errors to gRPC statuses ([`status`]). Beside it: the signal
//! exchange peers pass connection candidates through ([`signal`]), the STUN
//! binding that tells a peer its public address ([`stun`]), and the ICE
//! connectivity checks NetBird's clients need before they use a direct path
//! ([`ice`]); and NetBird's management protocol for
//! stock NetBird clients ([`netbird`], maps converted by [`netbird_map`]).

pub mod delta;
pub mod envelope;
pub mod framing;
pub mod ice;
pub mod map;
pub mod netbird_map;
pub mod signal;
pub mod status;
pub mod stun;

/// Generated protobuf messages, client and server of the management service.
#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("meshplane.management.v1");
}

/// NetBird's management protocol (`management.ManagementService`), which
/// stock NetBird clients speak; [`netbird_map`] converts maps into it.
#[allow(missing_debug_implementations, clippy::all)]
pub mod netbird {
    tonic::include_proto!("management");
}

/// The protobuf package of the management service.
pub const PACKAGE: &str = "meshplane.management.v1";

/// The protocol version `GetServerKey` reports.
pub const PROTOCOL_VERSION: u32 = 1;
