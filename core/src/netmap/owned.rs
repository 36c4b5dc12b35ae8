//! A peer's map owning its data.
//!
//! [`NetworkMap`] borrows the account it was computed from and shares its
//! class's part with other maps: right for the server, which computes many
//! maps from one account and writes them straight out. Whatever holds a map
//! on its own (the wire protocol, a daemon applying it) uses [`PeerMap`],
//! built from a `NetworkMap` in one place (`PeerMap::from`).
//!
//! A `PeerMap` holds exactly what the JSON form holds and serialises to the
//! same JSON, byte for byte. Values the core computes are typed (addresses,
//! prefixes, directions, actions, protocols, ports); text it copies from the
//! account (ids, names, keys, the network range, route networks and
//! domains, nameservers) stays text as the account holds it, so that the
//! JSON form is the same for any account the bindings accept, even one
//! whose text would not parse.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::delta::{digest_with, entry_hash, MapDigest};
use super::firewall::Direction;
use super::NetworkMap;
use crate::index::AccountIndex;
use crate::model::{
    AccountId, Action, Nameserver, NameserverGroupId, PeerId, PolicyId, PortRange, Protocol, RuleId,
};

/// One peer's network map, owned. See the [module](self) documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PeerMap {
    /// The account's serial when the map was computed.
    pub serial: u64,
    pub network: Network,
    pub peer_config: OwnConfig,
    /// Remote peers this peer may reach or be reached by, in IP order.
    pub peers: Vec<Arc<RemotePeer>>,
    /// Peers it would see whose login has expired, in IP order.
    pub offline_peers: Vec<Arc<RemotePeer>>,
    pub firewall_rules: Vec<FirewallRule>,
    pub routes: Vec<Route>,
    /// Rules for the routes and resources this peer serves.
    pub route_firewall_rules: Vec<RouteFirewallRule>,
    pub dns: Dns,
}

/// The account network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Network {
    pub id: AccountId,
    /// The account's network range, as the account holds it.
    pub net: String,
    pub dns_domain: String,
}

/// The peer's own configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OwnConfig {
    /// Its mesh address with the network's prefix length.
    pub address: Ipv4Net,
    pub fqdn: String,
    pub ssh_enabled: bool,
}

/// A remote peer as the map lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RemotePeer {
    pub id: PeerId,
    pub name: String,
    /// Its WireGuard public key, as it registered it.
    pub key: String,
    pub ip: Ipv4Addr,
    pub fqdn: String,
    pub ssh_enabled: bool,
}

/// A firewall rule; see [`super::firewall`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FirewallRule {
    pub policy_id: PolicyId,
    pub rule_id: RuleId,
    /// The remote peer, or `0.0.0.0` for every other peer.
    pub peer_ip: Ipv4Addr,
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// A route through one routing peer; see [`super::routes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// The route's id, or the network resource's.
    pub id: String,
    pub network_id: String,
    /// The routed prefix; absent for a domain route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The routing peer.
    pub peer: PeerId,
    pub peer_ip: Ipv4Addr,
    pub metric: u32,
    pub masquerade: bool,
    pub keep_route: bool,
}

/// A firewall rule of a route or resource this peer serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RouteFirewallRule {
    pub route_id: String,
    /// `0.0.0.0/0`, or one /32 per permitted peer in IP order.
    pub source_ranges: Vec<Ipv4Net>,
    pub action: Action,
    /// The routed prefix; `0.0.0.0/0` for domain routes.
    pub destination: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// The DNS part of a map; see [`super::dns`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Dns {
    /// DNS management is on; when off there are no zones and no groups.
    pub service_enable: bool,
    pub custom_zones: Vec<CustomZone>,
    pub nameserver_groups: Vec<NameserverGroup>,
}

/// A zone the peer answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CustomZone {
    pub domain: String,
    pub records: Vec<Arc<Record>>,
}

/// A resource record in its text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Record {
    pub name: String,
    /// The record type (`A`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The record class (`IN`).
    pub class: String,
    pub ttl: u32,
    /// The record data (for `A`, the address).
    pub rdata: String,
}

/// A nameserver group that applies to the peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NameserverGroup {
    pub id: NameserverGroupId,
    pub name: String,
    pub nameservers: Vec<Nameserver>,
    pub primary: bool,
    pub domains: Vec<String>,
    pub search_domains_enabled: bool,
}

impl PeerMap {
    /// The remote peer with WireGuard key `key`.
    pub fn peer_by_key(&self, key: &str) -> Option<&RemotePeer> {
        self.peers.iter().find(|p| p.key == key).map(|p| &**p)
    }

    /// The map of `map`'s peer, taking its remote-peer entries and records
    /// from `entries` (see [`SharedEntries`]).
    ///
    /// # Panics
    /// If `entries` serves another index than the one `map` was computed
    /// from.
    pub fn with_shared(map: &NetworkMap<'_>, entries: &mut Entries<'_, '_>) -> PeerMap {
        assert!(
            std::ptr::eq(map.index, entries.index),
            "entries of another index"
        );
        let entries = std::cell::RefCell::new(entries);
        build(
            map,
            &mut |rank| entries.borrow_mut().peer(rank),
            &mut |rank| entries.borrow_mut().record(rank),
        )
    }
}

/// Remote-peer entries and records that the maps of one account's peers
/// share: every map listing peer X holds the same entry for it, so a
/// server that keeps the map of each of N peers keeps each entry once, not
/// up to N times, and builds it once per computation instead of once per
/// map. An entry is kept across computations while it stays the same, so
/// the map a stream was sent and its next one share their unchanged
/// entries (which then compare equal by address alone).
#[derive(Debug, Default)]
pub struct SharedEntries {
    peers: Kept<RemotePeer>,
    records: Kept<Record>,
}

impl SharedEntries {
    /// Serves the maps of one computation from `index`; forgets the
    /// entries of peers its account no longer has.
    pub fn entries<'s, 'a>(&'s mut self, index: &'a AccountIndex<'a>) -> Entries<'s, 'a> {
        self.peers.retain(index);
        self.records.retain(index);
        let count = index.account.peers.len();
        Entries {
            shared: self,
            index,
            peers: vec![None; count],
            records: vec![None; count],
        }
    }
}

/// A map keyed by the address of a shared entry.
///
/// A map's digest looks up the kept hash of each of its entries, N lookups
/// for each of N maps after a change, and the standard hasher (SipHash,
/// built to resist chosen keys) was a tenth of that work. Addresses are
/// not chosen by anyone who could aim collisions, so one multiplication
/// mixes them well enough.
pub type ByAddress<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;

/// The hasher of [`ByAddress`]: the 128-bit product of the address with
/// an odd constant, its halves folded together, so that both the low bits
/// (the table's bucket) and the high ones (its control bytes) vary with
/// every bit of the address.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let product = u128::from(self.0 ^ n) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// The entries of one kind kept across computations, by peer id, with the
/// hash of each ([`entry_hash`]) by the entry's address: an address stands
/// for one entry only while the entry is kept here, so an entry's hash is
/// forgotten when the entry is.
#[derive(Debug)]
struct Kept<T> {
    by_id: HashMap<PeerId, Arc<T>>,
    hashes: ByAddress<[u8; 32]>,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            by_id: HashMap::new(),
            hashes: ByAddress::default(),
        }
    }
}

impl<T: Serialize + PartialEq> Kept<T> {
    /// The kept entry of `id` when it equals `fresh`; otherwise `fresh`,
    /// kept from now on in place of the old one.
    fn get_or_keep(&mut self, id: &PeerId, fresh: T) -> Arc<T> {
        if let Some(entry) = self.by_id.get(id).filter(|e| ***e == fresh) {
            return entry.clone();
        }
        let entry = Arc::new(fresh);
        self.hashes
            .insert(Arc::as_ptr(&entry).addr(), entry_hash(&*entry));
        if let Some(old) = self.by_id.insert(id.clone(), entry.clone()) {
            self.hashes.remove(&Arc::as_ptr(&old).addr());
        }
        entry
    }

    /// Forgets the entries of peers `index`'s account no longer has.
    fn retain(&mut self, index: &AccountIndex<'_>) {
        let hashes = &mut self.hashes;
        self.by_id.retain(|id, entry| {
            let keep = index.rank(id.as_str()).is_some();
            if !keep {
                hashes.remove(&Arc::as_ptr(entry).addr());
            }
            keep
        });
    }

    /// The entry's [`entry_hash`], kept or computed.
    fn hash(&self, entry: &Arc<T>) -> [u8; 32] {
        match self.hashes.get(&Arc::as_ptr(entry).addr()) {
            Some(hash) => *hash,
            None => entry_hash(&**entry),
        }
    }
}

/// The entries of one computation, by rank; see [`SharedEntries::entries`].
#[derive(Debug)]
pub struct Entries<'s, 'a> {
    shared: &'s mut SharedEntries,
    index: &'a AccountIndex<'a>,
    peers: Vec<Option<Arc<RemotePeer>>>,
    records: Vec<Option<Arc<Record>>>,
}

impl Entries<'_, '_> {
    /// The [`digest`](super::delta::digest) of `map`, with the hashes of
    /// the entries kept here.
    pub fn digest(&self, map: &PeerMap) -> MapDigest {
        let shared = &*self.shared;
        digest_with(map, &mut |p| shared.peers.hash(p), &mut |r| {
            shared.records.hash(r)
        })
    }

    fn peer(&mut self, rank: u32) -> Arc<RemotePeer> {
        let (index, kept) = (self.index, &mut self.shared.peers);
        self.peers[rank as usize]
            .get_or_insert_with(|| kept.get_or_keep(&index.peer(rank).id, remote_peer(index, rank)))
            .clone()
    }

    fn record(&mut self, rank: u32) -> Arc<Record> {
        let (index, kept) = (self.index, &mut self.shared.records);
        self.records[rank as usize]
            .get_or_insert_with(|| kept.get_or_keep(&index.peer(rank).id, record(index, rank)))
            .clone()
    }
}

fn remote_peer(index: &AccountIndex<'_>, rank: u32) -> RemotePeer {
    let p = NetworkMap::view_of(index, rank);
    RemotePeer {
        id: p.id.clone(),
        name: p.name.to_string(),
        key: p.key.to_string(),
        ip: p.ip,
        fqdn: p.fqdn.to_string(),
        ssh_enabled: p.ssh_enabled,
    }
}

fn record(index: &AccountIndex<'_>, rank: u32) -> Record {
    let r = super::dns::Record::of(index, rank);
    Record {
        name: r.name.to_string(),
        kind: r.kind.to_string(),
        class: r.class.to_string(),
        ttl: r.ttl,
        rdata: r.rdata.to_string(),
    }
}

impl From<&NetworkMap<'_>> for PeerMap {
    fn from(map: &NetworkMap<'_>) -> Self {
        let index = map.index;
        build(
            map,
            &mut |rank| Arc::new(remote_peer(index, rank)),
            &mut |rank| Arc::new(record(index, rank)),
        )
    }
}

/// The owned map of `map`, with its remote-peer entries and records made
/// by `peer` and `record` from their peers' ranks.
fn build(
    map: &NetworkMap<'_>,
    peer: &mut dyn FnMut(u32) -> Arc<RemotePeer>,
    record: &mut dyn FnMut(u32) -> Arc<Record>,
) -> PeerMap {
    let index = map.index;
    let account = index.account;
    let settings = &account.settings;
    let records: Vec<Arc<Record>> = map.record_ranks().map(&mut *record).collect();
    let on = map.dns_enabled();
    PeerMap {
        serial: account.serial,
        network: Network {
            id: account.id.clone(),
            net: settings.network_range.clone(),
            dns_domain: settings.dns_domain.clone(),
        },
        peer_config: OwnConfig {
            address: map.address(),
            fqdn: index.fqdn(map.rank).to_string(),
            ssh_enabled: map.peer().ssh_enabled,
        },
        peers: map.ranks(false).map(&mut *peer).collect(),
        offline_peers: map.ranks(true).map(&mut *peer).collect(),
        firewall_rules: map
            .firewall_rules()
            .map(|r| FirewallRule {
                policy_id: r.policy_id.clone(),
                rule_id: r.rule_id.clone(),
                peer_ip: r.peer_ip,
                direction: r.direction,
                action: r.action,
                protocol: r.protocol,
                port: r.port,
                port_range: r.port_range,
            })
            .collect(),
        routes: map
            .routes()
            .into_iter()
            .map(|r| Route {
                id: r.id.to_string(),
                network_id: r.network_id.to_string(),
                network: r.network.map(|n| n.into_owned()),
                domains: r.domains.to_vec(),
                peer: r.peer.clone(),
                peer_ip: r.peer_ip,
                metric: r.metric,
                masquerade: r.masquerade,
                keep_route: r.keep_route,
            })
            .collect(),
        route_firewall_rules: map
            .route_firewall_rules()
            .map(|r| RouteFirewallRule {
                route_id: r.route_id.to_string(),
                source_ranges: r.source_ranges.prefixes().collect(),
                action: r.action,
                destination: r.destination.into_owned(),
                domains: r.domains.to_vec(),
                protocol: r.protocol,
                port: r.port,
                port_range: r.port_range,
            })
            .collect(),
        dns: Dns {
            service_enable: on,
            custom_zones: on
                .then(|| CustomZone {
                    domain: settings.dns_domain.clone(),
                    records,
                })
                .into_iter()
                .collect(),
            nameserver_groups: map
                .nameserver_groups()
                .map(|g| NameserverGroup {
                    id: g.id.clone(),
                    name: g.name.to_string(),
                    nameservers: g.nameservers.to_vec(),
                    primary: g.primary,
                    domains: g.domains.to_vec(),
                    search_domains_enabled: g.search_domains_enabled,
                })
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::bench_account;
    use crate::netmap::MapBuilder;
    use crate::time::Timestamp;

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn aligned_addresses_spread_over_the_buckets() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<AddressHasher>::default();
        // Entries 48 bytes apart, as an allocator hands them out: the low
        // bits of the hash (the bucket) and the high seven (the control
        // byte) must both vary.
        let hashes: Vec<u64> = (0..4096usize)
            .map(|i| build.hash_one(0x7f00_1234_5000 + 48 * i))
            .collect();
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let controls: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(buckets.len() > 2500, "{} buckets of 4096", buckets.len());
        assert_eq!(controls.len(), 128);
    }

    /// Every peer's map with entries from `shared`, by rank; checks that
    /// the digest from the kept hashes is the digest.
    fn maps(account: &crate::model::Account, shared: &mut SharedEntries) -> Vec<PeerMap> {
        let index = AccountIndex::new(account);
        let mut builder = MapBuilder::new(&index, T0);
        let mut entries = shared.entries(&index);
        (0..u32::try_from(account.peers.len()).unwrap())
            .map(|rank| {
                let map = PeerMap::with_shared(&builder.map(rank), &mut entries);
                assert_eq!(entries.digest(&map), crate::netmap::delta::digest(&map));
                map
            })
            .collect()
    }

    /// Daemons of the previous release check `ordered_digest`: it must
    /// stay the digest they compute. The value is what that release's
    /// `digest` gave for this map.
    #[test]
    fn the_ordered_digest_is_the_previous_releases() {
        use crate::netmap::delta::{digest, ordered_digest};
        let mut account = bench_account(40, 3, T0);
        account.settings.dns_domain = "mesh.example".to_string();
        let index = AccountIndex::new(&account);
        let map = PeerMap::from(&MapBuilder::new(&index, T0).map(0));
        let previous = [
            167, 62, 246, 211, 214, 113, 207, 50, 100, 124, 181, 49, 31, 222, 177, 90, 94, 51, 32,
            255, 40, 80, 205, 175, 148, 9, 186, 206, 128, 131, 218, 65,
        ];
        assert_eq!(ordered_digest(&map).0, previous);
        assert_ne!(digest(&map).0, previous);
    }

    #[test]
    fn shared_maps_are_the_maps_and_hold_each_entry_once() {
        let mut account = bench_account(40, 3, T0);
        account.settings.dns_domain = "mesh.example".to_string();
        let mut shared = SharedEntries::default();
        let first = maps(&account, &mut shared);
        let index = AccountIndex::new(&account);
        let mut builder = MapBuilder::new(&index, T0);
        for (rank, map) in first.iter().enumerate() {
            let plain = PeerMap::from(&builder.map(u32::try_from(rank).unwrap()));
            assert_eq!(*map, plain);
        }
        // Any two maps listing one peer hold one entry for it.
        let mut seen: HashMap<&PeerId, &Arc<RemotePeer>> = HashMap::new();
        for entry in first.iter().flat_map(|m| m.peers.iter()) {
            let kept = *seen.entry(&entry.id).or_insert(entry);
            assert!(Arc::ptr_eq(kept, entry), "{} held twice", entry.id);
        }
        assert!(seen.len() > 1);

        // A renamed peer gets a new entry; the others are kept.
        let renamed = account.peers[5].id.clone();
        account.peers[5].name = "renamed".to_string();
        let second = maps(&account, &mut shared);
        for (old, new) in first.iter().zip(&second) {
            for (a, b) in old.peers.iter().zip(&new.peers) {
                assert_eq!(Arc::ptr_eq(a, b), a.id != renamed, "{}", a.id);
            }
        }
    }
}
