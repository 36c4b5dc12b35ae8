//! Per-packet firewall decisions for a peer's data plane.
//!
//! A peer's network map carries its firewall rules
//! ([`crate::netmap::owned::FirewallRule`]); the data plane asks this
//! module, for every packet that enters or leaves the tunnel, whether to pass
//! it. The decision lives here rather than in the daemon so that every shell
//! (and the conformance vectors) applies exactly the same semantics:
//!
//! - a rule matches a packet when its direction, remote peer (`0.0.0.0` is
//!   every peer), protocol (`all` is every protocol) and port agree; for an
//!   inbound packet the remote peer is the source, for an outbound one the
//!   destination; the port is always the packet's destination port;
//! - ICMP (and any protocol other than TCP and UDP) has no port: a rule for
//!   ICMP or for all protocols matches it, whatever port the rule names;
//! - a matching drop rule beats any matching accept rule;
//! - no matching rule drops the packet.
//!
//! Rules alone would break every reply: the map gives the initiating side an
//! OUT rule and the responding side an IN rule, never the reverse. So the
//! [`Firewall`] is stateful like NetBird's own packet filter: a packet that a
//! rule accepts opens a flow, and packets of that flow in the opposite
//! direction pass until the flow has been idle for its protocol's timeout.
//! When the rules change ([`Firewall::set_rules`]) a flow survives only if
//! the packet that opened it would still be accepted, so revoking a policy
//! cuts running connections too.
//!
//! Cost: rules are compiled once per map ([`RuleSet::new`]) into one table
//! per direction, keyed by remote peer IP in a sorted vector, each entry
//! holding per protocol the merged, sorted port intervals of its accept and
//! drop rules. A decision is therefore two binary searches over peers plus
//! two over port intervals (usually one interval), independent of how many
//! rules the map holds; a tracked flow is one hash lookup. Time comes in as
//! an argument, as everywhere in the core.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use meshplane_core::firewall::{Firewall, Packet, Rule, Transport, Verdict};
//! use meshplane_core::model::{Action, Protocol};
//! use meshplane_core::netmap::firewall::Direction;
//! use meshplane_core::Timestamp;
//!
//! let a = Ipv4Addr::new(100, 64, 0, 1);
//! // The map of the listening peer: TCP 8080 may come in from anyone.
//! let mut fw = Firewall::new(&[Rule {
//!     peer_ip: Ipv4Addr::UNSPECIFIED,
//!     direction: Direction::In,
//!     action: Action::Accept,
//!     protocol: Protocol::Tcp,
//!     port: Some(8080),
//!     port_range: None,
//! }]);
//! let now = Timestamp::from_millis(0);
//! let syn = Packet { direction: Direction::In, remote: a, transport: Transport::Tcp, src_port: 40000, dst_port: 8080 };
//! assert_eq!(fw.check(&syn, now).verdict, Verdict::Accept);
//! // The reply leaves through the flow the SYN opened.
//! let reply = Packet { direction: Direction::Out, remote: a, transport: Transport::Tcp, src_port: 8080, dst_port: 40000 };
//! assert_eq!(fw.check(&reply, now).verdict, Verdict::Accept);
//! // Port 22 is not allowed.
//! let ssh = Packet { dst_port: 22, ..syn };
//! assert_eq!(fw.check(&ssh, now).verdict, Verdict::Drop);
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Action, PortRange, Protocol};
use crate::netmap::firewall::Direction;
use crate::netmap::owned::FirewallRule;
use crate::time::{Duration, Timestamp};

/// The part of a map's firewall rule that decides packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The remote peer, or `0.0.0.0` for every peer.
    pub peer_ip: Ipv4Addr,
    #[serde(deserialize_with = "direction_from_str")]
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

impl From<&FirewallRule> for Rule {
    fn from(r: &FirewallRule) -> Self {
        Rule {
            peer_ip: r.peer_ip,
            direction: r.direction,
            action: r.action,
            protocol: r.protocol,
            port: r.port,
            port_range: r.port_range,
        }
    }
}

/// Reads a direction in the map's spelling (`in` / `out`).
fn direction_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
    match String::deserialize(d)?.as_str() {
        "in" => Ok(Direction::In),
        "out" => Ok(Direction::Out),
        other => Err(serde::de::Error::unknown_variant(other, &["in", "out"])),
    }
}

/// A packet's transport protocol as the firewall sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
    Icmp,
    /// Any other IP protocol; only rules for all protocols match it.
    Other,
}

impl Transport {
    const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Udp,
        Transport::Icmp,
        Transport::Other,
    ];

    fn slot(self) -> usize {
        self as usize
    }

    pub(crate) fn has_ports(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Udp)
    }

    /// How long a flow of this protocol stays open without packets (also
    /// when a flow log reports it ended).
    pub fn idle_timeout(self) -> Duration {
        match self {
            Transport::Tcp => Duration::from_secs(300),
            Transport::Udp => Duration::from_secs(180),
            Transport::Icmp => Duration::from_secs(30),
            Transport::Other => Duration::from_secs(60),
        }
    }
}

/// The summary of one packet that the decision needs.
///
/// For TCP and UDP the ports are the packet's own; for ICMP echo requests and
/// replies both ports carry the echo identifier (so a reply matches the
/// request's flow); otherwise both are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// `in`: from the tunnel to this peer; `out`: from this peer into the
    /// tunnel.
    #[serde(deserialize_with = "direction_from_str")]
    pub direction: Direction,
    /// The other end's mesh IP: the source of an inbound packet, the
    /// destination of an outbound one.
    pub remote: Ipv4Addr,
    pub transport: Transport,
    #[serde(default)]
    pub src_port: u16,
    #[serde(default)]
    pub dst_port: u16,
}

impl Packet {
    /// The flow this packet belongs to, the same key in both directions.
    pub fn flow(&self) -> FlowKey {
        let (local_port, remote_port) = match self.direction {
            Direction::In => (self.dst_port, self.src_port),
            Direction::Out => (self.src_port, self.dst_port),
        };
        FlowKey {
            remote: self.remote,
            transport: self.transport,
            local_port,
            remote_port,
        }
    }
}

/// Whether a packet passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
}

/// Why a packet got its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// An accept rule matched and no drop rule did.
    Rule,
    /// A drop rule matched.
    DropRule,
    /// No rule matched.
    NoRule,
    /// The packet belongs to a flow an accepted packet opened.
    Flow,
}

/// A verdict with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
}

/// Sorted, merged, inclusive port intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ports(Vec<(u16, u16)>);

impl Ports {
    fn add(&mut self, start: u16, end: u16) {
        if start <= end {
            self.0.push((start, end));
        }
    }

    /// Sorts and merges overlapping or adjacent intervals.
    fn compile(&mut self) {
        self.0.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match merged.last_mut() {
                Some(last) if u32::from(s) <= u32::from(last.1) + 1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.0 = merged;
    }

    fn contains(&self, port: u16) -> bool {
        let i = self.0.partition_point(|&(s, _)| s <= port);
        i > 0 && self.0[i - 1].1 >= port
    }
}

/// The accept and drop ports of one protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Verdicts {
    accept: Ports,
    drop: Ports,
}

/// What the rules towards one remote (or towards every remote) say, per
/// protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bucket([Verdicts; 4]);

impl Bucket {
    fn add(&mut self, rule: &Rule) {
        self.add_parts(rule.protocol, rule.port, rule.port_range, rule.action);
    }

    /// Adds what one rule says about a protocol and its ports.
    pub(crate) fn add_parts(
        &mut self,
        protocol: Protocol,
        port: Option<u16>,
        port_range: Option<PortRange>,
        action: Action,
    ) {
        let (start, end) = match (port, port_range) {
            (Some(p), _) => (p, p),
            (None, Some(r)) => (clamp_port(r.start), clamp_port(r.end)),
            (None, None) => (0, u16::MAX),
        };
        let protocols: &[Transport] = match protocol.on_wire() {
            Protocol::Tcp | Protocol::NetbirdSsh => &[Transport::Tcp],
            Protocol::Udp => &[Transport::Udp],
            Protocol::Icmp => &[Transport::Icmp],
            Protocol::All => &Transport::ALL,
        };
        for &t in protocols {
            // Ports mean nothing for a rule that is not TCP or UDP only.
            let (s, e) = if t.has_ports() && protocol.has_ports() {
                (start, end)
            } else {
                (0, u16::MAX)
            };
            let v = &mut self.0[t.slot()];
            match action {
                Action::Accept => v.accept.add(s, e),
                Action::Drop => v.drop.add(s, e),
            }
        }
    }

    /// Whether a drop rule and whether an accept rule of this bucket match
    /// a packet of `transport` to `dst_port`.
    pub(crate) fn matches(&self, transport: Transport, dst_port: u16) -> (bool, bool) {
        let port = if transport.has_ports() { dst_port } else { 0 };
        let v = self.verdicts(transport);
        (v.drop.contains(port), v.accept.contains(port))
    }

    pub(crate) fn compile(&mut self) {
        for v in &mut self.0 {
            v.accept.compile();
            v.drop.compile();
        }
    }

    /// The accept and drop ports of one protocol. Protocols without ports
    /// are looked up at port 0, which their rules always cover.
    fn verdicts(&self, transport: Transport) -> &Verdicts {
        &self.0[transport.slot()]
    }
}

fn clamp_port(p: u32) -> u16 {
    u16::try_from(p).unwrap_or(u16::MAX)
}

/// The rules of one direction: per remote peer, and for every peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Table {
    /// Sorted by IP.
    peers: Vec<(Ipv4Addr, Bucket)>,
    any: Bucket,
}

impl Table {
    fn bucket(&self, remote: Ipv4Addr) -> Option<&Bucket> {
        self.peers
            .binary_search_by_key(&remote, |(ip, _)| *ip)
            .ok()
            .map(|i| &self.peers[i].1)
    }
}

/// A peer's firewall rules compiled for per-packet lookups (stateless).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    inbound: Table,
    outbound: Table,
}

impl RuleSet {
    /// Compiles rules; their order does not matter.
    pub fn new(rules: &[Rule]) -> Self {
        let mut set = RuleSet::default();
        let mut peers: [std::collections::BTreeMap<Ipv4Addr, Bucket>; 2] = Default::default();
        for rule in rules {
            let (table, peers) = match rule.direction {
                Direction::In => (&mut set.inbound, &mut peers[0]),
                Direction::Out => (&mut set.outbound, &mut peers[1]),
            };
            if rule.peer_ip.is_unspecified() {
                table.any.add(rule);
            } else {
                peers.entry(rule.peer_ip).or_default().add(rule);
            }
        }
        for (table, peers) in [&mut set.inbound, &mut set.outbound].into_iter().zip(peers) {
            table.any.compile();
            table.peers = peers
                .into_iter()
                .map(|(ip, mut b)| {
                    b.compile();
                    (ip, b)
                })
                .collect();
        }
        set
    }

    /// The rules' decision on a packet, without flows.
    pub fn decide(&self, packet: &Packet) -> Decision {
        let table = match packet.direction {
            Direction::In => &self.inbound,
            Direction::Out => &self.outbound,
        };
        let port = if packet.transport.has_ports() {
            packet.dst_port
        } else {
            0
        };
        let buckets = [table.bucket(packet.remote), Some(&table.any)];
        let hit = |pick: fn(&Verdicts) -> &Ports| {
            buckets
                .iter()
                .flatten()
                .any(|b| pick(b.verdicts(packet.transport)).contains(port))
        };
        let (verdict, reason) = if hit(|v| &v.drop) {
            (Verdict::Drop, Reason::DropRule)
        } else if hit(|v| &v.accept) {
            (Verdict::Accept, Reason::Rule)
        } else {
            (Verdict::Drop, Reason::NoRule)
        };
        Decision { verdict, reason }
    }
}

/// A flow, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub remote: Ipv4Addr,
    pub transport: Transport,
    pub local_port: u16,
    pub remote_port: u16,
}

/// An open flow: the packet that opened it and when it lapses.
#[derive(Debug, Clone, Copy)]
struct Flow<P> {
    opener: P,
    expires: Timestamp,
}

/// At most this many flows are tracked; past it, a newly accepted packet
/// still passes but opens no flow (its replies then need a rule of their
/// own), so a flood cannot grow memory without bound.
pub const MAX_FLOWS: usize = 65_536;

/// Open flows keyed by `K`, each remembering the packet `P` that opened it
/// (so that new rules can re-check it); shared by the peer firewall and the
/// routing peer's forwarding filter.
#[derive(Debug, Clone)]
pub(crate) struct FlowTable<K, P> {
    flows: HashMap<K, Flow<P>>,
}

impl<K, P> Default for FlowTable<K, P> {
    fn default() -> Self {
        FlowTable {
            flows: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, P> FlowTable<K, P> {
    /// Whether `key` is an open flow at `now`; if so it stays open for
    /// another `timeout`.
    pub(crate) fn refresh(&mut self, key: &K, now: Timestamp, timeout: Duration) -> bool {
        match self.flows.get_mut(key) {
            Some(flow) if flow.expires > now => {
                flow.expires = now + timeout;
                true
            }
            _ => false,
        }
    }

    /// Opens (or reopens) `key` for `timeout`, unless the table is full of
    /// live flows.
    pub(crate) fn open(&mut self, key: K, opener: P, now: Timestamp, timeout: Duration) {
        if self.flows.len() >= MAX_FLOWS && !self.flows.contains_key(&key) {
            self.expire(now);
        }
        if self.flows.len() < MAX_FLOWS || self.flows.contains_key(&key) {
            self.flows.insert(
                key,
                Flow {
                    opener,
                    expires: now + timeout,
                },
            );
        }
    }

    /// Closes the flows whose opening packet `keep` refuses.
    pub(crate) fn retain_openers(&mut self, keep: impl Fn(&P) -> bool) {
        self.flows.retain(|_, f| keep(&f.opener));
    }

    /// Forgets flows idle past their timeout.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        self.flows.retain(|_, f| f.expires > now);
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }
}

/// A packet summary a stateful filter follows flows of.
pub trait Flowing: Copy + std::fmt::Debug {
    /// Its flow, the same for the packet and its replies.
    type Key: Copy + Eq + Hash + std::fmt::Debug;
    fn flow(&self) -> Self::Key;
    fn transport(&self) -> Transport;
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

/// A rule set that decides packets on its own, with no flow state: the
/// peer firewall's [`RuleSet`] and the routing peer's route rules
/// ([`crate::routing::forward::RouteRules`]).
pub trait Decide {
    /// The rules it is compiled from.
    type Rule;
    /// The packets it decides.
    type Packet: Flowing;
    /// Compiles `rules` for per-packet lookups.
    fn compile(rules: &[Self::Rule]) -> Self;
    /// The rules' decision on a packet, without flows.
    fn decide(&self, packet: &Self::Packet) -> Decision;
}

impl Decide for RuleSet {
    type Rule = Rule;
    type Packet = Packet;

    fn compile(rules: &[Rule]) -> Self {
        RuleSet::new(rules)
    }

    fn decide(&self, packet: &Packet) -> Decision {
        RuleSet::decide(self, packet)
    }
}

/// Compiled rules plus the flows they opened: a stateful filter. A packet
/// that the rules accept opens a flow, and the flow's packets both ways
/// pass until it has been idle for its protocol's timeout.
#[derive(Debug, Clone)]
pub struct Stateful<R: Decide> {
    rules: R,
    flows: FlowTable<<R::Packet as Flowing>::Key, R::Packet>,
}

impl<R: Decide + Default> Default for Stateful<R> {
    fn default() -> Self {
        Stateful {
            rules: R::default(),
            flows: FlowTable::default(),
        }
    }
}

/// The data plane's peer firewall.
pub type Firewall = Stateful<RuleSet>;

impl<R: Decide> Stateful<R> {
    pub fn new(rules: &[R::Rule]) -> Self {
        Stateful {
            rules: R::compile(rules),
            flows: FlowTable::default(),
        }
    }

    /// Replaces the rules (a new map arrived). Flows whose opening packet
    /// the new rules no longer accept are closed.
    pub fn set_rules(&mut self, rules: &[R::Rule]) {
        self.rules = R::compile(rules);
        let set = &self.rules;
        self.flows
            .retain_openers(|opener| set.decide(opener).verdict == Verdict::Accept);
    }

    /// Decides one packet at `now`, opening or refreshing its flow when it
    /// passes.
    pub fn check(&mut self, packet: &R::Packet, now: Timestamp) -> Decision {
        let key = packet.flow();
        let timeout = packet.transport().idle_timeout();
        if self.flows.refresh(&key, now, timeout) {
            return Decision {
                verdict: Verdict::Accept,
                reason: Reason::Flow,
            };
        }
        let decision = self.rules.decide(packet);
        if decision.verdict == Verdict::Accept {
            self.flows.open(key, *packet, now, timeout);
        }
        decision
    }

    /// Forgets flows idle past their timeout; call it now and then (the
    /// data plane does on its timer tick) to keep the table small.
    pub fn expire(&mut self, now: Timestamp) {
        self.flows.expire(now);
    }

    /// How many flows are open.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

    fn rule(peer_ip: Ipv4Addr, direction: Direction, action: Action, protocol: Protocol) -> Rule {
        Rule {
            peer_ip,
            direction,
            action,
            protocol,
            port: None,
            port_range: None,
        }
    }

    fn pkt(direction: Direction, remote: Ipv4Addr, transport: Transport, dst_port: u16) -> Packet {
        Packet {
            direction,
            remote,
            transport,
            src_port: 50000,
            dst_port,
        }
    }

    fn with_port(r: Rule, port: u16) -> Rule {
        Rule {
            port: Some(port),
            ..r
        }
    }

    fn verdict(rules: &[Rule], p: &Packet) -> (Verdict, Reason) {
        let d = RuleSet::new(rules).decide(p);
        (d.verdict, d.reason)
    }

    #[test]
    fn no_rule_drops() {
        assert_eq!(
            verdict(&[], &pkt(Direction::In, A, Transport::Tcp, 80)),
            (Verdict::Drop, Reason::NoRule)
        );
    }

    #[test]
    fn drop_beats_accept_whatever_the_order() {
        let accept = rule(
            Ipv4Addr::UNSPECIFIED,
            Direction::In,
            Action::Accept,
            Protocol::All,
        );
        let drop = with_port(rule(A, Direction::In, Action::Drop, Protocol::Tcp), 22);
        for rules in [[accept, drop], [drop, accept]] {
            assert_eq!(
                verdict(&rules, &pkt(Direction::In, A, Transport::Tcp, 22)),
                (Verdict::Drop, Reason::DropRule)
            );
            assert_eq!(
                verdict(&rules, &pkt(Direction::In, A, Transport::Tcp, 23)),
                (Verdict::Accept, Reason::Rule)
            );
            assert_eq!(
                verdict(&rules, &pkt(Direction::In, B, Transport::Tcp, 22)),
                (Verdict::Accept, Reason::Rule)
            );
        }
    }

    #[test]
    fn direction_and_peer_must_agree() {
        let r = [with_port(
            rule(A, Direction::In, Action::Accept, Protocol::Tcp),
            8080,
        )];
        for (p, expected) in [
            (pkt(Direction::In, A, Transport::Tcp, 8080), Verdict::Accept),
            (pkt(Direction::Out, A, Transport::Tcp, 8080), Verdict::Drop),
            (pkt(Direction::In, B, Transport::Tcp, 8080), Verdict::Drop),
            (pkt(Direction::In, A, Transport::Udp, 8080), Verdict::Drop),
        ] {
            assert_eq!(verdict(&r, &p).0, expected, "{p:?}");
        }
    }

    #[test]
    fn ranges_merge_and_bound() {
        let r = [
            Rule {
                port_range: Some(PortRange {
                    start: 1000,
                    end: 2000,
                }),
                ..rule(A, Direction::In, Action::Accept, Protocol::Udp)
            },
            Rule {
                port_range: Some(PortRange {
                    start: 2001,
                    end: 3000,
                }),
                ..rule(A, Direction::In, Action::Accept, Protocol::Udp)
            },
        ];
        let set = RuleSet::new(&r);
        assert_eq!(
            set.inbound.peers[0].1 .0[1].accept,
            Ports(vec![(1000, 3000)])
        );
        for (port, v) in [
            (999, Verdict::Drop),
            (1000, Verdict::Accept),
            (2500, Verdict::Accept),
            (3000, Verdict::Accept),
            (3001, Verdict::Drop),
        ] {
            assert_eq!(
                set.decide(&pkt(Direction::In, A, Transport::Udp, port))
                    .verdict,
                v,
                "{port}"
            );
        }
    }

    #[test]
    fn icmp_has_no_port() {
        let tcp_80 = with_port(rule(A, Direction::In, Action::Accept, Protocol::Tcp), 80);
        let icmp_80 = with_port(rule(A, Direction::In, Action::Accept, Protocol::Icmp), 80);
        let all = rule(A, Direction::In, Action::Accept, Protocol::All);
        for (r, p, expected) in [
            (
                tcp_80,
                pkt(Direction::In, A, Transport::Icmp, 80),
                Verdict::Drop,
            ),
            (
                icmp_80,
                pkt(Direction::In, A, Transport::Icmp, 7),
                Verdict::Accept,
            ),
            (
                all,
                pkt(Direction::In, A, Transport::Other, 0),
                Verdict::Accept,
            ),
        ] {
            assert_eq!(verdict(&[r], &p).0, expected, "{r:?} {p:?}");
        }
    }

    #[test]
    fn replies_follow_the_flow_until_idle() {
        let mut fw = Firewall::new(&[with_port(
            rule(B, Direction::Out, Action::Accept, Protocol::Tcp),
            8080,
        )]);
        let t0 = Timestamp::from_millis(1_000);
        let syn = pkt(Direction::Out, B, Transport::Tcp, 8080);
        let reply = Packet {
            direction: Direction::In,
            remote: B,
            transport: Transport::Tcp,
            src_port: 8080,
            dst_port: 50000,
        };
        assert_eq!(fw.check(&reply, t0).verdict, Verdict::Drop);
        assert_eq!(fw.check(&syn, t0).reason, Reason::Rule);
        assert_eq!(fw.check(&reply, t0).reason, Reason::Flow);
        let late = t0 + Transport::Tcp.idle_timeout();
        assert_eq!(fw.check(&reply, late).verdict, Verdict::Drop);
        fw.expire(late);
        assert_eq!(fw.flow_count(), 0);
    }

    #[test]
    fn new_rules_close_flows_they_no_longer_allow() {
        let allow = [rule(B, Direction::Out, Action::Accept, Protocol::All)];
        let mut fw = Firewall::new(&allow);
        let t0 = Timestamp::from_millis(0);
        let ping = Packet {
            direction: Direction::Out,
            remote: B,
            transport: Transport::Icmp,
            src_port: 7,
            dst_port: 7,
        };
        let pong = Packet {
            direction: Direction::In,
            ..ping
        };
        fw.check(&ping, t0);
        fw.set_rules(&allow);
        assert_eq!(fw.check(&pong, t0).reason, Reason::Flow);
        fw.set_rules(&[]);
        assert_eq!(fw.flow_count(), 0);
        assert_eq!(fw.check(&pong, t0).verdict, Verdict::Drop);
    }

    #[test]
    fn flows_are_bounded() {
        let mut fw = Firewall::new(&[rule(
            Ipv4Addr::UNSPECIFIED,
            Direction::Out,
            Action::Accept,
            Protocol::Udp,
        )]);
        let t0 = Timestamp::from_millis(0);
        for i in 0..=MAX_FLOWS {
            let p = Packet {
                src_port: (i % 65_536) as u16,
                remote: Ipv4Addr::from(0x6440_0000 + (i / 65_536) as u32 + 2),
                ..pkt(Direction::Out, B, Transport::Udp, 53)
            };
            assert_eq!(fw.check(&p, t0).verdict, Verdict::Accept);
        }
        assert_eq!(fw.flow_count(), MAX_FLOWS);
    }

    #[test]
    fn map_rules_convert() {
        use crate::model::{PolicyId, RuleId};
        let (policy, rule_id) = (PolicyId("p".into()), RuleId("r".into()));
        let map_rule = FirewallRule {
            policy_id: policy,
            rule_id,
            peer_ip: A,
            direction: Direction::Out,
            action: Action::Drop,
            protocol: Protocol::NetbirdSsh,
            port: Some(22),
            port_range: None,
        };
        let r = Rule::from(&map_rule);
        assert_eq!(
            r,
            Rule {
                port: Some(22),
                ..rule(A, Direction::Out, Action::Drop, Protocol::NetbirdSsh)
            }
        );
        // netbird-ssh is TCP on the wire.
        let allow_all = rule(A, Direction::Out, Action::Accept, Protocol::All);
        assert_eq!(
            verdict(&[r, allow_all], &pkt(Direction::Out, A, Transport::Tcp, 22)),
            (Verdict::Drop, Reason::DropRule)
        );
    }

    #[test]
    fn rule_json_reads_the_map_form() {
        let r: Rule = serde_json::from_str(
            r#"{"policy_id":"p","rule_id":"r","peer_ip":"0.0.0.0","direction":"in","action":"accept","protocol":"tcp","port":8080}"#,
        )
        .unwrap();
        assert_eq!(r.port, Some(8080));
        assert_eq!(r.direction, Direction::In);
        assert!(serde_json::from_str::<Rule>(
            r#"{"peer_ip":"0.0.0.0","direction":"up","action":"accept","protocol":"tcp"}"#
        )
        .is_err());
    }

    #[test]
    fn a_packet_and_its_reply_share_a_flow_key() {
        let out = Packet {
            direction: Direction::Out,
            remote: B,
            transport: Transport::Tcp,
            src_port: 40000,
            dst_port: 80,
        };
        let back = Packet {
            direction: Direction::In,
            src_port: 80,
            dst_port: 40000,
            ..out
        };
        assert_eq!(out.flow(), back.flow());
        assert_eq!((out.flow().local_port, out.flow().remote_port), (40000, 80));
        assert_ne!(
            out.flow(),
            Packet {
                src_port: 40001,
                ..out
            }
            .flow()
        );
    }
}
