//! What a map costs on the wire: the protobuf message against the JSON text
//! that Sync used to carry, for maps of the benchmark account
//! (`../shared/BENCH-ACCOUNT.md`). Prints the figures BENCHMARKS.md records:
//! `cargo test -p meshplane-proto --test map_size -- --nocapture`.
//!
//! Both forms would travel in the same sealed envelope, which adds the same
//! few dozen bytes to either, so the map bytes are compared alone.

use meshplane_core::generate::bench_account;
use meshplane_core::index::AccountIndex;
use meshplane_core::netmap::{network_map, MapBuilder, PeerMap};
use meshplane_core::Timestamp;
use meshplane_proto::v1;
use prost::Message;

const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

/// JSON and protobuf sizes of one map.
fn sizes(map: PeerMap) -> (usize, usize) {
    let json = serde_json::to_vec(&map).expect("JSON").len();
    let protobuf = v1::NetworkMap::from(map).encoded_len();
    (json, protobuf)
}

#[test]
fn protobuf_maps_are_smaller_than_json() {
    println!("peers/groups  map              JSON bytes  protobuf bytes  ratio");
    for (peers, groups) in [(1000, 50), (5000, 100), (10000, 200)] {
        let account = bench_account(peers, groups, NOW);
        let index = AccountIndex::new(&account);
        let map = PeerMap::from(&network_map(&index, "peer-0", NOW).expect("peer-0"));
        let (json, protobuf) = sizes(map);
        println!(
            "{peers:>6}/{groups:<5}  peer-0           {json:>10}  {protobuf:>14}  {:.2}",
            json as f64 / protobuf as f64
        );
        assert!(protobuf < json, "{peers}/{groups}: {protobuf} >= {json}");
    }
    // The fan-out after a change: every peer's map, as the server sends it.
    let (peers, groups) = (500, 20);
    let account = bench_account(peers, groups, NOW);
    let index = AccountIndex::new(&account);
    let mut maps = MapBuilder::new(&index, NOW);
    let (mut json, mut protobuf) = (0, 0);
    for rank in 0..index.peer_count() as u32 {
        let (j, p) = sizes(PeerMap::from(&maps.map(rank)));
        json += j;
        protobuf += p;
    }
    println!(
        "{peers:>6}/{groups:<5}  every peer's    {json:>10}  {protobuf:>14}  {:.2}",
        json as f64 / protobuf as f64
    );
    assert!(protobuf < json);
}
