//! Service names: random labels on the proxy domain, optionally behind a
//! readable prefix.

use rand::Rng;
use rand_core::RngCore;

use crate::validate::NamePrefix;

/// The characters of the random part of a name.
pub const NAME_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a name generated without a prefix.
pub const RANDOM_NAME_LEN: usize = 12;
/// Length of the random part after `<prefix>-`.
pub const PREFIXED_SUFFIX_LEN: usize = 4;

/// A fresh service name: 12 random characters, or `<prefix>-` and 4 random
/// characters. Always a valid DNS label (a prefix is at most 32 characters).
///
/// Draws with a `u32` range so the same seed gives the same name on 32- and
/// 64-bit targets alike.
pub fn generate_name(prefix: Option<&NamePrefix>, rng: &mut impl RngCore) -> String {
    let len = if prefix.is_some() {
        PREFIXED_SUFFIX_LEN
    } else {
        RANDOM_NAME_LEN
    };
    let random: String = (0..len)
        .map(|_| char::from(NAME_ALPHABET[rng.gen_range(0..NAME_ALPHABET.len() as u32) as usize]))
        .collect();
    match prefix {
        Some(p) => format!("{p}-{random}"),
        None => random,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn shapes_and_determinism() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let plain = generate_name(None, &mut rng);
        assert_eq!(plain.len(), 12);
        assert!(plain.bytes().all(|c| NAME_ALPHABET.contains(&c)));
        let prefix: NamePrefix = "my-app".parse().unwrap();
        let named = generate_name(Some(&prefix), &mut rng);
        assert_eq!(named.len(), "my-app-".len() + 4);
        assert!(named.starts_with("my-app-"));
        let again = generate_name(None, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(plain, again);
        assert_ne!(
            plain,
            generate_name(None, &mut ChaCha8Rng::seed_from_u64(4))
        );
    }
}
