//! The two expose state machines behind a JSON face, for the bindings'
//! classes: each language class (wasm, napi, pyo3) is only a shell that
//! turns its host values into JSON values and back, and the methods map one
//! to one onto [`SessionTable`] and [`KeepAlive`]. Unlike the rest of the
//! JSON API these keep state between calls.
//!
//! Time (`now`) is RFC 3339 text or integer milliseconds, as everywhere in
//! the JSON API; the table's random generator is ChaCha8 seeded once by the
//! caller, as in the `expose_table_run` op, so the same seed and the same
//! calls give the same names and hashes.

use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::Value;

use super::{parse, rng, to_value as json};
use crate::error::ApiError;
use crate::expose::{
    ExposeContext, ExposePeer, ExposeRequest, KeepAlive, KeepAliveConfig, SessionTable, TableConfig,
};
use crate::model::{AccountSettings, Group};
use crate::time::Timestamp;
use crate::validate::Domain;

/// How to build a table: `{seed, config?: {ttl, max_sessions_per_peer, proxy_domain}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableOptions {
    seed: u64,
    #[serde(default)]
    config: TableConfig,
}

/// How to build a keep-alive machine: `{now, config?: {renew_period,
/// renew_timeout, stop_timeout}}`, `now` being when the session was created.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepAliveOptions {
    now: Timestamp,
    #[serde(default)]
    config: KeepAliveConfig,
}

/// Who asks to expose and what the account says about it: the owned form
/// of [`ExposeContext`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    peer: ExposePeer,
    #[serde(default)]
    settings: AccountSettings,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    custom_domains: Vec<Domain>,
}

/// The management server's expose session table with its seeded generator.
#[derive(Debug)]
pub struct TableJson {
    table: SessionTable,
    rng: ChaCha8Rng,
}

impl TableJson {
    /// `options`: `{seed, config?}`.
    pub fn new(options: Value) -> Result<Self, ApiError> {
        let o: TableOptions = parse(options)?;
        Ok(TableJson {
            table: SessionTable::new(o.config),
            rng: rng(o.seed),
        })
    }

    /// `context`: `{peer: {id, name, groups?}, settings?, groups?,
    /// custom_domains?}`; `request`: the expose flags. Answers the session.
    pub fn create(
        &mut self,
        context: Value,
        request: Value,
        now: Value,
    ) -> Result<Value, ApiError> {
        let ctx: Context = parse(context)?;
        let request: ExposeRequest = parse(request)?;
        let ctx = ExposeContext {
            settings: &ctx.settings,
            groups: &ctx.groups,
            custom_domains: &ctx.custom_domains,
            peer: &ctx.peer,
        };
        json(
            &self
                .table
                .create(&ctx, &request, &mut self.rng, parse(now)?)?,
        )
    }

    /// Answers the new deadline.
    pub fn renew(&mut self, peer: &str, domain: &str, now: Value) -> Result<Value, ApiError> {
        json(&self.table.renew(&peer.into(), domain, parse(now)?)?)
    }

    pub fn stop(&mut self, peer: &str, domain: &str, now: Value) -> Result<(), ApiError> {
        Ok(self.table.stop(&peer.into(), domain, parse(now)?)?)
    }

    /// Ends every session of a deleted peer; answers how many.
    pub fn remove_peer(&mut self, peer: &str, now: Value) -> Result<usize, ApiError> {
        Ok(self.table.remove_peer(&peer.into(), parse(now)?))
    }

    /// Expires every session whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Value) -> Result<(), ApiError> {
        self.table.handle_timeout(parse(now)?);
        Ok(())
    }

    /// The earliest deadline, or `null`.
    pub fn poll_timeout(&self) -> Result<Value, ApiError> {
        json(&self.table.poll_timeout())
    }

    /// The next audit event, or `null`.
    pub fn poll_event(&mut self) -> Result<Value, ApiError> {
        json(&self.table.poll_event())
    }

    /// Every active session, by domain.
    pub fn sessions(&self) -> Result<Value, ApiError> {
        json(&self.table.sessions().collect::<Vec<_>>())
    }

    /// The session of a domain, or `null`.
    pub fn get(&self, domain: &str) -> Result<Value, ApiError> {
        json(&self.table.get(domain))
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The daemon's keep-alive machine for one exposed service.
#[derive(Debug)]
pub struct KeepAliveJson(KeepAlive);

impl KeepAliveJson {
    /// `options`: `{now, config?}`.
    pub fn new(options: Value) -> Result<Self, ApiError> {
        let o: KeepAliveOptions = parse(options)?;
        Ok(KeepAliveJson(KeepAlive::new(o.config, o.now)))
    }

    pub fn handle_timeout(&mut self, now: Value) -> Result<(), ApiError> {
        self.0.handle_timeout(parse(now)?);
        Ok(())
    }

    pub fn handle_renew_ok(&mut self, now: Value) -> Result<(), ApiError> {
        self.0.handle_renew_ok(parse(now)?);
        Ok(())
    }

    pub fn handle_renew_failed(&mut self, reason: &str, now: Value) -> Result<(), ApiError> {
        self.0.handle_renew_failed(reason, parse(now)?);
        Ok(())
    }

    pub fn stop(&mut self, now: Value) -> Result<(), ApiError> {
        self.0.stop(parse(now)?);
        Ok(())
    }

    pub fn handle_stop_done(&mut self, now: Value) -> Result<(), ApiError> {
        self.0.handle_stop_done(parse(now)?);
        Ok(())
    }

    /// The next message for the server, or `null`.
    pub fn poll_transmit(&mut self) -> Result<Value, ApiError> {
        json(&self.0.poll_transmit())
    }

    /// The next thing to tell the user, or `null`.
    pub fn poll_event(&mut self) -> Result<Value, ApiError> {
        json(&self.0.poll_event())
    }

    /// When to call `handle_timeout` next, or `null` once finished.
    pub fn poll_timeout(&self) -> Result<Value, ApiError> {
        json(&self.0.poll_timeout())
    }

    /// `{state: "active" | "renewing" | "stopping" | "stopped" | "failed", ...}`.
    pub fn state(&self) -> Result<Value, ApiError> {
        json(self.0.state())
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}
