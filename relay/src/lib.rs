//! meshplane-relay: forwards WireGuard packets between peers that have no
//! direct path, over a WebSocket (TCP, so it passes networks that block
//! UDP), in NetBird's relay framing.
//!
//! - [`protocol`]: the frames and peer ids on the wire.
//! - [`token`]: the tokens management mints and relays check (Ed25519,
//!   bound to the peer's id), so a peer can only receive what is
//!   addressed to it; and NetBird's HMAC tokens for stock clients.
//! - [`server`]: the relay as an axum router (`GET /relay`), mounted by
//!   `meshplane-server` on its port and served alone by `meshplane relay`.
//! - [`client`]: a daemon's connection to a relay.
//! - [`management`]: what a separate relay process fetches from the
//!   management server (its token key).
//!
//! The relay sees only ciphertext: payloads are WireGuard packets between
//! the two peers, which it passes on without looking inside.

mod batch;
pub mod client;
pub mod dial;
pub mod management;
pub mod protocol;
pub mod server;
pub mod token;

pub use client::{RelayClient, RelayError, RelayReceiver, RelaySender};
pub use protocol::PeerId;
pub use server::{Limits, Relay};
pub use token::{HmacSecret, Token, TokenSigner, TokenVerifier};
