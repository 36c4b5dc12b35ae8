//! The mesh's names, answered from the map: every zone of the map's DNS
//! part (the account zone with an A record for this peer and each peer it
//! sees, and whatever further zones the core produces) as one
//! authoritative table. Lookups are case-insensitive; a name inside a zone
//! that has no record gets NXDOMAIN, a name with records but none of the
//! asked type gets an empty answer, both with the zone's SOA so resolvers
//! cache the negative answer only briefly.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use meshplane_core::netmap::owned::Dns;

/// How long resolvers may cache "no such name" from a mesh zone: short,
/// since a peer renamed or added shows up within a map.
const NEGATIVE_TTL: u32 = 5;

/// One zone: its apex and its A records by owner name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    apex: Name,
    records: HashMap<Name, Vec<(Ipv4Addr, u32)>>,
}

/// The zones of one map, ready to answer from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zones {
    zones: Vec<Zone>,
}

/// A fully qualified, lower-case name from text such as `peer.netbird.cloud`
/// or `netbird.cloud.`; `None` when the text is no valid name.
pub fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text.trim()).ok()?.to_lowercase();
    name.set_fqdn(true);
    Some(name)
}

/// A name as people write it: no trailing dot.
pub fn text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

impl Zones {
    /// The zones of a map's DNS part. Records that are not `IN A` with an
    /// IPv4 address, or whose owner lies outside its zone, are left out:
    /// the core produces none, and a resolver that served them would
    /// answer for names it does not own.
    pub fn from_map(dns: &Dns) -> Zones {
        if !dns.service_enable {
            return Zones::default();
        }
        let mut zones: Vec<Zone> = Vec::new();
        for custom in &dns.custom_zones {
            let Some(apex) = fqdn(&custom.domain) else {
                tracing::warn!("DNS zone {:?} is no valid name; not served", custom.domain);
                continue;
            };
            let mut records: HashMap<Name, Vec<(Ipv4Addr, u32)>> = HashMap::new();
            for r in &custom.records {
                let owner = fqdn(&r.name).filter(|n| apex.zone_of(n));
                let ip = r.rdata.parse::<Ipv4Addr>().ok();
                match (owner, ip) {
                    (Some(owner), Some(ip))
                        if r.kind.eq_ignore_ascii_case("A")
                            && r.class.eq_ignore_ascii_case("IN") =>
                    {
                        let set = records.entry(owner).or_default();
                        if !set.iter().any(|(known, _)| *known == ip) {
                            set.push((ip, r.ttl));
                        }
                    }
                    _ => tracing::debug!("DNS record {r:?} in {} not served", custom.domain),
                }
            }
            match zones.iter_mut().find(|z| z.apex == apex) {
                Some(zone) => {
                    for (owner, ips) in records {
                        zone.records.entry(owner).or_default().extend(ips);
                    }
                }
                None => zones.push(Zone { apex, records }),
            }
        }
        // The most specific zone answers a name that two zones contain.
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex.num_labels()));
        Zones { zones }
    }

    /// The apexes of the zones served, most specific first.
    pub fn apexes(&self) -> impl Iterator<Item = &Name> {
        self.zones.iter().map(|z| &z.apex)
    }

    fn zone_of(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().find(|z| z.apex.zone_of(name))
    }

    /// The authoritative answer to `request` (a query with one question
    /// whose name lies in a zone), or `None` when the name is in no zone.
    pub fn answer(&self, request: &Message) -> Option<Message> {
        let question = request.queries.first()?;
        let name = question.name().to_lowercase();
        let zone = self.zone_of(&name)?;
        let mut response = Message::new(
            request.metadata.id,
            hickory_proto::op::MessageType::Response,
            request.metadata.op_code,
        );
        response.metadata = Metadata::response_from_request(&request.metadata);
        response.metadata.authoritative = true;
        response.metadata.recursion_available = true;
        response.add_query(question.clone());
        if question.query_class() != DNSClass::IN {
            response.metadata.response_code = ResponseCode::Refused;
            return Some(response);
        }
        match zone.records.get(&name) {
            Some(ips) => {
                if question.query_type() == RecordType::A {
                    for (ip, ttl) in ips {
                        // The owner as asked: clients match the case they sent.
                        response.add_answer(Record::from_rdata(
                            question.name().clone(),
                            *ttl,
                            RData::A(A(*ip)),
                        ));
                    }
                } else {
                    response.add_authority(soa(zone));
                }
            }
            None if name == zone.apex && question.query_type() == RecordType::SOA => {
                response.add_answer(soa(zone));
            }
            None if name == zone.apex => {
                response.add_authority(soa(zone));
            }
            None => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(soa(zone));
            }
        }
        Some(response)
    }
}

/// The zone's SOA: the mesh has no primary server to name, so the zone's
/// own apex stands in; the minimum is [`NEGATIVE_TTL`].
fn soa(zone: &Zone) -> Record {
    let rname = Name::from_ascii("hostmaster")
        .and_then(|h| h.append_domain(&zone.apex))
        .unwrap_or_else(|_| zone.apex.clone());
    let soa = SOA::new(zone.apex.clone(), rname, 1, 3600, 600, 86400, NEGATIVE_TTL);
    Record::from_rdata(zone.apex.clone(), NEGATIVE_TTL, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{MessageType, OpCode, Query};
    use meshplane_core::netmap::owned::{CustomZone, Record as MapRecord};

    use super::*;

    fn record(name: &str, ip: &str) -> std::sync::Arc<MapRecord> {
        std::sync::Arc::new(MapRecord {
            name: name.to_string(),
            kind: "A".to_string(),
            class: "IN".to_string(),
            ttl: 300,
            rdata: ip.to_string(),
        })
    }

    fn zones() -> Zones {
        Zones::from_map(&Dns {
            service_enable: true,
            custom_zones: vec![CustomZone {
                domain: "netbird.cloud".to_string(),
                records: vec![
                    record("a.netbird.cloud", "100.64.0.1"),
                    record("b.netbird.cloud", "100.64.0.2"),
                    record("b.netbird.cloud", "100.64.0.3"),
                    record("outside.example.com", "100.64.0.9"),
                    record("bad.netbird.cloud", "not an address"),
                ],
            }],
            nameserver_groups: Vec::new(),
        })
    }

    fn ask(zones: &Zones, name: &str, kind: RecordType) -> Option<Message> {
        let mut request = Message::new(7, MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        zones.answer(&request)
    }

    fn addresses(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_peer_name_answers_its_addresses_whatever_the_case() {
        let z = zones();
        let m = ask(&z, "B.NetBird.Cloud.", RecordType::A).expect("in the zone");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.metadata.id, 7);
        assert_eq!(
            addresses(&m),
            [
                "100.64.0.2".parse::<Ipv4Addr>().expect("ip"),
                "100.64.0.3".parse().expect("ip")
            ]
        );
        assert_eq!(m.answers[0].name.to_ascii(), "B.NetBird.Cloud.");
        assert_eq!(m.answers[0].ttl, 300);
    }

    #[test]
    fn unknown_names_in_the_zone_are_nxdomain_with_the_soa() {
        let m = ask(&zones(), "nobody.netbird.cloud.", RecordType::A).expect("in the zone");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        // The record with a bad address and the one outside the zone are
        // not served.
        let bad = ask(&zones(), "bad.netbird.cloud.", RecordType::A).expect("in the zone");
        assert_eq!(bad.metadata.response_code, ResponseCode::NXDomain);
        assert!(ask(&zones(), "outside.example.com.", RecordType::A).is_none());
    }

    #[test]
    fn other_types_of_a_known_name_and_the_apex_have_no_data() {
        let z = zones();
        let aaaa = ask(&z, "a.netbird.cloud.", RecordType::AAAA).expect("in the zone");
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
        assert!(aaaa.answers.is_empty());
        assert_eq!(aaaa.authorities.len(), 1);
        let apex = ask(&z, "netbird.cloud.", RecordType::A).expect("in the zone");
        assert_eq!(apex.metadata.response_code, ResponseCode::NoError);
        assert!(apex.answers.is_empty());
        let soa = ask(&z, "netbird.cloud.", RecordType::SOA).expect("in the zone");
        assert_eq!(soa.answers.len(), 1);
    }

    #[test]
    fn names_outside_every_zone_are_not_answered() {
        assert!(ask(&zones(), "example.com.", RecordType::A).is_none());
        assert!(ask(&zones(), "cloud.", RecordType::A).is_none());
        assert!(ask(&zones(), "xnetbird.cloud.", RecordType::A).is_none());
    }

    #[test]
    fn dns_switched_off_serves_nothing() {
        let off = Zones::from_map(&Dns {
            service_enable: false,
            custom_zones: vec![CustomZone {
                domain: "netbird.cloud".to_string(),
                records: vec![record("a.netbird.cloud", "100.64.0.1")],
            }],
            nameserver_groups: Vec::new(),
        });
        assert!(ask(&off, "a.netbird.cloud.", RecordType::A).is_none());
        assert_eq!(off.apexes().count(), 0);
    }
}
