//! Map deltas on the Sync stream, against the real server binary: a peer
//! that accepts deltas gets one whole map and then only what changed, each
//! with the digest of the map it leads to; AckMap confirms the map held
//! and refuses another; a reconnecting peer that names its acknowledged map
//! gets a delta from it, one naming an unknown map the whole map; a peer
//! that does not accept deltas keeps getting whole maps; a daemon of an
//! earlier release, which checks whole-JSON digests, gets those.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::client::{assert_status, reusable, run, Peer, PROMPT};
use common::Server;
use meshplane_core::netmap::delta::{
    apply, apply_checked, digest, json_digest, ordered_digest, MapDelta, MapDigest,
};
use meshplane_core::netmap::PeerMap;
use meshplane_proto::delta::from_digest_bytes;
use meshplane_proto::v1::{
    AckMapRequest, AckMapResponse, SealedMessage, SyncRequest, SyncResponse,
};
use prost::Message;
use serde_json::json;
use tonic::{Code, Status, Streaming};

impl Peer {
    async fn sync_deltas(&mut self, held: Option<(u64, Vec<u8>)>) -> Streaming<SealedMessage> {
        self.sync_with(held, Release::Current).await
    }

    /// A delta stream as a daemon of `release` opens it.
    async fn sync_with(
        &mut self,
        held: Option<(u64, Vec<u8>)>,
        release: Release,
    ) -> Streaming<SealedMessage> {
        let (held_serial, held_digest) = held.unwrap_or_default();
        let sealed = self.seal(&SyncRequest {
            accepts_deltas: true,
            held_serial,
            held_digest,
            entry_digests: release != Release::First,
            folded_digests: release == Release::Current,
            ..SyncRequest::default()
        });
        self.client.sync(sealed).await.unwrap().into_inner()
    }

    async fn response(&mut self, stream: &mut Streaming<SealedMessage>) -> (SyncResponse, usize) {
        let sealed = tokio::time::timeout(PROMPT, stream.message())
            .await
            .expect("an answer within 2 s")
            .expect("an answer, not an error")
            .expect("an answer, not the end");
        let response: SyncResponse = self.open(&sealed);
        (response.clone(), response.encoded_len())
    }

    async fn ack(&mut self, serial: u64, digest: Vec<u8>) -> Result<(), Status> {
        let sealed = self.seal(&AckMapRequest { serial, digest });
        let answer = self.client.ack_map(sealed).await?.into_inner();
        let _: AckMapResponse = self.open(&answer);
        Ok(())
    }
}

/// The whole map a response carries, checked against its digest.
fn whole(response: &SyncResponse) -> PeerMap {
    assert!(response.delta.is_none(), "a whole map, not a delta");
    let map = PeerMap::try_from(response.network_map.clone().expect("a map")).unwrap();
    let sent = from_digest_bytes("digest", &response.digest).unwrap();
    assert_eq!(digest(&map), sent, "the digest is the map's");
    map
}

/// Applies the delta a response carries to `held`, checking the digest.
fn applied(held: &mut PeerMap, response: &SyncResponse) {
    assert!(response.network_map.is_none(), "a delta, not a whole map");
    let delta = MapDelta::try_from(response.delta.clone().expect("a delta")).unwrap();
    let sent = from_digest_bytes("digest", &response.digest).unwrap();
    apply_checked(held, &delta, &sent).expect("the delta leads to the server's map");
}

fn keys(map: &PeerMap) -> Vec<&str> {
    map.peers.iter().map(|p| p.key.as_str()).collect()
}

fn deltas_follow_changes_and_acks_prove_the_map(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut a = Peer::connect(s, "alpha").await;
        let mut b = Peer::connect(s, "beta").await;
        a.login(&key).await.unwrap();
        b.login(&key).await.unwrap();
        // b takes whole maps only, and keeps the account's hub running.
        let mut sb = b.sync().await;
        let (first_b, _) = b.response(&mut sb).await;
        assert!(first_b.network_map.is_some() && first_b.delta.is_none());
        assert!(first_b.digest.is_empty(), "no digest without deltas");

        let mut sa = a.sync_deltas(None).await;
        let (first, _) = a.response(&mut sa).await;
        let mut held = whole(&first);
        assert_eq!(keys(&held), [b.key.as_str()]);
        a.ack(first.serial, first.digest.clone()).await.unwrap();

        // A peer joins: a gets one peer entry and its record, b a whole map.
        let mut c = Peer::connect(s, "gamma").await;
        c.login(&key).await.unwrap();
        let (joined, size) = a.response(&mut sa).await;
        applied(&mut held, &joined);
        assert_eq!(held.peers.len(), 2);
        assert!(keys(&held).contains(&c.key.as_str()));
        let (whole_b, whole_size) = b.response(&mut sb).await;
        assert!(whole_b.network_map.is_some());
        assert!(
            size < whole_size,
            "a delta of {size} bytes, the whole map {whole_size}"
        );
        a.ack(joined.serial, joined.digest.clone()).await.unwrap();

        // An acknowledgement of another map with the same serial is refused;
        // a digest that is not 32 bytes is bad input.
        assert_status(
            a.ack(joined.serial, vec![7; 32]).await,
            Code::FailedPrecondition,
            "the map held is not the one sent with this serial: open Sync again for the whole map",
        );
        assert_status(
            a.ack(joined.serial, vec![7; 5]).await,
            Code::InvalidArgument,
            "network map: digest is not a 32-byte digest (5 bytes)",
        );

        // The Default policy goes: only rules and peers leave.
        for p in s.get("/api/policies").as_array().unwrap() {
            s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));
        }
        let (cut, _) = a.response(&mut sa).await;
        applied(&mut held, &cut);
        assert!(held.peers.is_empty() && held.firewall_rules.is_empty());
        a.ack(cut.serial, cut.digest.clone()).await.unwrap();
        let acked = (cut.serial, cut.digest.clone());

        // Reconnecting with the acknowledged map: a delta from it.
        drop(sa);
        let mut sa = a.sync_deltas(Some(acked.clone())).await;
        let (again, _) = a.response(&mut sa).await;
        applied(&mut held, &again);

        // A policy comes back while a is connected.
        let all = s.all_group();
        s.post(
            "/api/policies",
            json!({"name": "all", "enabled": true, "rules": [{"name": "r",
                "enabled": true, "action": "accept", "bidirectional": true,
                "protocol": "all", "sources": [all], "destinations": [all]}]}),
        );
        let (back, _) = a.response(&mut sa).await;
        applied(&mut held, &back);
        assert_eq!(held.peers.len(), 2);

        // Naming a map the server does not know: the whole map.
        drop(sa);
        let mut sa = a.sync_deltas(Some((acked.0, vec![1; 32]))).await;
        let (fresh, _) = a.response(&mut sa).await;
        assert_eq!(whole(&fresh), held);
        drop(sa);
        drop(sb);
    });
}

/// Daemons by the digest they check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// The first releases with deltas: the SHA-256 of the whole map's JSON.
    First,
    /// The previous release: entry hashes in order, all hashed.
    Previous,
    Current,
}

/// A daemon of the first releases with deltas checks every digest as the
/// SHA-256 of the whole map's JSON, acknowledges with it and names its map
/// with it.
fn an_earlier_daemon_gets_whole_json_digests(s: &mut Server) {
    an_earlier_daemon_gets_its_digests(s, Release::First, json_digest);
}

/// A daemon of the previous release checks digests of its entries' hashes
/// in order.
fn a_previous_daemon_gets_ordered_digests(s: &mut Server) {
    an_earlier_daemon_gets_its_digests(s, Release::Previous, ordered_digest);
}

fn an_earlier_daemon_gets_its_digests(
    s: &mut Server,
    release: Release,
    its_digest: fn(&PeerMap) -> MapDigest,
) {
    run(async {
        let key = reusable(s);
        let mut a = Peer::connect(s, "alpha").await;
        let mut b = Peer::connect(s, "beta").await;
        a.login(&key).await.unwrap();
        b.login(&key).await.unwrap();
        let sent = |r: &SyncResponse| from_digest_bytes("digest", &r.digest).unwrap();
        // b's stream keeps the account's hub, and what it remembers, running.
        let sb = b.sync().await;

        let mut sa = a.sync_with(None, release).await;
        let (first, _) = a.response(&mut sa).await;
        let mut held = PeerMap::try_from(first.network_map.clone().expect("a map")).unwrap();
        assert_eq!(its_digest(&held), sent(&first));
        assert_ne!(digest(&held), sent(&first));
        a.ack(first.serial, first.digest.clone()).await.unwrap();

        let mut c = Peer::connect(s, "gamma").await;
        c.login(&key).await.unwrap();
        let (joined, _) = a.response(&mut sa).await;
        let delta = MapDelta::try_from(joined.delta.clone().expect("a delta")).unwrap();
        apply(&mut held, &delta).unwrap();
        assert_eq!(its_digest(&held), sent(&joined));
        a.ack(joined.serial, joined.digest.clone()).await.unwrap();

        // Reconnecting with the acknowledged map: a delta from it.
        drop(sa);
        let mut sa = a
            .sync_with(Some((joined.serial, joined.digest.clone())), release)
            .await;
        let (again, _) = a.response(&mut sa).await;
        assert!(again.network_map.is_none(), "a delta from the map named");
        let delta = MapDelta::try_from(again.delta.clone().expect("a delta")).unwrap();
        apply(&mut held, &delta).unwrap();
        assert_eq!(its_digest(&held), sent(&again));
        drop(sa);
        drop(sb);
    });
}

both_stores!(
    deltas_follow_changes_and_acks_prove_the_map,
    an_earlier_daemon_gets_whole_json_digests,
    a_previous_daemon_gets_ordered_digests
);
