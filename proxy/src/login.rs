//! The PIN / password login form's endpoint.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::body::ProxyBody;
use crate::gate::{grant, login_page, safe_return};
use crate::metrics::Login;
use crate::pages;
use crate::server::Shared;
use crate::service::Service;
use crate::session::Method;

/// Where the login form posts to.
pub(crate) const LOGIN_PATH: &str = "/.meshplane/login";

/// Largest form accepted; the real one is well under 1 KiB.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// The login form's fields.
#[derive(Deserialize)]
struct Form {
    method: String,
    secret: String,
    #[serde(default)]
    rd: String,
}

/// Errors of reading the form.
#[derive(Debug, thiserror::Error)]
enum FormError {
    #[error("The login form is too large or was cut short.")]
    Body,
    #[error("The login form is malformed.")]
    Fields,
}

async fn read_form(req: Request<Incoming>) -> Result<Form, FormError> {
    let bytes: Bytes = Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|_| FormError::Body)?
        .to_bytes();
    serde_urlencoded::from_bytes(&bytes).map_err(|_| FormError::Fields)
}

/// Checks a posted PIN or password against the service's hash. The
/// attempt is admitted (and counted) before the deliberately slow hash, so
/// a refused guesser costs neither CPU nor memory.
pub(crate) async fn handle(
    shared: &Shared,
    service: &Service,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Response<ProxyBody> {
    let form = match read_form(req).await {
        Ok(form) => form,
        Err(e) => return pages::bad_request(&e.to_string()),
    };
    let return_to = safe_return(&form.rd);
    let (method, hash, wrong) = match form.method.as_str() {
        "pin" => (Method::Pin, &service.pin_hash, "Wrong PIN."),
        "password" => (Method::Password, &service.password_hash, "Wrong password."),
        _ => return pages::bad_request("Unknown login method."),
    };
    let Some(hash) = hash.clone() else {
        return pages::bad_request("This login method is not enabled for this service.");
    };
    let admitted = match shared
        .limiter
        .admit(client_ip, &service.domain, Instant::now())
    {
        Ok(admitted) => admitted,
        Err(refusal) => {
            crate::metrics::login(method, Login::Limited);
            return pages::too_many_attempts(refusal);
        }
    };
    // The attempt goes with the check: its hash permit and place in flight
    // last as long as the hash, even if the visitor goes away.
    match shared.hasher.verify(form.secret, hash, admitted).await {
        Some((true, admitted)) => {
            crate::metrics::login(method, Login::Accepted);
            admitted.give_back();
            grant(shared, service, method, Vec::new(), &return_to)
        }
        // A wrong secret, or a check that failed: the attempt stays counted.
        Some((false, _)) | None => {
            crate::metrics::login(method, Login::Wrong);
            login_page(shared, service, &return_to, Some(wrong))
        }
    }
}
