//! What the transports share: REST (`crate::http`), gRPC (`crate::grpc`)
//! and the expose calls answer from the same account, delete peers the same
//! way and record the same audit details. Everything here returns its own
//! errors (store failures, or a small enum naming what is refused); each
//! transport maps them to its status codes, so neither imports the other.
//!
//! - [`account_view`]: the account as the core and the network maps see it,
//!   decoded once per version;
//! - [`peer_removal`]: deleting a peer and everything naming it;
//! - [`audit`]: audit event details and records;
//! - [`traffic_events`]: a reported traffic event as stored.

pub mod account_view;
pub mod audit;
pub mod peer_removal;
pub mod traffic_events;
