//! Property tests of the sealed envelope: whatever arrives, opening it
//! never panics, and a sealed message altered in any way is refused.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use crypto_box::SecretKey;
use meshplane_core::Timestamp;
use meshplane_proto::envelope::{
    encode_public_key, open, parse_public_key, seal, EnvelopeError, ReplayGuard, NONCE_LEN,
};
use meshplane_proto::v1::{LoginRequest, PeerSystemMeta, SealedMessage};
use proptest::prelude::*;
use prost::Message;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: i64 = 1_700_000_000_000;

fn key(seed: u64) -> SecretKey {
    SecretKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn request(hostname: String, setup_key: String) -> LoginRequest {
    LoginRequest {
        setup_key,
        meta: Some(PeerSystemMeta {
            hostname,
            ..PeerSystemMeta::default()
        }),
        extra_dns_labels: Vec::new(),
    }
}

/// A message sealed by the peer to the server, and both keys.
fn sealed(hostname: String, setup_key: String, seed: u64) -> (SealedMessage, SecretKey, SecretKey) {
    let peer = key(1);
    let server = key(2);
    let message = seal(
        &request(hostname, setup_key),
        &encode_public_key(&peer.public_key()),
        &peer,
        &server.public_key(),
        Timestamp::from_millis(NOW),
        &mut ChaCha20Rng::seed_from_u64(seed),
    );
    (message, peer, server)
}

proptest! {
    // Each case of the second property opens six boxes (a key agreement
    // each), slow in a debug build: few cases keep it to seconds.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Arbitrary bytes, as a sealed body or as the whole encoded message,
    /// are refused without a panic.
    #[test]
    fn garbage_is_refused(body in proptest::collection::vec(any::<u8>(), 0..256), claimed in ".{0,60}") {
        let server = key(2);
        let mut guard = ReplayGuard::default();
        if let Ok(sender) = parse_public_key(&claimed) {
            let garbage = SealedMessage { wg_pub_key: claimed.clone(), body: body.clone() };
            let opened = open::<LoginRequest>(&garbage, &server, &sender, &mut guard, Timestamp::from_millis(NOW));
            prop_assert!(opened.is_err());
        }
        if let Ok(decoded) = SealedMessage::decode(body.as_slice()) {
            let sender = key(1).public_key();
            let opened = open::<LoginRequest>(&decoded, &server, &sender, &mut guard, Timestamp::from_millis(NOW));
            prop_assert!(opened.is_err());
        }
    }

    /// A sealed message opens once; flipping any bit of its body,
    /// cutting or extending it, or claiming another sender is refused.
    #[test]
    fn tampering_is_refused(
        hostname in ".{0,40}",
        setup_key in "[A-F0-9-]{0,36}",
        seed in any::<u64>(),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let (message, peer, server) = sealed(hostname.clone(), setup_key.clone(), seed);
        let now = Timestamp::from_millis(NOW);
        let sender = peer.public_key();

        let mut flipped = message.clone();
        let at = position.index(flipped.body.len());
        flipped.body[at] ^= 1 << bit;
        let mut guard = ReplayGuard::default();
        prop_assert_eq!(
            open::<LoginRequest>(&flipped, &server, &sender, &mut guard, now).unwrap_err(),
            EnvelopeError::Forged
        );

        let mut short = message.clone();
        short.body.truncate(cut.index(short.body.len()));
        let refused = open::<LoginRequest>(&short, &server, &sender, &mut guard, now).unwrap_err();
        prop_assert!(
            matches!(refused, EnvelopeError::Forged | EnvelopeError::Truncated),
            "{:?}", refused
        );

        let mut long = message.clone();
        long.body.extend_from_slice(&extra);
        prop_assert_eq!(
            open::<LoginRequest>(&long, &server, &sender, &mut guard, now).unwrap_err(),
            EnvelopeError::Forged
        );

        let impostor = key(3).public_key();
        prop_assert_eq!(
            open::<LoginRequest>(&message, &server, &impostor, &mut guard, now).unwrap_err(),
            EnvelopeError::Forged
        );

        let opened = open::<LoginRequest>(&message, &server, &sender, &mut guard, now).unwrap();
        prop_assert_eq!(opened, request(hostname, setup_key));
        prop_assert_eq!(
            open::<LoginRequest>(&message, &server, &sender, &mut guard, now).unwrap_err(),
            EnvelopeError::Replayed
        );
        prop_assert!(message.body.len() > NONCE_LEN);
    }
}
