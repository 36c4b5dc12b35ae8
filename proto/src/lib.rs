//! The `meshplane.management.v1` protocol. The service definitions arrive
//! with the daemon and gRPC work; until then this crate only names itself.

/// The protobuf package of the management service.
pub const PACKAGE: &str = "meshplane.management.v1";
