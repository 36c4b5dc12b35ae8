//! Expose sessions as JSON: name generation, and whole scripted runs of the
//! server's session table and of the client's keep-alive machine.
//!
//! A run is a list of timed steps applied in order to one fresh machine, so a
//! vector (or the browser) can replay any scenario without keeping state
//! between calls.
//!
//! `expose_table_run` input:
//! `{config?, settings, groups?, custom_domains?, peers: [{id, name, groups?}],
//! seed, steps: [{at, action, ...}]}` where `action` is `create` (with `peer`
//! and `request`), `renew` / `stop` (with `peer` and `domain`), `remove_peer`
//! (with `peer`) or `tick` (the reaper). One generator seeded once serves the
//! whole run. Output: `{results, events, sessions, next_timeout}`, one result
//! per step, each `{"ok": ...}` or `{"error": {code, message}}`:
//! create answers the session, renew `{deadline}`, stop `{stopped}`,
//! remove_peer `{removed}` and tick `{next_timeout}`.
//!
//! `expose_keepalive_run` input: `{config?, start, steps: [{at, input,
//! reason?}]}` with `input` one of `timeout`, `renew_ok`, `renew_failed`,
//! `stop`, `stop_done` (`reason` defaults to `renewal failed`). Output:
//! `{initial, trace}`, each a snapshot `{at, state, transmits, events,
//! next_timeout}` of the machine after the step (`initial`: after `start`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{envelope, parse, rng, to_value};
use crate::error::ApiError;
use crate::expose::{
    generate_name, ExposeContext, ExposeEvent, ExposePeer, ExposeRequest, KeepAlive,
    KeepAliveConfig, KeepAliveEvent, KeepAliveState, Request, Session, SessionTable, TableConfig,
};
use crate::model::{AccountSettings, Group, PeerId};
use crate::time::Timestamp;
use crate::validate::{Domain, NamePrefix};

pub(super) const OPS: &[&str] = &[
    "expose_generate_name",
    "expose_keepalive_run",
    "expose_table_run",
];

#[derive(Deserialize)]
struct GenerateName {
    #[serde(default)]
    name_prefix: Option<String>,
    seed: u64,
}

#[derive(Deserialize)]
struct TableRun {
    #[serde(default)]
    config: TableConfig,
    #[serde(default)]
    settings: AccountSettings,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    custom_domains: Vec<Domain>,
    #[serde(default)]
    peers: Vec<ExposePeer>,
    seed: u64,
    steps: Vec<TableStep>,
}

#[derive(Deserialize)]
struct TableStep {
    at: Timestamp,
    #[serde(flatten)]
    action: TableAction,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum TableAction {
    Create {
        peer: PeerId,
        request: ExposeRequest,
    },
    Renew {
        peer: PeerId,
        domain: String,
    },
    Stop {
        peer: PeerId,
        domain: String,
    },
    RemovePeer {
        peer: PeerId,
    },
    Tick,
}

#[derive(Serialize)]
struct TableOutput {
    results: Vec<Value>,
    events: Vec<ExposeEvent>,
    sessions: Vec<Session>,
    next_timeout: Option<Timestamp>,
}

#[derive(Deserialize)]
struct KeepAliveRun {
    #[serde(default)]
    config: KeepAliveConfig,
    start: Timestamp,
    steps: Vec<KeepAliveStep>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeepAliveInput {
    Timeout,
    RenewOk,
    RenewFailed,
    Stop,
    StopDone,
}

#[derive(Deserialize)]
struct KeepAliveStep {
    at: Timestamp,
    input: KeepAliveInput,
    #[serde(default)]
    reason: Option<String>,
}

/// The machine after one input.
#[derive(Serialize)]
struct Snapshot {
    at: Timestamp,
    state: KeepAliveState,
    transmits: Vec<Request>,
    events: Vec<KeepAliveEvent>,
    next_timeout: Option<Timestamp>,
}

#[derive(Serialize)]
struct KeepAliveOutput {
    initial: Snapshot,
    trace: Vec<Snapshot>,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    Some(match op {
        "expose_generate_name" => generate(input),
        "expose_table_run" => parse::<TableRun>(input).and_then(|run| to_value(&table_run(run))),
        "expose_keepalive_run" => {
            parse::<KeepAliveRun>(input).and_then(|run| to_value(&keepalive_run(run)))
        }
        _ => return None,
    })
}

fn generate(input: Value) -> Result<Value, ApiError> {
    let req = parse::<GenerateName>(input)?;
    let prefix = req
        .name_prefix
        .as_deref()
        .map(str::parse::<NamePrefix>)
        .transpose()?;
    Ok(json!({ "name": generate_name(prefix.as_ref(), &mut rng(req.seed)) }))
}

fn table_run(run: TableRun) -> TableOutput {
    let mut table = SessionTable::new(run.config);
    let mut rng = rng(run.seed);
    let mut events = Vec::new();
    let mut results = Vec::with_capacity(run.steps.len());
    for step in run.steps {
        let now = step.at;
        let answer: Result<Value, ApiError> = match step.action {
            TableAction::Create { peer, request } => {
                match run.peers.iter().find(|p| p.id == peer) {
                    None => Err(ApiError::invalid_call(
                        "unknown_peer",
                        format!("unknown peer \"{peer}\""),
                    )),
                    Some(p) => {
                        let ctx = ExposeContext {
                            settings: &run.settings,
                            groups: &run.groups,
                            custom_domains: &run.custom_domains,
                            peer: p,
                        };
                        table
                            .create(&ctx, &request, &mut rng, now)
                            .map_err(ApiError::from)
                            .and_then(|s| to_value(&s))
                    }
                }
            }
            TableAction::Renew { peer, domain } => table
                .renew(&peer, &domain, now)
                .map(|deadline| json!({ "deadline": deadline }))
                .map_err(ApiError::from),
            TableAction::Stop { peer, domain } => table
                .stop(&peer, &domain, now)
                .map(|()| json!({ "stopped": domain }))
                .map_err(ApiError::from),
            TableAction::RemovePeer { peer } => {
                Ok(json!({ "removed": table.remove_peer(&peer, now) }))
            }
            TableAction::Tick => {
                table.handle_timeout(now);
                Ok(json!({ "next_timeout": table.poll_timeout() }))
            }
        };
        results.push(envelope(answer));
        events.extend(std::iter::from_fn(|| table.poll_event()));
    }
    TableOutput {
        results,
        events,
        sessions: table.sessions().cloned().collect(),
        next_timeout: table.poll_timeout(),
    }
}

fn keepalive_run(run: KeepAliveRun) -> KeepAliveOutput {
    let mut ka = KeepAlive::new(run.config, run.start);
    let initial = snapshot(&mut ka, run.start);
    let trace: Vec<Snapshot> = run
        .steps
        .into_iter()
        .map(|step| {
            let now = step.at;
            match step.input {
                KeepAliveInput::Timeout => ka.handle_timeout(now),
                KeepAliveInput::RenewOk => ka.handle_renew_ok(now),
                KeepAliveInput::RenewFailed => {
                    ka.handle_renew_failed(step.reason.as_deref().unwrap_or("renewal failed"), now)
                }
                KeepAliveInput::Stop => ka.stop(now),
                KeepAliveInput::StopDone => ka.handle_stop_done(now),
            }
            snapshot(&mut ka, now)
        })
        .collect();
    KeepAliveOutput { initial, trace }
}

fn snapshot(ka: &mut KeepAlive, at: Timestamp) -> Snapshot {
    Snapshot {
        at,
        state: ka.state().clone(),
        transmits: std::iter::from_fn(|| ka.poll_transmit()).collect(),
        events: std::iter::from_fn(|| ka.poll_event()).collect(),
        next_timeout: ka.poll_timeout(),
    }
}
