//! The signal task: exchanges connection offers and candidates with the
//! peers of the map over the management server's signal service, in
//! NetBird's message format.
//!
//! To each peer of the map (when it appears, and again whenever our
//! candidates change) it sends an `OFFER` (our relay URL, WireGuard port and
//! version) followed by one `CANDIDATE` per candidate (ICE SDP text). It
//! answers every `OFFER` with an `ANSWER` and our candidates, so a peer that
//! came later, or restarted, learns them too. A peer's `OFFER` starts its
//! candidate set afresh; each of its `CANDIDATE`s adds to the set, which goes
//! to the engine's path machine for that peer ([`Engine::candidates`]).
//!
//! Sends go through their own task, so a slow server never holds up what we
//! receive.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::connect::{Candidate, MAX_CANDIDATES};
use meshplane_proto::signal::body::Type;
use meshplane_proto::signal::client::{Received, SignalClient};
use meshplane_proto::signal::Body;
use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, watch};

use crate::engine::wg::Engine;
use crate::key::PublicKey;
use crate::mgmt::client::reconnect_backoff;

/// Bodies waiting to be sent; past this many, announcements are dropped
/// (the next change or the peer's next offer repeats them).
const SEND_QUEUE: usize = 1024;

/// What the signal task needs.
#[derive(Debug)]
pub struct Signal {
    pub client: SignalClient,
    pub engine: Arc<Engine>,
    /// This peer's candidates ([`super::discovery`]).
    pub candidates: watch::Receiver<Vec<Candidate>>,
    /// The keys of the map's peers.
    pub peers: watch::Receiver<BTreeSet<PublicKey>>,
    /// The relay URL this peer is connected to, for the offers.
    pub relay_url: Option<String>,
    /// This peer's WireGuard port.
    pub wg_port: u16,
}

impl Signal {
    /// Runs for as long as the link: reconnects the stream with backoff.
    pub async fn run(mut self) {
        let (outbox, queue) = mpsc::channel(SEND_QUEUE);
        tokio::spawn(send_all(self.client.clone(), queue));
        let mut remote: HashMap<PublicKey, Vec<SocketAddr>> = HashMap::new();
        let mut backoff = reconnect_backoff();
        loop {
            match self.client.connect().await {
                Ok(mut stream) => {
                    tracing::debug!("signal stream open");
                    backoff.reset();
                    let mut known = BTreeSet::new();
                    let mut credentials = new_credentials();
                    loop {
                        // Newcomers (all of them on a new stream) get our offer.
                        let peers = self.peers.borrow_and_update().clone();
                        for key in peers.difference(&known) {
                            self.offer(&outbox, key, Type::Offer, &credentials);
                            if let Some(c) = remote.get(key) {
                                let _ = self.engine.candidates(*key, c.clone()).await;
                            }
                        }
                        // Peers that left the map are forgotten; senders not
                        // in it yet are kept (bounded), as their map may
                        // arrive after their candidates.
                        for gone in known.difference(&peers) {
                            remote.remove(gone);
                        }
                        known = peers;
                        tokio::select! {
                            received = stream.recv() => match received {
                                Ok(Some(r)) => {
                                    self.on_message(&outbox, r, &known, &mut remote, &credentials).await;
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!("signal stream: {e}");
                                    break;
                                }
                            },
                            changed = self.candidates.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                self.candidates.borrow_and_update();
                                credentials = new_credentials();
                                for key in &known {
                                    self.offer(&outbox, key, Type::Offer, &credentials);
                                }
                            }
                            changed = self.peers.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("signal: {e}"),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One message from a peer.
    async fn on_message(
        &self,
        outbox: &mpsc::Sender<(String, Body)>,
        received: Received,
        known: &BTreeSet<PublicKey>,
        remote: &mut HashMap<PublicKey, Vec<SocketAddr>>,
        credentials: &str,
    ) {
        let Ok(from) = received.from.parse::<PublicKey>() else {
            return;
        };
        let body = received.body;
        match Type::try_from(body.r#type) {
            Ok(Type::Offer) => {
                tracing::debug!("offer from {from}");
                remote.insert(from, Vec::new());
                self.offer(outbox, &from, Type::Answer, credentials);
            }
            Ok(Type::Candidate) => {
                let candidate = match body.payload.parse::<Candidate>() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("candidate from {from}: {e}");
                        return;
                    }
                };
                // Only peers of the map are remembered (or soon will be:
                // the server lets only peers that see each other signal).
                if remote.len() >= MAX_REMOTES && !remote.contains_key(&from) {
                    return;
                }
                let set = remote.entry(from).or_default();
                if set.contains(&candidate.addr) || set.len() >= MAX_CANDIDATES {
                    return;
                }
                set.push(candidate.addr);
                if known.contains(&from) {
                    let _ = self.engine.candidates(from, set.clone()).await;
                }
            }
            _ => {}
        }
    }

    /// Queues an offer (or answer) and our candidates to `to`.
    fn offer(
        &self,
        outbox: &mpsc::Sender<(String, Body)>,
        to: &PublicKey,
        kind: Type,
        credentials: &str,
    ) {
        let to = to.to_string();
        let mut bodies = vec![Body {
            r#type: kind as i32,
            payload: credentials.to_string(),
            wg_listen_port: u32::from(self.wg_port),
            net_bird_version: format!("meshplane/{}", env!("CARGO_PKG_VERSION")),
            relay_server_address: self.relay_url.clone(),
            ..Body::default()
        }];
        bodies.extend(self.candidates.borrow().iter().map(|c| Body {
            r#type: Type::Candidate as i32,
            payload: c.to_string(),
            ..Body::default()
        }));
        for body in bodies {
            if outbox.try_send((to.clone(), body)).is_err() {
                tracing::debug!("signal queue full: announcement to {to} dropped");
                return;
            }
        }
    }
}

/// At most this many peers' candidate sets are kept.
const MAX_REMOTES: usize = 4096;

/// ICE credentials for the offers (`ufrag:pwd`, as NetBird's agents send
/// them); new ones with every new set of candidates.
fn new_credentials() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let pick = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(ALPHABET[(OsRng.next_u32() as usize) % ALPHABET.len()]))
            .collect()
    };
    let ufrag = pick(16);
    let pwd = pick(32);
    format!("{ufrag}:{pwd}")
}

/// Sends queued bodies one by one; a refusal (the peer left the map) or a
/// lost connection costs only that message.
async fn send_all(client: SignalClient, mut queue: mpsc::Receiver<(String, Body)>) {
    while let Some((to, body)) = queue.recv().await {
        match tokio::time::timeout(SEND_TIMEOUT, client.send(&to, &body)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("signal to {to}: {e}"),
            Err(_) => tracing::debug!("signal to {to}: timed out"),
        }
    }
}

/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
