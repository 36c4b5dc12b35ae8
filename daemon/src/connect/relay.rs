//! The relay task: keeps this peer's one connection to a relay (the first
//! URL management names), moves WireGuard datagrams between it and the
//! engine, and tells the engine whether the relay path is up.
//!
//! The relay admits us with a token management minted for our key; it is
//! renewed ([`Session::relay_token`]) before it expires, so a reconnect
//! always has a valid one. A dropped connection is retried with backoff.
//! When this host's candidates change (it moved networks, its NAT changed
//! its public address) the connection is made anew at once: the old one
//! may be dead without either end knowing yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::connect::Candidate;
use meshplane_proto::v1::RelayConfig;
use meshplane_relay::client::RelayClient;
use meshplane_relay::protocol::PeerId;
use meshplane_relay::token::Token;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use crate::engine::wg::Engine;
use crate::key::{PrivateKey, PublicKey};
use crate::mgmt::client::{now, reconnect_backoff, Management, Session};

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(120);
/// After a failed renewal, the next try.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// What the relay task needs.
#[derive(Debug)]
pub struct Relay {
    /// The relay to use.
    pub url: String,
    /// The token management gave (renewed by the task).
    pub config: RelayConfig,
    /// The management server, for renewals (its roots check a `rels://`
    /// relay too).
    pub management: Management,
    pub key: PrivateKey,
    pub engine: Arc<Engine>,
    /// Datagrams the engine sends over the relay.
    pub outbound: mpsc::Receiver<(PublicKey, Vec<u8>)>,
    /// Datagrams that came over the relay, for the engine.
    pub inbound: mpsc::Sender<Vec<u8>>,
    /// After a failed renewal: when to try again.
    pub retry: Option<Instant>,
    /// This host's candidates ([`super::discovery`]): a change means a new
    /// network.
    pub network: watch::Receiver<Vec<Candidate>>,
}

impl Relay {
    /// Runs for as long as the link.
    pub async fn run(mut self) {
        let own = self.key.public_key().to_string();
        let mut ids: HashMap<PublicKey, PeerId> = HashMap::new();
        let mut backoff = reconnect_backoff();
        let dial = self.management.relay_dial();
        loop {
            if self.renew_at() <= Instant::now() {
                self.renew().await;
            }
            let token = Token {
                payload: self.config.token_payload.clone(),
                signature: self.config.token_signature.clone(),
            };
            let mut seen = self.network.borrow_and_update().clone();
            match RelayClient::connect_with(&self.url, &own, &token, &dial).await {
                Ok((sender, mut receiver)) => {
                    tracing::info!("relay {} connected", self.url);
                    backoff.reset();
                    if self.engine.relay(true).await.is_err() {
                        return;
                    }
                    let mut moves = true;
                    loop {
                        let renew_at = self.renew_at();
                        tokio::select! {
                            out = self.outbound.recv() => {
                                let Some((to, payload)) = out else { return };
                                let id = ids
                                    .entry(to)
                                    .or_insert_with(|| PeerId::from_public_key(&to.to_string()));
                                if sender.try_send(id, &payload).is_err() {
                                    break;
                                }
                            }
                            got = receiver.recv() => {
                                let Some((_, payload)) = got else { break };
                                // The engine never waits for the relay, nor
                                // the relay for the engine: a full queue drops.
                                let _ = self.inbound.try_send(payload);
                            }
                            () = sleep_until(renew_at) => self.renew().await,
                            changed = self.network.changed(), if moves => {
                                // Without discovery there is nothing to follow.
                                moves = changed.is_ok();
                                let now = self.network.borrow_and_update().clone();
                                // The first candidates are no move.
                                let moved = moves && !seen.is_empty() && now != seen;
                                seen = now;
                                if moved {
                                    tracing::info!("network changed: reconnecting to the relay");
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!("relay {} disconnected", self.url);
                    if self.engine.relay(false).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("relay {}: {e}", self.url),
            }
            // What the engine queued meanwhile is stale.
            while self.outbound.try_recv().is_ok() {}
            sleep(backoff.next_delay()).await;
        }
    }

    /// When the token needs renewing.
    fn renew_at(&self) -> Instant {
        if let Some(retry) = self.retry {
            return retry;
        }
        let left = self.config.expires_at_ms - now().as_millis();
        let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
        Instant::now() + left.saturating_sub(RENEW_BEFORE)
    }

    /// Asks management for a fresh token; keeps the old one (and tries
    /// again soon) when that fails.
    async fn renew(&mut self) {
        let renewed = match Session::connect(&self.management, &self.key).await {
            Ok(mut session) => session.relay_token().await,
            Err(e) => Err(e),
        };
        match renewed {
            Ok(config) => {
                tracing::debug!("relay token renewed");
                self.config = config;
                self.retry = None;
            }
            Err(e) => {
                tracing::warn!("relay token renewal: {e}");
                self.retry = Some(Instant::now() + RENEW_RETRY);
            }
        }
    }
}
