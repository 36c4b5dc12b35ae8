//! Address management: the account network and peer addresses.
//!
//! An account's network is a random /16 inside the shared address space
//! `100.64.0.0/10`. A peer gets a random host address in it — never the
//! network or the broadcast address, never one already taken. Random
//! choice (rather than the next free address) keeps addresses from leaking
//! the order peers joined in and makes collisions between accounts that are
//! later merged unlikely.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rand::Rng;
use rand_core::RngCore;
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::validate::Cidr;

/// How many random draws are tried before walking the range for a free
/// address; the walk guarantees an answer whenever one exists.
const RANDOM_TRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpamError {
    #[error("network {0} is out of IPs")]
    Exhausted(String),
    #[error("network {0} has no host addresses")]
    NoHosts(String),
}

impl ErrorCode for IpamError {
    fn code(&self) -> &'static str {
        match self {
            IpamError::Exhausted(_) => "network_exhausted",
            IpamError::NoHosts(_) => "network_no_hosts",
        }
    }

    fn kind(&self) -> Kind {
        Kind::FailedPrecondition
    }
}

/// A random /16 inside 100.64.0.0/10 for a new account.
pub fn new_account_network(rng: &mut impl RngCore) -> Cidr {
    let second: u8 = rng.gen_range(64..=127);
    Cidr(Ipv4Net::new_assert(Ipv4Addr::new(100, second, 0, 0), 16))
}

/// A free host address in `network`, drawn at random; `taken` says whether an
/// address is already in use.
pub fn allocate(
    network: Cidr,
    taken: impl Fn(Ipv4Addr) -> bool,
    rng: &mut impl RngCore,
) -> Result<Ipv4Addr, IpamError> {
    let first = u32::from(network.0.network()) + 1;
    let last = u32::from(network.0.broadcast()).saturating_sub(1);
    if network.0.prefix_len() >= 31 || last < first {
        return Err(IpamError::NoHosts(network.to_string()));
    }
    let hosts = last - first + 1;
    for _ in 0..RANDOM_TRIES {
        let ip = Ipv4Addr::from(first + rng.gen_range(0..hosts));
        if !taken(ip) {
            return Ok(ip);
        }
    }
    // Crowded range: walk it once from a random start.
    let start = rng.gen_range(0..hosts);
    (0..hosts)
        .map(|i| Ipv4Addr::from(first + (start + i) % hosts))
        .find(|ip| !taken(*ip))
        .ok_or_else(|| IpamError::Exhausted(network.to_string()))
}

/// `count` distinct free host addresses in `network`, drawn as
/// [`allocate`] draws one: the new addresses of every peer when the account
/// network changes (the reference moves every peer into the new range).
pub fn reallocate(
    network: Cidr,
    count: usize,
    rng: &mut impl RngCore,
) -> Result<Vec<Ipv4Addr>, IpamError> {
    let mut taken = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let ip = allocate(network, |ip| taken.contains(&ip), rng)?;
        taken.insert(ip);
        out.push(ip);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

    #[test]
    fn fills_a_small_network_then_reports_exhaustion() {
        let net: Cidr = "10.0.0.0/29".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut used = BTreeSet::new();
        for _ in 0..6 {
            let ip = allocate(net, |ip| used.contains(&ip), &mut rng).unwrap();
            assert!(net.contains(ip));
            assert_ne!(ip, Ipv4Addr::new(10, 0, 0, 0));
            assert_ne!(ip, Ipv4Addr::new(10, 0, 0, 7));
            assert!(used.insert(ip));
        }
        let err = allocate(net, |ip| used.contains(&ip), &mut rng).unwrap_err();
        assert_eq!(err.to_string(), "network 10.0.0.0/29 is out of IPs");
    }

    #[test]
    fn reallocation_fills_the_new_range_without_repeats() {
        let net: Cidr = "10.9.0.0/29".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ips = reallocate(net, 6, &mut rng).unwrap();
        let unique: BTreeSet<_> = ips.iter().collect();
        assert_eq!(unique.len(), 6);
        assert!(ips.iter().all(|ip| net.contains(*ip)));
        assert!(reallocate(net, 7, &mut rng).is_err());
    }

    #[test]
    fn account_network_is_a_16_inside_the_shared_space() {
        let shared: Cidr = "100.64.0.0/10".parse().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let n = new_account_network(&mut rng);
            assert_eq!(n.0.prefix_len(), 16);
            assert!(shared.contains(n.0.network()));
        }
    }
}
