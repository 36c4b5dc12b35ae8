//! `NetbirdConfig`: where a stock client finds the signal exchange, STUN
//! and the relay, all on this server's own address (the `host:port` the
//! client dialled): signal on the same listener (gRPC), STUN on the same
//! port number over UDP, the relay at `/relay` on the same port (or the
//! `--relay-url`s), with a relay token in NetBird's HMAC form.

use meshplane_core::Timestamp;
use meshplane_proto::netbird::{host_config, HostConfig, NetbirdConfig, RelayConfig};

use crate::relay::{Authority, Issuer};

/// The configuration for a client that reached this server at `authority`
/// (none known: no signal or STUN address can be given, only the relay
/// URLs configured explicitly).
pub fn netbird_config(
    authority: Option<&Authority>,
    relay: &Issuer,
    now: Timestamp,
) -> NetbirdConfig {
    let token = relay.hmac_token(now);
    NetbirdConfig {
        stuns: authority
            .map(|a| HostConfig {
                uri: format!("stun:{}", a.0),
                protocol: host_config::Protocol::Udp.into(),
            })
            .into_iter()
            .collect(),
        turns: Vec::new(),
        signal: authority.map(|a| HostConfig {
            uri: a.0.clone(),
            protocol: host_config::Protocol::Http.into(),
        }),
        relay: Some(RelayConfig {
            urls: relay.urls(authority),
            token_payload: token.payload,
            token_signature: token.signature,
        }),
    }
}
