//! The host side of a routing peer (Linux, privileged): IPv4 forwarding,
//! and masquerading of forwarded traffic for the routes that ask for it.
//!
//! Forwarding is switched on (`net.ipv4.ip_forward`) while this peer serves
//! a network, and the value it had is put back when it stops. Masquerading
//! lives in one nftables table of our own, [`TABLE`] (family `ip`), with a
//! NAT postrouting chain holding one rule per masqueraded prefix:
//! `ip saddr <mesh network> ip daddr <prefix> masquerade`. Each change
//! rewrites the whole table in one transaction (add, delete, add again, so
//! the delete never fails on a missing table), through the `nft` binary's
//! JSON interface ([`nftables`]); nothing outside the table is touched, and
//! the table is deleted when nothing is masqueraded or the peer goes down.
//!
//! Which forwarded packets pass is not decided here but by the engine's
//! route filter ([`meshplane_core::routing::forward`]), before the kernel
//! sees them.

use std::borrow::Cow;
use std::fs;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

/// The nftables table this peer owns.
pub const TABLE: &str = "meshplane";
const CHAIN: &str = "postrouting";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// The standard priority of source NAT.
const SRCNAT_PRIORITY: i32 = 100;

/// What this peer does as a routing peer on its host.
#[derive(Debug, Default)]
pub struct Serving {
    /// The `ip_forward` value before this peer changed it.
    saved_forward: Option<String>,
    /// The prefixes masqueraded now.
    masqueraded: Vec<Ipv4Net>,
}

impl Serving {
    /// Forwards when `serving`, and masquerades traffic from `mesh` to
    /// exactly the prefixes in `masquerade`.
    pub async fn apply(&mut self, serving: bool, mesh: Ipv4Net, masquerade: &[Ipv4Net]) {
        self.forwarding(serving);
        let mut wanted: Vec<Ipv4Net> = masquerade.iter().map(Ipv4Net::trunc).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted == self.masqueraded {
            return;
        }
        match nftables::helper::apply_ruleset_async(&table(mesh.trunc(), &wanted).to_nftables())
            .await
        {
            Ok(()) => {
                tracing::info!("masquerading {wanted:?} (nftables table {TABLE})");
                self.masqueraded = wanted;
            }
            Err(e) => tracing::warn!("nftables table {TABLE}: {e}"),
        }
    }

    /// Stops forwarding and masquerading (the peer goes down).
    pub async fn clear(&mut self, mesh: Ipv4Net) {
        self.apply(false, mesh, &[]).await;
    }

    fn forwarding(&mut self, on: bool) {
        match (on, &self.saved_forward) {
            (true, None) => match fs::read_to_string(IP_FORWARD) {
                Ok(before) => {
                    let before = before.trim().to_string();
                    if before != "1" {
                        if let Err(e) = fs::write(IP_FORWARD, "1") {
                            tracing::warn!("cannot enable IPv4 forwarding: {e}");
                            return;
                        }
                        tracing::info!("IPv4 forwarding enabled");
                    }
                    self.saved_forward = Some(before);
                }
                Err(e) => tracing::warn!("{IP_FORWARD}: {e}"),
            },
            (false, Some(before)) => {
                if before != "1" {
                    match fs::write(IP_FORWARD, before) {
                        Ok(()) => tracing::info!("IPv4 forwarding restored to {before}"),
                        Err(e) => tracing::warn!("cannot restore IPv4 forwarding: {e}"),
                    }
                }
                self.saved_forward = None;
            }
            _ => {}
        }
    }
}

/// The transaction that leaves our table masquerading exactly `prefixes`
/// (or gone, when there are none).
fn table(mesh: Ipv4Net, prefixes: &[Ipv4Net]) -> Batch<'static> {
    let mut batch = Batch::new();
    let ours = || Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        ..Table::default()
    };
    batch.add(NfListObject::Table(ours()));
    batch.delete(NfListObject::Table(ours()));
    if prefixes.is_empty() {
        return batch;
    }
    batch.add(NfListObject::Table(ours()));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(SRCNAT_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    for prefix in prefixes {
        batch.add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: TABLE.into(),
            chain: CHAIN.into(),
            expr: Cow::Owned(vec![
                address_match("saddr", mesh),
                address_match("daddr", *prefix),
                Statement::Masquerade(None),
            ]),
            ..Rule::default()
        }));
    }
    batch
}

/// `ip <field> <prefix>`.
fn address_match(field: &'static str, prefix: Ipv4Net) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: "ip".into(),
                field: field.into(),
            },
        ))),
        right: Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(prefix.network().to_string().into())),
            len: u32::from(prefix.prefix_len()),
        })),
        op: Operator::EQ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_masquerades_each_prefix_from_the_mesh() {
        let mesh: Ipv4Net = "100.64.0.0/10".parse().unwrap();
        let json =
            serde_json::to_value(table(mesh, &["10.50.0.0/24".parse().unwrap()]).to_nftables())
                .unwrap();
        let text = json.to_string();
        assert!(text.contains(r#""masquerade":null"#), "{text}");
        assert!(text.contains(r#""addr":"10.50.0.0","len":24"#), "{text}");
        assert!(text.contains(r#""addr":"100.64.0.0","len":10"#), "{text}");
        let gone = serde_json::to_value(table(mesh, &[]).to_nftables()).unwrap();
        assert_eq!(gone["nftables"].as_array().map(Vec::len), Some(2));
    }
}
