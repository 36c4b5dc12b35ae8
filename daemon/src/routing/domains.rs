//! Domain routes: a route (or network resource of type domain) names
//! domains instead of a prefix. Both ends resolve the names with the
//! host's resolver: the peer using the route routes each address (/32)
//! through the chosen routing peer, and the routing peer lets forwarded
//! traffic reach those addresses per its route firewall rules.
//!
//! Answers are kept for their TTL, but never less than [`MIN_REFRESH`]
//! (a zero-TTL name would otherwise be queried in a loop) nor more than
//! [`MAX_REFRESH`] (so a moved service is followed within minutes). A
//! failed lookup keeps the last addresses and is retried after
//! [`MIN_REFRESH`]. What a map can make us resolve is bounded: at most
//! [`MAX_NAMES`] names and [`MAX_ADDRESSES_PER_NAME`] addresses each.
//! Wildcard names (`*.example.com`) have no addresses to resolve ahead of
//! time and are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most names resolved for one link.
pub const MAX_NAMES: usize = 256;
/// The most addresses kept per name (the lowest, so the choice is stable).
pub const MAX_ADDRESSES_PER_NAME: usize = 16;
/// The TTL floor, and the retry delay after a failed lookup.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// The TTL ceiling.
pub const MAX_REFRESH: Duration = Duration::from_secs(300);

/// Every name's current IPv4 addresses (names not resolved yet are absent).
pub type Resolved = BTreeMap<String, BTreeSet<Ipv4Addr>>;

/// The canonical form of a domain (lower case, no trailing dot), or `None`
/// for what cannot be resolved ahead of time (wildcards, empty).
pub fn canonical(domain: &str) -> Option<String> {
    let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty() && !name.contains('*')).then_some(name)
}

/// The /32 prefixes of `domains`' current addresses.
pub fn addresses(domains: &[String], resolved: &Resolved) -> Vec<Ipv4Net> {
    let mut out: Vec<Ipv4Net> = domains
        .iter()
        .filter_map(|d| resolved.get(&canonical(d)?))
        .flatten()
        .map(|&a| Ipv4Net::from(a))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Keeps the addresses of a set of names fresh, in a task of its own.
#[derive(Debug)]
pub struct DomainResolver {
    names: watch::Sender<BTreeSet<String>>,
    resolved: watch::Receiver<Resolved>,
    task: JoinHandle<()>,
}

impl DomainResolver {
    pub fn start() -> DomainResolver {
        let (names, wanted) = watch::channel(BTreeSet::new());
        let (publish, resolved) = watch::channel(Resolved::new());
        let task = tokio::spawn(run(wanted, publish));
        DomainResolver {
            names,
            resolved,
            task,
        }
    }

    /// Resolves these domains from now on (canonicalised, bounded to
    /// [`MAX_NAMES`]); names no longer listed are forgotten.
    pub fn set_domains<'a>(&self, domains: impl IntoIterator<Item = &'a str>) {
        let mut names: BTreeSet<String> = domains.into_iter().filter_map(canonical).collect();
        if names.len() > MAX_NAMES {
            tracing::warn!(
                "{} domain route names; resolving the first {MAX_NAMES}",
                names.len()
            );
            names = names.into_iter().take(MAX_NAMES).collect();
        }
        self.names.send_if_modified(|current| {
            let changed = *current != names;
            *current = names;
            changed
        });
    }

    /// The addresses, updated whenever a lookup changes them.
    pub fn resolved(&self) -> watch::Receiver<Resolved> {
        self.resolved.clone()
    }
}

impl Drop for DomainResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// When each name is due again.
type Schedule = BTreeMap<String, Instant>;

async fn run(mut wanted: watch::Receiver<BTreeSet<String>>, publish: watch::Sender<Resolved>) {
    let mut due = Schedule::new();
    loop {
        let names = wanted.borrow_and_update().clone();
        due.retain(|name, _| names.contains(name));
        let now = Instant::now();
        for name in &names {
            due.entry(name.clone()).or_insert(now);
        }
        publish.send_if_modified(|resolved| {
            let before = resolved.len();
            resolved.retain(|name, _| names.contains(name));
            resolved.len() != before
        });
        let ready: Vec<String> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        if !ready.is_empty() {
            // The host's resolver as configured now (resolv.conf may have
            // changed since the last round).
            match TokioResolver::builder_tokio().and_then(|b| b.build()) {
                Ok(resolver) => {
                    for name in ready {
                        let (addresses, next) = lookup(&resolver, &name).await;
                        due.insert(name.clone(), next);
                        if let Some(addresses) = addresses {
                            publish.send_if_modified(|resolved| {
                                let changed = resolved.get(&name) != Some(&addresses);
                                resolved.insert(name, addresses);
                                changed
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("domain routes: no resolver: {e}");
                    for name in ready {
                        due.insert(name, now + MIN_REFRESH);
                    }
                }
            }
        }
        let next = due.values().min().copied();
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_until(next) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One name's addresses (`None` when the lookup failed) and when to look
/// again.
async fn lookup(resolver: &TokioResolver, name: &str) -> (Option<BTreeSet<Ipv4Addr>>, Instant) {
    let now = Instant::now();
    // Fully qualified: the search list is not for names an account wrote.
    match resolver.ipv4_lookup(format!("{name}.")).await {
        Ok(answer) => {
            let all: BTreeSet<Ipv4Addr> = answer
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            let addresses = all.into_iter().take(MAX_ADDRESSES_PER_NAME).collect();
            let ttl = answer
                .valid_until()
                .saturating_duration_since(now.into_std());
            (Some(addresses), now + ttl.clamp(MIN_REFRESH, MAX_REFRESH))
        }
        Err(e) => {
            tracing::debug!("domain route {name}: {e}");
            (None, now + MIN_REFRESH)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_addresses_are_its_names_resolved_ones() {
        let resolved = Resolved::from([
            (
                "web.test".to_string(),
                BTreeSet::from([Ipv4Addr::new(192, 0, 2, 9), Ipv4Addr::new(192, 0, 2, 1)]),
            ),
            (
                "api.test".to_string(),
                BTreeSet::from([Ipv4Addr::new(192, 0, 2, 1)]),
            ),
        ]);
        let names = ["Web.Test.".to_string(), "api.test".to_string()];
        let got: Vec<String> = addresses(&names, &resolved)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["192.0.2.1/32", "192.0.2.9/32"]);
        assert!(addresses(&["unknown.test".to_string()], &resolved).is_empty());
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(canonical("*.example.com"), None);
        assert_eq!(canonical(" "), None);
    }
}
