//! The updates a [`Fanout`](super::Fanout) has decided and not yet handed
//! out: at most one per peer, since a newer update makes an older one that
//! was never sent pointless.
//!
//! A computation queues an update for each of up to every member, so
//! replacing one must not cost a walk over the queue (that made one change
//! quadratic in the members). A replaced update keeps its peer's place: the
//! peer waited longest.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use super::Update;

#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// Peers in the order they were queued; a peer whose update was taken
    /// back stays here until its turn comes and is skipped then.
    order: VecDeque<String>,
    waiting: HashMap<String, Update>,
}

impl Outbox {
    /// Queues `update` for `id`, replacing the one still waiting for it.
    pub(super) fn put(&mut self, id: String, update: Update) {
        match self.waiting.entry(id) {
            Entry::Occupied(mut waiting) => {
                waiting.insert(update);
            }
            Entry::Vacant(place) => {
                self.order.push_back(place.key().clone());
                place.insert(update);
            }
        }
    }

    /// Takes back what waits for `id`.
    pub(super) fn remove(&mut self, id: &str) {
        self.waiting.remove(id);
    }

    /// The update that waited longest.
    pub(super) fn pop(&mut self) -> Option<(String, Update)> {
        while let Some(id) = self.order.pop_front() {
            if let Some(update) = self.waiting.remove(&id) {
                return Some((id, update));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::RegistrationError;

    fn close() -> Update {
        Update::Close(RegistrationError::NotRegistered)
    }

    fn ids(outbox: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.pop().map(|(id, _)| id)).collect()
    }

    #[test]
    fn one_update_per_peer_in_the_order_peers_were_queued() {
        let mut outbox = Outbox::default();
        for id in ["a", "b", "c"] {
            outbox.put(id.into(), close());
        }
        // Replaced: still one for "a", in its first place.
        outbox.put("a".into(), close());
        assert_eq!(ids(&mut outbox), ["a", "b", "c"]);
        assert!(outbox.pop().is_none());
    }

    #[test]
    fn a_removed_update_is_skipped_and_a_peer_queued_again_gets_one() {
        let mut outbox = Outbox::default();
        for id in ["a", "b"] {
            outbox.put(id.into(), close());
        }
        outbox.remove("a");
        assert_eq!(ids(&mut outbox), ["b"]);
        outbox.put("a".into(), close());
        outbox.remove("a");
        outbox.put("a".into(), close());
        assert_eq!(ids(&mut outbox), ["a"]);
        assert!(outbox.order.is_empty() && outbox.waiting.is_empty());
    }
}
