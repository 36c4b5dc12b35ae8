//! The authentication gate in front of protected services.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderValue, Method as HttpMethod, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{full, ProxyBody};
use crate::forward::{forward, Origin};
use crate::host::RequestHost;
use crate::pages::{self, LoginPage, SsoOffer};
use crate::server::Shared;
use crate::service::Service;
use crate::session::{self, Method};
use crate::{login, oidc, RESERVED_PREFIX};

/// Seconds since the Unix epoch, the clock of session tokens.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Answers a request for a protected service: the proxy's own login and SSO
/// endpoints, the login page for visitors without a session, and the
/// target for those with one.
pub(crate) async fn handle(
    shared: &Shared,
    service: &Service,
    host: &RequestHost,
    req: Request<Incoming>,
    origin: Origin,
) -> Response<ProxyBody> {
    let path = req.uri().path();
    if path == login::LOGIN_PATH {
        if req.method() != HttpMethod::POST {
            return redirect_to(&return_to(req.uri().query()));
        }
        return login::handle(shared, service, req, origin.client_ip).await;
    }
    if path == oidc::START_PATH || path == oidc::CALLBACK_PATH {
        return oidc::handle(shared, service, host, req.uri()).await;
    }
    if path.starts_with(RESERVED_PREFIX) {
        return pages::not_found(&host.name);
    }
    if has_session(shared, service, req.headers()) {
        return forward(
            &shared.client,
            service,
            req,
            origin,
            shared.shutdown.clone(),
        )
        .await;
    }
    let here = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    login_page(shared, service, &safe_return(here), None)
}

/// Whether the request carries a valid session for `service` whose method
/// the service still enables (turning a method off ends its sessions).
fn has_session(shared: &Shared, service: &Service, headers: &http::HeaderMap) -> bool {
    let now = unix_now();
    session::cookie_values(headers).any(|token| {
        shared
            .keys
            .verify(token, &service.domain, now)
            .is_ok_and(|claims| match claims.method {
                Method::Pin => service.pin_hash.is_some(),
                Method::Password => service.password_hash.is_some(),
                Method::Sso => service.admits_groups(&claims.groups),
            })
    })
}

/// The login page for `service`, offering each method it enables.
pub(crate) fn login_page(
    shared: &Shared,
    service: &Service,
    return_to: &str,
    error: Option<&str>,
) -> Response<ProxyBody> {
    let sso = match (service.user_groups.is_empty(), shared.sso.is_some()) {
        (true, _) => SsoOffer::None,
        (false, true) => SsoOffer::Available,
        (false, false) => SsoOffer::NotConfigured,
    };
    pages::login(&LoginPage {
        domain: &service.domain,
        pin: service.pin_hash.is_some(),
        password: service.password_hash.is_some(),
        sso,
        return_to,
        error,
    })
}

/// The answer to a successful login: a session cookie (with the SSO
/// `groups` that admitted the visitor) and a 303 back to where the visitor
/// was going.
pub(crate) fn grant(
    shared: &Shared,
    service: &Service,
    method: Method,
    groups: Vec<String>,
    return_to: &str,
) -> Response<ProxyBody> {
    let token = shared
        .keys
        .issue(&service.domain, method, groups, unix_now());
    let mut response = redirect_to(return_to);
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&token, shared.scheme)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// A 303 to `location`.
pub(crate) fn redirect_to(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    response.headers_mut().insert(LOCATION, location);
    response
}

/// The `rd` parameter of a query string, as a safe return path.
pub(crate) fn return_to(query: Option<&str>) -> String {
    #[derive(serde::Deserialize)]
    struct Query {
        rd: Option<String>,
    }
    let rd = query
        .and_then(|q| serde_urlencoded::from_str::<Query>(q).ok())
        .and_then(|q| q.rd)
        .unwrap_or_default();
    safe_return(&rd)
}

/// `candidate` if it is a path on this host, else `/`: a login must never
/// become an open redirect to another site (`//evil`, `/\evil`, `https:`).
pub(crate) fn safe_return(candidate: &str) -> String {
    let local = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.starts_with("/\\")
        && !candidate.starts_with(RESERVED_PREFIX)
        && candidate.bytes().all(|b| b.is_ascii_graphic());
    if local { candidate } else { "/" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_local() {
        assert_eq!(safe_return("/a/b?c=d"), "/a/b?c=d");
        assert_eq!(safe_return("//evil.example"), "/");
        assert_eq!(safe_return("/\\evil.example"), "/");
        assert_eq!(safe_return("https://evil.example"), "/");
        assert_eq!(safe_return("/a\r\nSet-Cookie: x"), "/");
        assert_eq!(safe_return("/.meshplane/login"), "/");
        assert_eq!(return_to(Some("rd=%2Fdocs%3Fx%3D1")), "/docs?x=1");
        assert_eq!(return_to(Some("%%%")), "/");
    }
}
