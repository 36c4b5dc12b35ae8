#![cfg(feature = "sim")]
//! The seeded expose simulation: several seeds of 300 peers under churn,
//! loss, late messages and crashes must keep every invariant, and a seed
//! must replay exactly.

use meshplane_core::expose::TableConfig;
use meshplane_core::sim::{run, SimConfig, SimFailure};
use meshplane_core::{Duration, ErrorCode, Timestamp};

#[test]
fn seeds_keep_every_invariant() {
    let config = SimConfig::default();
    assert_eq!(config.peers, 300);
    for seed in [1, 2, 3, 0xdead_beef] {
        let report = run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
        // Every fault the simulation is there to exercise did happen.
        assert!(report.created > 1000, "{report:?}");
        assert!(report.renewals_ok > report.created, "{report:?}");
        assert!(report.limit_hits > 0, "{report:?}");
        assert!(report.denied > 0, "{report:?}");
        assert!(report.crashes > 0, "{report:?}");
        assert!(report.messages_lost > 0, "{report:?}");
        assert!(report.clients_failed > 0, "{report:?}");
        assert!(
            report.stops_clean > 0 && report.stops_unclean > 0,
            "{report:?}"
        );
        assert_eq!(report.max_sessions_seen, 10, "{report:?}");
        // Everything created ended exactly once.
        assert_eq!(
            report.created,
            report.unexposed + report.expired,
            "{report:?}"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        peers: 100,
        ..SimConfig::default()
    };
    let a = run(42, &config).unwrap();
    assert_eq!(a, run(42, &config).unwrap());
    assert_ne!(a, run(43, &config).unwrap());
}

#[test]
fn a_ttl_shorter_than_the_renewal_cycle_loses_sessions_but_no_invariant() {
    // 35 s < 30 s period + up to 10 s per renewal: renewals reach the server
    // after expiry, are refused, and daemons give up.
    let config = SimConfig {
        peers: 50,
        duration: Duration::from_secs(600),
        table: TableConfig {
            ttl: Duration::from_secs(31),
            ..TableConfig::default()
        },
        max_delay: Duration::from_secs(3),
        ..SimConfig::default()
    };
    let report = run(5, &config).unwrap_or_else(|f| panic!("{f}"));
    assert!(report.renewals_refused > 10, "{report:?}");
    assert!(
        report.clients_failed > report.renewals_refused / 2,
        "{report:?}"
    );
}

#[test]
fn a_failure_names_its_seed_and_step() {
    let f = SimFailure {
        seed: 9,
        step: 1234,
        at: Timestamp::from_secs(60),
        message: "x outlived its deadline".into(),
    };
    assert_eq!(
        f.to_string(),
        "seed 9, step 1234 (at 1970-01-01T00:01:00Z): x outlived its deadline"
    );
    assert_eq!(f.code(), "sim_invariant_violated");
}
