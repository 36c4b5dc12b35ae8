//! Which routed packets pass: a routing peer forwarding between the tunnel
//! and its local network, and a peer using a route.
//!
//! A routing peer's map carries route firewall rules
//! ([`crate::netmap::owned::RouteFirewallRule`]): traffic from the rule's
//! source ranges to its destination prefix, for a protocol and ports, is
//! accepted or dropped. The [`RouteFilter`] applies them like the peer
//! firewall ([`crate::firewall`]) applies peer rules: a matching drop rule
//! beats any accept rule, no matching rule drops, and a packet that a rule
//! accepts opens a flow whose packets in both directions pass until it has
//! been idle for its protocol's timeout; new rules close the flows whose
//! opening packet they no longer accept. The flow table and the per-protocol
//! port intervals are the firewall's own.
//!
//! A packet is named by its addresses, not by a direction: the routing
//! peer's opener comes in from the tunnel (from a peer to its network), its
//! reply goes out; a peer using a route opens flows outbound (from its mesh
//! IP to the routed prefix, the rule the daemon writes for each route it
//! uses) and lets only their replies in.
//!
//! Destinations a rule names are the only ones that pass: a packet for a
//! prefix no rule covers is dropped, whatever its source.
//!
//! ```
//! use meshplane_core::firewall::{Transport, Verdict};
//! use meshplane_core::model::{Action, Protocol};
//! use meshplane_core::routing::forward::{Packet, RouteFilter, RouteRule};
//! use meshplane_core::Timestamp;
//!
//! let mut filter = RouteFilter::new(&[RouteRule {
//!     source_ranges: vec!["100.64.0.1/32".parse().unwrap()],
//!     destination: "10.50.0.0/24".parse().unwrap(),
//!     action: Action::Accept,
//!     protocol: Protocol::Tcp,
//!     port: Some(80),
//!     port_range: None,
//! }]);
//! let now = Timestamp::from_millis(0);
//! let syn = Packet {
//!     src: "100.64.0.1".parse().unwrap(),
//!     dst: "10.50.0.2".parse().unwrap(),
//!     transport: Transport::Tcp,
//!     src_port: 40000,
//!     dst_port: 80,
//! };
//! assert_eq!(filter.check(&syn, now).verdict, Verdict::Accept);
//! assert_eq!(filter.check(&syn.reply(), now).verdict, Verdict::Accept);
//! let ssh = Packet { dst_port: 22, ..syn };
//! assert_eq!(filter.check(&ssh, now).verdict, Verdict::Drop);
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::firewall::{Bucket, Decide, Decision, Flowing, Reason, Stateful, Transport, Verdict};
use crate::model::{Action, PortRange, Protocol};
use crate::netmap::owned::RouteFirewallRule;

/// The part of a route firewall rule that decides packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    /// Who may send: `0.0.0.0/0`, or the permitted peers' /32s.
    pub source_ranges: Vec<Ipv4Net>,
    /// The routed prefix the rule is about.
    pub destination: Ipv4Net,
    pub action: Action,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

impl RouteRule {
    /// The rule of a map; `None` when its destination is not an IPv4
    /// prefix (the map keeps the account's text as it is).
    pub fn from_map(r: &RouteFirewallRule) -> Option<RouteRule> {
        Some(RouteRule {
            source_ranges: r.source_ranges.clone(),
            destination: r.destination.parse::<Ipv4Net>().ok()?.trunc(),
            action: r.action,
            protocol: r.protocol,
            port: r.port,
            port_range: r.port_range,
        })
    }

    /// The rule a peer using a route writes for it: everything from its
    /// own mesh IP to the prefix (the routing peer enforces the account's
    /// rules; this one lets the replies back in).
    pub fn outbound(own: Ipv4Addr, destination: Ipv4Net) -> RouteRule {
        RouteRule {
            source_ranges: vec![Ipv4Net::from(own)],
            destination,
            action: Action::Accept,
            protocol: Protocol::All,
            port: None,
            port_range: None,
        }
    }
}

/// The summary of one routed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub transport: Transport,
    /// For ICMP echo both ports carry the identifier; otherwise 0 without
    /// ports.
    #[serde(default)]
    pub src_port: u16,
    #[serde(default)]
    pub dst_port: u16,
}

impl Packet {
    /// The packet that answers this one.
    pub fn reply(&self) -> Packet {
        Packet {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            transport: self.transport,
        }
    }

    /// The flow, the same for a packet and its reply: the lower endpoint
    /// first.
    fn flow(&self) -> FlowKey {
        let a = (self.src, self.src_port);
        let b = (self.dst, self.dst_port);
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        FlowKey {
            low,
            high,
            transport: self.transport,
        }
    }
}

/// A routed flow: its two endpoints, lower first, and its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    low: (Ipv4Addr, u16),
    high: (Ipv4Addr, u16),
    transport: Transport,
}

/// Rules sharing a destination and sources, merged per protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    destination: Ipv4Net,
    /// Sorted.
    sources: Vec<Ipv4Net>,
    ports: Bucket,
}

/// Route firewall rules compiled for per-packet lookups (stateless).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRules {
    groups: Vec<Group>,
}

impl RouteRules {
    /// Compiles rules; their order does not matter.
    pub fn new(rules: &[RouteRule]) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        for r in rules {
            let mut sources: Vec<Ipv4Net> = r.source_ranges.iter().map(Ipv4Net::trunc).collect();
            sources.sort_unstable();
            sources.dedup();
            let destination = r.destination.trunc();
            let i = match groups
                .iter()
                .position(|g| g.destination == destination && g.sources == sources)
            {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        destination,
                        sources,
                        ports: Bucket::default(),
                    });
                    groups.len() - 1
                }
            };
            groups[i]
                .ports
                .add_parts(r.protocol, r.port, r.port_range, r.action);
        }
        for g in &mut groups {
            g.ports.compile();
        }
        RouteRules { groups }
    }

    /// The rules' decision on a packet, without flows.
    pub fn decide(&self, p: &Packet) -> Decision {
        let (mut drop, mut accept) = (false, false);
        for g in &self.groups {
            if g.destination.contains(&p.dst) && g.sources.iter().any(|s| s.contains(&p.src)) {
                let (d, a) = g.ports.matches(p.transport, p.dst_port);
                drop |= d;
                accept |= a;
            }
        }
        let (verdict, reason) = if drop {
            (Verdict::Drop, Reason::DropRule)
        } else if accept {
            (Verdict::Accept, Reason::Rule)
        } else {
            (Verdict::Drop, Reason::NoRule)
        };
        Decision { verdict, reason }
    }

    /// Whether no rule is left (nothing routed passes).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

impl Decide for RouteRules {
    type Rule = RouteRule;
    type Packet = Packet;

    fn compile(rules: &[RouteRule]) -> Self {
        RouteRules::new(rules)
    }

    fn decide(&self, packet: &Packet) -> Decision {
        RouteRules::decide(self, packet)
    }
}

impl Flowing for Packet {
    type Key = FlowKey;

    fn flow(&self) -> FlowKey {
        Packet::flow(self)
    }

    fn transport(&self) -> Transport {
        self.transport
    }
}

/// Compiled route rules plus the flows they opened: the routing peer's
/// filter, stateful like the peer firewall.
pub type RouteFilter = Stateful<RouteRules>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    const A: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
    const C: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 3);
    const H: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 2);

    fn rule(sources: &[&str], action: Action, protocol: Protocol, port: Option<u16>) -> RouteRule {
        RouteRule {
            source_ranges: sources.iter().map(|s| s.parse().unwrap()).collect(),
            destination: "10.50.0.0/24".parse().unwrap(),
            action,
            protocol,
            port,
            port_range: None,
        }
    }

    fn pkt(src: Ipv4Addr, dst: Ipv4Addr, transport: Transport, dst_port: u16) -> Packet {
        Packet {
            src,
            dst,
            transport,
            src_port: 40000,
            dst_port,
        }
    }

    #[test]
    fn sources_destination_and_ports_must_match() {
        let f = RouteRules::new(&[rule(
            &["100.64.0.1/32"],
            Action::Accept,
            Protocol::Tcp,
            Some(80),
        )]);
        for (p, v) in [
            (pkt(A, H, Transport::Tcp, 80), Verdict::Accept),
            (pkt(C, H, Transport::Tcp, 80), Verdict::Drop),
            (pkt(A, H, Transport::Tcp, 22), Verdict::Drop),
            (pkt(A, H, Transport::Udp, 80), Verdict::Drop),
            (
                pkt(A, Ipv4Addr::new(10, 51, 0, 2), Transport::Tcp, 80),
                Verdict::Drop,
            ),
        ] {
            assert_eq!(f.decide(&p).verdict, v, "{p:?}");
        }
    }

    #[test]
    fn drop_beats_accept_and_icmp_has_no_port() {
        let f = RouteRules::new(&[
            rule(&["0.0.0.0/0"], Action::Accept, Protocol::All, None),
            rule(&["100.64.0.1/32"], Action::Drop, Protocol::Tcp, Some(22)),
        ]);
        assert_eq!(
            f.decide(&pkt(A, H, Transport::Tcp, 22)).reason,
            Reason::DropRule
        );
        assert_eq!(
            f.decide(&pkt(C, H, Transport::Tcp, 22)).reason,
            Reason::Rule
        );
        assert_eq!(
            f.decide(&pkt(A, H, Transport::Icmp, 0)).reason,
            Reason::Rule
        );
    }

    #[test]
    fn replies_pass_until_the_rules_change() {
        let allow = [rule(&["0.0.0.0/0"], Action::Accept, Protocol::Icmp, None)];
        let mut f = RouteFilter::new(&allow);
        let now = Timestamp::from_millis(0);
        let ping = Packet {
            src: A,
            dst: H,
            transport: Transport::Icmp,
            src_port: 7,
            dst_port: 7,
        };
        // An unsolicited packet from the network is no reply.
        assert_eq!(f.check(&ping.reply(), now).verdict, Verdict::Drop);
        assert_eq!(f.check(&ping, now).reason, Reason::Rule);
        assert_eq!(f.check(&ping.reply(), now).reason, Reason::Flow);
        f.set_rules(&allow);
        assert_eq!(f.flow_count(), 1);
        f.set_rules(&[]);
        assert_eq!(f.flow_count(), 0);
        assert_eq!(f.check(&ping.reply(), now).verdict, Verdict::Drop);
        let late = now + Transport::Icmp.idle_timeout();
        f.set_rules(&allow);
        f.check(&ping, now);
        f.expire(late);
        assert_eq!(f.flow_count(), 0);
    }

    #[test]
    fn the_outbound_rule_lets_only_replies_in() {
        let mut f = RouteFilter::new(&[RouteRule::outbound(A, "10.50.0.0/24".parse().unwrap())]);
        let now = Timestamp::from_millis(0);
        let syn = pkt(A, H, Transport::Tcp, 80);
        assert_eq!(
            f.check(&pkt(H, A, Transport::Tcp, 22), now).verdict,
            Verdict::Drop
        );
        assert_eq!(f.check(&syn, now).verdict, Verdict::Accept);
        assert_eq!(f.check(&syn.reply(), now).verdict, Verdict::Accept);
    }

    #[test]
    fn map_rules_convert() {
        let r = RouteFirewallRule {
            route_id: "r".into(),
            source_ranges: vec!["100.64.0.1/32".parse().unwrap()],
            action: Action::Accept,
            destination: "10.50.0.7/24".into(),
            domains: vec![],
            protocol: Protocol::All,
            port: None,
            port_range: None,
        };
        let rule = RouteRule::from_map(&r).unwrap();
        assert_eq!(rule.destination, "10.50.0.0/24".parse::<Ipv4Net>().unwrap());
        let bad = RouteFirewallRule {
            destination: "example.com".into(),
            ..r
        };
        assert!(RouteRule::from_map(&bad).is_none());
    }
}
