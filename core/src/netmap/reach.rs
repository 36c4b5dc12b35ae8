//! Who is on which rule side at one instant: posture results, the peers of
//! every rule side, and the peers that may reach each network resource.
//!
//! Everything here is computed on first use and kept, so one map touches
//! only the sides it needs while the fan-out computes each side once and
//! shares it between every peer that needs it.

use std::cell::OnceCell;
use std::sync::Arc;

use crate::index::{side_id, side_parts, AccountIndex, IndexedRule, PeerSet, SideId, SideOf};
use crate::policy::some_query_allowed;
use crate::posture;
use crate::time::Timestamp;

/// Rule sides and posture results of one account at one instant.
#[derive(Debug)]
pub(crate) struct Reach<'a> {
    pub index: &'a AccountIndex<'a>,
    /// Approved peers whose login has not expired.
    pub active: Arc<PeerSet>,
    /// Approved peers whose login has expired.
    pub expired: Arc<PeerSet>,
    /// Per posture check: the approved peers that pass it.
    posture: Vec<OnceCell<PeerSet>>,
    /// Per side id: its approved peers, source sides filtered by posture.
    sides: Vec<OnceCell<Arc<PeerSet>>>,
    /// Per resource: the approved peers that may reach it.
    clients: Vec<OnceCell<Arc<PeerSet>>>,
}

impl<'a> Reach<'a> {
    pub fn new(index: &'a AccountIndex<'a>, now: Timestamp) -> Self {
        let settings = &index.account.settings;
        let mut expired = PeerSet::empty(index.peer_count());
        for rank in index.approved().iter() {
            if index.peer(rank).login_expired(settings, now) {
                expired.insert(rank);
            }
        }
        let mut active = index.approved().clone();
        active.subtract(&expired);
        Reach {
            index,
            active: Arc::new(active),
            expired: Arc::new(expired),
            posture: (0..index.account.posture_checks.len())
                .map(|_| OnceCell::new())
                .collect(),
            sides: (0..index.rules().len() * 2)
                .map(|_| OnceCell::new())
                .collect(),
            clients: (0..index.account.network_resources.len())
                .map(|_| OnceCell::new())
                .collect(),
        }
    }

    /// Evaluates every posture check that an enabled rule uses, for every
    /// approved peer, so that the fan-out evaluates each peer once.
    pub fn evaluate_posture(&self) {
        for rule in self.index.rules() {
            for &check in &rule.posture {
                self.posture_set(check);
            }
        }
    }

    fn posture_set(&self, check: u32) -> &PeerSet {
        self.posture[check as usize].get_or_init(|| {
            let c = self.index.posture_check_at(check);
            let mut set = PeerSet::empty(self.index.peer_count());
            for rank in self.index.approved().iter() {
                if posture::evaluate(c, self.index.peer(rank)).is_ok() {
                    set.insert(rank);
                }
            }
            set
        })
    }

    /// Whether the peer passes every source posture check of `rule`. Uses
    /// the precomputed results when there are some, so a single map does
    /// not evaluate the whole account.
    fn passes(&self, rule: &IndexedRule, rank: u32) -> bool {
        rule.posture
            .iter()
            .all(|&check| match self.posture[check as usize].get() {
                Some(set) => set.contains(rank),
                None => {
                    posture::evaluate(self.index.posture_check_at(check), self.index.peer(rank))
                        .is_ok()
                }
            })
    }

    /// The sides the approved peer at `rank` is on, sorted.
    pub fn member_sides(&self, rank: u32) -> Vec<SideId> {
        let index = self.index;
        let mut sides: Vec<SideId> = index
            .groups_of(rank)
            .iter()
            .flat_map(|&g| index.group_sides(g).iter().copied())
            .chain(index.peer_sides(rank).iter().copied())
            .collect();
        sides.sort_unstable();
        sides.dedup();
        let rules = index.rules();
        sides.retain(|&s| match side_parts(s) {
            (_, SideOf::Destinations) => true,
            (r, SideOf::Sources) => self.passes(&rules[r as usize], rank),
        });
        sides
    }

    /// The approved peers of a side (expired ones included).
    pub fn side(&self, rule: u32, which: SideOf) -> &Arc<PeerSet> {
        self.sides[side_id(rule, which) as usize].get_or_init(|| {
            let r = &self.index.rules()[rule as usize];
            let mut set = r.side(which).peers.clone();
            set.intersect_with(self.index.approved());
            if which == SideOf::Sources {
                for &check in &r.posture {
                    set.intersect_with(self.posture_set(check));
                }
            }
            Arc::new(set)
        })
    }

    /// Whether the peer at `rank` is on a side, without computing the whole
    /// side when it is not known yet (a single map needs few answers).
    pub fn on_side(&self, rule: u32, which: SideOf, rank: u32) -> bool {
        if let Some(set) = self.sides[side_id(rule, which) as usize].get() {
            return set.contains(rank);
        }
        let r = &self.index.rules()[rule as usize];
        r.side(which).peers.contains(rank)
            && self.index.approved().contains(rank)
            && (which == SideOf::Destinations || self.passes(r, rank))
    }

    /// The approved peers that may reach the resource at `pos` on some
    /// query (none when the resource is disabled).
    pub fn clients(&self, pos: u32) -> &Arc<PeerSet> {
        self.clients[pos as usize].get_or_init(|| {
            let mut set = PeerSet::empty(self.index.peer_count());
            if !self.index.resource_at(pos).enabled {
                return Arc::new(set);
            }
            // Rules naming the resource, with the side a client must be on.
            let naming: Vec<(u32, SideOf)> = self.resource_rules(pos).collect();
            for &(r, client_side) in &naming {
                if self.index.rules()[r as usize].action == crate::model::Action::Accept {
                    set.union_with(self.side(r, client_side));
                }
            }
            let rules = self.index.rules();
            if naming
                .iter()
                .any(|&(r, _)| rules[r as usize].action == crate::model::Action::Drop)
            {
                let candidates: Vec<u32> = set.iter().collect();
                for rank in candidates {
                    let matching = naming
                        .iter()
                        .filter(|&&(r, side)| self.on_side(r, side, rank))
                        .map(|&(r, _)| &rules[r as usize]);
                    if !some_query_allowed(matching) {
                        set.remove(rank);
                    }
                }
            }
            Arc::new(set)
        })
    }

    /// The rules through which a peer may reach resource `pos`: with the
    /// resource as destination the client is a source, and for a
    /// bidirectional rule with the resource as source the client is a
    /// destination.
    pub fn resource_rules(&self, pos: u32) -> impl Iterator<Item = (u32, SideOf)> + '_ {
        self.index
            .rules()
            .iter()
            .enumerate()
            .flat_map(move |(i, r)| {
                let fwd = r.destinations.resources.binary_search(&pos).is_ok();
                let back = r.bidirectional && r.sources.resources.binary_search(&pos).is_ok();
                let i = i as u32;
                [
                    fwd.then_some((i, SideOf::Sources)),
                    back.then_some((i, SideOf::Destinations)),
                ]
                .into_iter()
                .flatten()
            })
    }
}
