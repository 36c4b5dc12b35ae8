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
//! Offers carry this run's ICE credentials (`ufrag:pwd`). A NetBird
//! client's offer or answer carries its own: those, and its candidates, go
//! to the [`ice`](super::ice) task, which runs the connectivity checks
//! NetBird's clients need before they use a direct path. Other meshplane
//! daemons (whose offers name `meshplane/` as their version) need none:
//! WireGuard's own packets prove their paths.
//!
//! Sends go through their own task, so a slow server never holds up what we
//! receive.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::connect::{Candidate, MAX_CANDIDATES};
use meshplane_proto::ice::Credentials;
use meshplane_proto::signal::body::Type;
use meshplane_proto::signal::client::{Received, SignalClient};
use meshplane_proto::signal::Body;
use tokio::sync::{mpsc, watch};

use super::ice::{self, Command};

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
    /// Whether the stream is open, for `status`.
    pub connected: watch::Sender<bool>,
    /// This peer's key, which decides the ICE role with each NetBird peer.
    pub local: PublicKey,
    /// This run's ICE credentials, sent in every offer and answer.
    pub credentials: Credentials,
    /// The ICE task, when this peer announces candidates.
    pub ice: Option<mpsc::Sender<Command>>,
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
                    self.connected.send_replace(true);
                    backoff.reset();
                    let mut known = BTreeSet::new();
                    loop {
                        // Newcomers (all of them on a new stream) get our offer.
                        let peers = self.peers.borrow_and_update().clone();
                        for key in peers.difference(&known) {
                            self.offer(&outbox, key, Type::Offer);
                            if let Some(c) = remote.get(key) {
                                self.ice(Command::Candidates {
                                    peer: *key,
                                    addrs: c.clone(),
                                });
                                let _ = self.engine.candidates(*key, c.clone()).await;
                            }
                        }
                        // Peers that left the map are forgotten; senders not
                        // in it yet are kept (bounded), as their map may
                        // arrive after their candidates.
                        for gone in known.difference(&peers) {
                            remote.remove(gone);
                            self.ice(Command::Forget(*gone));
                        }
                        known = peers;
                        tokio::select! {
                            received = stream.recv() => match received {
                                Ok(Some(r)) => {
                                    self.on_message(&outbox, r, &known, &mut remote).await;
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
                                for key in &known {
                                    self.offer(&outbox, key, Type::Offer);
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
            self.connected.send_replace(false);
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
    ) {
        let Ok(from) = received.from.parse::<PublicKey>() else {
            return;
        };
        let body = received.body;
        let kind = Type::try_from(body.r#type);
        if matches!(kind, Ok(Type::Offer | Type::Answer))
            && !body.net_bird_version.starts_with(MESHPLANE_VERSION_PREFIX)
        {
            // A NetBird client: it checks paths with ICE before it uses them.
            match Credentials::parse(&body.payload) {
                Some(credentials) => self.ice(Command::Remote {
                    peer: from,
                    credentials,
                    controlling: ice::controlling(&self.local, &from),
                }),
                None => tracing::debug!("offer from {from}: no ICE credentials"),
            }
        }
        match kind {
            Ok(Type::Offer) => {
                tracing::debug!("offer from {from}");
                remote.insert(from, Vec::new());
                self.offer(outbox, &from, Type::Answer);
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
                self.ice(Command::Candidates {
                    peer: from,
                    addrs: set.clone(),
                });
                if known.contains(&from) {
                    let _ = self.engine.candidates(from, set.clone()).await;
                }
            }
            _ => {}
        }
    }

    /// Queues a command for the ICE task; dropped when it is behind (the
    /// peer's next offer or candidate repeats it).
    fn ice(&self, command: Command) {
        if let Some(ice) = &self.ice {
            if ice.try_send(command).is_err() {
                tracing::debug!("ice queue full: command dropped");
            }
        }
    }

    /// Queues an offer (or answer) and our candidates to `to`.
    fn offer(&self, outbox: &mpsc::Sender<(String, Body)>, to: &PublicKey, kind: Type) {
        let to = to.to_string();
        let mut bodies = vec![Body {
            r#type: kind as i32,
            payload: self.credentials.to_string(),
            wg_listen_port: u32::from(self.wg_port),
            net_bird_version: format!("{MESHPLANE_VERSION_PREFIX}{}", env!("CARGO_PKG_VERSION")),
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

/// The version our offers name begins with; a peer whose offers do not is
/// a NetBird client.
const MESHPLANE_VERSION_PREFIX: &str = "meshplane/";

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
