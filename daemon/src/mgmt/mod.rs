//! Talking to the management server: the sealed gRPC client ([`client`]),
//! setup keys from flags, files or the environment ([`setup_key`]) and the
//! reporting of the engine's flow log ([`flow_report`]).

pub mod client;
pub mod flow_report;
pub mod setup_key;
