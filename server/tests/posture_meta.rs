//! Posture meta over the management protocol, against the real server
//! binary: Login and Sync answers carry the process paths of the posture
//! checks that apply to the peer (and a change of the checks sends them
//! again); SyncMeta stores a changed meta, which decides the checks and so
//! the maps; and what a peer may report is bounded, refused with
//! INVALID_ARGUMENT past the bounds and RESOURCE_EXHAUSTED when sent too
//! often.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::client::{assert_status, listed, run, Peer, PROMPT};
use common::Server;
use meshplane_proto::v1::{
    PeerSystemMeta, SealedMessage, SyncMetaRequest, SyncMetaResponse, SyncResponse,
};
use serde_json::{json, Value};
use tonic::{Code, Status, Streaming};

/// The process a check asks for, on Linux and Windows.
const TOOL: &str = "/opt/tool/bin/agent";
const TOOL_WINDOWS: &str = "C:\\Tool\\agent.exe";

impl Peer {
    /// The meta this test peer reports, with `processes` running.
    fn meta(&self, processes: &[&str]) -> PeerSystemMeta {
        PeerSystemMeta {
            processes: processes.iter().map(|p| p.to_string()).collect(),
            network_addresses: vec!["192.168.1.20/24".into()],
            ..self.login_request("").meta.unwrap()
        }
    }

    async fn sync_meta(&mut self, meta: PeerSystemMeta) -> Result<(), Status> {
        let sealed = self.seal(&SyncMetaRequest { meta: Some(meta) });
        let answer = self.client.sync_meta(sealed).await?.into_inner();
        let _: SyncMetaResponse = self.open(&answer);
        Ok(())
    }

    /// The next Sync answer, which must come within [`PROMPT`].
    async fn next_response(&mut self, stream: &mut Streaming<SealedMessage>) -> SyncResponse {
        let sealed = tokio::time::timeout(PROMPT, stream.message())
            .await
            .expect("an answer within 2 s")
            .expect("an answer, not an error")
            .expect("an answer, not the end");
        self.open(&sealed)
    }
}

/// The keys of the peers in a Sync answer's map.
fn peers_of(response: &SyncResponse) -> Vec<String> {
    let map =
        meshplane_core::netmap::PeerMap::try_from(response.network_map.clone().unwrap()).unwrap();
    let json = serde_json::to_value(map).unwrap();
    listed(&json).into_iter().map(str::to_string).collect()
}

/// Groups `src` and `dst`, a setup key for each, a process check and a
/// policy `src -> dst` that requires it (the Default policy removed). The
/// setup keys and the check's id.
fn account(s: &Server) -> (String, String, String) {
    for p in s.get("/api/policies").as_array().unwrap() {
        s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));
    }
    let src = s.post("/api/groups", json!({"name": "src"}))["id"].clone();
    let dst = s.post("/api/groups", json!({"name": "dst"}))["id"].clone();
    let key = |group: &Value| {
        s.post(
            "/api/setup-keys",
            json!({"name": "k", "type": "reusable", "expires_in": 0,
                "auto_groups": [group], "usage_limit": 0}),
        )["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let check = s.post(
        "/api/posture-checks",
        json!({"name": "agent running", "checks": {"process_check": {"processes": [
            {"linux_path": TOOL, "windows_path": TOOL_WINDOWS}]}}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(
        "/api/policies",
        json!({"name": "guarded", "enabled": true, "source_posture_checks": [check],
            "rules": [{"name": "r", "enabled": true, "action": "accept",
                "bidirectional": true, "protocol": "all",
                "sources": [src], "destinations": [dst]}]}),
    );
    (key(&src), key(&dst), check)
}

fn answers_carry_the_paths_and_meta_decides(s: &mut Server) {
    run(async {
        let (src_key, dst_key, check) = account(s);
        let mut a = Peer::connect(s, "alpha").await;
        let mut b = Peer::connect(s, "beta").await;
        // Registration and a later login both name the paths, to the
        // source of the policy only.
        let la = a.login(&src_key).await.unwrap();
        assert_eq!(la.process_check_paths, [TOOL, TOOL_WINDOWS]);
        assert_eq!(
            a.login("").await.unwrap().process_check_paths,
            [TOOL, TOOL_WINDOWS]
        );
        assert!(b
            .login(&dst_key)
            .await
            .unwrap()
            .process_check_paths
            .is_empty());

        // Without the process a fails the check: no access either way.
        let mut sa = a.sync().await;
        let first = a.next_response(&mut sa).await;
        assert_eq!(first.process_check_paths, [TOOL, TOOL_WINDOWS]);
        assert!(peers_of(&first).is_empty());
        let mut sb = b.sync().await;
        assert!(peers_of(&b.next_response(&mut sb).await).is_empty());

        // The process starts: a's new meta gives both their access.
        a.sync_meta(a.meta(&[TOOL])).await.unwrap();
        assert_eq!(peers_of(&a.next_response(&mut sa).await), [b.key.clone()]);
        assert_eq!(peers_of(&b.next_response(&mut sb).await), [a.key.clone()]);
        let rest = s.get(&format!("/api/peers/{}", la.peer_id));
        assert_eq!(rest["os"], "linux 12", "{rest}");

        // The check changes (same map): a's stream sends the new paths.
        s.put(
            &format!("/api/posture-checks/{check}"),
            json!({"name": "agent running", "checks": {"process_check": {"processes": [
                {"linux_path": TOOL}]}}}),
        );
        let changed = a.next_response(&mut sa).await;
        assert_eq!(changed.process_check_paths, [TOOL]);
        assert_eq!(peers_of(&changed), [b.key.clone()]);

        // The process stops again (after the rate limit's interval).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        a.sync_meta(a.meta(&[])).await.unwrap();
        assert!(peers_of(&a.next_response(&mut sa).await).is_empty());
        assert!(peers_of(&b.next_response(&mut sb).await).is_empty());
    });
}

fn sync_meta_is_bounded(s: &mut Server) {
    run(async {
        let (src_key, _, _) = account(s);
        let mut stranger = Peer::connect(s, "stranger").await;
        assert_status(
            stranger.sync_meta(stranger.meta(&[])).await,
            Code::NotFound,
            "peer is not registered",
        );

        let mut a = Peer::connect(s, "alpha").await;
        let la = a.login(&src_key).await.unwrap();
        let mut meta = a.meta(&[]);
        meta.network_addresses = (0..257).map(|i| format!("10.0.{}.1/24", i % 250)).collect();
        assert_status(
            a.sync_meta(meta).await,
            Code::InvalidArgument,
            "too many network addresses: at most 256",
        );
        let mut meta = a.meta(&[]);
        meta.network_addresses = vec!["10.0.0.1".into()];
        assert_status(
            a.sync_meta(meta).await,
            Code::InvalidArgument,
            "network address \"10.0.0.1\" is not in CIDR form",
        );
        let long = format!("/{}", "p".repeat(1024));
        assert_status(
            a.sync_meta(a.meta(&[&long])).await,
            Code::InvalidArgument,
            "process path is too long: at most 1024 characters",
        );
        let many: Vec<String> = (0..1001).map(|i| format!("/bin/p{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_status(
            a.sync_meta(a.meta(&many)).await,
            Code::InvalidArgument,
            "too many processes: at most 1000",
        );
        let mut meta = a.meta(&[]);
        meta.hostname = "h".repeat(256);
        assert_status(
            a.sync_meta(meta.clone()).await,
            Code::InvalidArgument,
            "hostname is too long: at most 255 characters",
        );
        // Login and Sync check the same bounds.
        let mut login = a.login_request("");
        login.meta = Some(meta);
        let sealed = a.seal(&login);
        assert_status(
            a.client.login(sealed).await,
            Code::InvalidArgument,
            "hostname is too long: at most 255 characters",
        );
        // Nothing of the refused reports was stored.
        let rest = s.get(&format!("/api/peers/{}", la.peer_id));
        assert_eq!(rest["hostname"], "alpha", "{rest}");

        // Reports in a burst: one goes through, the rest are refused until
        // the interval has passed.
        let (mut refused, mut stored) = (None, None);
        for i in 0..20 {
            let path = format!("/bin/p{i}");
            match a.sync_meta(a.meta(&[&path])).await {
                Ok(()) => stored = Some(path),
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
        let status = refused.expect("a burst of reports is limited");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(
            status.message(),
            "meta updates are limited to one per 1000 ms per peer"
        );
        // Repeating what is stored is no change, and not limited.
        let stored = stored.expect("the burst's first report stored");
        a.sync_meta(a.meta(&[&stored])).await.unwrap();
    });
}

both_stores!(
    answers_carry_the_paths_and_meta_decides,
    sync_meta_is_bounded
);
