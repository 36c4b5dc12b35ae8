//! `SessionTable` and `KeepAlive` as Python classes: shells over the shared
//! `meshplane_core::api::stateful` module, which holds the state machines.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{from_py, kwargs, py_error, to_py};
use meshplane_core::api::stateful::{KeepAliveJson, TableJson};

/// The management server's table of expose sessions (TTL, per-peer limit,
/// permission, generated names, audit events). Time is an argument of every
/// call; names and secret hashes come from the generator seeded at
/// construction: `SessionTable(seed=1, config={...})`.
#[pyclass(module = "meshplane._native")]
#[derive(Debug)]
pub(crate) struct SessionTable {
    inner: TableJson,
}

#[pymethods]
impl SessionTable {
    #[new]
    #[pyo3(signature = (**options))]
    fn new(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let inner = TableJson::new(kwargs(py, options)?).map_err(|e| py_error(py, e))?;
        Ok(SessionTable { inner })
    }

    /// Creates a session for `context["peer"]`; raises PermissionDenied,
    /// FailedPrecondition, ValidationError, ...
    fn create(
        &mut self,
        py: Python<'_>,
        context: &Bound<'_, PyAny>,
        request: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let (context, request, now) = (
            from_py(py, context)?,
            from_py(py, request)?,
            from_py(py, now)?,
        );
        to_py(py, self.inner.create(context, request, now))
    }

    /// Renews the peer's session of `domain`; answers the new deadline.
    fn renew(
        &mut self,
        py: Python<'_>,
        peer: &str,
        domain: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let now = from_py(py, now)?;
        to_py(py, self.inner.renew(peer, domain, now))
    }

    /// Stops the peer's session of `domain`.
    fn stop(
        &mut self,
        py: Python<'_>,
        peer: &str,
        domain: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner
            .stop(peer, domain, now)
            .map_err(|e| py_error(py, e))
    }

    /// Ends every session of a deleted peer; answers how many.
    fn remove_peer(
        &mut self,
        py: Python<'_>,
        peer: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let now = from_py(py, now)?;
        self.inner
            .remove_peer(peer, now)
            .map_err(|e| py_error(py, e))
    }

    /// Expires every session whose deadline is at or before `now`.
    fn handle_timeout(&mut self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner.handle_timeout(now).map_err(|e| py_error(py, e))
    }

    /// The earliest deadline, or None.
    fn poll_timeout(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.poll_timeout())
    }

    /// The next audit event, or None.
    fn poll_event(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.poll_event())
    }

    /// Every active session, by domain.
    fn sessions(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.sessions())
    }

    /// The session of `domain`, or None.
    fn get(&self, py: Python<'_>, domain: &str) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.get(domain))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// The daemon's keep-alive machine for one exposed service: renews every
/// period, gives up on a failed or unanswered renewal, stops on request.
/// `KeepAlive(now=created_at, config={...})`.
#[pyclass(module = "meshplane._native")]
#[derive(Debug)]
pub(crate) struct KeepAlive {
    inner: KeepAliveJson,
}

#[pymethods]
impl KeepAlive {
    #[new]
    #[pyo3(signature = (**options))]
    fn new(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let inner = KeepAliveJson::new(kwargs(py, options)?).map_err(|e| py_error(py, e))?;
        Ok(KeepAlive { inner })
    }

    /// Acts on whatever deadline has passed at `now`.
    fn handle_timeout(&mut self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner.handle_timeout(now).map_err(|e| py_error(py, e))
    }

    /// The server renewed the session.
    fn handle_renew_ok(&mut self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner.handle_renew_ok(now).map_err(|e| py_error(py, e))
    }

    /// The server refused the renewal or could not be reached.
    fn handle_renew_failed(
        &mut self,
        py: Python<'_>,
        reason: &str,
        now: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner
            .handle_renew_failed(reason, now)
            .map_err(|e| py_error(py, e))
    }

    /// Ctrl+C: send a stop and wait at most the stop timeout.
    fn stop(&mut self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner.stop(now).map_err(|e| py_error(py, e))
    }

    /// The server acknowledged the stop.
    fn handle_stop_done(&mut self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = from_py(py, now)?;
        self.inner
            .handle_stop_done(now)
            .map_err(|e| py_error(py, e))
    }

    /// The next message for the server (`"renew"` / `"stop"`), or None.
    fn poll_transmit(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.poll_transmit())
    }

    /// The next thing to tell the user, or None.
    fn poll_event(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.poll_event())
    }

    /// When to call `handle_timeout` next, or None once finished.
    fn poll_timeout(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.poll_timeout())
    }

    /// Where the machine is: `{"state": "active" | "renewing" | ..., ...}`.
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, self.inner.state())
    }

    /// Whether the machine reached `stopped` or `failed`.
    #[getter]
    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}
