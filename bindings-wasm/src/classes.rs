//! `SessionTable` and `KeepAlive` as JavaScript classes: shells over
//! [`meshplane_core::api::stateful`], which holds the state machines.

use wasm_bindgen::prelude::*;

use crate::{from_js, js_error, to_js};
use meshplane_core::api::stateful::{KeepAliveJson, TableJson};

/// The management server's table of expose sessions (TTL, per-peer limit,
/// permission, generated names, audit events). Time is an argument of every
/// call; names and secret hashes come from the generator seeded at
/// construction.
#[wasm_bindgen(js_name = SessionTable)]
#[derive(Debug)]
pub struct SessionTableJs(TableJson);

#[wasm_bindgen(js_class = SessionTable)]
impl SessionTableJs {
    /// `new SessionTable({ seed, config? })`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "{ seed: number; config?: TableConfig }")]
        options: JsValue,
    ) -> Result<SessionTableJs, JsValue> {
        TableJson::new(from_js(options)?)
            .map(Self)
            .map_err(js_error)
    }

    /// Creates a session for `context.peer`; throws `permission_denied`,
    /// `limit_reached`, a validation code, ...
    #[wasm_bindgen(unchecked_return_type = "Session")]
    pub fn create(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "ExposeContext")] context: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ExposeRequest")] request: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<JsValue, JsValue> {
        let answer = self
            .0
            .create(from_js(context)?, from_js(request)?, from_js(now)?);
        to_js(&answer.map_err(js_error)?)
    }

    /// Renews the peer's session of `domain`; answers the new deadline.
    #[wasm_bindgen(unchecked_return_type = "string")]
    pub fn renew(
        &mut self,
        peer: &str,
        domain: &str,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<JsValue, JsValue> {
        to_js(
            &self
                .0
                .renew(peer, domain, from_js(now)?)
                .map_err(js_error)?,
        )
    }

    /// Stops the peer's session of `domain`.
    pub fn stop(
        &mut self,
        peer: &str,
        domain: &str,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0.stop(peer, domain, from_js(now)?).map_err(js_error)
    }

    /// Ends every session of a deleted peer; answers how many.
    #[wasm_bindgen(js_name = removePeer)]
    pub fn remove_peer(
        &mut self,
        peer: &str,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<usize, JsValue> {
        self.0.remove_peer(peer, from_js(now)?).map_err(js_error)
    }

    /// Expires every session whose deadline is at or before `now`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0.handle_timeout(from_js(now)?).map_err(js_error)
    }

    /// The earliest deadline, or `null`.
    #[wasm_bindgen(js_name = pollTimeout, unchecked_return_type = "string | null")]
    pub fn poll_timeout(&self) -> Result<JsValue, JsValue> {
        to_js(&self.0.poll_timeout().map_err(js_error)?)
    }

    /// The next audit event, or `null`.
    #[wasm_bindgen(js_name = pollEvent, unchecked_return_type = "ExposeEvent | null")]
    pub fn poll_event(&mut self) -> Result<JsValue, JsValue> {
        to_js(&self.0.poll_event().map_err(js_error)?)
    }

    /// Every active session, by domain.
    #[wasm_bindgen(unchecked_return_type = "Session[]")]
    pub fn sessions(&self) -> Result<JsValue, JsValue> {
        to_js(&self.0.sessions().map_err(js_error)?)
    }

    /// The session of `domain`, or `null`.
    #[wasm_bindgen(unchecked_return_type = "Session | null")]
    pub fn get(&self, domain: &str) -> Result<JsValue, JsValue> {
        to_js(&self.0.get(domain).map_err(js_error)?)
    }

    /// How many sessions are active.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.0.len()
    }
}

/// The daemon's keep-alive machine for one exposed service: renews every
/// period, gives up on a failed or unanswered renewal, stops on request.
#[wasm_bindgen(js_name = KeepAlive)]
#[derive(Debug)]
pub struct KeepAliveJs(KeepAliveJson);

#[wasm_bindgen(js_class = KeepAlive)]
impl KeepAliveJs {
    /// `new KeepAlive({ now, config? })`, `now` being when the session was created.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "{ now: Timestamp; config?: KeepAliveConfig }")]
        options: JsValue,
    ) -> Result<KeepAliveJs, JsValue> {
        KeepAliveJson::new(from_js(options)?)
            .map(Self)
            .map_err(js_error)
    }

    /// Acts on whatever deadline has passed at `now`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0.handle_timeout(from_js(now)?).map_err(js_error)
    }

    /// The server renewed the session.
    #[wasm_bindgen(js_name = handleRenewOk)]
    pub fn handle_renew_ok(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0.handle_renew_ok(from_js(now)?).map_err(js_error)
    }

    /// The server refused the renewal or could not be reached.
    #[wasm_bindgen(js_name = handleRenewFailed)]
    pub fn handle_renew_failed(
        &mut self,
        reason: &str,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0
            .handle_renew_failed(reason, from_js(now)?)
            .map_err(js_error)
    }

    /// Ctrl+C: send a stop and wait at most the stop timeout.
    pub fn stop(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0.stop(from_js(now)?).map_err(js_error)
    }

    /// The server acknowledged the stop.
    #[wasm_bindgen(js_name = handleStopDone)]
    pub fn handle_stop_done(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Timestamp")] now: JsValue,
    ) -> Result<(), JsValue> {
        self.0.handle_stop_done(from_js(now)?).map_err(js_error)
    }

    /// The next message for the server, or `null`.
    #[wasm_bindgen(js_name = pollTransmit, unchecked_return_type = "KeepAliveTransmit | null")]
    pub fn poll_transmit(&mut self) -> Result<JsValue, JsValue> {
        to_js(&self.0.poll_transmit().map_err(js_error)?)
    }

    /// The next thing to tell the user, or `null`.
    #[wasm_bindgen(js_name = pollEvent, unchecked_return_type = "KeepAliveEvent | null")]
    pub fn poll_event(&mut self) -> Result<JsValue, JsValue> {
        to_js(&self.0.poll_event().map_err(js_error)?)
    }

    /// When to call `handleTimeout` next, or `null` once finished.
    #[wasm_bindgen(js_name = pollTimeout, unchecked_return_type = "string | null")]
    pub fn poll_timeout(&self) -> Result<JsValue, JsValue> {
        to_js(&self.0.poll_timeout().map_err(js_error)?)
    }

    /// Where the machine is: `{ state: "active" | "renewing" | "stopping" | "stopped" | "failed", ... }`.
    #[wasm_bindgen(getter, unchecked_return_type = "KeepAliveState")]
    pub fn state(&self) -> Result<JsValue, JsValue> {
        to_js(&self.0.state().map_err(js_error)?)
    }

    /// Whether the machine reached `stopped` or `failed`.
    #[wasm_bindgen(getter, js_name = isFinished)]
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}
