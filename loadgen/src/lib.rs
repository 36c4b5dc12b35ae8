//! A load harness for `meshplane-server`: N simulated peers register and
//! follow their Sync streams over the real sealed gRPC path while the
//! harness makes policy changes and peer joins through REST and gRPC, and
//! measures how long each change takes to reach every peer, how many bytes
//! it costs, and what the server spends (CPU, peak memory).
//!
//! [`run::run`] does a whole run; the binary is its command line.

pub mod entries;
pub mod peer;
pub mod report;
pub mod rest;
pub mod run;
pub mod server;
pub mod track;
