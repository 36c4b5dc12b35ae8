//! Properties of the small pure parts of the core: IPAM, secrets, DNS labels,
//! name prefixes and the JSON API's determinism.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use meshplane_core::validate::{is_dns_label, Cidr, NamePrefix};
use meshplane_core::{api, dns_label, ipam, keys};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The SEMANTICS.md pattern `^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`, spelled
/// out independently of the implementation under test.
fn prefix_oracle(p: &str) -> bool {
    let chars: Vec<char> = p.chars().collect();
    let edge = |c: &char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner = |c: &char| edge(c) || *c == '-';
    match chars.len() {
        1 => edge(&chars[0]),
        2..=32 => edge(&chars[0]) && edge(&chars[chars.len() - 1]) && chars.iter().all(inner),
        _ => false,
    }
}

proptest! {
    #[test]
    fn ipam_addresses_are_unique_hosts_in_range(seed in any::<u64>(), prefix in 24u8..=29) {
        let net: Cidr = format!("10.20.30.0/{prefix}").parse().unwrap();
        let hosts = (1u32 << (32 - prefix)) - 2;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut used = BTreeSet::new();
        for _ in 0..hosts {
            let ip = ipam::allocate(net, |ip| used.contains(&ip), &mut rng).unwrap();
            prop_assert!(net.contains(ip));
            prop_assert_ne!(ip, net.0.network());
            prop_assert_ne!(ip, net.0.broadcast());
            prop_assert!(used.insert(ip), "duplicate {}", ip);
        }
        prop_assert!(ipam::allocate(net, |ip| used.contains(&ip), &mut rng).is_err());
    }

    #[test]
    fn generated_tokens_and_keys_validate(seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pat = keys::generate_pat(&mut rng);
        prop_assert!(keys::check_pat(&pat).is_ok());
        let key = keys::generate_setup_key(&mut rng);
        prop_assert!(keys::check_setup_key(&key).is_ok());
        prop_assert!(keys::verify_secret_hash(&key, &keys::hash_secret(&key)));
    }

    #[test]
    fn a_changed_token_character_is_caught(seed in any::<u64>(), pos in 4usize..40, c in "[0-9A-Za-z]") {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pat = keys::generate_pat(&mut rng);
        let mut bytes = pat.clone().into_bytes();
        bytes[pos] = c.as_bytes()[0];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assume!(changed != pat);
        // CRC32 catches every single-character change of the secret part;
        // a changed checksum character never matches either.
        prop_assert!(keys::check_pat(&changed).is_err());
    }

    #[test]
    fn dns_labels_are_always_valid(hostname in "\\PC{0,80}", a in any::<u8>(), b in any::<u8>(), ephemeral in any::<bool>()) {
        let ip = Ipv4Addr::new(100, 64, a, b);
        let label = dns_label::label_for(&hostname, ip, ephemeral, |_| false);
        prop_assert!(is_dns_label(&label), "{:?} -> {:?}", hostname, label);
        let taken: BTreeSet<String> = [label.clone()].into();
        let other = dns_label::label_for(&hostname, ip, ephemeral, |l| taken.contains(l));
        prop_assert!(is_dns_label(&other));
        prop_assert_ne!(other, label);
    }

    #[test]
    fn name_prefix_matches_the_pattern(p in "[a-zA-Z0-9_.-]{0,34}") {
        prop_assert_eq!(p.parse::<NamePrefix>().is_ok(), prefix_oracle(&p));
    }

    #[test]
    fn seeded_ops_are_deterministic(seed in any::<u64>()) {
        for op in ["pat_generate", "setup_key_generate", "ipam_account_network"] {
            let req = format!(r#"{{"op":"{op}","input":{{"seed":{seed}}}}}"#);
            prop_assert_eq!(api::call(&req), api::call(&req));
        }
    }
}

#[test]
fn garbage_requests_get_an_error_envelope() {
    for req in ["", "{", "[]", r#"{"op": 5}"#, r#"{"op":"nope","input":{}}"#] {
        let answer: serde_json::Value = serde_json::from_str(&api::call(req)).unwrap();
        assert!(answer["error"]["code"].is_string(), "{req} -> {answer}");
    }
}
