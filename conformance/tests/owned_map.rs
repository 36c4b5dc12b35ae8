//! The owned map (`PeerMap`, what the wire protocol and the daemon carry)
//! serialises to the very JSON of every `network_map` vector, and to the
//! same text as the borrowed map it was built from.

use std::fs;

use meshplane_conformance::{vector_files, vectors_dir};
use meshplane_core::index::AccountIndex;
use meshplane_core::model::Account;
use meshplane_core::netmap::{network_map, PeerMap};
use meshplane_core::Timestamp;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Input {
    account: Account,
    peer_id: String,
    now: Timestamp,
}

#[test]
fn owned_maps_match_every_network_map_vector() {
    let mut checked = 0;
    for path in vector_files(&vectors_dir().join("netmap")).expect("vectors") {
        let text = fs::read_to_string(&path).expect("vector file");
        let file: Value = serde_json::from_str(&text).expect("vector JSON");
        let cases = file["cases"].as_array().expect("cases");
        for case in cases {
            let Some(expect) = case.get("expect") else {
                continue;
            };
            if case["op"] != "network_map" {
                continue;
            }
            let id = &case["id"];
            let input: Input = serde_json::from_value(case["input"].clone()).expect("input");
            let index = AccountIndex::new(&input.account);
            let map = network_map(&index, &input.peer_id, input.now).expect("map");
            let owned = PeerMap::from(&map);
            assert_eq!(
                &serde_json::to_value(&owned).expect("JSON"),
                expect,
                "vector {id}"
            );
            assert_eq!(
                serde_json::to_string(&owned).expect("JSON"),
                serde_json::to_string(&map).expect("JSON"),
                "vector {id}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} network_map vectors found");
}
