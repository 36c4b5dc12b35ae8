//! Properties of route selection and of the forwarding filter over random
//! networks, routing peers and states.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use meshplane_core::firewall::{Transport, Verdict};
use meshplane_core::model::{Action, PeerId, Protocol};
use meshplane_core::routing::forward::{Packet, RouteFilter, RouteRule};
use meshplane_core::routing::select::{score, Candidate, PeerState, Selector, KEEP_MARGIN_MS};
use meshplane_core::Timestamp;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NETWORKS: [&str; 3] = ["10.1.0.0/16", "10.2.0.0/16", "192.168.0.0/24"];

/// Up to three networks, each with one to four routing peers out of six
/// (peer 0 is this peer); a route entry per (network, peer).
fn routes() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec((0usize..3, 0u8..6, 0u32..10_000), 1..10).prop_map(|entries| {
        let mut seen = std::collections::BTreeSet::new();
        entries
            .into_iter()
            .filter(|(n, p, _)| seen.insert((*n, *p)))
            .map(|(n, p, metric)| Candidate {
                id: format!("r{n}-{p}"),
                network_id: format!("net{n}"),
                network: Some(NETWORKS[n].to_string()),
                domains: vec![],
                peer: PeerId(format!("p{p}")),
                peer_ip: Ipv4Addr::new(100, 64, 0, p + 1),
                metric,
            })
            .collect()
    })
}

fn state() -> impl Strategy<Value = PeerState> {
    (any::<bool>(), any::<bool>(), prop::option::of(0u32..2_000)).prop_map(
        |(connected, relayed, latency_ms)| PeerState {
            connected,
            relayed,
            latency_ms,
        },
    )
}

fn states() -> impl Strategy<Value = BTreeMap<PeerId, PeerState>> {
    prop::collection::vec(state(), 6).prop_map(|s| {
        s.into_iter()
            .enumerate()
            .map(|(i, s)| (PeerId(format!("p{i}")), s))
            .collect()
    })
}

fn own() -> PeerId {
    PeerId("p0".into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn choices_are_connected_best_and_order_free(
        routes in routes(),
        before in states(),
        now in states(),
        seed in any::<u64>(),
    ) {
        let lookup = |s: &BTreeMap<PeerId, PeerState>| {
            let s = s.clone();
            move |p: &PeerId| s.get(p).copied()
        };
        let mut fresh = Selector::default();
        let first = fresh.select(&own(), &routes, lookup(&now));
        let mut shuffled = routes.clone();
        shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(&first, &Selector::default().select(&own(), &shuffled, lookup(&now)));

        let mut kept = Selector::default();
        kept.select(&own(), &routes, lookup(&before));
        let after = kept.select(&own(), &routes, lookup(&now));
        for (selection, margin) in [(&first, 0), (&after, KEEP_MARGIN_MS)] {
            for choice in &selection.used {
                let entries: Vec<&Candidate> = routes
                    .iter()
                    .filter(|r| r.network.as_ref() == choice.target.network.as_ref())
                    .collect();
                prop_assert!(entries.iter().all(|e| e.peer != own()), "served networks are not used");
                let best = entries
                    .iter()
                    .filter(|e| now[&e.peer].connected)
                    .map(|e| score(e.metric, now[&e.peer]))
                    .max();
                match (&choice.chosen, best) {
                    (None, None) => {}
                    (Some(c), Some(best)) => {
                        prop_assert!(now[&c.peer].connected, "an unconnected peer was chosen");
                        prop_assert!(c.score + margin >= best, "{} is not within {margin} of {best}", c.score);
                    }
                    (chosen, best) => prop_assert!(false, "chosen {chosen:?}, best {best:?}"),
                }
            }
            for served in &selection.served {
                prop_assert!(routes.iter().any(|r| r.peer == own() && r.network == served.network));
            }
        }
    }

    #[test]
    fn only_rule_matches_open_flows_and_only_replies_use_them(
        sources in prop::collection::vec(1u8..8, 1..4),
        port in 1u16..1024,
        packets in prop::collection::vec((1u8..8, 1u8..4, any::<bool>(), 1u16..1024, any::<bool>()), 1..40),
    ) {
        let rule = RouteRule {
            source_ranges: sources.iter().map(|s| ipnet::Ipv4Net::from(Ipv4Addr::new(100, 64, 0, *s))).collect(),
            destination: "10.50.0.0/24".parse().unwrap(),
            action: Action::Accept,
            protocol: Protocol::Tcp,
            port: Some(port),
            port_range: None,
        };
        let mut filter = RouteFilter::new(std::slice::from_ref(&rule));
        let mut opened: Vec<Packet> = Vec::new();
        let now = Timestamp::from_millis(0);
        for (peer, host, to_port, dst_port, reply) in packets {
            let p = Packet {
                src: Ipv4Addr::new(100, 64, 0, peer),
                dst: Ipv4Addr::new(10, 50, 0, host),
                transport: Transport::Tcp,
                src_port: 40_000 + u16::from(peer),
                dst_port: if to_port { port } else { dst_port },
            };
            let p = if reply { p.reply() } else { p };
            let allowed = sources.contains(&peer) && !reply && p.dst_port == port;
            let is_reply = opened.iter().any(|o| o.reply() == p || *o == p);
            let verdict = filter.check(&p, now).verdict;
            prop_assert_eq!(verdict == Verdict::Accept, allowed || is_reply, "{:?}", p);
            if allowed {
                opened.push(p);
            }
        }
    }
}
