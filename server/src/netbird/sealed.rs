//! NetBird's encrypted message: `body` is a 24-byte nonce followed by the
//! NaCl box of the encoded protobuf between the peer's WireGuard key (named
//! in `wgPubKey`) and the server key, the same box our own envelope uses
//! ([`meshplane_proto::envelope::seal_box`]) but without our timestamp
//! inside.
//!
//! Without a timestamp a captured request cannot be told stale, so the only
//! replay protection the format allows without breaking stock clients is to
//! refuse a nonce already seen from the same key ([`Nonces`]). Clients draw
//! every nonce at random, so a repeat is a replay. Memory is bounded: the
//! last [`NONCES_PER_KEY`] nonces of the last [`KEYS`] keys are kept (only
//! after the box opened, so only holders of a key add to its entry; fresh
//! keys push out the oldest ones).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use crypto_box::PublicKey;
use meshplane_proto::envelope::{encode_public_key, parse_public_key, EnvelopeError, NONCE_LEN};
use meshplane_proto::netbird::EncryptedMessage;
use prost::Message;
use rand_core::OsRng;

use crate::grpc::pairs::Pairs;

/// Keys whose recent nonces are remembered.
pub const KEYS: usize = 16 * 1024;
/// Nonces remembered per key: a client makes a handful of calls a minute.
pub const NONCES_PER_KEY: usize = 32;

/// The recent nonces of recent keys.
#[derive(Debug, Default)]
pub struct Nonces {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    by_key: HashMap<[u8; 32], Recent>,
    /// Keys, oldest first, for eviction.
    order: VecDeque<[u8; 32]>,
}

#[derive(Debug, Default)]
struct Recent {
    set: HashSet<[u8; NONCE_LEN]>,
    order: VecDeque<[u8; NONCE_LEN]>,
}

impl Nonces {
    /// Records `nonce` of `key`; false when it was already recorded.
    pub fn accept(&self, key: &PublicKey, nonce: [u8; NONCE_LEN]) -> bool {
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = *key.as_bytes();
        if !seen.by_key.contains_key(&key) {
            while seen.order.len() >= KEYS {
                if let Some(oldest) = seen.order.pop_front() {
                    seen.by_key.remove(&oldest);
                }
            }
            seen.order.push_back(key);
        }
        let recent = seen.by_key.entry(key).or_default();
        if !recent.set.insert(nonce) {
            return false;
        }
        recent.order.push_back(nonce);
        while recent.order.len() > NONCES_PER_KEY {
            if let Some(old) = recent.order.pop_front() {
                recent.set.remove(&old);
            }
        }
        true
    }
}

/// A request opened: the sender's key, its canonical base64 form, and the
/// message.
#[derive(Debug)]
pub struct Opened<M> {
    pub sender: PublicKey,
    pub key: String,
    pub message: M,
}

/// Opens `sealed` with the server key's box with its sender, refusing
/// forgeries and replays.
pub fn open<M: Message + Default>(
    sealed: &EncryptedMessage,
    pairs: &Pairs,
    nonces: &Nonces,
) -> Result<Opened<M>, EnvelopeError> {
    let sender = parse_public_key(&sealed.wg_pub_key)?;
    let (nonce, plain) = pairs.open(&sender, |pair| pair.open_box(&sealed.body))?;
    if !nonces.accept(&sender, nonce) {
        return Err(EnvelopeError::Replayed);
    }
    let message = M::decode(plain.as_slice()).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    Ok(Opened {
        key: encode_public_key(&sender),
        sender,
        message,
    })
}

/// Seals `message` from the server to the peer holding `to`.
pub fn seal<M: Message>(message: &M, pairs: &Pairs, to: &PublicKey) -> EncryptedMessage {
    EncryptedMessage {
        wg_pub_key: pairs.public().to_string(),
        body: pairs
            .pair(to)
            .seal_box(&message.encode_to_vec(), &mut OsRng),
        version: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::SecretKey;
    use meshplane_proto::envelope::seal_box;
    use meshplane_proto::netbird::SyncRequest;

    #[test]
    fn opens_once_and_refuses_forgeries() {
        let server = SecretKey::generate(&mut OsRng);
        let pairs = Pairs::new(server.clone());
        let peer = SecretKey::generate(&mut OsRng);
        let nonces = Nonces::default();
        let body = seal_box(
            &SyncRequest::default().encode_to_vec(),
            &peer,
            &server.public_key(),
            &mut OsRng,
        );
        let message = EncryptedMessage {
            wg_pub_key: encode_public_key(&peer.public_key()),
            body,
            version: 0,
        };
        let opened = open::<SyncRequest>(&message, &pairs, &nonces).unwrap();
        assert_eq!(opened.key, message.wg_pub_key);
        assert_eq!(
            open::<SyncRequest>(&message, &pairs, &nonces).unwrap_err(),
            EnvelopeError::Replayed
        );
        let other = SecretKey::generate(&mut OsRng);
        let forged = EncryptedMessage {
            wg_pub_key: encode_public_key(&other.public_key()),
            ..message
        };
        assert_eq!(
            open::<SyncRequest>(&forged, &pairs, &nonces).unwrap_err(),
            EnvelopeError::Forged
        );
    }

    #[test]
    fn memory_is_bounded() {
        let nonces = Nonces::default();
        let key = SecretKey::generate(&mut OsRng).public_key();
        for i in 0..NONCES_PER_KEY * 3 {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(nonces.accept(&key, nonce));
        }
        let seen = nonces.inner.lock().unwrap();
        assert_eq!(seen.by_key[key.as_bytes()].set.len(), NONCES_PER_KEY);
        drop(seen);
        for i in 0..KEYS + 10 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            nonces.accept(&PublicKey::from(bytes), [1; NONCE_LEN]);
        }
        let seen = nonces.inner.lock().unwrap();
        assert_eq!(seen.by_key.len(), KEYS);
        assert_eq!(seen.order.len(), KEYS);
    }
}
