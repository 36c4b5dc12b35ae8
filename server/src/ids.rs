//! Fresh resource ids and the current time: the two things the server draws
//! from the machine and hands to the core.

use meshplane_core::Timestamp;
use rand_core::{OsRng, RngCore};

/// The alphabet of ids (base32hex, lower case), as xid uses.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// Now, from the system clock.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// A 20-character id in xid's alphabet: 4 bytes of seconds then 8 random
/// bytes, so ids sort roughly by creation time like the reference's.
pub fn new_id() -> String {
    let secs = u32::try_from(now().as_millis() / 1000).unwrap_or(u32::MAX);
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    OsRng.fill_bytes(&mut bytes[4..]);
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    // 96 bits -> 20 base32 digits (100 bits, the top 4 zero).
    (0..20)
        .rev()
        .map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }
}
