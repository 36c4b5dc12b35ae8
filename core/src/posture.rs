//! Posture checks as pure functions over what a peer reports about itself.
//!
//! A policy's `source_posture_checks` filter its source peers: a peer that
//! fails any check does not get the policy's access. Every check kind reads
//! only the peer's meta and location (resolved by the server from the
//! connection address before the core sees it), so the same peer always
//! gets the same verdict.
//!
//! Versions compare numerically part by part (`0.9.0 < 0.10.0`); a leading
//! `v` and any pre-release or build suffix (`-dev`, `+abc`) are ignored; a
//! version that has no numeric part (`development`) fails every minimum,
//! because nothing is known about what it contains.

use std::cmp::Ordering;
use std::net::Ipv4Addr;

use serde::Serialize;
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::index::AccountIndex;
use crate::model::{
    CheckAction, GeoLocationCheck, OsVersionCheck, Peer, PeerNetworkRangeCheck, PostureCheck,
    ProcessCheck,
};
use crate::validate::Cidr;

/// Why a peer failed a posture check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("posture check {check_id} ({check}) failed: {reason}")]
pub struct PostureFailure {
    /// The id of the failed posture check.
    pub check_id: String,
    /// Which kind of check failed: `nb_version_check`, `os_version_check`,
    /// `geo_location_check`, `peer_network_range_check` or `process_check`.
    pub check: &'static str,
    /// A human explanation.
    pub reason: String,
}

impl ErrorCode for PostureFailure {
    fn code(&self) -> &'static str {
        "posture_check_failed"
    }

    fn kind(&self) -> Kind {
        Kind::PermissionDenied
    }
}

/// Evaluates every check of `check` against `peer`; the first failure wins.
pub fn evaluate(check: &PostureCheck, peer: &Peer) -> Result<(), PostureFailure> {
    let fail = |kind: &'static str, reason: String| PostureFailure {
        check_id: check.id.to_string(),
        check: kind,
        reason,
    };
    let c = &check.checks;
    if let Some(v) = &c.nb_version_check {
        if !version_at_least(&peer.meta.version, &v.min_version) {
            return Err(fail(
                "nb_version_check",
                format!(
                    "client version {:?} is below the minimum {}",
                    peer.meta.version, v.min_version
                ),
            ));
        }
    }
    if let Some(os) = &c.os_version_check {
        os_version(os, peer).map_err(|r| fail("os_version_check", r))?;
    }
    if let Some(geo) = &c.geo_location_check {
        geo_location(geo, peer).map_err(|r| fail("geo_location_check", r))?;
    }
    if let Some(net) = &c.peer_network_range_check {
        network_range(net, peer).map_err(|r| fail("peer_network_range_check", r))?;
    }
    if let Some(proc) = &c.process_check {
        processes(proc, peer).map_err(|r| fail("process_check", r))?;
    }
    Ok(())
}

/// Evaluates several posture checks; the peer must pass all of them.
pub fn evaluate_all<'a>(
    checks: impl IntoIterator<Item = &'a PostureCheck>,
    peer: &Peer,
) -> Result<(), PostureFailure> {
    checks.into_iter().try_for_each(|c| evaluate(c, peer))
}

/// The process paths named by the posture checks that apply to the peer at
/// `rank`: those of the rules it is a source of (posture checks filter
/// sources only), every OS's path, sorted and deduplicated.
///
/// The peer reports which of these are running; it cannot report on a
/// process nobody asked about, so without this list a process check could
/// never pass. Every OS's path goes out, as the reference server sends
/// them: a path for another OS never runs on the peer, and the list stays
/// right when the peer's reported OS is wrong or not yet known.
pub fn process_paths(index: &AccountIndex<'_>, rank: u32) -> Vec<String> {
    let mut checks: Vec<u32> = index
        .rules()
        .iter()
        .filter(|rule| !rule.posture.is_empty() && rule.sources.peers.contains(rank))
        .flat_map(|rule| rule.posture.iter().copied())
        .collect();
    checks.sort_unstable();
    checks.dedup();
    let mut paths: Vec<String> = checks
        .into_iter()
        .filter_map(|pos| index.posture_check_at(pos).checks.process_check.as_ref())
        .flat_map(|check| &check.processes)
        .flat_map(|p| [&p.linux_path, &p.mac_path, &p.windows_path])
        .filter(|path| !path.is_empty())
        .cloned()
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

/// The numeric parts of a version string, or `None` when there are none.
fn version_parts(v: &str) -> Option<Vec<u64>> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let core = v.split(['-', '+', ' ']).next().unwrap_or("");
    let parts: Option<Vec<u64>> = core.split('.').map(|p| p.parse::<u64>().ok()).collect();
    parts.filter(|p| !p.is_empty())
}

/// Compares two versions part by part, missing parts counting as 0.
fn compare_versions(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Whether `version` is at least `min`. An unparsable `version` fails; an
/// unparsable `min` (rejected when the check is created) is treated as no
/// requirement.
pub fn version_at_least(version: &str, min: &str) -> bool {
    match (version_parts(version), version_parts(min)) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(v), Some(m)) => compare_versions(&v, &m) != Ordering::Less,
    }
}

fn os_version(check: &OsVersionCheck, peer: &Peer) -> Result<(), String> {
    let os = peer.meta.os.to_ascii_lowercase();
    let (min, actual, what) = match os.as_str() {
        "android" => (
            check.android.as_ref().map(|c| &c.min_version),
            &peer.meta.os_version,
            "OS version",
        ),
        "darwin" | "macos" => (
            check.darwin.as_ref().map(|c| &c.min_version),
            &peer.meta.os_version,
            "OS version",
        ),
        "ios" => (
            check.ios.as_ref().map(|c| &c.min_version),
            &peer.meta.os_version,
            "OS version",
        ),
        "linux" => (
            check.linux.as_ref().map(|c| &c.min_kernel_version),
            &peer.meta.kernel_version,
            "kernel version",
        ),
        "windows" => (
            check.windows.as_ref().map(|c| &c.min_kernel_version),
            &peer.meta.kernel_version,
            "kernel version",
        ),
        _ => (None, &peer.meta.os_version, "OS version"),
    };
    match min {
        None => Err(format!(
            "OS {:?} is not allowed by this check",
            peer.meta.os
        )),
        Some(min) if version_at_least(actual, min) => Ok(()),
        Some(min) => Err(format!("{what} {actual:?} is below the minimum {min}")),
    }
}

fn geo_location(check: &GeoLocationCheck, peer: &Peer) -> Result<(), String> {
    let loc = &peer.location;
    let matched = check.locations.iter().any(|l| {
        l.country_code.eq_ignore_ascii_case(&loc.country_code)
            && (l.city_name.is_empty() || l.city_name.eq_ignore_ascii_case(&loc.city_name))
    });
    let place = if loc.city_name.is_empty() {
        loc.country_code.clone()
    } else {
        format!("{}/{}", loc.country_code, loc.city_name)
    };
    if loc.country_code.is_empty() {
        // An unknown location can neither satisfy an allow-list nor show
        // that it is outside a deny-list.
        return Err("peer location is unknown".to_string());
    }
    match (check.action, matched) {
        (CheckAction::Allow, true) | (CheckAction::Deny, false) => Ok(()),
        (CheckAction::Allow, false) => Err(format!("location {place} is not in the allowed list")),
        (CheckAction::Deny, true) => Err(format!("location {place} is denied")),
    }
}

fn network_range(check: &PeerNetworkRangeCheck, peer: &Peer) -> Result<(), String> {
    let ranges: Vec<Cidr> = check
        .ranges
        .iter()
        .filter_map(|r| r.parse::<Cidr>().ok())
        .collect();
    let addresses: Vec<Ipv4Addr> = peer
        .meta
        .network_addresses
        .iter()
        .filter_map(|a| {
            let ip = a.split('/').next().unwrap_or(a);
            ip.parse::<Ipv4Addr>().ok()
        })
        .collect();
    let hit = addresses
        .iter()
        .find(|ip| ranges.iter().any(|r| r.contains(**ip)));
    match (check.action, hit) {
        (CheckAction::Allow, Some(_)) | (CheckAction::Deny, None) => Ok(()),
        (CheckAction::Allow, None) => {
            Err("no local address is inside an allowed range".to_string())
        }
        (CheckAction::Deny, Some(ip)) => {
            Err(format!("local address {ip} is inside a denied range"))
        }
    }
}

fn processes(check: &ProcessCheck, peer: &Peer) -> Result<(), String> {
    let os = peer.meta.os.to_ascii_lowercase();
    for p in &check.processes {
        let path = match os.as_str() {
            "linux" => &p.linux_path,
            "darwin" | "macos" => &p.mac_path,
            "windows" => &p.windows_path,
            _ => {
                return Err(format!(
                    "process checks do not support OS {:?}",
                    peer.meta.os
                ))
            }
        };
        if path.is_empty() {
            return Err(format!(
                "no process path is given for OS {:?}",
                peer.meta.os
            ));
        }
        if !peer.meta.processes.iter().any(|running| running == path) {
            return Err(format!("process {path} is not running"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_at_least("0.26.0", "0.26.0"));
        assert!(version_at_least("0.40.0", "0.26.0"));
        assert!(!version_at_least("0.25.0", "0.26.0"));
        assert!(version_at_least("0.10.0", "0.9.0"));
        assert!(version_at_least("v1.2", "1.2.0"));
        assert!(version_at_least("0.26.0-dev", "0.26.0"));
        assert!(!version_at_least("development", "0.1.0"));
        assert!(!version_at_least("", "0.1.0"));
    }
}

#[cfg(test)]
mod paths_tests {
    use super::*;
    use crate::model::Account;

    /// Peers p1 (group src) and p2 (group dst); one policy src -> dst with
    /// checks `pc-proc` (two processes) and `pc-ver`, one policy dst -> src
    /// without checks.
    fn account() -> Account {
        serde_json::from_value(serde_json::json!({
            "id": "acc",
            "peers": [
                {"id": "p1", "name": "p1", "ip": "100.64.0.1"},
                {"id": "p2", "name": "p2", "ip": "100.64.0.2"}
            ],
            "groups": [
                {"id": "src", "name": "src", "peers": ["p1"]},
                {"id": "dst", "name": "dst", "peers": ["p2"]}
            ],
            "posture_checks": [
                {"id": "pc-proc", "name": "proc", "checks": {"process_check": {"processes": [
                    {"linux_path": "/usr/bin/b", "windows_path": "C:\\b.exe"},
                    {"linux_path": "/usr/bin/a", "mac_path": "/Applications/a"}
                ]}}},
                {"id": "pc-ver", "name": "ver", "checks": {"nb_version_check": {"min_version": "0.1.0"}}}
            ],
            "policies": [
                {"id": "pol", "name": "pol", "enabled": true,
                 "source_posture_checks": ["pc-proc", "pc-ver"],
                 "rules": [{"id": "r", "enabled": true, "action": "accept", "protocol": "all",
                            "sources": ["src"], "destinations": ["dst"]}]},
                {"id": "back", "name": "back", "enabled": true,
                 "rules": [{"id": "r2", "enabled": true, "action": "accept", "protocol": "all",
                            "sources": ["dst"], "destinations": ["src"]}]}
            ]
        }))
        .expect("test account")
    }

    #[test]
    fn sources_get_every_path_of_their_checks_sorted() {
        let account = account();
        let index = AccountIndex::new(&account);
        let p1 = index.rank("p1").expect("p1");
        assert_eq!(
            process_paths(&index, p1),
            ["/Applications/a", "/usr/bin/a", "/usr/bin/b", "C:\\b.exe"]
        );
    }

    #[test]
    fn destinations_and_disabled_policies_ask_for_nothing() {
        let mut account = account();
        let index = AccountIndex::new(&account);
        let p2 = index.rank("p2").expect("p2");
        assert!(process_paths(&index, p2).is_empty());
        account.policies[0].enabled = false;
        let index = AccountIndex::new(&account);
        let p1 = index.rank("p1").expect("p1");
        assert!(process_paths(&index, p1).is_empty());
    }
}
