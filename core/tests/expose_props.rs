//! Properties of expose sessions, checked against a small reference model:
//! sessions never outlive their last renewal plus the TTL, no peer holds more
//! than the limit, and names are reproducible and well formed.

use std::collections::BTreeMap;

use meshplane_core::expose::{
    generate_name, ExposeContext, ExposeError, ExposeEventKind, ExposePeer, ExposeRequest,
    SessionTable, TableConfig, NAME_ALPHABET,
};
use meshplane_core::model::{AccountSettings, PeerId};
use meshplane_core::validate::{is_dns_label, NamePrefix};
use meshplane_core::{Duration, Timestamp};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const PEERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Create { peer: usize },
    Renew { peer: usize, pick: usize },
    Stop { peer: usize, pick: usize },
    RemovePeer { peer: usize },
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PEERS).prop_map(|peer| Op::Create { peer }),
        4 => (0..PEERS, any::<usize>()).prop_map(|(peer, pick)| Op::Renew { peer, pick }),
        1 => (0..PEERS, any::<usize>()).prop_map(|(peer, pick)| Op::Stop { peer, pick }),
        1 => (0..PEERS).prop_map(|peer| Op::RemovePeer { peer }),
        1 => Just(Op::Tick),
    ]
}

/// Steps of (time advance in ms, operation); advances straddle the 90 s TTL.
fn script() -> impl Strategy<Value = Vec<(i64, Op)>> {
    let advance = prop_oneof![
        0..5_000i64,
        25_000..100_000i64,
        // Whole periods, so steps land exactly on deadlines.
        prop::sample::select(vec![0i64, 30_000, 45_000, 60_000, 90_000]),
    ];
    prop::collection::vec((advance, op()), 1..120)
}

/// domain -> (owner, deadline = last successful create or renew + TTL)
type Model = BTreeMap<String, (usize, Timestamp)>;

/// What renew and stop must answer for `peer` on `domain`, per the model.
fn verdict(model: &Model, peer: usize, domain: &str) -> Result<(), ExposeError> {
    match model.get(domain) {
        None => Err(ExposeError::NotFound(domain.to_string())),
        Some((owner, _)) if *owner != peer => Err(ExposeError::PermissionDenied),
        Some(_) => Ok(()),
    }
}

fn is_random_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| NAME_ALPHABET.contains(&c))
}

fn prefix() -> impl Strategy<Value = NamePrefix> {
    "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?".prop_filter_map("a valid prefix", |p| p.parse().ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn table_matches_the_reference_model(seed in any::<u64>(), steps in script()) {
        let config = TableConfig::default();
        let ttl = config.ttl;
        let settings = AccountSettings { peer_expose_enabled: true, ..AccountSettings::default() };
        let peers: Vec<ExposePeer> = (0..PEERS)
            .map(|i| ExposePeer { id: PeerId::new(format!("p{i}")), name: format!("h{i}"), groups: vec![] })
            .collect();
        let mut table = SessionTable::new(config);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut model = Model::new();
        let mut ever: Vec<String> = Vec::new();
        let mut now = Timestamp::from_secs(1_000);
        for (advance, op) in steps {
            now = now + Duration::from_millis(advance);
            let expired: Vec<String> = model
                .iter()
                .filter(|(_, (_, d))| *d <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for d in &expired {
                model.remove(d);
            }
            let pick = |i: usize| ever.get(i % ever.len().max(1)).cloned().unwrap_or_default();
            match op {
                Op::Create { peer } => {
                    let ctx = ExposeContext { settings: &settings, groups: &[], custom_domains: &[], peer: &peers[peer] };
                    let held = model.values().filter(|(o, _)| *o == peer).count();
                    let got = table.create(&ctx, &ExposeRequest { port: 80, ..ExposeRequest::default() }, &mut rng, now);
                    if held >= 10 {
                        prop_assert_eq!(got.unwrap_err(), ExposeError::LimitReached(10));
                    } else {
                        let s = got.unwrap();
                        prop_assert_eq!(s.deadline, now + ttl);
                        model.insert(s.domain.clone(), (peer, s.deadline));
                        ever.push(s.domain);
                    }
                }
                Op::Renew { peer, pick: i } => {
                    let domain = pick(i);
                    let got = table.renew(&peers[peer].id, &domain, now);
                    prop_assert_eq!(&got, &verdict(&model, peer, &domain).map(|()| now + ttl));
                    if got.is_ok() {
                        model.insert(domain, (peer, now + ttl));
                    }
                }
                Op::Stop { peer, pick: i } => {
                    let domain = pick(i);
                    let got = table.stop(&peers[peer].id, &domain, now);
                    prop_assert_eq!(&got, &verdict(&model, peer, &domain));
                    if got.is_ok() {
                        model.remove(&domain);
                    }
                }
                Op::RemovePeer { peer } => {
                    let held = model.values().filter(|(o, _)| *o == peer).count();
                    prop_assert_eq!(table.remove_peer(&peers[peer].id, now), held);
                    model.retain(|_, (o, _)| *o != peer);
                }
                Op::Tick => table.handle_timeout(now),
            }
            // Sessions never outlive the last renewal + TTL ...
            let live: Model = table
                .sessions()
                .map(|s| (s.domain.clone(), (peers.iter().position(|p| p.id == s.peer_id).unwrap(), s.deadline)))
                .collect();
            prop_assert_eq!(&live, &model);
            prop_assert!(table.poll_timeout().is_none_or(|t| t > now));
            // ... and no peer ever holds more than ten.
            for p in &peers {
                prop_assert!(table.sessions_of(&p.id).count() <= 10);
            }
            // Expiry events carry the exact deadline, never a later instant.
            while let Some(e) = table.poll_event() {
                if e.kind == ExposeEventKind::Expired {
                    prop_assert!(expired.contains(&e.domain));
                    prop_assert!(e.at <= now);
                }
            }
        }
    }

    #[test]
    fn same_seed_same_names(seed in any::<u64>(), p in proptest::option::of(prefix())) {
        let a = generate_name(p.as_ref(), &mut ChaCha8Rng::seed_from_u64(seed));
        let b = generate_name(p.as_ref(), &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn names_have_the_generated_format(seed in any::<u64>(), p in proptest::option::of(prefix())) {
        let name = generate_name(p.as_ref(), &mut ChaCha8Rng::seed_from_u64(seed));
        match &p {
            None => prop_assert!(is_random_part(&name, 12), "{}", name),
            Some(p) => {
                let rest = name.strip_prefix(&format!("{p}-"));
                prop_assert!(rest.is_some_and(|r| is_random_part(r, 4)), "{}", name);
            }
        }
        prop_assert!(is_dns_label(&name), "{}", name);
    }
}
