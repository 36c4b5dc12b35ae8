//! `SessionTable` and `KeepAlive` as JavaScript classes: shells over the
//! shared `meshplane_core::api::stateful` module, which holds the state machines.

use napi_derive::napi;
use serde_json::Value;

use crate::{from_js, js_error};
use meshplane_core::api::stateful::{KeepAliveJson, TableJson};

/// The management server's table of expose sessions (TTL, per-peer limit,
/// permission, generated names, audit events). Time is an argument of every
/// call; names and secret hashes come from the generator seeded at
/// construction.
#[napi]
#[derive(Debug)]
pub struct SessionTable {
    inner: TableJson,
}

#[napi]
impl SessionTable {
    /// `new SessionTable({ seed, config? })`.
    #[napi(
        constructor,
        ts_args_type = "options: { seed: number; config?: TableConfig }"
    )]
    pub fn new(options: Value) -> napi::Result<Self, String> {
        let inner = TableJson::new(from_js(Some(options))).map_err(js_error)?;
        Ok(SessionTable { inner })
    }

    /// Creates a session for `context.peer`; throws `permission_denied`,
    /// `limit_reached`, a validation code, ...
    #[napi(
        ts_args_type = "context: ExposeContext, request: ExposeRequest, now: Timestamp",
        ts_return_type = "Session"
    )]
    pub fn create(
        &mut self,
        context: Value,
        request: Value,
        now: Value,
    ) -> napi::Result<Value, String> {
        let (context, request, now) = (
            from_js(Some(context)),
            from_js(Some(request)),
            from_js(Some(now)),
        );
        self.inner.create(context, request, now).map_err(js_error)
    }

    /// Renews the peer's session of `domain`; answers the new deadline.
    #[napi(
        ts_args_type = "peer: string, domain: string, now: Timestamp",
        ts_return_type = "string"
    )]
    pub fn renew(
        &mut self,
        peer: String,
        domain: String,
        now: Value,
    ) -> napi::Result<Value, String> {
        self.inner
            .renew(&peer, &domain, from_js(Some(now)))
            .map_err(js_error)
    }

    /// Stops the peer's session of `domain`.
    #[napi(ts_args_type = "peer: string, domain: string, now: Timestamp")]
    pub fn stop(&mut self, peer: String, domain: String, now: Value) -> napi::Result<(), String> {
        self.inner
            .stop(&peer, &domain, from_js(Some(now)))
            .map_err(js_error)
    }

    /// Ends every session of a deleted peer; answers how many.
    #[napi(ts_args_type = "peer: string, now: Timestamp")]
    pub fn remove_peer(&mut self, peer: String, now: Value) -> napi::Result<u32, String> {
        let removed = self
            .inner
            .remove_peer(&peer, from_js(Some(now)))
            .map_err(js_error)?;
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }

    /// Expires every session whose deadline is at or before `now`.
    #[napi(ts_args_type = "now: Timestamp")]
    pub fn handle_timeout(&mut self, now: Value) -> napi::Result<(), String> {
        self.inner
            .handle_timeout(from_js(Some(now)))
            .map_err(js_error)
    }

    /// The earliest deadline, or `null`.
    #[napi(ts_return_type = "string | null")]
    pub fn poll_timeout(&self) -> napi::Result<Value, String> {
        self.inner.poll_timeout().map_err(js_error)
    }

    /// The next audit event, or `null`.
    #[napi(ts_return_type = "ExposeEvent | null")]
    pub fn poll_event(&mut self) -> napi::Result<Value, String> {
        self.inner.poll_event().map_err(js_error)
    }

    /// Every active session, by domain.
    #[napi(ts_return_type = "Session[]")]
    pub fn sessions(&self) -> napi::Result<Value, String> {
        self.inner.sessions().map_err(js_error)
    }

    /// The session of `domain`, or `null`.
    #[napi(ts_return_type = "Session | null")]
    pub fn get(&self, domain: String) -> napi::Result<Value, String> {
        self.inner.get(&domain).map_err(js_error)
    }

    /// How many sessions are active.
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
    }
}

/// The daemon's keep-alive machine for one exposed service: renews every
/// period, gives up on a failed or unanswered renewal, stops on request.
#[napi]
#[derive(Debug)]
pub struct KeepAlive {
    inner: KeepAliveJson,
}

#[napi]
impl KeepAlive {
    /// `new KeepAlive({ now, config? })`, `now` being when the session was created.
    #[napi(
        constructor,
        ts_args_type = "options: { now: Timestamp; config?: KeepAliveConfig }"
    )]
    pub fn new(options: Value) -> napi::Result<Self, String> {
        let inner = KeepAliveJson::new(from_js(Some(options))).map_err(js_error)?;
        Ok(KeepAlive { inner })
    }

    /// Acts on whatever deadline has passed at `now`.
    #[napi(ts_args_type = "now: Timestamp")]
    pub fn handle_timeout(&mut self, now: Value) -> napi::Result<(), String> {
        self.inner
            .handle_timeout(from_js(Some(now)))
            .map_err(js_error)
    }

    /// The server renewed the session.
    #[napi(ts_args_type = "now: Timestamp")]
    pub fn handle_renew_ok(&mut self, now: Value) -> napi::Result<(), String> {
        self.inner
            .handle_renew_ok(from_js(Some(now)))
            .map_err(js_error)
    }

    /// The server refused the renewal or could not be reached.
    #[napi(ts_args_type = "reason: string, now: Timestamp")]
    pub fn handle_renew_failed(&mut self, reason: String, now: Value) -> napi::Result<(), String> {
        self.inner
            .handle_renew_failed(&reason, from_js(Some(now)))
            .map_err(js_error)
    }

    /// Ctrl+C: send a stop and wait at most the stop timeout.
    #[napi(ts_args_type = "now: Timestamp")]
    pub fn stop(&mut self, now: Value) -> napi::Result<(), String> {
        self.inner.stop(from_js(Some(now))).map_err(js_error)
    }

    /// The server acknowledged the stop.
    #[napi(ts_args_type = "now: Timestamp")]
    pub fn handle_stop_done(&mut self, now: Value) -> napi::Result<(), String> {
        self.inner
            .handle_stop_done(from_js(Some(now)))
            .map_err(js_error)
    }

    /// The next message for the server, or `null`.
    #[napi(ts_return_type = "KeepAliveTransmit | null")]
    pub fn poll_transmit(&mut self) -> napi::Result<Value, String> {
        self.inner.poll_transmit().map_err(js_error)
    }

    /// The next thing to tell the user, or `null`.
    #[napi(ts_return_type = "KeepAliveEvent | null")]
    pub fn poll_event(&mut self) -> napi::Result<Value, String> {
        self.inner.poll_event().map_err(js_error)
    }

    /// When to call `handleTimeout` next, or `null` once finished.
    #[napi(ts_return_type = "string | null")]
    pub fn poll_timeout(&self) -> napi::Result<Value, String> {
        self.inner.poll_timeout().map_err(js_error)
    }

    /// Where the machine is.
    #[napi(getter, ts_return_type = "KeepAliveState")]
    pub fn state(&self) -> napi::Result<Value, String> {
        self.inner.state().map_err(js_error)
    }

    /// Whether the machine reached `stopped` or `failed`.
    #[napi(getter)]
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}
