//! One copy of each remote-peer entry and record for all simulated peers.
//!
//! A daemon holds one map; the harness holds N, each listing up to N peers,
//! so at 5,000 peers their entries alone took 19 GB and checking each
//! map's digest hashed 25 million entries per change. Decoded entries are
//! replaced by the one copy every simulated peer shares, and the digest of
//! a map is computed from each shared entry's hash, kept with the entry:
//! what the server does for its own maps.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use meshplane_core::netmap::delta::{
    apply, digest_with, entry_hash, DeltaError, ListDelta, MapDelta, MapDigest, ZonesDelta,
};
use meshplane_core::netmap::owned::{ByAddress, Record, RemotePeer};
use meshplane_core::netmap::PeerMap;
use serde::Serialize;

/// The entries every simulated peer shares; see the [module](self)
/// documentation.
#[derive(Debug, Default)]
pub struct SharedEntries {
    inner: Mutex<Kinds>,
}

#[derive(Debug, Default)]
struct Kinds {
    peers: Kept<RemotePeer>,
    records: Kept<Record>,
}

/// Entries of one kind, and the hash of each by its address. Entries are
/// never dropped (a run makes a bounded number of changes), so an address
/// stands for one entry for the whole run.
#[derive(Debug)]
struct Kept<T> {
    entries: HashSet<Arc<T>>,
    hashes: ByAddress<[u8; 32]>,
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            entries: HashSet::new(),
            hashes: ByAddress::default(),
        }
    }
}

impl<T: Eq + Hash + Serialize> Kept<T> {
    fn share(&mut self, entry: &mut Arc<T>) {
        if let Some(kept) = self.entries.get(&**entry) {
            *entry = kept.clone();
            return;
        }
        self.hashes
            .insert(Arc::as_ptr(entry).addr(), entry_hash(&**entry));
        self.entries.insert(entry.clone());
    }

    fn share_list(&mut self, list: &mut [Arc<T>]) {
        for entry in list {
            self.share(entry);
        }
    }

    fn share_added(&mut self, delta: &mut ListDelta<Arc<T>>) {
        for (_, entry) in &mut delta.added {
            self.share(entry);
        }
    }

    fn hash(&self, entry: &Arc<T>) -> [u8; 32] {
        match self.hashes.get(&Arc::as_ptr(entry).addr()) {
            Some(hash) => *hash,
            None => entry_hash(&**entry),
        }
    }
}

impl SharedEntries {
    fn kinds(&self) -> std::sync::MutexGuard<'_, Kinds> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A whole map as received, with its entries shared.
    pub fn share_map(&self, map: &mut PeerMap) {
        let mut kinds = self.kinds();
        kinds.peers.share_list(&mut map.peers);
        kinds.peers.share_list(&mut map.offline_peers);
        for zone in &mut map.dns.custom_zones {
            kinds.records.share_list(&mut zone.records);
        }
    }

    /// Applies `delta` to `map` (with the delta's new entries shared) and
    /// checks the result against `expected`, like
    /// [`meshplane_core::netmap::delta::apply_checked`]. On error `map` is
    /// unchanged.
    pub fn apply_checked(
        &self,
        map: &mut PeerMap,
        mut delta: MapDelta,
        expected: &MapDigest,
    ) -> Result<(), DeltaError> {
        {
            let mut kinds = self.kinds();
            kinds.peers.share_added(&mut delta.peers);
            kinds.peers.share_added(&mut delta.offline_peers);
            if let Some(dns) = &mut delta.dns {
                match &mut dns.zones {
                    ZonesDelta::Records(zones) => {
                        for zone in zones {
                            kinds.records.share_added(zone);
                        }
                    }
                    ZonesDelta::Replaced(zones) => {
                        for zone in zones {
                            kinds.records.share_list(&mut zone.records);
                        }
                    }
                }
            }
        }
        let mut next = map.clone();
        apply(&mut next, &delta)?;
        let kinds = self.kinds();
        let found = digest_with(&next, &mut |p| kinds.peers.hash(p), &mut |r| {
            kinds.records.hash(r)
        });
        if found != *expected {
            return Err(DeltaError::Digest);
        }
        *map = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::generate::bench_account;
    use meshplane_core::index::AccountIndex;
    use meshplane_core::netmap::delta::{diff, digest};
    use meshplane_core::netmap::MapBuilder;
    use meshplane_core::Timestamp;

    #[test]
    fn shared_maps_take_their_deltas_and_keep_one_copy_of_each_entry() {
        let now = Timestamp::from_secs(1_800_000_000);
        let mut account = bench_account(30, 2, now);
        let map_of = |account: &meshplane_core::model::Account, rank: u32| {
            let index = AccountIndex::new(account);
            PeerMap::from(&MapBuilder::new(&index, now).map(rank))
        };
        let shared = SharedEntries::default();
        let mut first = map_of(&account, 0);
        let mut second = map_of(&account, 1);
        shared.share_map(&mut first);
        shared.share_map(&mut second);
        let both = second.peers.iter().filter(|p| first.peers.contains(p));
        for entry in both {
            let same = first.peers.iter().find(|p| p.id == entry.id).unwrap();
            assert!(Arc::ptr_eq(same, entry));
        }

        account.peers[7].name = "renamed".to_string();
        let new = map_of(&account, 0);
        let delta = diff(&first, &new);
        let mut held = first.clone();
        shared
            .apply_checked(&mut held, delta.clone(), &digest(&new))
            .unwrap();
        assert_eq!(held, new);
        // A wrong digest is refused and leaves the map alone.
        let mut kept = first.clone();
        assert_eq!(
            shared.apply_checked(&mut kept, delta, &digest(&first)),
            Err(DeltaError::Digest)
        );
        assert_eq!(kept, first);
    }
}
