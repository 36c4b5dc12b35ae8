//! The control socket between the CLI and the daemon: the messages
//! ([`wire`]), the CLI's side ([`client`]) and the daemon's ([`serve`]).

pub mod client;
pub mod serve;
pub mod wire;

pub use client::{call, connect, ControlError};
pub use wire::{send, ExposeInfo, PeerReport, Reply, Request, StatusReport, UpInfo};
