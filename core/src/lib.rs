//! # meshplane-core
//!
//! The sans-IO, deterministic heart of meshplane. Everything that decides —
//! who may reach whom, what each peer's network map holds, when an exposed
//! service expires, which address a new peer gets, what a token looks like —
//! lives here as plain functions and state machines over values.
//!
//! The core never reads a clock, never draws from the operating system's
//! random generator and never touches the network or the disk: time comes in
//! as a [`time::Timestamp`] argument, randomness as `&mut impl RngCore`, and
//! outputs are values the caller turns into effects. The same inputs and seed
//! give the same output, byte for byte, on every platform including
//! `wasm32-unknown-unknown`.
//!
//! Every operation is also reachable as JSON in / JSON out through [`api`],
//! which is what the language bindings and the conformance vectors use.

pub mod api;
pub mod dns_label;
pub mod error;
pub mod expose;
pub mod generate;
pub mod index;
pub mod ipam;
pub mod keys;
pub mod model;
pub mod netmap;
pub mod policy;
pub mod posture;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;
pub mod validate;

pub use error::{ApiError, ErrorCode, Kind};
pub use time::{Duration, Timestamp};
