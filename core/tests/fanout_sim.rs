#![cfg(feature = "sim")]
//! The seeded simulation of map delivery under churn: every live stream
//! always converges to exactly the map the core computes.

use meshplane_core::netmap::fanout::sim::{run, SimConfig};
use meshplane_core::Duration;

#[test]
fn every_stream_converges_under_churn() {
    let config = SimConfig {
        duration: Duration::from_secs(150),
        ..SimConfig::default()
    };
    for seed in [1, 2, 0xfeed] {
        let report = run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
        eprintln!("{report:?}");
        assert!(report.checkpoints >= 10, "{report:?}");
        assert!(report.deltas > 0 && report.resumed > 0, "{report:?}");
        assert!(report.closed > 0 && report.refused > 0, "{report:?}");
        assert!(report.acks_lost > 0, "{report:?}");
    }
}

#[test]
fn every_stream_converges_when_most_acknowledgements_are_lost() {
    let config = SimConfig {
        p_ack_lost: 0.9,
        max_load: Duration::from_millis(400),
        duration: Duration::from_secs(120),
        ..SimConfig::default()
    };
    for seed in [4, 5] {
        run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
    }
}

#[test]
fn a_run_replays_from_its_seed() {
    let config = SimConfig {
        duration: Duration::from_secs(60),
        ..SimConfig::default()
    };
    assert_eq!(run(9, &config), run(9, &config));
}
