#![cfg(feature = "sim")]
//! The seeded simulation of two peers' path machines: they converge to a
//! direct path when the NATs and the network let one through, to the relay
//! otherwise, within bounded time, and follow the direct path as it comes
//! and goes.

use meshplane_core::connect::sim::{run, Nat, Phase, PhaseReport, SimConfig, SimReport};
use meshplane_core::Duration;

const SEEDS: [u64; 4] = [1, 2, 3, 0xdead_beef];

fn phase(secs: i64, direct_open: bool, relay: bool) -> Phase {
    Phase {
        length: Duration::from_secs(secs),
        direct_open,
        relay,
        blocked_towards: None,
        rebind_a: false,
    }
}

fn run_ok(seed: u64, config: &SimConfig) -> SimReport {
    run(seed, config).unwrap_or_else(|f| panic!("{f}"))
}

/// Both peers were on the path each phase calls for all the time after it
/// settled.
fn always_right(report: &SimReport) {
    for (i, p) in report.phases.iter().enumerate() {
        assert_eq!(p.right_ms, [p.settled_ms; 2], "phase {i}: {p:?}");
    }
}

fn first_right(p: &PhaseReport) -> i64 {
    p.first_right_ms
        .iter()
        .map(|t| t.unwrap_or_else(|| panic!("never right: {p:?}")))
        .max()
        .unwrap_or(0)
}

#[test]
fn direct_relay_direct_as_the_network_comes_and_goes() {
    let config = SimConfig::default();
    for seed in SEEDS {
        let report = run_ok(seed, &config);
        always_right(&report);
        let [open, blocked, reopened] = &report.phases[..] else {
            panic!("{report:?}")
        };
        // Direct within the punching time from the start, the relay within
        // the dead time of the block, direct again within a re-probe.
        assert!(first_right(open) < 2_000, "{open:?}");
        assert!(first_right(blocked) <= 6_100, "{blocked:?}");
        assert!(first_right(reopened) <= 5_200, "{reopened:?}");
        // No flapping: one switch per peer and phase (at the start from
        // nothing straight to direct, punching beats the fallback time).
        assert_eq!(open.switches, [1, 1], "{open:?}");
        assert_eq!(blocked.switches, [1, 1], "{blocked:?}");
        assert_eq!(reopened.switches, [1, 1], "{reopened:?}");
        assert!(
            report.data_delivered[0] * 100 >= report.data_sent[0] * 95,
            "{report:?}"
        );
    }
}

#[test]
fn symmetric_nats_end_on_the_relay_after_the_fallback_time() {
    let config = SimConfig {
        nat_a: Nat::Symmetric,
        nat_b: Nat::Symmetric,
        phases: vec![phase(60, true, true)],
        ..SimConfig::default()
    };
    for seed in SEEDS {
        let report = run_ok(seed, &config);
        always_right(&report);
        let p = &report.phases[0];
        assert_eq!(p.direct_ms, [0, 0], "{p:?}");
        assert_eq!(first_right(p), 5_000, "{p:?}");
        assert_eq!(p.switches, [1, 1], "{p:?}");
        assert!(report.direct_refused > 0);
    }
}

#[test]
fn a_symmetric_nat_facing_an_address_restricted_one_goes_direct_by_learning() {
    for (nat_a, nat_b) in [
        (Nat::Symmetric, Nat::AddressRestricted),
        (Nat::AddressRestricted, Nat::Symmetric),
    ] {
        let config = SimConfig {
            nat_a,
            nat_b,
            ..SimConfig::default()
        };
        for seed in SEEDS {
            let report = run_ok(seed, &config);
            always_right(&report);
            assert!(
                report.learned_selected.iter().sum::<u64>() > 0,
                "{report:?}"
            );
        }
    }
}

#[test]
fn a_symmetric_nat_facing_a_port_restricted_one_stays_relayed() {
    let config = SimConfig {
        nat_a: Nat::PortRestricted,
        nat_b: Nat::Symmetric,
        phases: vec![phase(60, true, true)],
        ..SimConfig::default()
    };
    let report = run_ok(7, &config);
    always_right(&report);
    assert_eq!(report.phases[0].direct_ms, [0, 0]);
}

#[test]
fn a_rebinding_nat_is_followed_without_the_relay() {
    // Behind address-restricted NATs the first packet from the new port
    // gets through and is selected at once; behind port-restricted ones the
    // new candidates punch a new hole before the old path dies.
    for nat in [Nat::AddressRestricted, Nat::PortRestricted] {
        let config = SimConfig {
            nat_a: nat,
            nat_b: nat,
            phases: vec![
                phase(30, true, true),
                Phase {
                    rebind_a: true,
                    ..phase(30, true, true)
                },
            ],
            ..SimConfig::default()
        };
        for seed in SEEDS {
            let report = run_ok(seed, &config);
            always_right(&report);
            let p = &report.phases[1];
            assert_eq!(p.relayed_ms, [0, 0], "{nat:?}: {p:?}");
            assert_eq!(p.nowhere_ms, [0, 0], "{nat:?}: {p:?}");
            if nat == Nat::AddressRestricted {
                assert!(report.learned_selected[1] > 0, "{report:?}");
            }
        }
    }
}

#[test]
fn loss_costs_little_time_on_the_right_path() {
    let config = SimConfig {
        loss: 0.1,
        phases: vec![
            phase(60, true, true),
            phase(60, false, true),
            phase(60, true, true),
            phase(60, false, true),
        ],
        ..SimConfig::default()
    };
    for seed in SEEDS {
        let report = run_ok(seed, &config);
        assert!(report.direct_lost > 0);
        for p in &report.phases {
            for side in 0..2 {
                assert!(p.right_ms[side] * 100 >= p.settled_ms * 95, "{p:?}");
                assert!(p.switches[side] <= 5, "flapping: {p:?}");
            }
        }
    }
}

#[test]
fn without_relay_or_direct_nothing_breaks_and_the_relay_is_taken_when_it_comes() {
    let config = SimConfig {
        phases: vec![
            phase(20, false, false),
            phase(20, false, true),
            phase(20, true, false),
            phase(20, false, false),
            phase(20, false, true),
        ],
        ..SimConfig::default()
    };
    for seed in SEEDS {
        let report = run_ok(seed, &config);
        always_right(&report);
        let p = &report.phases;
        assert_eq!(p[0].nowhere_ms, [20_000; 2], "{:?}", p[0]);
        assert_eq!(p[1].first_right_ms, [Some(0); 2], "{:?}", p[1]);
        // The dead direct path is kept while nothing else exists, then
        // the relay takes over at once.
        assert_eq!(p[3].nowhere_ms, [0; 2], "{:?}", p[3]);
        assert_eq!(p[4].first_right_ms, [Some(0); 2], "{:?}", p[4]);
    }
}

#[test]
fn a_one_way_direct_path_ends_on_the_relay_on_both_sides_and_back_to_direct() {
    for towards in [0, 1] {
        let one_way = Phase {
            blocked_towards: Some(towards),
            ..phase(60, true, true)
        };
        let config = SimConfig {
            phases: vec![phase(60, true, true), one_way, phase(60, true, true)],
            ..SimConfig::default()
        };
        for seed in SEEDS {
            let report = run_ok(seed, &config);
            always_right(&report);
            let [open, one_way, reopened] = &report.phases[..] else {
                panic!("{report:?}")
            };
            assert!(first_right(open) < 2_000, "{open:?}");
            // The blocked peer's path dies; the other one follows once the
            // first's traffic over the relay has gone on for a while.
            let blocked = one_way.first_right_ms[towards].unwrap_or(i64::MAX);
            assert!(blocked <= 6_100, "{one_way:?}");
            assert!(first_right(one_way) <= 8_000, "{one_way:?}");
            // Only a handshake answered over the path brings it back: within
            // a re-probe of the one-way side.
            assert!(first_right(reopened) <= 5_200, "{reopened:?}");
            assert_eq!(one_way.switches, [1, 1], "{one_way:?}");
            assert_eq!(reopened.switches, [1, 1], "{reopened:?}");
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        loss: 0.2,
        ..SimConfig::default()
    };
    let a = run_ok(42, &config);
    assert_eq!(a, run_ok(42, &config));
    assert_ne!(a, run_ok(43, &config));
}
