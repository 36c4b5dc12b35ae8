//! Network-traffic events on the real server binary: sealed ReportTraffic
//! from registered peers (refused while the account does not log their
//! traffic), and `GET /api/events/network-traffic` with every filter,
//! pagination and the refusal of bad parameters.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use common::client::{assert_status, reusable, run, Peer};
use common::Server;
use meshplane_proto::v1::{
    FlowDirection, FlowEvent, FlowEventType, ReportTrafficRequest, ReportTrafficResponse,
};
use serde_json::{json, Value};
use tonic::{Code, Status};

const PATH: &str = "/api/events/network-traffic";
/// A fixed moment the reported events happen after (2025-01-01T00:00:00Z).
const T0: i64 = 1_735_689_600_000;

/// ReportTraffic from `peer`; how many events the server stored.
async fn report(peer: &mut Peer, events: Vec<FlowEvent>) -> Result<u32, Status> {
    let sealed = peer.seal(&ReportTrafficRequest { events, lost: 0 });
    let answer = peer.client.report_traffic(sealed).await?.into_inner();
    let response: ReportTrafficResponse = peer.open(&answer);
    Ok(response.stored)
}

/// Sets the account's traffic-log settings.
fn set_logging(s: &Server, enabled: bool, groups: &[&str], counter: bool) {
    let account = s.get("/api/accounts")[0].clone();
    let mut settings = account["settings"].clone();
    settings["extra"]["network_traffic_logs_enabled"] = json!(enabled);
    settings["extra"]["network_traffic_logs_groups"] = json!(groups);
    settings["extra"]["network_traffic_packet_counter_enabled"] = json!(counter);
    let id = account["id"].as_str().unwrap();
    s.put(
        &format!("/api/accounts/{id}"),
        json!({ "settings": settings }),
    );
}

/// A UUID whose last digits are `n`.
fn uuid(n: u32) -> String {
    format!("6f1c2a3b-0000-4000-8000-{n:012x}")
}

/// One event of flow `flow` at `T0 + at_ms`.
#[allow(clippy::too_many_arguments)]
fn event(
    id: u32,
    flow: u32,
    kind: FlowEventType,
    at_ms: i64,
    protocol: u32,
    direction: FlowDirection,
    from: (&str, u32),
    to: (&str, u32),
) -> FlowEvent {
    FlowEvent {
        event_id: uuid(id),
        flow_id: uuid(flow),
        r#type: kind as i32,
        timestamp_ms: T0 + at_ms,
        protocol,
        direction: direction as i32,
        source_ip: from.0.to_string(),
        source_port: from.1,
        destination_ip: to.0.to_string(),
        destination_port: to.1,
        ..FlowEvent::default()
    }
}

/// The flow ids of a listing, in order.
fn flows(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flow_id"].as_str().unwrap().to_string())
        .collect()
}

fn listed(s: &Server, query: &str) -> Vec<String> {
    flows(&s.get(&format!("{PATH}?{query}")))
}

fn reports_are_stored_filtered_and_paged(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut alpha = Peer::connect(s, "alpha").await;
        let la = alpha.login(&key).await.unwrap();
        let mut beta = Peer::connect(s, "beta").await;
        let lb = beta.login(&key).await.unwrap();
        let ip = |address: &str| address.split('/').next().unwrap().to_string();
        let (a, b) = (ip(&la.address), ip(&lb.address));
        let (a, b) = (a.as_str(), b.as_str());
        // Alpha belongs to Alice (as after her SSO login); beta to nobody.
        let alice = s.post(
            "/api/users",
            json!({"email": "Alice@Example.com", "name": "Alice", "role": "user",
                "auto_groups": [], "is_service_user": false}),
        );
        let alice_id = alice["id"].as_str().unwrap().to_string();
        // (On a thread of its own: the store helper runs its own runtime.)
        std::thread::scope(|t| {
            t.spawn(|| s.set_peer_user(&la.peer_id, &alice_id));
        });
        use FlowDirection::{Egress, Ingress};
        use FlowEventType::{Drop, End, Start};

        // F1: TCP alpha -> beta:80, started and ended, with counts.
        let f1_start = event(1, 1, Start, 0, 6, Egress, (a, 40000), (b, 80));
        let f1_end = FlowEvent {
            rx_packets: 5,
            rx_bytes: 700,
            tx_packets: 6,
            tx_bytes: 900,
            ..event(2, 1, End, 5_000, 6, Egress, (a, 40000), (b, 80))
        };
        // F2: a ping alpha -> beta.
        let f2 = FlowEvent {
            icmp_type: 8,
            ..event(3, 2, Start, 1_000, 1, Egress, (a, 7), (b, 7))
        };
        // F3: UDP alpha -> a routed address.
        let f3 = event(4, 3, Start, 2_000, 17, Egress, (a, 5353), ("10.1.2.3", 53));
        // F4 (beta): alpha's SSH attempt dropped.
        let f4 = event(5, 4, Drop, 10_000, 6, Ingress, (a, 40001), (b, 22));
        let from_alpha = vec![f1_start.clone(), f1_end.clone(), f2, f3];

        // Off by default: refused, nothing stored.
        assert_status(
            report(&mut alpha, from_alpha.clone()).await,
            Code::FailedPrecondition,
            "network traffic logging is disabled for this account",
        );
        // Limited to a group alpha is not in.
        let only_beta = s.post("/api/groups", json!({"name": "b", "peers": [lb.peer_id]}))["id"]
            .as_str()
            .unwrap()
            .to_string();
        set_logging(s, true, &[&only_beta], false);
        assert_status(
            report(&mut alpha, from_alpha.clone()).await,
            Code::FailedPrecondition,
            "network traffic logging is not enabled for this peer's groups",
        );
        // Without the packet counter, counts are not kept.
        assert_eq!(report(&mut beta, vec![f4.clone()]).await.unwrap(), 1);
        set_logging(s, true, &[], false);
        assert_eq!(report(&mut alpha, vec![f1_start.clone()]).await.unwrap(), 1);
        assert_eq!(s.get(PATH)["total_records"], 2);
        set_logging(s, true, &[], true);
        // A batch sent again is stored once.
        assert_eq!(report(&mut alpha, from_alpha.clone()).await.unwrap(), 3);
        assert_eq!(report(&mut alpha, from_alpha).await.unwrap(), 0);

        let all = s.get(PATH);
        assert_eq!(
            (all["page"].clone(), all["page_size"].clone()),
            (json!(1), json!(1000))
        );
        assert_eq!(
            (all["total_records"].clone(), all["total_pages"].clone()),
            (json!(4), json!(1))
        );
        // Newest first (by each flow's last event).
        assert_eq!(flows(&all), [uuid(4), uuid(1), uuid(3), uuid(2)]);
        let f1 = &all["data"][1];
        assert_eq!(f1["reporter_id"], la.peer_id.as_str());
        assert_eq!(f1["id"], uuid(2));
        assert_eq!(f1["protocol"], 6);
        assert_eq!(f1["direction"], "EGRESS");
        assert_eq!(f1["source"]["id"], la.peer_id.as_str());
        assert_eq!(f1["source"]["type"], "PEER");
        assert_eq!(f1["source"]["name"], "alpha");
        assert_eq!(f1["source"]["address"], format!("{a}:40000"));
        assert_eq!(f1["destination"]["id"], lb.peer_id.as_str());
        assert_eq!(f1["destination"]["name"], "beta");
        assert_eq!(f1["destination"]["dns_label"], lb.fqdn.as_str());
        assert_eq!(
            (f1["rx_packets"].clone(), f1["rx_bytes"].clone()),
            (json!(5), json!(700))
        );
        assert_eq!(
            (f1["tx_packets"].clone(), f1["tx_bytes"].clone()),
            (json!(6), json!(900))
        );
        assert_eq!(
            (f1["num_of_starts"].clone(), f1["num_of_ends"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(f1["num_of_drops"], 0);
        assert_eq!(f1["window_start"], "2025-01-01T00:00:00Z");
        assert_eq!(f1["window_end"], "2025-01-01T00:00:05Z");
        assert_eq!(
            f1["events"],
            json!([{"type": "TYPE_START", "timestamp": "2025-01-01T00:00:00Z"},
                   {"type": "TYPE_END", "timestamp": "2025-01-01T00:00:05Z"}])
        );
        let user = json!({"id": alice_id, "email": alice["email"], "name": alice["name"]});
        assert_eq!(f1["user"], user);
        assert_eq!(
            all["data"][0]["user"],
            json!({"id": "", "email": "", "name": ""})
        );
        assert_eq!(f1["policy"], json!({"id": "", "name": ""}));
        assert_eq!(f1["icmp"], json!({"type": 0, "code": 0}));
        assert!(f1["receive_timestamp"].as_str().unwrap() > "2025");
        assert_eq!(all["data"][3]["icmp"], json!({"type": 8, "code": 0}));
        let routed = &all["data"][2];
        assert_eq!(routed["destination"]["type"], "UNKNOWN");
        assert_eq!(routed["destination"]["os"], Value::Null);
        // Reported while the counter was off: no counts.
        assert_eq!(all["data"][0]["rx_bytes"], 0);
        assert_eq!(all["data"][0]["num_of_drops"], 1);

        // Every filter.
        let reporter = format!("reporter_id={}", lb.peer_id);
        assert_eq!(listed(s, &reporter), [uuid(4)]);
        assert_eq!(listed(s, "protocol=1"), [uuid(2)]);
        assert_eq!(listed(s, "protocol=6"), [uuid(4), uuid(1)]);
        assert_eq!(listed(s, "type=TYPE_DROP"), [uuid(4)]);
        assert_eq!(listed(s, "type=TYPE_END"), [uuid(1)]);
        assert_eq!(listed(s, "connection_type=ROUTED"), [uuid(3)]);
        assert_eq!(listed(s, "connection_type=P2P").len(), 3);
        assert_eq!(listed(s, "direction=INGRESS"), [uuid(4)]);
        assert_eq!(listed(s, "direction=EGRESS").len(), 3);
        assert!(listed(s, "direction=DIRECTION_UNKNOWN").is_empty());
        assert_eq!(listed(s, "search=BET").len(), 3);
        assert_eq!(listed(s, "search=10.1.2"), [uuid(3)]);
        assert_eq!(listed(s, &format!("search={b}:22")), [uuid(4)]);
        assert!(listed(s, "search=nobody").is_empty());
        let destination = format!("destination_id={}&source_id={}", lb.peer_id, la.peer_id);
        assert_eq!(listed(s, &destination), [uuid(4), uuid(1), uuid(2)]);
        assert!(listed(s, "user_id=someone").is_empty());
        let mine = format!("user_id={alice_id}");
        assert_eq!(listed(s, &mine), [uuid(1), uuid(3), uuid(2)]);
        assert_eq!(alice["email"], "Alice@Example.com");
        assert_eq!(listed(s, "search=alice%40example").len(), 3);
        assert_eq!(listed(s, "user_id=").len(), 4);
        assert_eq!(
            listed(
                s,
                "start_date=2025-01-01T00:00:01Z&end_date=2025-01-01T00:00:04Z"
            ),
            [uuid(3), uuid(2)]
        );
        // Only the events inside the window count.
        let late = s.get(&format!("{PATH}?start_date=2025-01-01T00:00:04%2B00:00"));
        assert_eq!(flows(&late), [uuid(4), uuid(1)]);
        assert_eq!(late["data"][1]["num_of_starts"], 0);
        assert_eq!(
            listed(s, "reporter_id=").len(),
            4,
            "an empty filter is no filter"
        );

        // Pages.
        let first = s.get(&format!("{PATH}?page_size=3"));
        assert_eq!(flows(&first), [uuid(4), uuid(1), uuid(3)]);
        assert_eq!(
            (first["total_records"].clone(), first["total_pages"].clone()),
            (json!(4), json!(2))
        );
        let second = s.get(&format!("{PATH}?page_size=3&page=2"));
        assert_eq!(flows(&second), [uuid(2)]);
        assert_eq!(second["page"], 2);
        assert!(listed(s, "page_size=3&page=3").is_empty());

        // Bad parameters.
        for (query, message) in [
            ("page=0", "invalid page \"0\": must be an integer at least 1"),
            ("page=-1", "invalid page \"-1\": must be an integer at least 1"),
            ("page_size=0", "invalid page_size \"0\": must be an integer between 1 and 50000"),
            ("page_size=50001", "invalid page_size \"50001\": must be an integer between 1 and 50000"),
            ("page_size=ten", "invalid page_size \"ten\": must be an integer between 1 and 50000"),
            ("protocol=256", "invalid protocol \"256\": must be an integer between 0 and 255"),
            ("type=START", "invalid type \"START\": must be one of TYPE_UNKNOWN, TYPE_START, TYPE_END, TYPE_DROP"),
            ("connection_type=p2p", "invalid connection_type \"p2p\": must be one of P2P, ROUTED"),
            ("direction=IN", "invalid direction \"IN\": must be one of INGRESS, EGRESS, DIRECTION_UNKNOWN"),
            ("start_date=2025-01-01", "invalid start_date \"2025-01-01\": must be an RFC 3339 date-time such as 2024-01-01T00:00:00Z"),
            ("end_date=soon", "invalid end_date \"soon\": must be an RFC 3339 date-time such as 2024-01-01T00:00:00Z"),
            ("start_date=2025-01-02T00:00:00Z&end_date=2025-01-01T00:00:00Z", "start_date must not be after end_date"),
        ] {
            s.expect_error("GET", &format!("{PATH}?{query}"), None, 422, message);
        }
        let (code, _) = s.call_as(None, "GET", PATH, None);
        assert_eq!(code, 401);
        // Admins only.
        let robot = s.post(
            "/api/users",
            json!({"name": "robot", "role": "user", "auto_groups": [], "is_service_user": true}),
        );
        let tokens = format!("/api/users/{}/tokens", robot["id"].as_str().unwrap());
        let token = s.post(&tokens, json!({"name": "ro", "expires_in": 30}));
        let auth = format!("Token {}", token["plain_token"].as_str().unwrap());
        let (code, body) = s.call_as(Some(&auth), "GET", PATH, None);
        assert_eq!(code, 403, "{body}");

        // Bad reports.
        assert_status(
            report(
                &mut alpha,
                vec![FlowEvent {
                    flow_id: "f".into(),
                    ..f4.clone()
                }],
            )
            .await,
            Code::InvalidArgument,
            "invalid flow id \"f\": must be a UUID",
        );
        assert_status(
            report(
                &mut alpha,
                vec![FlowEvent {
                    source_ip: "x".into(),
                    ..f4.clone()
                }],
            )
            .await,
            Code::InvalidArgument,
            "invalid source ip \"x\"",
        );
        let many = (0..1001).map(|i| event(100 + i, 9, Start, 0, 6, Egress, (a, 1), (b, 2)));
        assert_status(
            report(&mut alpha, many.collect()).await,
            Code::InvalidArgument,
            "too many events: at most 1000 may be reported at once",
        );
        assert_eq!(s.get(PATH)["total_records"], 4);
    });
}

both_stores!(reports_are_stored_filtered_and_paged);
