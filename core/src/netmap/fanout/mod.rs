//! Which peers with open streams get which map, and when: the fan-out of one
//! account as a sans-IO machine.
//!
//! The server holds one [`Fanout`] per account with open streams and only
//! drives it: it reports streams opening and closing
//! ([`handle_subscribe`](Fanout::handle_subscribe),
//! [`handle_unsubscribe`](Fanout::handle_unsubscribe)), commits to the
//! account ([`handle_change`](Fanout::handle_change)), the account it loaded
//! when asked to ([`poll_load`](Fanout::poll_load),
//! [`handle_account`](Fanout::handle_account)) and the passing of time
//! ([`poll_timeout`](Fanout::poll_timeout),
//! [`handle_timeout`](Fanout::handle_timeout)), and it sends what
//! [`poll_send`](Fanout::poll_send) hands out. Time is always passed in.
//!
//! What the machine decides:
//!
//! - **Coalescing.** The first piece of work after a quiet spell runs at
//!   once, later ones at most once per [`COALESCE`], so a burst of commits
//!   costs one load and one computation per interval.
//! - **What to recompute.** A commit makes the machine load the account
//!   again; when nothing the maps read changed (a peer connecting or
//!   disconnecting only changes its presence) nothing is recomputed. A new
//!   stream's peer gets its own map from the account already loaded, the
//!   others' maps are left alone. Everything else recomputes every member's
//!   map through one [`MapBuilder`], which shares the work per class.
//! - **Who is sent what.** Only members whose map (or the process paths
//!   their posture checks name) differs from what they were last given, and
//!   a close for peers that were deleted, blocked or whose login expired.
//! - **Time.** Nothing is recomputed periodically: the only thing that
//!   changes maps with time alone is a login expiring, and the machine
//!   wakes at the exact instant the next one does.

mod outbox;
#[cfg(feature = "sim")]
pub mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::delta::MapDigest;
use super::owned::SharedEntries;
use super::{MapBuilder, PeerMap};
use crate::index::AccountIndex;
use crate::model::{Account, Peer};
use crate::posture;
use crate::registration::{check_found_login, RegistrationError};
use crate::time::{Duration, Timestamp};
use outbox::Outbox;

/// Least time between two computations (or loads) of one account.
pub const COALESCE: Duration = Duration::from_millis(100);

/// What a peer's streams are to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Hold this map and these process paths (those the posture checks that
    /// apply to the peer name).
    Map {
        map: Arc<PeerMap>,
        process_check_paths: Arc<[String]>,
        /// Grows with every computation, also across machines and restarts
        /// (it is at least the computation's time in milliseconds).
        serial: u64,
        /// The map's [`digest`].
        digest: MapDigest,
    },
    /// End the streams: the peer was deleted or blocked, or its login
    /// expired.
    Close(RegistrationError),
}

/// A peer with at least one open stream.
#[derive(Debug)]
struct Member {
    /// Its WireGuard key, for the login checks.
    key: String,
    /// The digest and paths of the map it was last given.
    given: Option<(MapDigest, Arc<[String]>)>,
    /// Its streams were told to close; it gets nothing more.
    closed: bool,
}

/// The fan-out of one account; see the module documentation.
#[derive(Debug, Default)]
pub struct Fanout {
    members: BTreeMap<String, Member>,
    /// The account as last loaded (with whatever access the server grants
    /// on top of the stored one).
    account: Option<Arc<Account>>,
    /// A commit happened since the last load was asked for.
    stale: bool,
    /// A load was asked for and its account has not arrived.
    loading: bool,
    /// A load is to be handed out by [`Fanout::poll_load`].
    load_due: bool,
    /// Every member's map must be recomputed.
    all: bool,
    /// Members that have no map yet.
    pending: BTreeSet<String>,
    /// When the oldest waiting piece of work arrived.
    since: Option<Timestamp>,
    /// When the last load or computation began.
    last_step: Option<Timestamp>,
    /// When the next login of the account expires.
    expiry: Option<Timestamp>,
    serial: u64,
    /// The entries the members' maps share.
    shared: SharedEntries,
    /// How many maps the last computation built.
    computed: usize,
    outbox: Outbox,
}

impl Fanout {
    pub fn new() -> Fanout {
        Fanout::default()
    }

    /// The first stream of peer `peer_id` (holding `key`) opened. Its map
    /// is computed at the next step; a member already present changes
    /// nothing.
    pub fn handle_subscribe(&mut self, peer_id: &str, key: &str, now: Timestamp) {
        if self.members.contains_key(peer_id) {
            return;
        }
        self.members.insert(
            peer_id.to_string(),
            Member {
                key: key.to_string(),
                given: None,
                closed: false,
            },
        );
        self.pending.insert(peer_id.to_string());
        self.work(now);
    }

    /// The last stream of `peer_id` closed. Nothing is recomputed.
    pub fn handle_unsubscribe(&mut self, peer_id: &str) {
        self.members.remove(peer_id);
        self.pending.remove(peer_id);
        self.outbox.remove(peer_id);
    }

    /// Something of the account was committed: it is loaded again at the
    /// next step.
    pub fn handle_change(&mut self, now: Timestamp) {
        self.stale = true;
        self.work(now);
    }

    /// When [`Fanout::handle_timeout`] is to be called next; `None` while
    /// there is nothing to do but wait for streams, commits or a load.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let step = match self.since {
            Some(since) if !self.loading && !self.load_due => Some(match self.last_step {
                Some(last) => since.max(last + COALESCE),
                None => since,
            }),
            _ => None,
        };
        match (step, self.expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed to `now`: a login that expired by now recomputes every
    /// map, and work whose coalescing interval is over runs, either asking
    /// for a load (see [`Fanout::poll_load`]) or computing from the account
    /// already loaded. CPU-bound when it computes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.expiry.is_some_and(|at| at <= now) {
            self.expiry = None;
            self.all = true;
            self.work(now);
        }
        let Some(at) = self.poll_timeout() else {
            return;
        };
        if at > now || self.since.is_none() {
            return;
        }
        self.last_step = Some(now);
        if self.stale || self.account.is_none() {
            self.stale = false;
            self.loading = true;
            self.load_due = true;
        } else {
            self.compute(now);
        }
    }

    /// Whether the driver must now load the account (everything committed
    /// until this call) and hand it to [`Fanout::handle_account`]. True
    /// once per load.
    pub fn poll_load(&mut self) -> bool {
        std::mem::take(&mut self.load_due)
    }

    /// The account the driver loaded, `None` when it no longer exists (then
    /// every member is closed). Recomputes every map when anything the maps
    /// read changed, and the maps of members without one in any case.
    /// CPU-bound.
    pub fn handle_account(&mut self, account: Option<Arc<Account>>, now: Timestamp) {
        self.loading = false;
        let Some(account) = account else {
            self.account = None;
            self.stale = false;
            self.since = None;
            self.pending.clear();
            let ids: Vec<String> = self.open_members().collect();
            for id in ids {
                self.close(id, RegistrationError::NotRegistered);
            }
            return;
        };
        let same = self
            .account
            .as_deref()
            .is_some_and(|old| same_for_maps(old, &account));
        if !same {
            self.all = true;
        }
        self.account = Some(account);
        self.compute(now);
    }

    /// The load asked for failed: it is asked for again after the
    /// coalescing interval.
    pub fn handle_load_failed(&mut self, now: Timestamp) {
        self.loading = false;
        self.stale = true;
        self.work(now);
    }

    /// The next update to send to a peer's streams.
    pub fn poll_send(&mut self) -> Option<(String, Update)> {
        self.outbox.pop()
    }

    /// How many maps the last computation built.
    pub fn computed(&self) -> usize {
        self.computed
    }

    /// The account as last loaded.
    pub fn account(&self) -> Option<&Arc<Account>> {
        self.account.as_ref()
    }

    /// Whether a piece of work waits; keeps the oldest arrival.
    fn work(&mut self, now: Timestamp) {
        self.since.get_or_insert(now);
    }

    fn open_members(&self) -> impl Iterator<Item = String> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| !m.closed)
            .map(|(id, _)| id.clone())
    }

    fn close(&mut self, id: String, why: RegistrationError) {
        if let Some(member) = self.members.get_mut(&id) {
            member.closed = true;
            self.outbox.put(id, Update::Close(why));
        }
    }

    /// Computes the maps of every member (after a change) or of those
    /// without one, and queues what differs from what they were given.
    fn compute(&mut self, now: Timestamp) {
        // A commit that arrived while the account was loading is still to
        // be loaded.
        self.since = self.stale.then_some(now);
        self.computed = 0;
        let Some(account) = self.account.clone() else {
            return;
        };
        self.expiry = next_login_expiry(&account, now);
        let targets: Vec<String> = if std::mem::take(&mut self.all) {
            self.pending.clear();
            self.open_members().collect()
        } else {
            std::mem::take(&mut self.pending)
                .into_iter()
                .filter(|id| self.members.get(id).is_some_and(|m| !m.closed))
                .collect()
        };
        if targets.is_empty() {
            return;
        }
        self.serial = u64::try_from(now.as_millis())
            .unwrap_or(0)
            .max(self.serial + 1);
        let index = AccountIndex::new(&account);
        let mut maps = MapBuilder::new(&index, now);
        // Taken out for the loop, which also closes members.
        let mut shared = std::mem::take(&mut self.shared);
        let mut entries = shared.entries(&index);
        for id in targets {
            let Some(member) = self.members.get(&id) else {
                continue;
            };
            // The member's peer by its id through the index, not by its key
            // through the account: a walk over every peer for each member
            // made a change quadratic in the members.
            let Some(rank) = index
                .rank(&id)
                .filter(|&rank| index.peer(rank).key == member.key)
            else {
                self.close(id, RegistrationError::NotRegistered);
                continue;
            };
            if let Err(e) = check_found_login(&account, index.peer(rank), now) {
                self.close(id, e);
                continue;
            }
            self.computed += 1;
            let map = PeerMap::with_shared(&maps.map(rank), &mut entries);
            let paths: Arc<[String]> = posture::process_paths(&index, rank).into();
            let map_digest = entries.digest(&map);
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            if member
                .given
                .as_ref()
                .is_some_and(|(d, p)| *d == map_digest && *p == paths)
            {
                continue;
            }
            member.given = Some((map_digest, paths.clone()));
            self.outbox.put(
                id,
                Update::Map {
                    map: Arc::new(map),
                    process_check_paths: paths,
                    serial: self.serial,
                    digest: map_digest,
                },
            );
        }
        drop(entries);
        self.shared = shared;
    }
}

/// The earliest instant after `now` at which a peer's login expires (and
/// with it the maps that list the peer), if any login of `account` can.
pub fn next_login_expiry(account: &Account, now: Timestamp) -> Option<Timestamp> {
    let settings = &account.settings;
    if !settings.peer_login_expiration_enabled {
        return None;
    }
    let limit = Duration::from_secs(settings.peer_login_expiration);
    account
        .peers
        .iter()
        .filter(|p| p.login_expiration_enabled && p.user_id.is_some())
        .map(|p| p.last_login + limit)
        .filter(|at| *at > now)
        .min()
}

/// Whether `a` and `b` give every peer the same map: they differ at most
/// in the peers' presence (whether they are connected, when they were last
/// seen) and the account's commit serial, which no map reads. Every other
/// field is compared, so a field added to the model counts until it is
/// listed here as unread.
pub fn same_for_maps(a: &Account, b: &Account) -> bool {
    let Account {
        id,
        domain,
        settings,
        serial: _,
        users,
        peers,
        groups,
        policies,
        posture_checks,
        routes,
        networks,
        network_resources,
        network_routers,
        nameserver_groups,
        dns_settings,
    } = a;
    *id == b.id
        && *domain == b.domain
        && *settings == b.settings
        && *users == b.users
        && *groups == b.groups
        && *policies == b.policies
        && *posture_checks == b.posture_checks
        && *routes == b.routes
        && *networks == b.networks
        && *network_resources == b.network_resources
        && *network_routers == b.network_routers
        && *nameserver_groups == b.nameserver_groups
        && *dns_settings == b.dns_settings
        && peers.len() == b.peers.len()
        && peers.iter().zip(&b.peers).all(|(x, y)| same_peer(x, y))
}

/// [`same_for_maps`] for one peer.
fn same_peer(a: &Peer, b: &Peer) -> bool {
    let Peer {
        id,
        name,
        key,
        ip,
        dns_label,
        extra_dns_labels,
        user_id,
        hostname,
        meta,
        connected: _,
        last_seen: _,
        last_login,
        created_at,
        ssh_enabled,
        login_expiration_enabled,
        inactivity_expiration_enabled,
        approval_required,
        ephemeral,
        connection_ip,
        location,
    } = a;
    *id == b.id
        && *name == b.name
        && *key == b.key
        && *ip == b.ip
        && *dns_label == b.dns_label
        && *extra_dns_labels == b.extra_dns_labels
        && *user_id == b.user_id
        && *hostname == b.hostname
        && *meta == b.meta
        && *last_login == b.last_login
        && *created_at == b.created_at
        && *ssh_enabled == b.ssh_enabled
        && *login_expiration_enabled == b.login_expiration_enabled
        && *inactivity_expiration_enabled == b.inactivity_expiration_enabled
        && *approval_required == b.approval_required
        && *ephemeral == b.ephemeral
        && *connection_ip == b.connection_ip
        && *location == b.location
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::bench_account;
    use crate::model::Action;

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn account() -> Account {
        bench_account(12, 2, T0)
    }

    fn key(account: &Account, i: usize) -> String {
        account.peers[i].key.clone()
    }

    /// Runs every due step until the machine waits past `now`, loading
    /// `account` when asked; what it sent, by peer.
    fn settle(fanout: &mut Fanout, account: &Account, now: Timestamp) -> BTreeMap<String, Update> {
        while fanout.poll_timeout().is_some_and(|at| at <= now) {
            fanout.handle_timeout(now);
            if fanout.poll_load() {
                fanout.handle_account(Some(Arc::new(account.clone())), now);
            }
        }
        std::iter::from_fn(|| fanout.poll_send()).collect()
    }

    fn expected(account: &Account, id: &str, now: Timestamp) -> PeerMap {
        let index = AccountIndex::new(account);
        let rank = index.rank(id).unwrap();
        PeerMap::from(&MapBuilder::new(&index, now).map(rank))
    }

    fn map_of(update: &Update) -> &PeerMap {
        match update {
            Update::Map { map, .. } => map,
            Update::Close(e) => panic!("closed: {e}"),
        }
    }

    #[test]
    fn a_new_stream_gets_its_map_and_later_ones_only_theirs() {
        let account = account();
        let mut fanout = Fanout::new();
        fanout.handle_subscribe("peer-0", &key(&account, 0), T0);
        assert_eq!(fanout.poll_timeout(), Some(T0));
        fanout.handle_timeout(T0);
        assert!(fanout.poll_load());
        assert!(!fanout.poll_load(), "one load per step");
        fanout.handle_account(Some(Arc::new(account.clone())), T0);
        let sent: Vec<_> = std::iter::from_fn(|| fanout.poll_send()).collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(*map_of(&sent[0].1), expected(&account, "peer-0", T0));

        // A second peer within the coalescing interval waits for its end,
        // and is computed alone, from the account already loaded.
        let t1 = T0 + Duration::from_millis(10);
        fanout.handle_subscribe("peer-1", &key(&account, 1), t1);
        assert_eq!(fanout.poll_timeout(), Some(T0 + COALESCE));
        let t2 = T0 + COALESCE;
        fanout.handle_timeout(t2);
        assert!(!fanout.poll_load());
        assert_eq!(fanout.computed(), 1);
        let sent: Vec<_> = std::iter::from_fn(|| fanout.poll_send()).collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "peer-1");
        assert_eq!(*map_of(&sent[0].1), expected(&account, "peer-1", t2));
    }

    #[test]
    fn presence_recomputes_nothing_and_a_policy_change_sends_only_what_differs() {
        let mut account = account();
        let mut fanout = Fanout::new();
        for i in 0..6 {
            fanout.handle_subscribe(&format!("peer-{i}"), &key(&account, i), T0);
        }
        assert_eq!(settle(&mut fanout, &account, T0).len(), 6);

        let t1 = T0 + Duration::from_secs(1);
        account.peers[2].connected = false;
        account.peers[2].last_seen = t1;
        fanout.handle_change(t1);
        assert!(settle(&mut fanout, &account, t1).is_empty());
        assert_eq!(fanout.computed(), 0);

        // Dropping every rule of the group policies changes the maps of
        // their members only.
        let t2 = t1 + Duration::from_secs(1);
        for policy in &mut account.policies {
            if policy.id.as_str() != "policy-default" {
                policy.enabled = false;
            }
        }
        fanout.handle_change(t2);
        let sent = settle(&mut fanout, &account, t2);
        assert_eq!(fanout.computed(), 6);
        for (id, update) in &sent {
            assert_eq!(*map_of(update), expected(&account, id, t2));
        }
        let unchanged = (0..6)
            .map(|i| format!("peer-{i}"))
            .filter(|id| !sent.contains_key(id))
            .count();
        assert_eq!(sent.len() + unchanged, 6);
    }

    #[test]
    fn a_login_expires_at_its_exact_instant() {
        let mut account = account();
        account.peers[3].login_expiration_enabled = true;
        account.peers[3].last_login = T0 - Duration::from_secs(3500);
        let at = T0 + Duration::from_secs(100);
        let mut fanout = Fanout::new();
        for i in [0, 3] {
            fanout.handle_subscribe(&format!("peer-{i}"), &key(&account, i), T0);
        }
        let first = settle(&mut fanout, &account, T0);
        assert!(map_of(&first["peer-0"])
            .peers
            .iter()
            .any(|p| p.ip == account.peers[3].ip));
        assert_eq!(fanout.poll_timeout(), Some(at));
        assert!(settle(&mut fanout, &account, at - Duration::from_millis(1)).is_empty());
        let sent = settle(&mut fanout, &account, at);
        assert_eq!(
            sent["peer-3"],
            Update::Close(RegistrationError::LoginExpired)
        );
        assert_eq!(*map_of(&sent["peer-0"]), expected(&account, "peer-0", at));
        assert!(!map_of(&sent["peer-0"])
            .peers
            .iter()
            .any(|p| p.ip == account.peers[3].ip));
        assert_eq!(fanout.poll_timeout(), None, "no other login expires");
    }

    #[test]
    fn a_commit_during_a_load_loads_again() {
        let mut account = account();
        let mut fanout = Fanout::new();
        fanout.handle_subscribe("peer-0", &key(&account, 0), T0);
        fanout.handle_timeout(T0);
        assert!(fanout.poll_load());
        fanout.handle_change(T0);
        assert_eq!(fanout.poll_timeout(), None, "waits for the load");
        fanout.handle_account(Some(Arc::new(account.clone())), T0);
        assert_eq!(fanout.poll_timeout(), Some(T0 + COALESCE));
        account.policies[0].rules[0].action = Action::Drop;
        let sent = settle(&mut fanout, &account, T0 + COALESCE);
        assert_eq!(
            *map_of(&sent["peer-0"]),
            expected(&account, "peer-0", T0 + COALESCE)
        );
    }

    #[test]
    fn a_deleted_peer_or_account_closes_its_streams() {
        let mut account = account();
        let mut fanout = Fanout::new();
        for i in 0..3 {
            fanout.handle_subscribe(&format!("peer-{i}"), &key(&account, i), T0);
        }
        settle(&mut fanout, &account, T0);
        let t1 = T0 + Duration::from_secs(1);
        account.peers.retain(|p| p.id.as_str() != "peer-1");
        fanout.handle_change(t1);
        let sent = settle(&mut fanout, &account, t1);
        assert_eq!(
            sent["peer-1"],
            Update::Close(RegistrationError::NotRegistered)
        );
        let t2 = t1 + Duration::from_secs(1);
        fanout.handle_change(t2);
        fanout.handle_timeout(t2);
        assert!(fanout.poll_load());
        fanout.handle_account(None, t2);
        let closed: Vec<_> = std::iter::from_fn(|| fanout.poll_send()).collect();
        assert_eq!(closed.len(), 2);
        assert!(closed
            .iter()
            .all(|(_, u)| *u == Update::Close(RegistrationError::NotRegistered)));
    }

    /// A stream's key is checked against its peer's: a stream opened with
    /// another peer's key, or with the key its peer had before it
    /// registered a new one, is closed.
    #[test]
    fn a_stream_whose_key_is_not_its_peers_is_closed() {
        let mut account = account();
        let mut fanout = Fanout::new();
        fanout.handle_subscribe("peer-0", &key(&account, 0), T0);
        fanout.handle_subscribe("peer-1", &key(&account, 2), T0);
        let sent = settle(&mut fanout, &account, T0);
        assert_eq!(*map_of(&sent["peer-0"]), expected(&account, "peer-0", T0));
        assert_eq!(
            sent["peer-1"],
            Update::Close(RegistrationError::NotRegistered)
        );
        let t1 = T0 + Duration::from_secs(1);
        account.peers[0].key = "a key peer-0 registered since".to_string();
        fanout.handle_change(t1);
        assert_eq!(
            settle(&mut fanout, &account, t1)["peer-0"],
            Update::Close(RegistrationError::NotRegistered)
        );
    }

    #[test]
    fn presence_is_all_that_same_for_maps_ignores() {
        let a = account();
        let mut b = a.clone();
        b.peers[0].connected = !b.peers[0].connected;
        b.peers[0].last_seen = T0 + Duration::from_secs(9);
        b.serial += 1;
        assert!(same_for_maps(&a, &b));
        b.peers[0].meta.version = "0.1.0".to_string();
        assert!(!same_for_maps(&a, &b));
    }
}
