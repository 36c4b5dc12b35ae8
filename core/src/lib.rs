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
//!
//! ## A first look
//!
//! Validated values are newtypes: once you hold a [`validate::NamePrefix`],
//! it is valid, and a bad input says exactly what is wrong.
//!
//! ```
//! use meshplane_core::validate::NamePrefix;
//! use meshplane_core::ErrorCode;
//!
//! let ok: NamePrefix = "demo".parse().unwrap();
//! assert_eq!(ok.as_str(), "demo");
//!
//! let err = "Demo".parse::<NamePrefix>().unwrap_err();
//! assert_eq!(err.code(), "invalid_name_prefix");
//! assert_eq!(
//!     err.to_string(),
//!     "invalid name prefix \"Demo\": must be lowercase alphanumeric with optional hyphens, 1-32 characters"
//! );
//! ```
//!
//! Randomness is an argument, so a seeded generator reproduces every output:
//!
//! ```
//! use meshplane_core::keys;
//! use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
//!
//! let token = keys::generate_pat(&mut ChaCha8Rng::seed_from_u64(1));
//! assert!(keys::check_pat(&token).is_ok());
//! assert_eq!(token, keys::generate_pat(&mut ChaCha8Rng::seed_from_u64(1)));
//! // Only the hash is ever stored.
//! assert!(keys::verify_secret_hash(&token, &keys::hash_secret(&token)));
//! ```
//!
//! The same operations as JSON, the form every binding uses:
//!
//! ```
//! let answer = meshplane_core::api::call(r#"{"op":"validate_pin","input":{"value":"12345"}}"#);
//! assert_eq!(
//!     answer,
//!     r#"{"error":{"code":"invalid_pin","message":"invalid pin: must be exactly 6 digits"}}"#
//! );
//! ```

pub mod access;
pub mod api;
pub mod backoff;
pub mod connect;
pub mod dns_label;
pub mod error;
pub mod expose;
pub mod firewall;
pub mod generate;
pub mod index;
pub mod ingress;
pub mod ipam;
pub mod keys;
pub mod limits;
pub mod locations;
pub mod model;
pub mod netmap;
pub mod permissions;
pub mod policy;
pub mod posture;
pub mod registration;
pub mod routing;
#[cfg(feature = "sim")]
pub mod sim;
pub mod temporary_access;
pub mod time;
pub mod validate;

pub use error::{ApiError, ErrorCode, Kind};
pub use time::{Duration, Timestamp};
