//! A seeded simulation of expose sessions under churn and faults.
//!
//! Hundreds of peers share one [`SessionTable`] on a virtual clock. Each peer
//! now and then exposes a service (and runs a [`KeepAlive`] for it), stops
//! one, or crashes and comes back later. Messages between the daemons and the
//! server take a random time, are sometimes late by more than the renewal
//! timeout, and are sometimes lost. The loop always jumps to the earliest
//! pending thing (the table's [`poll_timeout`](SessionTable::poll_timeout)
//! first, then a message, then a client timer, then a peer's next action), so
//! the reaper runs exactly on time.
//!
//! After every step the simulation checks the invariants of peer expose:
//!
//! - no session outlives its last successful renewal (or its creation) plus
//!   the TTL, and every expiry happens exactly at that instant;
//! - no peer ever holds more than `max_sessions_per_peer` sessions, and a
//!   create is refused for the limit only when the peer is exactly at it;
//! - every `Exposed` event is followed by exactly one `Unexposed` or
//!   `Expired` for that domain, and no two live sessions share a domain;
//! - a daemon that has not given up (and is not stopping) always has its
//!   session on the server, as long as message delays stay below
//!   `ttl - renew_period - renew_timeout` (the tolerance the constants buy).
//!
//! When the clock passes `duration` every daemon dies, the network drains and
//! the table must end empty with every exposure closed. A broken invariant
//! is a [`SimFailure`] naming the seed and the step, so `run(seed, &config)`
//! replays it exactly.
//!
//! ```
//! use meshplane_core::sim::{run, SimConfig};
//! use meshplane_core::Duration;
//!
//! let config = SimConfig { peers: 20, duration: Duration::from_secs(300), ..SimConfig::default() };
//! let report = run(7, &config).unwrap();
//! assert_eq!(report, run(7, &config).unwrap());
//! assert!(report.created > 0 && report.expired > 0);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::expose::{
    ExposeContext, ExposeError, ExposeEventKind, ExposePeer, ExposeRequest, KeepAlive,
    KeepAliveConfig, KeepAliveEvent, KeepAliveState, Request, SessionTable, TableConfig,
};
use crate::model::{AccountSettings, Group, GroupId, PeerId};
use crate::time::{Duration, Timestamp};
use crate::validate::Domain;

/// The group whose peers may expose; the others are refused.
const ALLOWED_GROUP: &str = "expose-allowed";
/// A user group requests may name, to turn authentication on.
const USER_GROUP: &str = "reviewers";
/// The custom domain registered to the simulated account.
const CUSTOM_DOMAIN: &str = "apps.example.org";

/// The shape of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    pub peers: usize,
    /// Virtual time during which peers act; afterwards everything drains.
    pub duration: Duration,
    pub table: TableConfig,
    pub keepalive: KeepAliveConfig,
    /// A peer's next action comes after a uniform gap of 1 ms to this.
    pub max_action_gap: Duration,
    /// Per action: chance to expose a new service.
    pub p_create: f64,
    /// Per action: chance to stop one of its services (Ctrl+C).
    pub p_stop: f64,
    /// Per action: chance to crash (kill -9); the peer comes back later.
    pub p_crash: f64,
    /// A crashed peer restarts after a uniform time up to this.
    pub max_downtime: Duration,
    /// Share of peers outside the allowed group.
    pub p_forbidden_peer: f64,
    /// Chance that a message is lost.
    pub p_loss: f64,
    /// Usual one-way delay: uniform 0 to this.
    pub max_delay: Duration,
    /// Chance that a message is late: uniform up to `long_delay`.
    pub p_late: f64,
    pub long_delay: Duration,
    /// Every this many steps, compare the whole table with the model.
    pub full_check_every: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            peers: 300,
            duration: Duration::from_secs(900),
            table: TableConfig::default(),
            keepalive: KeepAliveConfig::default(),
            max_action_gap: Duration::from_secs(60),
            p_create: 0.5,
            p_stop: 0.15,
            p_crash: 0.03,
            max_downtime: Duration::from_secs(180),
            p_forbidden_peer: 0.05,
            p_loss: 0.01,
            max_delay: Duration::from_millis(1500),
            p_late: 0.01,
            long_delay: Duration::from_secs(20),
            full_check_every: 1000,
        }
    }
}

/// What happened in a run (equal for equal seeds and configs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimReport {
    pub seed: u64,
    pub steps: u64,
    pub end: Timestamp,
    pub created: u64,
    pub denied: u64,
    pub limit_hits: u64,
    pub renewals_ok: u64,
    pub renewals_refused: u64,
    pub messages_lost: u64,
    pub clients_failed: u64,
    pub stops_clean: u64,
    pub stops_unclean: u64,
    pub crashes: u64,
    pub unexposed: u64,
    pub expired: u64,
    /// The most sessions any peer held at once.
    pub max_sessions_seen: usize,
}

/// A broken invariant, with what it takes to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("seed {seed}, step {step} (at {at}): {message}")]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub at: Timestamp,
    pub message: String,
}

impl ErrorCode for SimFailure {
    fn code(&self) -> &'static str {
        "sim_invariant_violated"
    }

    fn kind(&self) -> Kind {
        Kind::FailedPrecondition
    }
}

/// Runs one simulation.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    Sim::new(seed, config).run()
}

/// A message in flight.
#[derive(Debug)]
enum Message {
    ToServer {
        client: u64,
        peer: usize,
        domain: String,
        request: Request,
    },
    RenewReply {
        client: u64,
        refused: Option<String>,
    },
    StopReply {
        client: u64,
    },
}

/// A daemon's keep-alive for one service.
#[derive(Debug)]
struct Client {
    peer: usize,
    domain: String,
    machine: KeepAlive,
    /// The entry this client has in `Sim::timers`.
    timer: Option<Timestamp>,
}

/// What the loop handles next.
enum Next {
    Reaper,
    Message,
    Timer,
    Action,
}

struct Sim<'a> {
    config: &'a SimConfig,
    rng: ChaCha8Rng,
    settings: AccountSettings,
    groups: Vec<Group>,
    custom_domains: Vec<Domain>,
    peers: Vec<ExposePeer>,
    crashed: Vec<bool>,
    table: SessionTable,
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    timers: BTreeSet<(Timestamp, u64)>,
    network: BTreeMap<(Timestamp, u64), Message>,
    next_message: u64,
    actions: BTreeSet<(Timestamp, usize)>,
    /// The model: each live domain and the deadline it must have.
    expected: BTreeMap<String, Timestamp>,
    /// Domains with an `Exposed` event and no ending event yet.
    open: BTreeSet<String>,
    report: SimReport,
    now: Timestamp,
    end: Timestamp,
}

impl<'a> Sim<'a> {
    fn new(seed: u64, config: &'a SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = Timestamp::from_secs(1_700_000_000);
        let peers: Vec<ExposePeer> = (0..config.peers)
            .map(|i| {
                let allowed = !rng.gen_bool(config.p_forbidden_peer);
                ExposePeer {
                    id: PeerId::new(format!("peer-{i:04}")),
                    name: format!("host-{i}"),
                    groups: if allowed {
                        vec![GroupId::new(ALLOWED_GROUP)]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        let mut actions = BTreeSet::new();
        for i in 0..peers.len() {
            let gap = rng.gen_range(1..=config.max_action_gap.as_millis().max(1));
            actions.insert((start + Duration::from_millis(gap), i));
        }
        let custom_domains = CUSTOM_DOMAIN.parse().into_iter().collect();
        Sim {
            config,
            rng,
            settings: AccountSettings {
                peer_expose_enabled: true,
                peer_expose_groups: vec![GroupId::new(ALLOWED_GROUP)],
                ..AccountSettings::default()
            },
            groups: vec![Group::new("g-reviewers", USER_GROUP, Vec::new())],
            custom_domains,
            crashed: vec![false; peers.len()],
            peers,
            table: SessionTable::new(config.table.clone()),
            clients: BTreeMap::new(),
            next_client: 0,
            timers: BTreeSet::new(),
            network: BTreeMap::new(),
            next_message: 0,
            actions,
            expected: BTreeMap::new(),
            open: BTreeSet::new(),
            report: SimReport {
                seed,
                ..SimReport::default()
            },
            now: start,
            end: start + config.duration,
        }
    }

    fn run(mut self) -> Result<SimReport, SimFailure> {
        let mut draining = false;
        while let Some((at, next)) = self.next() {
            if at > self.end && !draining {
                draining = true;
                self.kill_everyone();
                continue;
            }
            self.now = at;
            self.report.steps += 1;
            match next {
                Next::Reaper => self.table.handle_timeout(at),
                Next::Message => self.deliver()?,
                Next::Timer => self.fire_timer(),
                Next::Action => self.act()?,
            }
            self.check_events()?;
            self.check_step()?;
        }
        self.check_model()?;
        if !self.table.is_empty() || !self.expected.is_empty() || !self.open.is_empty() {
            return Err(self.fail(format!("{} sessions left after draining", self.table.len())));
        }
        self.report.end = self.now;
        Ok(self.report)
    }

    /// The earliest pending thing; at equal times the reaper goes first so
    /// nothing is ever observed past its deadline.
    fn next(&self) -> Option<(Timestamp, Next)> {
        let candidates = [
            (self.table.poll_timeout(), Next::Reaper),
            (self.network.keys().next().map(|k| k.0), Next::Message),
            (self.timers.first().map(|t| t.0), Next::Timer),
            (self.actions.first().map(|a| a.0), Next::Action),
        ];
        candidates
            .into_iter()
            .filter_map(|(t, n)| t.map(|t| (t, n)))
            .min_by_key(|(t, _)| *t)
    }

    fn fail(&self, message: String) -> SimFailure {
        SimFailure {
            seed: self.report.seed,
            step: self.report.steps,
            at: self.now,
            message,
        }
    }

    fn delay(&mut self) -> Duration {
        let max = if self.rng.gen_bool(self.config.p_late) {
            self.config.long_delay
        } else {
            self.config.max_delay
        };
        Duration::from_millis(self.rng.gen_range(0..=max.as_millis()))
    }

    /// Puts a message on the network, unless the network loses it.
    fn send(&mut self, message: Message) {
        if self.rng.gen_bool(self.config.p_loss) {
            self.report.messages_lost += 1;
            return;
        }
        let at = self.now + self.delay();
        self.network.insert((at, self.next_message), message);
        self.next_message += 1;
    }

    fn deliver(&mut self) -> Result<(), SimFailure> {
        let Some((_, message)) = self.network.pop_first() else {
            return Ok(());
        };
        match message {
            Message::ToServer {
                client,
                peer,
                domain,
                request: Request::Renew,
            } => {
                let id = self.peers[peer].id.clone();
                let refused = match self.table.renew(&id, &domain, self.now) {
                    Ok(deadline) => {
                        let want = self.now + self.config.table.ttl;
                        if deadline != want {
                            return Err(self.fail(format!(
                                "renew of {domain} set deadline {deadline}, not {want}"
                            )));
                        }
                        self.report.renewals_ok += 1;
                        self.expected.insert(domain, deadline);
                        None
                    }
                    Err(e) => {
                        self.report.renewals_refused += 1;
                        Some(e.to_string())
                    }
                };
                self.send(Message::RenewReply { client, refused });
            }
            Message::ToServer {
                client,
                peer,
                domain,
                request: Request::Stop,
            } => {
                let id = self.peers[peer].id.clone();
                // A stop for a session that already expired is refused; the
                // daemon leaves either way.
                if self.table.stop(&id, &domain, self.now).is_ok()
                    && self.expected.remove(&domain).is_none()
                {
                    return Err(self.fail(format!("stopped {domain}, unknown to the model")));
                }
                self.send(Message::StopReply { client });
            }
            Message::RenewReply { client, refused } => {
                let now = self.now;
                self.with_client(client, |m| match &refused {
                    None => m.handle_renew_ok(now),
                    Some(reason) => m.handle_renew_failed(reason, now),
                });
            }
            Message::StopReply { client } => {
                let now = self.now;
                self.with_client(client, |m| m.handle_stop_done(now));
            }
        }
        Ok(())
    }

    fn fire_timer(&mut self) {
        if let Some((_, client)) = self.timers.pop_first() {
            let now = self.now;
            self.with_client(client, |m| m.handle_timeout(now));
        }
    }

    /// Feeds one client (if it still lives) and carries out what it asks.
    fn with_client(&mut self, id: u64, input: impl FnOnce(&mut KeepAlive)) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        input(&mut client.machine);
        if let Some(old) = client.timer.take() {
            self.timers.remove(&(old, id));
        }
        let requests: Vec<Request> =
            std::iter::from_fn(|| client.machine.poll_transmit()).collect();
        let events: Vec<KeepAliveEvent> =
            std::iter::from_fn(|| client.machine.poll_event()).collect();
        client.timer = client.machine.poll_timeout();
        if let Some(t) = client.timer {
            self.timers.insert((t, id));
        }
        let (peer, domain) = (client.peer, client.domain.clone());
        for request in requests {
            self.send(Message::ToServer {
                client: id,
                peer,
                domain: domain.clone(),
                request,
            });
        }
        for event in events {
            match event {
                KeepAliveEvent::Failed { .. } => self.report.clients_failed += 1,
                KeepAliveEvent::Stopped { clean: true } => self.report.stops_clean += 1,
                KeepAliveEvent::Stopped { clean: false } => self.report.stops_unclean += 1,
            }
            self.clients.remove(&id);
        }
    }

    /// A peer's next move: restart, expose, stop, crash or idle.
    fn act(&mut self) -> Result<(), SimFailure> {
        let Some((_, peer)) = self.actions.pop_first() else {
            return Ok(());
        };
        let roll: f64 = self.rng.gen();
        let c = self.config;
        if self.crashed[peer] {
            self.crashed[peer] = false;
        } else if roll < c.p_create {
            self.create(peer)?;
        } else if roll < c.p_create + c.p_stop {
            let mine: Vec<u64> = self.clients_of(peer);
            if !mine.is_empty() {
                let pick = mine[self.rng.gen_range(0..mine.len() as u32) as usize];
                let now = self.now;
                self.with_client(pick, |m| m.stop(now));
            }
        } else if roll < c.p_create + c.p_stop + c.p_crash {
            self.report.crashes += 1;
            self.crashed[peer] = true;
            for id in self.clients_of(peer) {
                self.drop_client(id);
            }
            let down = self.rng.gen_range(1..=c.max_downtime.as_millis().max(1));
            self.actions
                .insert((self.now + Duration::from_millis(down), peer));
            return Ok(());
        }
        let gap = self.rng.gen_range(1..=c.max_action_gap.as_millis().max(1));
        self.actions
            .insert((self.now + Duration::from_millis(gap), peer));
        Ok(())
    }

    fn create(&mut self, peer: usize) -> Result<(), SimFailure> {
        let request = ExposeRequest {
            port: self.rng.gen_range(1..=65535),
            protocol: Some(
                if self.rng.gen_bool(0.5) {
                    "http"
                } else {
                    "https"
                }
                .to_string(),
            ),
            user_groups: self.rng.gen_bool(0.2).then(|| vec![USER_GROUP.to_string()]),
            custom_domain: self.rng.gen_bool(0.2).then(|| CUSTOM_DOMAIN.to_string()),
            name_prefix: self.rng.gen_bool(0.4).then(|| "svc".to_string()),
            ..ExposeRequest::default()
        };
        let ctx = ExposeContext {
            settings: &self.settings,
            groups: &self.groups,
            custom_domains: &self.custom_domains,
            peer: &self.peers[peer],
        };
        let before = self.table.sessions_of(&ctx.peer.id).count();
        let max = self.config.table.max_sessions_per_peer;
        match self.table.create(&ctx, &request, &mut self.rng, self.now) {
            Ok(session) => {
                if before >= max {
                    return Err(self.fail(format!(
                        "peer {peer} got session {} beyond the limit",
                        before + 1
                    )));
                }
                self.report.created += 1;
                self.expected
                    .insert(session.domain.clone(), session.deadline);
                let id = self.next_client;
                self.next_client += 1;
                self.clients.insert(
                    id,
                    Client {
                        peer,
                        domain: session.domain,
                        machine: KeepAlive::new(self.config.keepalive, self.now),
                        timer: None,
                    },
                );
                self.with_client(id, |_| ());
            }
            Err(ExposeError::LimitReached(n)) => {
                if before != max || n != max {
                    return Err(self.fail(format!(
                        "limit ({n}) reported for peer {peer} holding {before}"
                    )));
                }
                self.report.limit_hits += 1;
            }
            Err(ExposeError::PermissionDenied) => {
                if ctx.peer.groups.contains(&GroupId::new(ALLOWED_GROUP)) {
                    return Err(self.fail(format!("allowed peer {peer} was refused")));
                }
                self.report.denied += 1;
            }
            Err(e) => return Err(self.fail(format!("unexpected create error: {e}"))),
        }
        Ok(())
    }

    fn clients_of(&self, peer: usize) -> Vec<u64> {
        self.clients
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
            .collect()
    }

    fn drop_client(&mut self, id: u64) {
        if let Some(client) = self.clients.remove(&id) {
            if let Some(t) = client.timer {
                self.timers.remove(&(t, id));
            }
        }
    }

    /// The end of the run: every daemon dies and no peer acts again.
    fn kill_everyone(&mut self) {
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        for id in ids {
            self.drop_client(id);
        }
        self.actions.clear();
    }

    /// Checks the table's audit events against the model.
    fn check_events(&mut self) -> Result<(), SimFailure> {
        while let Some(event) = self.table.poll_event() {
            match event.kind {
                ExposeEventKind::Exposed => {
                    if event.at != self.now
                        || !self.expected.contains_key(&event.domain)
                        || !self.open.insert(event.domain.clone())
                    {
                        return Err(
                            self.fail(format!("stray or duplicate Exposed for {}", event.domain))
                        );
                    }
                    let per_peer = self.table.sessions_of(&event.peer_id).count();
                    self.report.max_sessions_seen = self.report.max_sessions_seen.max(per_peer);
                }
                ExposeEventKind::Unexposed => {
                    self.report.unexposed += 1;
                    if !self.open.remove(&event.domain) || self.expected.contains_key(&event.domain)
                    {
                        return Err(self.fail(format!(
                            "Unexposed for {} that was not open or not stopped",
                            event.domain
                        )));
                    }
                }
                ExposeEventKind::Expired => {
                    self.report.expired += 1;
                    if !self.open.remove(&event.domain) {
                        return Err(
                            self.fail(format!("Expired for {} that was not open", event.domain))
                        );
                    }
                    let want = self.expected.remove(&event.domain);
                    if want != Some(event.at) || event.at != self.now {
                        return Err(self.fail(format!(
                            "{} expired at {} (reaped at {}), expected {want:?}",
                            event.domain, event.at, self.now
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The cheap checks of every step, and the full comparison now and then.
    fn check_step(&self) -> Result<(), SimFailure> {
        if let Some(t) = self.table.poll_timeout() {
            if t <= self.now {
                return Err(self.fail(format!("a session outlived its deadline {t}")));
            }
        }
        if self.table.len() != self.expected.len() || self.table.len() != self.open.len() {
            return Err(self.fail(format!(
                "table holds {} sessions, model {}, open exposures {}",
                self.table.len(),
                self.expected.len(),
                self.open.len()
            )));
        }
        if self.report.steps % self.config.full_check_every.max(1) == 0 {
            self.check_model()?;
        }
        Ok(())
    }

    /// Compares the whole table with the model.
    fn check_model(&self) -> Result<(), SimFailure> {
        let mut per_peer: BTreeMap<&PeerId, usize> = BTreeMap::new();
        for s in self.table.sessions() {
            if self.expected.get(&s.domain) != Some(&s.deadline) {
                return Err(self.fail(format!(
                    "{} has deadline {}, model {:?}",
                    s.domain,
                    s.deadline,
                    self.expected.get(&s.domain)
                )));
            }
            let n = per_peer.entry(&s.peer_id).or_default();
            *n += 1;
            if *n > self.config.table.max_sessions_per_peer {
                return Err(self.fail(format!("{} holds {n} sessions", s.peer_id)));
            }
        }
        let k = self.config.keepalive;
        let tolerated = self.config.long_delay.as_millis()
            + k.renew_period.as_millis()
            + k.renew_timeout.as_millis()
            < self.config.table.ttl.as_millis();
        for client in self.clients.values() {
            let live = matches!(
                client.machine.state(),
                KeepAliveState::Active { .. } | KeepAliveState::Renewing { .. }
            );
            if tolerated && live && self.table.get(&client.domain).is_none() {
                return Err(self.fail(format!(
                    "the daemon still keeps {} alive but the server dropped it",
                    client.domain
                )));
            }
        }
        Ok(())
    }
}
