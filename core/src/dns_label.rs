//! DNS labels of peers: how a hostname becomes `<label>.<dns_domain>`.
//!
//! The label is the first label of the hostname, lower-cased, with every run
//! of characters other than `a-z0-9-` turned into one `-`, hyphens trimmed
//! from both ends, at most 58 characters (`peer` when nothing is left). When
//! the label is taken — and always for ephemeral peers, whose names churn —
//! the peer's address disambiguates it: `<label>-<3rd octet>-<4th octet>`.
//! Should even that be taken (another peer's hostname can literally be
//! `web-1-2`), a counter is appended: `-2`, `-3`, ... The result is always a
//! valid DNS label of at most 63 characters.

use std::net::Ipv4Addr;

/// Longest base label, as in the reference.
pub const MAX_LABEL_LEN: usize = 58;
/// Longest DNS label.
const DNS_LABEL_LIMIT: usize = 63;
/// Label used when a hostname has no usable characters.
const FALLBACK: &str = "peer";

/// The base label of a hostname, before collision handling.
pub fn base_label(hostname: &str) -> String {
    let first = hostname.split('.').next().unwrap_or("");
    let mut out = String::with_capacity(first.len());
    let mut in_run = false;
    for c in first.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let trimmed = clip(out.trim_matches('-'), MAX_LABEL_LEN);
    if trimmed.is_empty() {
        FALLBACK.to_string()
    } else {
        trimmed
    }
}

/// `s` cut to at most `max` characters (all ASCII here), without a trailing
/// hyphen.
fn clip(s: &str, max: usize) -> String {
    s[..s.len().min(max)].trim_end_matches('-').to_string()
}

/// `base` with `suffix` appended, shortened so the result fits a DNS label.
fn with_suffix(base: &str, suffix: &str) -> String {
    let room = DNS_LABEL_LIMIT - suffix.len();
    let head = clip(base, room);
    let head = if head.is_empty() { FALLBACK } else { &head };
    format!("{head}{suffix}")
}

/// The label for a peer with `hostname` and address `ip`; `taken` says
/// whether a label is already used in the account.
pub fn label_for(
    hostname: &str,
    ip: Ipv4Addr,
    ephemeral: bool,
    taken: impl Fn(&str) -> bool,
) -> String {
    let base = base_label(hostname);
    if !ephemeral && !taken(&base) {
        return base;
    }
    let [_, _, c, d] = ip.octets();
    let with_ip = with_suffix(&base, &format!("-{c}-{d}"));
    if !taken(&with_ip) {
        return with_ip;
    }
    (2u32..)
        .map(|n| with_suffix(&with_ip, &format!("-{n}")))
        .find(|l| !taken(l))
        .unwrap_or(with_ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::is_dns_label;

    #[test]
    fn base_labels() {
        assert_eq!(base_label("Laptop.local"), "laptop");
        assert_eq!(base_label("My Laptop (2)"), "my-laptop-2");
        assert_eq!(base_label("__"), "peer");
        assert_eq!(base_label("äb"), "b");
        assert_eq!(base_label(&"x".repeat(80)).len(), 58);
    }

    #[test]
    fn collisions_use_the_address_then_a_counter() {
        let ip = Ipv4Addr::new(100, 64, 1, 2);
        assert_eq!(label_for("web", ip, false, |_| false), "web");
        assert_eq!(label_for("web", ip, false, |l| l == "web"), "web-1-2");
        assert_eq!(label_for("web", ip, true, |_| false), "web-1-2");
        assert_eq!(
            label_for("web", ip, false, |l| l == "web" || l == "web-1-2"),
            "web-1-2-2"
        );
        let long = label_for(&"y".repeat(70), Ipv4Addr::new(1, 1, 255, 255), true, |_| {
            false
        });
        assert!(is_dns_label(&long) && long.len() <= 63, "{long}");
    }
}
