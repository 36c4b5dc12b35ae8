//! A seeded simulation of map delivery under churn: one account, its
//! [`Fanout`], and daemons that open and drop streams, take deltas and
//! acknowledge what they hold.
//!
//! On a virtual clock, peers join and leave the account, policies and group
//! memberships change, peers connect and disconnect (commits that change
//! only presence), logins are renewed and expire, and daemons open, drop and
//! reopen streams. The server's side is modelled as the hub drives the
//! machine: a load takes a random time (commits land meanwhile), every
//! update goes to each stream of its peer as a delta from what that stream
//! was sent last ([`diff`]), a reconnecting daemon names the map it holds
//! and gets a delta from it when the server has its acknowledgement, and
//! acknowledgements are sometimes lost. Daemons apply deltas with
//! [`apply_checked`] and open a fresh stream (a whole map) when one does
//! not apply.
//!
//! Every so often the churn pauses until the machine is quiet, and the
//! invariant is checked: **every live stream holds exactly the map the
//! core computes** for its peer on the stored account at that instant, and
//! a peer whose login the core refuses has no stream left. A broken
//! invariant is a [`SimFailure`] naming the seed and step, so `run(seed,
//! &config)` replays it exactly.
//!
//! ```
//! use meshplane_core::netmap::fanout::sim::{run, SimConfig};
//! use meshplane_core::Duration;
//!
//! let config = SimConfig { duration: Duration::from_secs(60), ..SimConfig::default() };
//! let report = run(3, &config).unwrap();
//! assert_eq!(report, run(3, &config).unwrap());
//! assert!(report.checkpoints > 0 && report.deltas > 0);
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Fanout, Update};
use crate::generate::{bench_account, ADMIN_USER_ID, ALL_GROUP_ID};
use crate::index::AccountIndex;
use crate::model::{Account, Action, Peer, PeerId, UserId};
use crate::netmap::delta::{apply_checked, diff, digest, MapDigest};
use crate::netmap::{MapBuilder, PeerMap};
use crate::registration::check_login;
use crate::time::{Duration, Timestamp};

/// The simulation's first instant.
const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

/// The shape of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Peers in the account at first.
    pub peers: usize,
    /// Groups of the benchmark account (each with its policy).
    pub groups: usize,
    /// Virtual time of churn.
    pub duration: Duration,
    /// The next churn event comes after a uniform gap of 0 to this.
    pub max_gap: Duration,
    /// A load of the account takes a uniform time of 0 to this.
    pub max_load: Duration,
    /// The account's login expiration; logins are renewed now and then.
    pub login_expiration: Duration,
    /// Chance that an acknowledgement is lost.
    pub p_ack_lost: f64,
    /// Chance, per event, to pause the churn and check the invariant.
    pub p_checkpoint: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            peers: 24,
            groups: 3,
            duration: Duration::from_secs(300),
            max_gap: Duration::from_millis(150),
            max_load: Duration::from_millis(40),
            login_expiration: Duration::from_secs(90),
            p_ack_lost: 0.2,
            p_checkpoint: 0.02,
        }
    }
}

/// What happened in a run (equal for equal seeds and configs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimReport {
    pub seed: u64,
    pub steps: u64,
    pub commits: u64,
    pub loads: u64,
    /// Maps the machine computed.
    pub computed: u64,
    /// Whole maps streams received.
    pub full_maps: u64,
    /// Deltas streams applied.
    pub deltas: u64,
    /// Reconnects that resumed from an acknowledged map with a delta.
    pub resumed: u64,
    pub acks_lost: u64,
    /// Streams closed by the server (deleted peers, expired logins).
    pub closed: u64,
    /// Streams refused at opening (the login check failed).
    pub refused: u64,
    pub checkpoints: u64,
}

/// A broken invariant, with what it takes to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("seed {seed}, step {step}: {what}")]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub what: String,
}

/// Runs the simulation with `seed`.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    Sim::new(seed, config).run()
}

/// What the server remembers of a peer with streams (the hub's watch and
/// its delta bookkeeping).
#[derive(Debug, Default)]
struct Member {
    /// What its streams are to hold.
    current: Option<Update>,
    /// The last map sent, by serial and digest, and the last one the peer
    /// acknowledged.
    sent: Option<(u64, MapDigest, Arc<PeerMap>)>,
    acked: Option<(u64, MapDigest, Arc<PeerMap>)>,
}

/// One stream, both ends of it.
#[derive(Debug, Clone)]
struct Stream {
    /// What the server sent on it last: a delta's base.
    base: Option<Arc<PeerMap>>,
    /// What the daemon holds, with the serial it came with.
    held: Option<(u64, PeerMap)>,
}

struct Sim<'a> {
    seed: u64,
    config: &'a SimConfig,
    rng: ChaCha8Rng,
    now: Timestamp,
    /// The stored account.
    account: Account,
    fanout: Fanout,
    /// A load in flight: when it arrives and what it read.
    load: Option<(Timestamp, Account)>,
    members: BTreeMap<String, Member>,
    /// By peer id: its daemon's open streams.
    streams: BTreeMap<String, Vec<Stream>>,
    /// Peers that joined during the run.
    joined: usize,
    report: SimReport,
}

impl<'a> Sim<'a> {
    fn new(seed: u64, config: &'a SimConfig) -> Self {
        let mut account = bench_account(config.peers, config.groups, T0);
        account.settings.peer_login_expiration_enabled = true;
        account.settings.peer_login_expiration = config.login_expiration.as_millis() / 1000;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for peer in &mut account.peers {
            peer.approval_required = false;
            peer.login_expiration_enabled = rng.gen_bool(0.3);
            peer.last_login = T0 - Duration::from_secs(rng.gen_range(0..60));
        }
        Sim {
            seed,
            config,
            rng,
            now: T0,
            account,
            fanout: Fanout::new(),
            load: None,
            members: BTreeMap::new(),
            streams: BTreeMap::new(),
            joined: 0,
            report: SimReport {
                seed,
                ..SimReport::default()
            },
        }
    }

    fn fail(&self, what: String) -> SimFailure {
        SimFailure {
            seed: self.seed,
            step: self.report.steps,
            what,
        }
    }

    fn run(mut self) -> Result<SimReport, SimFailure> {
        let end = T0 + self.config.duration;
        while self.now < end {
            let gap = self.rng.gen_range(0..=self.config.max_gap.as_millis());
            self.advance(self.now + Duration::from_millis(gap))?;
            self.report.steps += 1;
            self.churn()?;
            if self.rng.gen_bool(self.config.p_checkpoint) {
                self.checkpoint()?;
            }
        }
        self.checkpoint()?;
        Ok(self.report)
    }

    /// Runs the machine's deadlines and the loads in flight, in time order,
    /// up to `until`, and moves the clock there.
    fn advance(&mut self, until: Timestamp) -> Result<(), SimFailure> {
        loop {
            let machine = self.fanout.poll_timeout();
            let load = self.load.as_ref().map(|(at, _)| *at);
            let next = match (machine, load) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if load == Some(next) {
                let (_, account) = self.load.take().expect("a load in flight");
                self.fanout
                    .handle_account(Some(Arc::new(account)), self.now);
                self.report.computed += self.fanout.computed() as u64;
            } else {
                self.fanout.handle_timeout(self.now);
                self.report.computed += self.fanout.computed() as u64;
            }
            if self.fanout.poll_load() {
                if self.load.is_some() {
                    return Err(self.fail("a load was asked for while one was in flight".into()));
                }
                self.report.loads += 1;
                let took = self.rng.gen_range(0..=self.config.max_load.as_millis());
                self.load = Some((self.now + Duration::from_millis(took), self.account.clone()));
            }
            self.deliver();
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Hands what the machine sends to each stream of its peer.
    fn deliver(&mut self) {
        while let Some((id, update)) = self.fanout.poll_send() {
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            member.current = Some(update.clone());
            let streams = self.streams.entry(id.clone()).or_default();
            match update {
                Update::Close(_) => {
                    self.report.closed += streams.len() as u64;
                    streams.clear();
                    self.members.remove(&id);
                    self.streams.remove(&id);
                    self.fanout.handle_unsubscribe(&id);
                }
                Update::Map {
                    map,
                    serial,
                    digest: d,
                    ..
                } => {
                    let mut broken = Vec::new();
                    for (i, stream) in streams.iter_mut().enumerate() {
                        if !send(stream, &map, serial, &d, &mut self.report) {
                            broken.push(i);
                        }
                    }
                    member.sent = Some((serial, d, map.clone()));
                    if !self.rng.gen_bool(self.config.p_ack_lost) {
                        member.acked = member.sent.clone();
                    } else {
                        self.report.acks_lost += 1;
                    }
                    // A delta that does not apply: the daemon opens a new
                    // stream without naming a map.
                    for i in broken {
                        streams[i] = Stream {
                            base: Some(map.clone()),
                            held: Some((serial, (*map).clone())),
                        };
                        self.report.full_maps += 1;
                    }
                }
            }
        }
    }

    /// One random event.
    fn churn(&mut self) -> Result<(), SimFailure> {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..4 => self.join(),
            4..6 => self.remove(),
            6..12 => self.edit_policies(),
            12..16 => self.move_peer(),
            16..30 => self.presence(),
            30..38 => self.renew_login(),
            38..62 => self.connect(None),
            62..80 => self.disconnect(),
            _ => self.reconnect(),
        }
        self.deliver();
        Ok(())
    }

    fn commit(&mut self) {
        self.report.commits += 1;
        self.fanout.handle_change(self.now);
    }

    fn random_peer(&mut self) -> Option<usize> {
        let n = self.account.peers.len();
        (n > 0).then(|| self.rng.gen_range(0..n))
    }

    fn join(&mut self) {
        self.joined += 1;
        let n = self.config.peers + self.joined;
        let ip = Ipv4Addr::new(100, 65, (n / 256) as u8, (n % 256) as u8);
        let mut peer = Peer::new(format!("joined-{n}"), format!("joined{n}"), ip);
        peer.key = format!("joined-key-{n}");
        peer.dns_label = format!("joined{n}");
        peer.user_id = Some(UserId::new(ADMIN_USER_ID));
        peer.meta.os = "linux".to_string();
        peer.meta.version = "0.40.0".to_string();
        peer.last_login = self.now;
        peer.login_expiration_enabled = self.rng.gen_bool(0.3);
        let id = peer.id.clone();
        self.account.peers.push(peer);
        let group = self.rng.gen_range(0..self.account.groups.len());
        for (i, g) in self.account.groups.iter_mut().enumerate() {
            if g.id.as_str() == ALL_GROUP_ID || i == group {
                g.peers.push(id.clone());
            }
        }
        self.commit();
    }

    fn remove(&mut self) {
        let Some(i) = self.random_peer() else {
            return;
        };
        let id = self.account.peers.remove(i).id;
        for g in &mut self.account.groups {
            g.peers.retain(|p| *p != id);
        }
        self.commit();
    }

    fn edit_policies(&mut self) {
        let n = self.account.policies.len();
        if n == 0 {
            return;
        }
        let policy = &mut self.account.policies[self.rng.gen_range(0..n)];
        if self.rng.gen_bool(0.5) {
            policy.enabled = !policy.enabled;
        } else if let Some(rule) = policy.rules.first_mut() {
            rule.action = match rule.action {
                Action::Accept => Action::Drop,
                Action::Drop => Action::Accept,
            };
        }
        self.commit();
    }

    fn move_peer(&mut self) {
        let Some(i) = self.random_peer() else {
            return;
        };
        let id: PeerId = self.account.peers[i].id.clone();
        let to = self.rng.gen_range(0..self.account.groups.len());
        for (k, g) in self.account.groups.iter_mut().enumerate() {
            if g.id.as_str() == ALL_GROUP_ID {
                continue;
            }
            g.peers.retain(|p| *p != id);
            if k == to {
                g.peers.push(id.clone());
            }
        }
        self.commit();
    }

    fn presence(&mut self) {
        let Some(i) = self.random_peer() else {
            return;
        };
        let peer = &mut self.account.peers[i];
        peer.connected = !peer.connected;
        peer.last_seen = self.now;
        self.commit();
    }

    fn renew_login(&mut self) {
        let Some(i) = self.random_peer() else {
            return;
        };
        self.account.peers[i].last_login = self.now;
        self.commit();
    }

    /// A daemon opens a stream, naming the map it holds when given.
    fn connect(&mut self, held: Option<Stream>) {
        let Some(i) = self.random_peer() else {
            return;
        };
        let key = self.account.peers[i].key.clone();
        self.open(&key, held);
    }

    fn open(&mut self, key: &str, held: Option<Stream>) {
        let id = match check_login(&self.account, key, self.now) {
            Ok(peer) => peer.id.to_string(),
            Err(_) => {
                self.report.refused += 1;
                return;
            }
        };
        if !self.members.contains_key(&id) {
            self.members.insert(id.clone(), Member::default());
            self.fanout.handle_subscribe(&id, key, self.now);
        }
        let member = &self.members[&id];
        // A resumed stream starts from the acknowledged map it names.
        let mut stream = match (held, &member.acked) {
            (Some(old), Some((serial, d, map)))
                if old
                    .held
                    .as_ref()
                    .is_some_and(|(s, m)| s == serial && digest(m) == *d) =>
            {
                self.report.resumed += 1;
                Stream {
                    base: Some(map.clone()),
                    held: old.held,
                }
            }
            _ => Stream {
                base: None,
                held: None,
            },
        };
        if let Some(Update::Map {
            map,
            serial,
            digest,
            ..
        }) = &member.current
        {
            if !send(&mut stream, map, *serial, digest, &mut self.report) {
                stream = Stream {
                    base: Some(map.clone()),
                    held: Some((*serial, (**map).clone())),
                };
                self.report.full_maps += 1;
            }
        }
        self.streams.entry(id).or_default().push(stream);
    }

    /// Removes a random stream; the last of a peer unsubscribes it.
    fn drop_stream(&mut self) -> Option<(String, Stream)> {
        let live: Vec<(String, usize)> = self
            .streams
            .iter()
            .flat_map(|(id, s)| (0..s.len()).map(move |i| (id.clone(), i)))
            .collect();
        if live.is_empty() {
            return None;
        }
        let (id, i) = live[self.rng.gen_range(0..live.len())].clone();
        let streams = self.streams.get_mut(&id)?;
        let stream = streams.remove(i);
        if streams.is_empty() {
            self.streams.remove(&id);
            self.members.remove(&id);
            self.fanout.handle_unsubscribe(&id);
        }
        Some((id, stream))
    }

    fn disconnect(&mut self) {
        self.drop_stream();
    }

    fn reconnect(&mut self) {
        let Some((id, stream)) = self.drop_stream() else {
            return;
        };
        let Some(key) = self
            .account
            .peers
            .iter()
            .find(|p| p.id.as_str() == id)
            .map(|p| p.key.clone())
        else {
            return;
        };
        self.open(&key, Some(stream));
    }

    /// Lets the machine go quiet, then checks every live stream.
    fn checkpoint(&mut self) -> Result<(), SimFailure> {
        self.report.checkpoints += 1;
        self.advance(self.now + Duration::from_secs(2))?;
        if self.load.is_some() {
            return Err(self.fail("a load is still in flight after 2 s".into()));
        }
        let index = AccountIndex::new(&self.account);
        let mut maps = MapBuilder::new(&index, self.now);
        for (id, streams) in &self.streams {
            let Some(peer) = self.account.peers.iter().find(|p| p.id.as_str() == id) else {
                return Err(self.fail(format!("{id} was deleted and still has streams")));
            };
            if let Err(e) = check_login(&self.account, &peer.key, self.now) {
                return Err(self.fail(format!("{id} still has streams: {e}")));
            }
            let rank = index.rank(id).expect("a peer of the account");
            let want = PeerMap::from(&maps.map(rank));
            for (i, stream) in streams.iter().enumerate() {
                match &stream.held {
                    Some((_, map)) if *map == want => {}
                    Some(_) => {
                        return Err(self.fail(format!("stream {i} of {id} holds another map")))
                    }
                    None => return Err(self.fail(format!("stream {i} of {id} has no map"))),
                }
            }
        }
        Ok(())
    }
}

/// Sends `map` on `stream` as the server does (a delta from what it sent
/// last, the whole map at first) and applies it as the daemon does; false
/// when the delta does not apply.
fn send(
    stream: &mut Stream,
    map: &Arc<PeerMap>,
    serial: u64,
    expected: &MapDigest,
    report: &mut SimReport,
) -> bool {
    match (&stream.base, &mut stream.held) {
        (Some(base), Some((held_serial, held))) => {
            let delta = diff(base, map);
            if apply_checked(held, &delta, expected).is_err() {
                return false;
            }
            *held_serial = serial;
            report.deltas += 1;
        }
        _ => {
            stream.held = Some((serial, (**map).clone()));
            report.full_maps += 1;
        }
    }
    stream.base = Some(map.clone());
    true
}
