//! What changed between two maps of one peer, and a digest that proves two
//! holders have the same map.
//!
//! After a peer's first full map, the server sends only a [`MapDelta`]: a
//! peer joining an All-to-All account costs every other peer one peer
//! entry and one DNS record, and a policy change that touches only firewall
//! rules carries only rules. The peer applies the delta to the map it holds
//! ([`apply`]) and compares the [`digest`] of the result with the one the
//! server sent; a mismatch means it held another map than the server
//! thought, and it asks for a full map.
//!
//! Every list of the map keeps the core's order, and a delta reproduces it
//! exactly: a [`ListDelta`] names the entries of the old list that are gone
//! by position and places each new entry at its position in the new list.
//! Positions rather than keys (a peer's WireGuard key, a rule's ids) make
//! one rule for every list, including those whose entries have no key of
//! their own (records, route rules), and cost a few bytes each; an entry
//! that changed is gone at its old position and new at its new one. A
//! delta applied to another base than it was computed from gives another
//! map, which the digest exposes; positions past the end are refused.
//!
//! Scalar parts (the network, the peer's own config) travel only when they
//! changed. DNS travels only when it changed, and then its zones' records as
//! list deltas, so a joining peer's record does not resend the whole zone.

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::owned::{
    CustomZone, Dns, FirewallRule, NameserverGroup, Network, OwnConfig, PeerMap, Record,
    RemotePeer, Route, RouteFirewallRule,
};

/// How one list of a map changed; see the [module](self) documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListDelta<T> {
    /// Positions in the old list of the entries that are gone, ascending.
    pub removed: Vec<u32>,
    /// New entries with their positions in the new list, ascending.
    pub added: Vec<(u32, T)>,
}

impl<T> Default for ListDelta<T> {
    fn default() -> Self {
        ListDelta {
            removed: Vec::new(),
            added: Vec::new(),
        }
    }
}

impl<T> ListDelta<T> {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// How one peer's map changed; see the [module](self) documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapDelta {
    /// The serial of the new map.
    pub serial: u64,
    /// The new network, when it changed.
    pub network: Option<Network>,
    /// The peer's new own config, when it changed.
    pub peer_config: Option<OwnConfig>,
    pub peers: ListDelta<Arc<RemotePeer>>,
    pub offline_peers: ListDelta<Arc<RemotePeer>>,
    pub firewall_rules: ListDelta<FirewallRule>,
    pub routes: ListDelta<Route>,
    pub route_firewall_rules: ListDelta<RouteFirewallRule>,
    /// How DNS changed, when it did.
    pub dns: Option<DnsDelta>,
}

/// How the DNS part of a map changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsDelta {
    /// The new value, sent whole (it is one flag).
    pub service_enable: bool,
    pub zones: ZonesDelta,
    pub nameserver_groups: ListDelta<NameserverGroup>,
}

/// How the custom zones changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ZonesDelta {
    /// The same zones (domains, in order) as before; each one's records
    /// changed as its list delta says, one per zone.
    Records(Vec<ListDelta<Arc<Record>>>),
    /// Other zones than before: all of them, whole.
    Replaced(Vec<CustomZone>),
}

impl MapDelta {
    /// Nothing but perhaps the serial changed.
    pub fn is_empty(&self) -> bool {
        self.network.is_none()
            && self.peer_config.is_none()
            && self.peers.is_empty()
            && self.offline_peers.is_empty()
            && self.firewall_rules.is_empty()
            && self.routes.is_empty()
            && self.route_firewall_rules.is_empty()
            && self.dns.is_none()
    }
}

/// Why a delta cannot apply to a map.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeltaError {
    /// A position is past the end of its list, or positions are not
    /// ascending: the delta was computed from another map.
    #[error("the delta's {list} positions do not fit the map held ({position})")]
    Position { list: &'static str, position: u32 },
    /// The delta's record changes name more or fewer zones than the map has.
    #[error("the delta changes records of {found} zones, the map has {held}")]
    Zones { held: usize, found: usize },
    /// The result is not the map the server holds.
    #[error("the map after the delta is not the server's (digest mismatch)")]
    Digest,
}

/// A digest of a map: equal digests mean equal maps.
///
/// It is the SHA-256 of the map's JSON form (its canonical form: the core
/// fixes every list's order, and a delta reproduces it) without its lists
/// of remote peers and records, followed by one short fold per such list
/// (see `ListFold`) over the SHA-256 of each entry's own JSON form
/// ([`entry_hash`]). A server keeps those per entry, which every map
/// listing the entry shares (see [`super::owned::SharedEntries`]), so the
/// digest of each of N maps costs a multiply-add per entry rather than
/// formatting the entry, or hashing its 32 bytes again, for every map.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapDigest(pub [u8; 32]);

impl std::fmt::Debug for MapDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// Feeds the JSON form straight into the hash, without building it.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A list of entry hashes folded into 40 bytes: its length and, in each of
/// four 64-bit lanes, the sum of the entries' lanes, the entry at position
/// `i` weighted by `2i + 1` (all wrapping).
///
/// A multiply-add per entry and lane, where hashing the 32 bytes again
/// cost a SHA-256 block per two entries for every map. Odd weights keep
/// the order in the fold: two entries that trade places change every lane
/// unless their hashes agree in it. Entry hashes are SHA-256 outputs, so
/// two different lists of one length fold alike with a chance of about
/// 2⁻²⁵⁶. The digest is there to find maps that went apart, not to resist
/// a forger: a server that wanted to fool its own peers could send them
/// any map anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ListFold {
    len: u64,
    lanes: [u64; 4],
}

impl ListFold {
    /// The fold of the entries `hashes` gives, in order.
    fn of(hashes: impl Iterator<Item = [u8; 32]>) -> ListFold {
        let mut fold = ListFold::default();
        for hash in hashes {
            let weight = fold.len.wrapping_mul(2).wrapping_add(1);
            for (lane, bytes) in fold.lanes.iter_mut().zip(hash.chunks_exact(8)) {
                let mut word = [0; 8];
                word.copy_from_slice(bytes);
                *lane = lane.wrapping_add(u64::from_le_bytes(word).wrapping_mul(weight));
            }
            fold.len += 1;
        }
        fold
    }

    fn feed(&self, hash: &mut Sha256) {
        hash.update(self.len.to_le_bytes());
        for lane in self.lanes {
            hash.update(lane.to_le_bytes());
        }
    }
}

/// The digest of `map`; see [`MapDigest`].
pub fn digest(map: &PeerMap) -> MapDigest {
    digest_with(map, &mut |p| entry_hash(&**p), &mut |r| entry_hash(&**r))
}

/// [`digest`], with the hashes of remote peers and records from `peer` and
/// `record` (which must answer what [`entry_hash`] would).
pub fn digest_with(
    map: &PeerMap,
    peer: &mut dyn FnMut(&Arc<RemotePeer>) -> [u8; 32],
    record: &mut dyn FnMut(&Arc<Record>) -> [u8; 32],
) -> MapDigest {
    let mut hash = frame_hash(map);
    // The frame's JSON ends with its closing brace and every fold is 40
    // bytes, so nothing is ambiguous.
    ListFold::of(map.peers.iter().map(&mut *peer)).feed(&mut hash);
    ListFold::of(map.offline_peers.iter().map(&mut *peer)).feed(&mut hash);
    for zone in &map.dns.custom_zones {
        ListFold::of(zone.records.iter().map(&mut *record)).feed(&mut hash);
    }
    MapDigest(hash.finalize().into())
}

/// The digest daemons of the previous release check: as [`digest`], but
/// each list stands as its length and every entry hash in order, all
/// hashed. Costs formatting every entry of the map.
pub fn ordered_digest(map: &PeerMap) -> MapDigest {
    let mut hash = frame_hash(map);
    let mut list = |hashes: Vec<[u8; 32]>| {
        hash.update((hashes.len() as u64).to_le_bytes());
        for h in hashes {
            hash.update(h);
        }
    };
    list(map.peers.iter().map(|p| entry_hash(&**p)).collect());
    list(map.offline_peers.iter().map(|p| entry_hash(&**p)).collect());
    for zone in &map.dns.custom_zones {
        list(zone.records.iter().map(|r| entry_hash(&**r)).collect());
    }
    MapDigest(hash.finalize().into())
}

/// The hash of the map's JSON form without its lists of remote peers and
/// records, ready for those lists to follow.
fn frame_hash(map: &PeerMap) -> Sha256 {
    /// The map without its lists of remote peers and records.
    #[derive(Serialize)]
    struct Frame<'a> {
        serial: u64,
        network: &'a Network,
        peer_config: &'a OwnConfig,
        firewall_rules: &'a [FirewallRule],
        routes: &'a [Route],
        route_firewall_rules: &'a [RouteFirewallRule],
        service_enable: bool,
        zones: Vec<&'a str>,
        nameserver_groups: &'a [NameserverGroup],
    }
    let frame = Frame {
        serial: map.serial,
        network: &map.network,
        peer_config: &map.peer_config,
        firewall_rules: &map.firewall_rules,
        routes: &map.routes,
        route_firewall_rules: &map.route_firewall_rules,
        service_enable: map.dns.service_enable,
        zones: map
            .dns
            .custom_zones
            .iter()
            .map(|z| z.domain.as_str())
            .collect(),
        nameserver_groups: &map.dns.nameserver_groups,
    };
    let mut writer = HashWriter(Sha256::new());
    // Writing into a hash cannot fail, and the frame always serialises.
    if let Err(e) = serde_json::to_writer(&mut writer, &frame) {
        unreachable!("a map that does not serialise: {e}");
    }
    writer.0
}

/// The SHA-256 of the whole JSON form of `map`: the digest of the first
/// releases with deltas, which their daemons still check. Costs formatting
/// the map.
pub fn json_digest(map: &PeerMap) -> MapDigest {
    MapDigest(entry_hash(map))
}

/// The SHA-256 of an entry's JSON form.
pub fn entry_hash<T: Serialize>(entry: &T) -> [u8; 32] {
    let mut writer = HashWriter(Sha256::new());
    // Writing into a hash cannot fail, and map entries always serialise.
    if let Err(e) = serde_json::to_writer(&mut writer, entry) {
        unreachable!("a map entry that does not serialise: {e}");
    }
    writer.0.finalize().into()
}

/// What turns `old` into `new`: `apply(old, diff(old, new))` is `new`.
pub fn diff(old: &PeerMap, new: &PeerMap) -> MapDelta {
    MapDelta {
        serial: new.serial,
        network: (old.network != new.network).then(|| new.network.clone()),
        peer_config: (old.peer_config != new.peer_config).then(|| new.peer_config.clone()),
        peers: diff_list(&old.peers, &new.peers),
        offline_peers: diff_list(&old.offline_peers, &new.offline_peers),
        firewall_rules: diff_list(&old.firewall_rules, &new.firewall_rules),
        routes: diff_list(&old.routes, &new.routes),
        route_firewall_rules: diff_list(&old.route_firewall_rules, &new.route_firewall_rules),
        dns: (old.dns != new.dns).then(|| diff_dns(&old.dns, &new.dns)),
    }
}

fn diff_dns(old: &Dns, new: &Dns) -> DnsDelta {
    let same_zones = old.custom_zones.len() == new.custom_zones.len()
        && old
            .custom_zones
            .iter()
            .zip(&new.custom_zones)
            .all(|(o, n)| o.domain == n.domain);
    let zones = if same_zones {
        ZonesDelta::Records(
            old.custom_zones
                .iter()
                .zip(&new.custom_zones)
                .map(|(o, n)| diff_list(&o.records, &n.records))
                .collect(),
        )
    } else {
        ZonesDelta::Replaced(new.custom_zones.clone())
    };
    DnsDelta {
        service_enable: new.service_enable,
        zones,
        nameserver_groups: diff_list(&old.nameserver_groups, &new.nameserver_groups),
    }
}

/// Keeps the longest run of old entries that the new list holds in the
/// same order as far as a greedy walk finds it; everything else is removed
/// or added. The core's lists are sorted, so kept entries keep their order
/// and the walk keeps every entry both lists hold.
///
/// Entries both lists share at their start and end are kept without
/// hashing them: most changes leave most of a list as it was (a policy
/// change leaves every peer entry alone), and comparing in place is far
/// cheaper than hashing every entry of both lists for every peer.
fn diff_list<T: Clone + Eq + Hash>(old: &[T], new: &[T]) -> ListDelta<T> {
    let head = old.iter().zip(new).take_while(|(o, n)| o == n).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(o, n)| o == n)
        .count();
    let middle = diff_middle(&old[head..old.len() - tail], &new[head..new.len() - tail]);
    let shift = |at: u32| position(head).saturating_add(at);
    ListDelta {
        removed: middle.removed.into_iter().map(shift).collect(),
        added: middle
            .added
            .into_iter()
            .map(|(at, entry)| (shift(at), entry))
            .collect(),
    }
}

/// [`diff_list`] for the parts of the lists that differ at both ends.
fn diff_middle<T: Clone + Eq + Hash>(old: &[T], new: &[T]) -> ListDelta<T> {
    let mut wanted: HashMap<&T, usize> = HashMap::with_capacity(new.len());
    for entry in new {
        *wanted.entry(entry).or_default() += 1;
    }
    // Old entries the new list holds too, with their old positions.
    let mut candidates = Vec::with_capacity(old.len().min(new.len()));
    for (at, entry) in old.iter().enumerate() {
        if let Some(count) = wanted.get_mut(entry).filter(|c| **c > 0) {
            *count -= 1;
            candidates.push(at);
        }
    }
    let mut kept = vec![false; old.len()];
    let mut next = candidates.iter().peekable();
    let mut added = Vec::new();
    for (at, entry) in new.iter().enumerate() {
        match next.peek() {
            Some(&&from) if old[from] == *entry => {
                kept[from] = true;
                next.next();
            }
            _ => added.push((position(at), entry.clone())),
        }
    }
    let removed = kept
        .iter()
        .enumerate()
        .filter(|(_, k)| !**k)
        .map(|(at, _)| position(at))
        .collect();
    ListDelta { removed, added }
}

/// A list position on the wire. Lists are bounded far below `u32::MAX` (a
/// map lists at most the account's peers and rules).
fn position(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// Applies `delta` to `map`. On error `map` is unchanged.
pub fn apply(map: &mut PeerMap, delta: &MapDelta) -> Result<(), DeltaError> {
    let peers = apply_list("peers", &map.peers, &delta.peers)?;
    let offline_peers = apply_list("offline_peers", &map.offline_peers, &delta.offline_peers)?;
    let firewall_rules = apply_list("firewall_rules", &map.firewall_rules, &delta.firewall_rules)?;
    let routes = apply_list("routes", &map.routes, &delta.routes)?;
    let route_firewall_rules = apply_list(
        "route_firewall_rules",
        &map.route_firewall_rules,
        &delta.route_firewall_rules,
    )?;
    let dns = delta
        .dns
        .as_ref()
        .map(|d| apply_dns(&map.dns, d))
        .transpose()?;
    map.serial = delta.serial;
    if let Some(network) = &delta.network {
        map.network = network.clone();
    }
    if let Some(config) = &delta.peer_config {
        map.peer_config = config.clone();
    }
    map.peers = peers;
    map.offline_peers = offline_peers;
    map.firewall_rules = firewall_rules;
    map.routes = routes;
    map.route_firewall_rules = route_firewall_rules;
    if let Some(dns) = dns {
        map.dns = dns;
    }
    Ok(())
}

/// Applies `delta` to `map` and checks the result against `expected`, the
/// digest the server sent. On error `map` is unchanged.
pub fn apply_checked(
    map: &mut PeerMap,
    delta: &MapDelta,
    expected: &MapDigest,
) -> Result<(), DeltaError> {
    let mut next = map.clone();
    apply(&mut next, delta)?;
    if digest(&next) != *expected {
        return Err(DeltaError::Digest);
    }
    *map = next;
    Ok(())
}

fn apply_dns(dns: &Dns, delta: &DnsDelta) -> Result<Dns, DeltaError> {
    let custom_zones = match &delta.zones {
        ZonesDelta::Replaced(zones) => zones.clone(),
        ZonesDelta::Records(changes) => {
            if changes.len() != dns.custom_zones.len() {
                return Err(DeltaError::Zones {
                    held: dns.custom_zones.len(),
                    found: changes.len(),
                });
            }
            dns.custom_zones
                .iter()
                .zip(changes)
                .map(|(zone, change)| {
                    Ok(CustomZone {
                        domain: zone.domain.clone(),
                        records: apply_list("records", &zone.records, change)?,
                    })
                })
                .collect::<Result<_, DeltaError>>()?
        }
    };
    Ok(Dns {
        service_enable: delta.service_enable,
        custom_zones,
        nameserver_groups: apply_list(
            "nameserver_groups",
            &dns.nameserver_groups,
            &delta.nameserver_groups,
        )?,
    })
}

fn apply_list<T: Clone>(
    list: &'static str,
    old: &[T],
    delta: &ListDelta<T>,
) -> Result<Vec<T>, DeltaError> {
    let bad = |position| DeltaError::Position { list, position };
    let mut removed = delta.removed.iter().copied().peekable();
    let mut kept = Vec::with_capacity(old.len());
    for (at, entry) in old.iter().enumerate() {
        if removed.peek() == Some(&position(at)) {
            removed.next();
            // Positions must ascend: a repeated or smaller one would be
            // skipped silently below.
            if let Some(&following) = removed.peek().filter(|&&f| f <= position(at)) {
                return Err(bad(following));
            }
        } else {
            kept.push(entry);
        }
    }
    if let Some(extra) = removed.next() {
        return Err(bad(extra));
    }
    let total = kept.len() + delta.added.len();
    let mut out = Vec::with_capacity(total);
    let mut kept = kept.into_iter();
    for (at, entry) in &delta.added {
        let at_usize = usize::try_from(*at).map_err(|_| bad(*at))?;
        if at_usize < out.len() || at_usize >= total {
            return Err(bad(*at));
        }
        while out.len() < at_usize {
            // Too few kept entries to fill the gap before this position.
            out.push(kept.next().ok_or(bad(*at))?.clone());
        }
        out.push(entry.clone());
    }
    out.extend(kept.cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(old: &[u32], new: &[u32]) {
        let delta = diff_list(old, new);
        assert_eq!(
            apply_list("l", old, &delta).as_deref(),
            Ok(new),
            "{delta:?}"
        );
    }

    #[test]
    fn a_fold_keeps_the_order_and_the_length() {
        let h = |b: u8| entry_hash(&b);
        let fold = |bytes: &[u8]| ListFold::of(bytes.iter().map(|&b| h(b)));
        assert_eq!(fold(&[1, 2, 3]), fold(&[1, 2, 3]));
        assert_ne!(fold(&[1, 2, 3]), fold(&[2, 1, 3]), "order");
        assert_ne!(fold(&[1, 2, 3]), fold(&[1, 3, 2]), "order");
        assert_ne!(fold(&[1, 2]), fold(&[1, 2, 2]), "a repeated entry");
        assert_ne!(fold(&[]), fold(&[0]), "length");
        // The first entry is taken at weight one.
        let one = fold(&[9]);
        let mut lanes = [0u64; 4];
        for (lane, bytes) in lanes.iter_mut().zip(h(9).chunks_exact(8)) {
            *lane = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        }
        assert_eq!((one.len, one.lanes), (1, lanes));
    }

    #[test]
    fn lists_round_trip() {
        check(&[], &[]);
        check(&[1, 2, 3], &[1, 2, 3]);
        check(&[1, 2, 3], &[]);
        check(&[], &[1, 2]);
        check(&[1, 2, 3], &[3, 2, 1]);
        check(&[1, 1, 2], &[2, 1, 1, 1]);
        check(&[1, 2, 4, 5], &[0, 1, 3, 4, 6]);
        check(&[1, 2, 3, 9, 9], &[1, 2, 9, 9]);
        check(&[7, 1, 2, 7], &[7, 2, 1, 7]);
        check(&[5, 5, 5], &[5, 5]);
        check(&[5, 5], &[5, 5, 5]);
    }

    #[test]
    fn a_change_inside_a_long_list_names_only_what_changed() {
        let old: Vec<u32> = (0..1000).collect();
        let mut new = old.clone();
        new[500] = 5000;
        new.insert(700, 7000);
        let delta = diff_list(&old, &new);
        assert_eq!(delta.removed, vec![500]);
        assert_eq!(delta.added, vec![(500, 5000), (700, 7000)]);
        check(&old, &new);
    }

    #[test]
    fn an_unchanged_list_costs_nothing() {
        assert!(diff_list(&[1, 2, 3], &[1, 2, 3]).is_empty());
        let delta = diff_list(&[1, 2, 4], &[1, 2, 3, 4]);
        assert_eq!(delta.removed, Vec::<u32>::new());
        assert_eq!(delta.added, vec![(2, 3)]);
    }

    #[test]
    fn positions_that_do_not_fit_are_refused() {
        let gone = ListDelta::<u32> {
            removed: vec![3],
            added: vec![],
        };
        assert!(apply_list("l", &[1, 2], &gone).is_err());
        let unordered = ListDelta::<u32> {
            removed: vec![1, 0],
            added: vec![],
        };
        assert!(apply_list("l", &[1, 2], &unordered).is_err());
        let past = ListDelta {
            removed: vec![],
            added: vec![(5, 9)],
        };
        assert!(apply_list("l", &[1, 2], &past).is_err());
        let gap = ListDelta {
            removed: vec![0, 1],
            added: vec![(1, 9), (0, 8)],
        };
        assert!(apply_list("l", &[1, 2], &gap).is_err());
        let short = ListDelta {
            removed: vec![0, 1],
            added: vec![(1, 9)],
        };
        assert!(apply_list("l", &[1, 2], &short).is_err());
        let backwards = ListDelta {
            removed: vec![],
            added: vec![(1, 9), (0, 8)],
        };
        assert!(apply_list("l", &[1, 2], &backwards).is_err());
    }
}
