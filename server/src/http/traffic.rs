//! `/api/events/network-traffic`: the flow events peers reported (over
//! gRPC ReportTraffic), admins only.
//!
//! One record is one flow as one peer saw it: the events that share a
//! reporter and a flow id, with their counts and time window. The store
//! narrows by reporter, user and time; the other filters apply to the
//! records, which are then ordered newest first (by their last event) and
//! cut into pages. Endpoints are named after the account's peers as they
//! are now: an address that is a peer's mesh IP shows that peer. A flow is
//! `P2P` when both ends are peers, `ROUTED` otherwise.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::model::{Peer, User};
use meshplane_core::Timestamp;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::failure::{Failure, Filter};
use super::App;
use crate::domain::traffic_events::Reported;
use crate::records::AccountRecord;
use crate::store::TrafficQuery;

/// Page size when none is asked for, and the largest allowed (reference).
const DEFAULT_PAGE_SIZE: u64 = 1000;
const MAX_PAGE_SIZE: u64 = 50_000;

const TYPES: [&str; 4] = ["TYPE_UNKNOWN", "TYPE_START", "TYPE_END", "TYPE_DROP"];
const CONNECTION_TYPES: [&str; 2] = ["P2P", "ROUTED"];
const DIRECTIONS: [&str; 3] = ["INGRESS", "EGRESS", "DIRECTION_UNKNOWN"];

pub fn routes() -> Router<App> {
    Router::new().route("/api/events/network-traffic", get(list))
}

/// The query parameters as given; [`Wanted::parse`] checks them.
#[derive(Debug, Default, Deserialize)]
struct Params {
    page: Option<String>,
    page_size: Option<String>,
    user_id: Option<String>,
    reporter_id: Option<String>,
    source_id: Option<String>,
    destination_id: Option<String>,
    protocol: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    connection_type: Option<String>,
    direction: Option<String>,
    search: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

/// The checked filters.
#[derive(Debug)]
struct Wanted {
    page: u64,
    page_size: u64,
    store: TrafficQuery,
    source_id: Option<String>,
    destination_id: Option<String>,
    protocol: Option<u8>,
    kind: Option<String>,
    connection_type: Option<String>,
    direction: Option<String>,
    /// Lower case.
    search: Option<String>,
}

impl Wanted {
    fn parse(p: Params) -> Result<Wanted, Failure> {
        let page = number(p.page.as_deref(), "page", 1, u64::MAX)?.unwrap_or(1);
        let page_size = number(p.page_size.as_deref(), "page_size", 1, MAX_PAGE_SIZE)?
            .unwrap_or(DEFAULT_PAGE_SIZE);
        let protocol = number(p.protocol.as_deref(), "protocol", 0, 255)?
            .map(|n| u8::try_from(n).unwrap_or(u8::MAX));
        let from = date(p.start_date.as_deref(), "start_date")?;
        let to = date(p.end_date.as_deref(), "end_date")?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(Failure::invalid("start_date must not be after end_date"));
            }
        }
        Ok(Wanted {
            page,
            page_size,
            store: TrafficQuery {
                reporter_id: given(p.reporter_id),
                user_id: given(p.user_id),
                from_ms: from.map_or(i64::MIN, Timestamp::as_millis),
                to_ms: to.map_or(i64::MAX, Timestamp::as_millis),
            },
            source_id: given(p.source_id),
            destination_id: given(p.destination_id),
            protocol,
            kind: one_of(p.kind, "type", &TYPES)?,
            connection_type: one_of(p.connection_type, "connection_type", &CONNECTION_TYPES)?,
            direction: one_of(p.direction, "direction", &DIRECTIONS)?,
            search: given(p.search).map(|s| s.to_lowercase()),
        })
    }

    fn keeps(&self, flow: &Flow) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.source_id, &flow.source.id)
            && is(&self.destination_id, &flow.destination.id)
            && self.protocol.is_none_or(|p| p == flow.protocol)
            && is(&self.direction, &flow.direction)
            && is(&self.connection_type, flow.connection_type)
            && self
                .kind
                .as_deref()
                .is_none_or(|k| flow.events.iter().any(|e| e.kind == k))
            && self.search.as_deref().is_none_or(|s| flow.matches(s))
    }
}

/// An empty parameter is no filter.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// The integer parameter `name`, which must lie in `min..=max`.
fn number(value: Option<&str>, name: &str, min: u64, max: u64) -> Result<Option<u64>, Failure> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    text.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| {
            let bound = if max == u64::MAX {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            Failure::invalid(format!(
                "invalid {name} \"{text}\": must be an integer {bound}"
            ))
        })
}

fn date(value: Option<&str>, name: &str) -> Result<Option<Timestamp>, Failure> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    Timestamp::parse_rfc3339(text).map(Some).ok_or_else(|| {
        Failure::invalid(format!(
            "invalid {name} \"{text}\": must be an RFC 3339 date-time such as 2024-01-01T00:00:00Z"
        ))
    })
}

fn one_of(value: Option<String>, name: &str, allowed: &[&str]) -> Result<Option<String>, Failure> {
    match given(value) {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Failure::invalid(format!(
            "invalid {name} \"{v}\": must be one of {}",
            allowed.join(", ")
        ))),
        v => Ok(v),
    }
}

/// `NetworkTrafficEventsResponse`.
#[derive(Debug, Serialize)]
struct Page {
    data: Vec<Flow>,
    page: u64,
    page_size: u64,
    total_records: u64,
    total_pages: u64,
}

/// `NetworkTrafficEvent`: one flow as its reporter saw it.
#[derive(Debug, Serialize)]
struct Flow {
    /// The id of the flow's latest event.
    id: String,
    flow_id: String,
    reporter_id: String,
    /// When the server stored the latest event.
    receive_timestamp: Timestamp,
    source: Endpoint,
    destination: Endpoint,
    user: UserView,
    /// The policy that allowed it: not known to the reporter, so empty.
    policy: Named,
    icmp: Icmp,
    protocol: u8,
    direction: String,
    rx_bytes: u64,
    rx_packets: u64,
    tx_bytes: u64,
    tx_packets: u64,
    num_of_starts: u64,
    num_of_ends: u64,
    num_of_drops: u64,
    window_start: Timestamp,
    window_end: Timestamp,
    events: Vec<SubEvent>,
    #[serde(skip)]
    connection_type: &'static str,
}

impl Flow {
    /// Whether the lower-case `needle` is part of the user's email, an
    /// endpoint's name, DNS label or address.
    fn matches(&self, needle: &str) -> bool {
        let ends = [&self.source, &self.destination];
        std::iter::once(self.user.email.as_str())
            .chain(ends.iter().flat_map(|e| {
                [
                    e.name.as_str(),
                    e.address.as_str(),
                    e.dns_label.as_deref().unwrap_or(""),
                ]
            }))
            .any(|hay| hay.to_lowercase().contains(needle))
    }
}

/// `NetworkTrafficEndpoint`.
#[derive(Debug, Serialize)]
struct Endpoint {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    geo_location: Location,
    os: Option<String>,
    address: String,
    dns_label: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Location {
    city_name: String,
    country_code: String,
}

#[derive(Debug, Default, Serialize)]
struct UserView {
    id: String,
    email: String,
    name: String,
}

#[derive(Debug, Default, Serialize)]
struct Named {
    id: String,
    name: String,
}

#[derive(Debug, Serialize)]
struct Icmp {
    #[serde(rename = "type")]
    kind: u8,
    code: u8,
}

#[derive(Debug, Serialize)]
struct SubEvent {
    #[serde(rename = "type")]
    kind: String,
    timestamp: Timestamp,
}

/// A flow's events, each with its row id, in time order.
type Events = Vec<(String, Reported)>;

/// What names the endpoints and users.
struct Directory {
    peers: BTreeMap<Ipv4Addr, Peer>,
    /// The account's DNS domain, which peers' labels are under.
    dns_domain: String,
    users: BTreeMap<String, User>,
}

impl Directory {
    fn endpoint(&self, ip: Ipv4Addr, port: u16) -> Endpoint {
        let address = format!("{ip}:{port}");
        match self.peers.get(&ip) {
            Some(p) => Endpoint {
                id: p.id.to_string(),
                kind: "PEER",
                name: p.name.clone(),
                geo_location: Location::default(),
                os: Some(p.meta.os.clone()),
                address,
                dns_label: Some(format!("{}.{}", p.dns_label, self.dns_domain)),
            },
            None => Endpoint {
                id: String::new(),
                kind: "UNKNOWN",
                name: String::new(),
                geo_location: Location::default(),
                os: None,
                address,
                dns_label: None,
            },
        }
    }

    fn user(&self, id: &str) -> UserView {
        match self.users.get(id) {
            Some(u) => UserView {
                id: u.id.to_string(),
                email: u.email.clone(),
                name: u.name.clone(),
            },
            None => UserView {
                id: id.to_string(),
                ..UserView::default()
            },
        }
    }

    /// The record of one flow from its events (in time order, at least one).
    fn flow(
        &self,
        reporter_id: String,
        user_id: &str,
        events: &[(String, Reported)],
    ) -> Option<Flow> {
        let (_, first) = events.first()?;
        let (last_id, last) = events.last()?;
        let count = |kind: &str| events.iter().filter(|(_, e)| e.kind == kind).count() as u64;
        let sum = |pick: fn(&Reported) -> u64| events.iter().map(|(_, e)| pick(e)).sum::<u64>();
        let both_peers = self.peers.contains_key(&first.source_ip)
            && self.peers.contains_key(&first.destination_ip);
        Some(Flow {
            id: last_id.clone(),
            flow_id: first.flow_id.clone(),
            reporter_id,
            receive_timestamp: events.iter().map(|(_, e)| e.received).max()?,
            source: self.endpoint(first.source_ip, first.source_port),
            destination: self.endpoint(first.destination_ip, first.destination_port),
            user: self.user(user_id),
            policy: Named::default(),
            icmp: Icmp {
                kind: first.icmp_type,
                code: first.icmp_code,
            },
            protocol: first.protocol,
            direction: first.direction.clone(),
            rx_bytes: sum(|e| e.rx_bytes),
            rx_packets: sum(|e| e.rx_packets),
            tx_bytes: sum(|e| e.tx_bytes),
            tx_packets: sum(|e| e.tx_packets),
            num_of_starts: count("TYPE_START"),
            num_of_ends: count("TYPE_END"),
            num_of_drops: count("TYPE_DROP"),
            window_start: first.timestamp,
            window_end: last.timestamp,
            events: events
                .iter()
                .map(|(_, e)| SubEvent {
                    kind: e.kind.clone(),
                    timestamp: e.timestamp,
                })
                .collect(),
            connection_type: if both_peers { "P2P" } else { "ROUTED" },
        })
    }
}

async fn list(
    State(app): State<App>,
    caller: Caller,
    Filter(params): Filter<Params>,
) -> Result<Json<Page>, Failure> {
    let wanted = Wanted::parse(params)?;
    let account = caller.account_id();
    let mut tx = app.store.read().await?;
    let record = super::load::<AccountRecord>(&mut tx, account, account).await?;
    let directory = Directory {
        dns_domain: record.settings.dns_domain,
        peers: tx
            .list::<Peer>(account)
            .await?
            .into_iter()
            .map(|p| (p.ip, p))
            .collect(),
        users: tx
            .list::<User>(account)
            .await?
            .into_iter()
            .map(|u| (u.id.to_string(), u))
            .collect(),
    };
    let rows = tx.traffic(account, &wanted.store).await?;
    // (reporter, flow) -> user and events, each list in time order.
    let mut flows: BTreeMap<(String, String), (String, Events)> = BTreeMap::new();
    for row in rows {
        let event: Reported = serde_json::from_str(&row.data)
            .map_err(|e| Failure::from(crate::store::StoreError::from(e)))?;
        flows
            .entry((row.reporter_id, event.flow_id.clone()))
            .or_insert_with(|| (row.user_id, Vec::new()))
            .1
            .push((row.id, event));
    }
    let mut kept: Vec<Flow> = flows
        .into_iter()
        .filter_map(|((reporter, _), (user, events))| directory.flow(reporter, &user, &events))
        .filter(|f| wanted.keeps(f))
        .collect();
    kept.sort_by(|a, b| {
        (b.window_end, &b.flow_id, &b.reporter_id).cmp(&(a.window_end, &a.flow_id, &a.reporter_id))
    });
    let total = kept.len() as u64;
    let skip =
        usize::try_from((wanted.page - 1).saturating_mul(wanted.page_size)).unwrap_or(usize::MAX);
    let size = usize::try_from(wanted.page_size).unwrap_or(usize::MAX);
    let data = kept.into_iter().skip(skip).take(size).collect();
    Ok(Json(Page {
        data,
        page: wanted.page,
        page_size: wanted.page_size,
        total_records: total,
        total_pages: total.div_ceil(wanted.page_size),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        let ok = Wanted::parse(Params {
            page: Some("2".into()),
            page_size: Some("50000".into()),
            protocol: Some("6".into()),
            kind: Some("TYPE_DROP".into()),
            start_date: Some("2024-01-01T00:00:00Z".into()),
            ..Params::default()
        })
        .unwrap();
        assert_eq!((ok.page, ok.page_size, ok.protocol), (2, 50_000, Some(6)));
        assert_eq!(ok.store.to_ms, i64::MAX);

        let bad = [
            (Params { page: Some("0".into()), ..Params::default() },
             "invalid page \"0\": must be an integer at least 1"),
            (Params { page_size: Some("50001".into()), ..Params::default() },
             "invalid page_size \"50001\": must be an integer between 1 and 50000"),
            (Params { protocol: Some("tcp".into()), ..Params::default() },
             "invalid protocol \"tcp\": must be an integer between 0 and 255"),
            (Params { direction: Some("UP".into()), ..Params::default() },
             "invalid direction \"UP\": must be one of INGRESS, EGRESS, DIRECTION_UNKNOWN"),
            (Params { end_date: Some("yesterday".into()), ..Params::default() },
             "invalid end_date \"yesterday\": must be an RFC 3339 date-time such as 2024-01-01T00:00:00Z"),
        ];
        for (params, message) in bad {
            assert_eq!(Wanted::parse(params).unwrap_err().message(), message);
        }
    }
}
