//! Ingress port allocation: which ports of which ingress peer forward to a
//! peer's ports.
//!
//! Rules (the reference leaves them to its cloud service; these are ours):
//!
//! - Forwarded (translated) ports are 1..=65535, a range's start not above
//!   its end. A `direct_port` request of `count` ports forwards ingress ports
//!   to the same port numbers on the peer.
//! - Ingress ports are taken from [`INGRESS_PORTS`] (the unprivileged ports,
//!   so the ingress peer's own services keep theirs) and are always assigned
//!   by the server: for each requested range, in request order, the lowest
//!   free range of the same size; direct ports after the ranges.
//! - On one ingress peer no two mappings whose protocols compete (`tcp/udp`
//!   competes with both) share an ingress port, across all allocations.
//! - An update keeps the ingress ports of every range it asks for again
//!   (same translated ports and protocol), so renaming or adding a range
//!   does not move the others.
//! - The ingress peer is chosen among the enabled ones other than the peer
//!   itself: those in the peer's region first, then the fallback ones, each
//!   group in id order; the first with room for every mapping wins.

use std::ops::RangeInclusive;

use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::model::{IngressPeer, IngressPeerId, IngressPortAllocation, PortMapping, PortProtocol};

/// The ingress ports the server hands out.
pub const INGRESS_PORTS: RangeInclusive<u16> = 1024..=65535;

/// Why an allocation cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IngressError {
    #[error("allocation name shouldn't be empty")]
    EmptyName,
    #[error("either port_ranges or direct_port should be provided")]
    NothingRequested,
    #[error("invalid port range {0}-{1}: ports must be between 1 and 65535, start not above end")]
    InvalidRange(i64, i64),
    #[error("invalid direct port count {0}: must be between 1 and {max}", max = port_count())]
    InvalidCount(i64),
    #[error("no enabled ingress peer can forward ports of this peer")]
    NoIngressPeer,
    #[error("not enough free ingress ports for this allocation on any ingress peer")]
    PortsExhausted,
}

impl ErrorCode for IngressError {
    fn code(&self) -> &'static str {
        match self {
            IngressError::EmptyName => "empty_allocation_name",
            IngressError::NothingRequested => "no_ports_requested",
            IngressError::InvalidRange(..) => "invalid_port_range",
            IngressError::InvalidCount(_) => "invalid_port_count",
            IngressError::NoIngressPeer => "no_ingress_peer",
            IngressError::PortsExhausted => "ingress_ports_exhausted",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            IngressError::NoIngressPeer => Kind::FailedPrecondition,
            IngressError::PortsExhausted => Kind::AlreadyExists,
            _ => Kind::InvalidArgument,
        }
    }
}

/// How many ports [`INGRESS_PORTS`] holds.
pub const fn port_count() -> u32 {
    *INGRESS_PORTS.end() as u32 - *INGRESS_PORTS.start() as u32 + 1
}

/// What an allocation asks for, checked: translated ranges and direct
/// ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wanted {
    ranges: Vec<(u16, u16, PortProtocol)>,
    direct: Option<(u16, PortProtocol)>,
}

impl Wanted {
    /// Checks the requested ranges (`start`, `end`, protocol) and direct
    /// ports (`count`, protocol) as the REST API sends them.
    pub fn new(
        ranges: &[(i64, i64, PortProtocol)],
        direct: Option<(i64, PortProtocol)>,
    ) -> Result<Wanted, IngressError> {
        if ranges.is_empty() && direct.is_none() {
            return Err(IngressError::NothingRequested);
        }
        let port = |p: i64| u16::try_from(p).ok().filter(|p| *p >= 1);
        let ranges = ranges
            .iter()
            .map(|&(start, end, protocol)| match (port(start), port(end)) {
                (Some(s), Some(e)) if s <= e => Ok((s, e, protocol)),
                _ => Err(IngressError::InvalidRange(start, end)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let direct = direct
            .map(|(count, protocol)| {
                u32::try_from(count)
                    .ok()
                    .filter(|c| (1..=port_count()).contains(c))
                    .and_then(|c| u16::try_from(c).ok())
                    .map(|c| (c, protocol))
                    .ok_or(IngressError::InvalidCount(count))
            })
            .transpose()?;
        Ok(Wanted { ranges, direct })
    }
}

/// Whether two mappings share an ingress port for a competing protocol.
pub fn collide(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol.overlaps(b.protocol)
        && a.ingress_start <= b.ingress_end
        && b.ingress_start <= a.ingress_end
}

/// The ingress ranges of `mappings` that compete with `protocol`, sorted.
fn busy_ranges(mappings: &[PortMapping], protocol: PortProtocol) -> Vec<(u32, u32)> {
    let mut busy: Vec<(u32, u32)> = mappings
        .iter()
        .filter(|m| m.protocol.overlaps(protocol))
        .map(|m| (u32::from(m.ingress_start), u32::from(m.ingress_end)))
        .collect();
    busy.sort_unstable();
    busy
}

/// The lowest start of `size` consecutive ingress ports free for
/// `protocol` among `taken`.
fn lowest_free(taken: &[PortMapping], size: u32, protocol: PortProtocol) -> Option<u16> {
    let busy = busy_ranges(taken, protocol);
    let mut candidate = u32::from(*INGRESS_PORTS.start());
    for (start, end) in busy {
        if start >= candidate + size {
            break;
        }
        candidate = candidate.max(end + 1);
    }
    if candidate + size - 1 > u32::from(*INGRESS_PORTS.end()) {
        return None;
    }
    u16::try_from(candidate).ok()
}

/// The mappings of `wanted` on an ingress peer whose other allocations hold
/// `taken`; `old` are the allocation's previous mappings there (kept where
/// asked for again). `None` when the ports do not fit.
pub fn assign(
    taken: &[PortMapping],
    old: &[PortMapping],
    wanted: &Wanted,
) -> Option<Vec<PortMapping>> {
    let mut busy = taken.to_vec();
    let mut out = Vec::new();
    let place = |busy: &mut Vec<PortMapping>,
                 start: u16,
                 end: u16,
                 protocol: PortProtocol,
                 direct: bool| {
        let kept = old.iter().find(|m| {
            m.translated_start == start
                && m.translated_end == end
                && m.protocol == protocol
                && (!direct || m.ingress_start == start)
        });
        let mapping = match kept {
            Some(m) if !busy.iter().any(|b| collide(b, m)) => m.clone(),
            _ => {
                let size = u32::from(end - start) + 1;
                let ingress = lowest_free(busy, size, protocol)?;
                let ingress_end = u16::try_from(u32::from(ingress) + size - 1).ok()?;
                let (t_start, t_end) = if direct {
                    (ingress, ingress_end)
                } else {
                    (start, end)
                };
                PortMapping {
                    translated_start: t_start,
                    translated_end: t_end,
                    ingress_start: ingress,
                    ingress_end,
                    protocol,
                }
            }
        };
        busy.push(mapping.clone());
        Some(mapping)
    };
    for &(start, end, protocol) in &wanted.ranges {
        out.push(place(&mut busy, start, end, protocol, false)?);
    }
    if let Some((count, protocol)) = wanted.direct {
        let old_direct = old.iter().find(|m| {
            m.translated_start == m.ingress_start
                && m.translated_end - m.translated_start + 1 == count
                && m.protocol == protocol
        });
        let (start, end) = old_direct.map_or((0, count - 1), |m| (m.ingress_start, m.ingress_end));
        out.push(place(&mut busy, start, end, protocol, true)?);
    }
    Some(out)
}

/// Free ingress ports of an ingress peer for one transport (`Tcp` or
/// `Udp`), given every mapping through it.
pub fn available(mappings: &[PortMapping], transport: PortProtocol) -> u32 {
    let used = busy_ranges(mappings, transport);
    let mut busy = 0;
    let mut covered_to = 0;
    for (start, end) in used {
        let start = start.max(covered_to + 1);
        if end >= start {
            busy += end - start + 1;
            covered_to = end;
        }
    }
    port_count() - busy
}

/// Every mapping of `allocations` through `ingress`, leaving out the
/// allocation `except`.
pub fn mappings_through<'a>(
    allocations: &'a [IngressPortAllocation],
    ingress: &'a IngressPeerId,
    except: Option<&'a str>,
) -> impl Iterator<Item = &'a PortMapping> + 'a {
    allocations
        .iter()
        .filter(move |a| &a.ingress_peer_id == ingress && Some(a.id.as_str()) != except)
        .flat_map(|a| a.port_range_mappings.iter())
}

/// Chooses the ingress peer and the mappings for an allocation of the peer
/// `peer_id` in `region`. `current` is the allocation being updated (its
/// ingress peer is tried first, keeping its ports where it can).
pub fn place(
    ingress_peers: &[IngressPeer],
    allocations: &[IngressPortAllocation],
    peer_id: &str,
    region: &str,
    current: Option<&IngressPortAllocation>,
    wanted: &Wanted,
) -> Result<(IngressPeerId, Vec<PortMapping>), IngressError> {
    let mut candidates: Vec<&IngressPeer> = ingress_peers
        .iter()
        .filter(|i| i.enabled && i.peer_id.as_str() != peer_id)
        .filter(|i| (!region.is_empty() && i.region == region) || i.fallback)
        .collect();
    candidates.sort_by_key(|i| {
        (
            current.is_none_or(|c| c.ingress_peer_id != i.id),
            region.is_empty() || i.region != region,
            i.id.clone(),
        )
    });
    if candidates.is_empty() {
        return Err(IngressError::NoIngressPeer);
    }
    let except = current.map(|c| c.id.as_str());
    for ingress in candidates {
        let taken: Vec<PortMapping> = mappings_through(allocations, &ingress.id, except)
            .cloned()
            .collect();
        let old = current
            .filter(|c| c.ingress_peer_id == ingress.id)
            .map_or(&[][..], |c| c.port_range_mappings.as_slice());
        if let Some(mappings) = assign(&taken, old, wanted) {
            return Ok((ingress.id.clone(), mappings));
        }
    }
    Err(IngressError::PortsExhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AllocationId, PeerId};
    use proptest::prelude::*;

    fn ingress(id: &str, region: &str, fallback: bool) -> IngressPeer {
        IngressPeer {
            id: IngressPeerId::new(id),
            peer_id: PeerId::new(format!("peer-{id}")),
            ingress_ip: "192.0.2.1".to_string(),
            enabled: true,
            fallback,
            region: region.to_string(),
        }
    }

    fn allocation(id: &str, ingress: &str, mappings: Vec<PortMapping>) -> IngressPortAllocation {
        IngressPortAllocation {
            id: AllocationId::new(id),
            name: id.to_string(),
            peer_id: PeerId::new("target"),
            ingress_peer_id: IngressPeerId::new(ingress),
            enabled: true,
            port_range_mappings: mappings,
        }
    }

    fn tcp(start: i64, end: i64) -> (i64, i64, PortProtocol) {
        (start, end, PortProtocol::Tcp)
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(Wanted::new(&[], None), Err(IngressError::NothingRequested));
        for (s, e) in [(0, 5), (5, 4), (1, 65536), (-1, 3)] {
            assert_eq!(
                Wanted::new(&[tcp(s, e)], None),
                Err(IngressError::InvalidRange(s, e))
            );
        }
        assert_eq!(
            Wanted::new(&[], Some((0, PortProtocol::Udp))),
            Err(IngressError::InvalidCount(0))
        );
        let too_many = i64::from(port_count()) + 1;
        assert_eq!(
            Wanted::new(&[], Some((too_many, PortProtocol::Udp))),
            Err(IngressError::InvalidCount(too_many))
        );
        assert!(Wanted::new(&[tcp(1, 65535)], Some((5, PortProtocol::Udp))).is_ok());
    }

    #[test]
    fn ingress_ports_are_the_lowest_free_and_protocols_share_only_when_apart() {
        let wanted = Wanted::new(
            &[tcp(80, 89), (53, 53, PortProtocol::Udp)],
            Some((2, PortProtocol::Tcp)),
        )
        .unwrap();
        let first = assign(&[], &[], &wanted).unwrap();
        let ports: Vec<_> = first
            .iter()
            .map(|m| (m.ingress_start, m.ingress_end, m.translated_start))
            .collect();
        // udp 53 does not compete with the tcp range, so it also starts at 1024.
        assert_eq!(
            ports,
            vec![(1024, 1033, 80), (1024, 1024, 53), (1034, 1035, 1034)]
        );
        let both = Wanted::new(&[(1, 3, PortProtocol::TcpUdp)], None).unwrap();
        let second = assign(&first, &[], &both).unwrap();
        assert_eq!(
            (second[0].ingress_start, second[0].ingress_end),
            (1036, 1038)
        );
        let mut all = first.clone();
        all.extend(second);
        assert_eq!(available(&all, PortProtocol::Tcp), port_count() - 15);
        assert_eq!(available(&all, PortProtocol::Udp), port_count() - 4);
    }

    #[test]
    fn a_gap_is_reused_and_a_full_peer_refuses() {
        let m = |s: u16, e: u16| PortMapping {
            translated_start: s,
            translated_end: e,
            ingress_start: s,
            ingress_end: e,
            protocol: PortProtocol::Tcp,
        };
        let taken = vec![m(1024, 1029), m(1040, 1049)];
        let wanted = Wanted::new(&[tcp(1, 10)], None).unwrap();
        assert_eq!(assign(&taken, &[], &wanted).unwrap()[0].ingress_start, 1030);
        let wide = Wanted::new(&[tcp(1, 11)], None).unwrap();
        assert_eq!(assign(&taken, &[], &wide).unwrap()[0].ingress_start, 1050);
        let full = vec![m(1024, 65535)];
        assert_eq!(assign(&full, &[], &wanted), None);
    }

    #[test]
    fn updates_keep_their_ports() {
        let wanted = Wanted::new(&[tcp(80, 80), tcp(443, 443)], None).unwrap();
        let before = assign(&[], &[], &wanted).unwrap();
        // Something else took the port below; the kept ranges stay put.
        let again = Wanted::new(&[tcp(443, 443), tcp(22, 22)], None).unwrap();
        let after = assign(&[], &before, &again).unwrap();
        assert_eq!(after[0], before[1]);
        assert_eq!(after[1].ingress_start, 1024);
    }

    #[test]
    fn the_ingress_peer_is_chosen_by_region_then_fallback() {
        let peers = [
            ingress("b", "de", false),
            ingress("a", "us", true),
            ingress("c", "de", false),
        ];
        let wanted = Wanted::new(&[tcp(80, 80)], None).unwrap();
        assert_eq!(
            place(&peers, &[], "target", "de", None, &wanted)
                .unwrap()
                .0
                .as_str(),
            "b"
        );
        assert_eq!(
            place(&peers, &[], "target", "fr", None, &wanted)
                .unwrap()
                .0
                .as_str(),
            "a"
        );
        let full = allocation(
            "x",
            "b",
            assign(&[], &[], &Wanted::new(&[tcp(1, 64512)], None).unwrap()).unwrap(),
        );
        assert_eq!(
            place(&peers, &[full], "target", "de", None, &wanted)
                .unwrap()
                .0
                .as_str(),
            "c"
        );
        let lonely = [ingress("z", "de", false)];
        assert_eq!(
            place(&lonely, &[], "target", "fr", None, &wanted),
            Err(IngressError::NoIngressPeer)
        );
        assert_eq!(
            place(&lonely, &[], "peer-z", "de", None, &wanted),
            Err(IngressError::NoIngressPeer)
        );
        let used = allocation(
            "y",
            "z",
            assign(&[], &[], &Wanted::new(&[tcp(1, 64512)], None).unwrap()).unwrap(),
        );
        assert_eq!(
            place(&lonely, &[used], "target", "de", None, &wanted),
            Err(IngressError::PortsExhausted)
        );
    }

    fn protocol() -> impl Strategy<Value = PortProtocol> {
        prop_oneof![
            Just(PortProtocol::Tcp),
            Just(PortProtocol::Udp),
            Just(PortProtocol::TcpUdp)
        ]
    }

    /// One request: some ranges (start, size) and maybe direct ports, plus
    /// which earlier allocation it replaces, if any.
    type Request = (
        Vec<(u16, u16, PortProtocol)>,
        Option<(u16, PortProtocol)>,
        Option<usize>,
    );

    fn request() -> impl Strategy<Value = Request> {
        (
            prop::collection::vec((1u16..60000, 1u16..3000, protocol()), 0..4),
            prop::option::of((1u16..5000, protocol())),
            prop::option::of(0usize..8),
        )
    }

    proptest! {
        #[test]
        fn mappings_never_overlap(requests in prop::collection::vec(request(), 1..12)) {
            let peers = [ingress("i1", "de", true), ingress("i2", "de", false)];
            let mut allocations: Vec<IngressPortAllocation> = Vec::new();
            for (n, (ranges, direct, replaces)) in requests.into_iter().enumerate() {
                let ranges: Vec<_> = ranges
                    .into_iter()
                    .map(|(s, size, p)| (i64::from(s), (i64::from(s) + i64::from(size) - 1).min(65535), p))
                    .collect();
                let Ok(wanted) = Wanted::new(&ranges, direct.map(|(c, p)| (i64::from(c), p))) else {
                    continue;
                };
                let current = replaces.and_then(|i| allocations.get(i)).cloned();
                if let Ok((ingress, mappings)) = place(&peers, &allocations, "target", "de", current.as_ref(), &wanted) {
                    let id = current.map_or(format!("a{n}"), |c| c.id.to_string());
                    allocations.retain(|a| a.id.as_str() != id);
                    let sizes: Vec<u32> = ranges.iter().map(|r| (r.1 - r.0 + 1) as u32).chain(direct.map(|d| u32::from(d.0))).collect();
                    let got: Vec<u32> = mappings.iter().map(|m| u32::from(m.ingress_end - m.ingress_start) + 1).collect();
                    prop_assert_eq!(got, sizes);
                    for m in &mappings {
                        prop_assert!(INGRESS_PORTS.contains(&m.ingress_start) && INGRESS_PORTS.contains(&m.ingress_end));
                        prop_assert_eq!(m.translated_end - m.translated_start, m.ingress_end - m.ingress_start);
                    }
                    allocations.push(allocation(&id, ingress.as_str(), mappings));
                }
                for peer in &peers {
                    let all: Vec<&PortMapping> = mappings_through(&allocations, &peer.id, None).collect();
                    for (i, a) in all.iter().enumerate() {
                        for b in &all[i + 1..] {
                            prop_assert!(!collide(a, b), "{:?} and {:?} overlap", a, b);
                        }
                    }
                }
            }
        }
    }
}
