//! Python binding of meshplane-core (pyo3), imported as `meshplane`.
//!
//! The extension module `meshplane._native` forwards everything to
//! [`meshplane_core::api`]: Python values become JSON values (via
//! `pythonize`), the op runs in the core, and the answer comes back as plain
//! dicts, lists, strings and numbers. A core error is raised as the exception
//! class `meshplane._errors.error_for` picks for its code, carrying `code` and
//! the core's exact `message`.

use meshplane_core::api;
use meshplane_core::ApiError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

mod classes;
mod named;

/// Raises a core error as the exception class of its family; the mapping
/// from code to class lives once, in `meshplane/_errors.py`.
fn py_error(py: Python<'_>, e: ApiError) -> PyErr {
    let raised = py
        .import("meshplane._errors")
        .and_then(|m| m.getattr("error_for"))
        .and_then(|f| f.call1((e.code, e.message, e.kind.as_str())));
    match raised {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// A Python value the core cannot read is the caller's bad input.
fn from_py(py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<Value> {
    pythonize::depythonize(input).map_err(|e| py_error(py, ApiError::invalid_input(e)))
}

/// A core answer as Python objects, or its error raised.
fn to_py(py: Python<'_>, answer: Result<Value, ApiError>) -> PyResult<Py<PyAny>> {
    let value = answer.map_err(|e| py_error(py, e))?;
    Ok(pythonize::pythonize(py, &value)?.unbind())
}

/// Runs one op on a JSON input and converts its answer to Python objects.
/// The core runs without the GIL, so other Python threads go on meanwhile
/// (a 1000-peer network map takes milliseconds).
fn run(py: Python<'_>, op: &str, input: Value) -> PyResult<Py<PyAny>> {
    to_py(py, py.detach(|| api::call_value(op, input)))
}

/// Keyword arguments as the op's input object (none given: `{}`).
fn kwargs(py: Python<'_>, input: Option<&Bound<'_, PyDict>>) -> PyResult<Value> {
    match input {
        Some(d) => from_py(py, d.as_any()),
        None => Ok(Value::Object(Default::default())),
    }
}

/// Runs any core op by name on an input dict and answers its result.
#[pyfunction]
#[pyo3(signature = (op, input=None))]
fn call(py: Python<'_>, op: &str, input: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
    let input = match input {
        Some(v) => from_py(py, v)?,
        None => Value::Object(Default::default()),
    };
    run(py, op, input)
}

/// Runs a request given as JSON text (`{"op": ..., "input": ...}`) and answers
/// the JSON envelope text (`{"ok": ...}` or `{"error": {...}}`). Never raises.
#[pyfunction]
fn call_json(request: &str) -> String {
    api::call(request)
}

/// Every op name the core knows, sorted.
#[pyfunction]
fn ops() -> Vec<&'static str> {
    api::ops()
}

/// The extension module; `meshplane/__init__.py` re-exports it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(call_json, m)?)?;
    m.add_function(wrap_pyfunction!(ops, m)?)?;
    m.add_class::<classes::SessionTable>()?;
    m.add_class::<classes::KeepAlive>()?;
    named::register(m)
}
