//! What the proxy records for Prometheus, through the `metrics` crate's
//! process-wide recorder (installed by `meshplane proxy --metrics-listen`;
//! without it recording costs a branch):
//!
//! | metric | labels | when |
//! |---|---|---|
//! | `meshplane_proxy_requests_total` | `status` | every answered request, whatever answered it (the target, a login page, an error page) |
//! | `meshplane_proxy_upstream_duration_seconds` | `outcome` (`answered`, `unreachable`) | from sending a request to the target until its response headers (or the failure) |
//! | `meshplane_proxy_services` | | the services in the table now |
//! | `meshplane_proxy_login_attempts_total` | `method` (`pin`, `password`), `result` (`accepted`, `wrong`, `limited`) | every PIN or password form posted for a service that has the method |
//!
//! No label carries a host name or a path: visitors choose those, and each
//! distinct label value is a series the proxy keeps for good.

use std::sync::Arc;
use std::time::Instant;

use hyper::StatusCode;
use tokio::sync::watch;

use crate::service::Service;
use crate::session::Method;

/// One answered request.
pub(crate) fn request(status: StatusCode) {
    metrics::counter!("meshplane_proxy_requests_total", "status" => status.as_str().to_owned())
        .increment(1);
}

/// A request to a target begun at `started`: `answered` when its response
/// headers came back.
pub(crate) fn upstream(started: Instant, answered: bool) {
    let outcome = if answered { "answered" } else { "unreachable" };
    metrics::histogram!("meshplane_proxy_upstream_duration_seconds", "outcome" => outcome)
        .record(started.elapsed());
}

/// The result of a PIN or password login attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Login {
    Accepted,
    /// A wrong secret (or a check that failed).
    Wrong,
    /// Refused by the attempt limiter before any check.
    Limited,
}

pub(crate) fn login(method: Method, result: Login) {
    let method = match method {
        Method::Pin => "pin",
        Method::Password => "password",
        Method::Sso => "sso",
    };
    let result = match result {
        Login::Accepted => "accepted",
        Login::Wrong => "wrong",
        Login::Limited => "limited",
    };
    metrics::counter!("meshplane_proxy_login_attempts_total", "method" => method, "result" => result)
        .increment(1);
}

/// Keeps `meshplane_proxy_services` at the size of the service table until
/// the table's sender goes away.
pub(crate) async fn count_services(mut services: watch::Receiver<Arc<Vec<Service>>>) {
    loop {
        let count = services.borrow_and_update().len();
        #[allow(clippy::cast_precision_loss)] // a table of services, far below 2^52
        metrics::gauge!("meshplane_proxy_services").set(count as f64);
        if services.changed().await.is_err() {
            return;
        }
    }
}
