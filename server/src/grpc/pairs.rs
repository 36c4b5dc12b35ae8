//! The server key's box with each peer key that called recently.
//!
//! Every sealed request is opened, and every answer and stream message
//! sealed, with the box between the server key and the peer's
//! ([`Pair`]). Agreeing on that box is an X25519 multiplication, and it
//! was a quarter of the server's CPU while a policy change reached 3,000
//! peers: each peer's update was sealed, then its acknowledgement opened
//! and answered, three agreements per peer per change. Here each key's
//! box is agreed once and kept.
//!
//! A box is kept only once a request sealed with it opened, so only
//! holders of a key add it. At most [`KEPT`] keys are kept, the oldest
//! pushed out first: a key pushed out costs one agreement again, nothing
//! else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crypto_box::{PublicKey, SecretKey};
use meshplane_proto::envelope::{encode_public_key, Pair};

/// Keys whose box is kept (a kept box is about 200 bytes).
pub const KEPT: usize = 64 * 1024;

/// The boxes of recent keys; see the [module](self) documentation.
#[derive(Debug)]
pub struct Pairs {
    secret: SecretKey,
    /// The server's public key, base64.
    public: String,
    /// At most this many keys are kept: [`KEPT`] but in tests.
    capacity: usize,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    by_key: HashMap<[u8; 32], Pair>,
    /// Keys, oldest first, for eviction.
    order: VecDeque<[u8; 32]>,
}

impl Pairs {
    pub fn new(secret: SecretKey) -> Pairs {
        Pairs::with_capacity(secret, KEPT)
    }

    fn with_capacity(secret: SecretKey, capacity: usize) -> Pairs {
        Pairs {
            public: encode_public_key(&secret.public_key()),
            secret,
            capacity,
            kept: Mutex::default(),
        }
    }

    /// The server's secret key.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The server's public key, base64.
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The box with `key`: the kept one, or one agreed now (and not kept,
    /// since nothing proved the caller holds `key`).
    pub fn pair(&self, key: &PublicKey) -> Pair {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pair) = kept.by_key.get(key.as_bytes()) {
            return pair.clone();
        }
        drop(kept);
        Pair::new(&self.secret, key)
    }

    /// What `open` makes of the box with `key`; the box is kept when it
    /// succeeds (the request proved its sender holds `key`).
    pub fn open<T, E>(
        &self,
        key: &PublicKey,
        open: impl FnOnce(&Pair) -> Result<T, E>,
    ) -> Result<T, E> {
        let pair = self.pair(key);
        let opened = open(&pair)?;
        self.keep(pair);
        Ok(opened)
    }

    fn keep(&self, pair: Pair) {
        let key = *pair.theirs().as_bytes();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.by_key.contains_key(&key) {
            return;
        }
        while kept.order.len() >= self.capacity {
            if let Some(oldest) = kept.order.pop_front() {
                kept.by_key.remove(&oldest);
            }
        }
        kept.order.push_back(key);
        kept.by_key.insert(key, pair);
    }

    /// How many keys' boxes are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use meshplane_core::Timestamp;
    use meshplane_proto::envelope::{EnvelopeError, ReplayGuard};
    use meshplane_proto::v1::RenewExposeRequest;
    use rand_core::OsRng;

    use super::*;

    #[test]
    fn only_boxes_that_opened_a_request_are_kept() {
        let pairs = Pairs::new(SecretKey::generate(&mut OsRng));
        let server = pairs.secret().public_key();
        assert_eq!(pairs.public(), encode_public_key(&server));
        let peer = SecretKey::generate(&mut OsRng);
        let now = Timestamp::from_secs(1_000_000);
        let mut guard = ReplayGuard::default();
        let sealed =
            Pair::new(&peer, &server).seal(&RenewExposeRequest::default(), "", now, &mut OsRng);

        let forger = SecretKey::generate(&mut OsRng).public_key();
        let refused = pairs.open(&forger, |pair| {
            pair.open::<RenewExposeRequest>(&sealed, &mut guard, now)
        });
        assert_eq!(refused, Err(EnvelopeError::Forged));
        assert_eq!(pairs.len(), 0);

        let holder = peer.public_key();
        pairs
            .open(&holder, |pair| {
                pair.open::<RenewExposeRequest>(&sealed, &mut guard, now)
            })
            .unwrap();
        assert_eq!(pairs.len(), 1);
        // The kept box seals to the peer as a new one would.
        let answer = pairs
            .pair(&holder)
            .seal(&RenewExposeRequest::default(), "", now, &mut OsRng);
        Pair::new(&peer, &server)
            .open::<RenewExposeRequest>(&answer, &mut guard, now)
            .unwrap();
    }

    #[test]
    fn the_oldest_key_is_pushed_out_first() {
        let pairs = Pairs::with_capacity(SecretKey::generate(&mut OsRng), 3);
        let keys: Vec<PublicKey> = (0..5)
            .map(|_| SecretKey::generate(&mut OsRng).public_key())
            .collect();
        for key in &keys {
            pairs.keep(Pair::new(pairs.secret(), key));
            pairs.keep(Pair::new(pairs.secret(), key));
        }
        let kept = pairs.kept.lock().unwrap();
        assert_eq!(kept.by_key.len(), 3);
        let order: Vec<&[u8; 32]> = kept.order.iter().collect();
        let newest: Vec<&[u8; 32]> = keys[2..].iter().map(PublicKey::as_bytes).collect();
        assert_eq!(order, newest);
    }
}
