//! The one place the REST API decides who may do what. Every route belongs
//! to a resource family ([`family`]); `GET` reads it and every other method
//! writes it; the core's permission table ([`meshplane_core::permissions`])
//! answers for the caller's role. A refused operation is 403 before the
//! handler runs; an allowed one reaches the handler as a [`Caller`] that
//! carries its [`Access`], by which the "own only" families (a regular
//! user's peers and tokens) filter.
//!
//! A route no family covers is refused: a new route stays closed until it is
//! given a family here.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meshplane_core::permissions::{self, Family, Operation};

use super::auth::{authenticate, Caller};
use super::failure::Failure;
use super::{openapi, App};

/// What a route template (as the router matched it) acts on.
enum Guard {
    /// Needs no token (the OpenAPI document).
    Public,
    Family(Family),
}

/// The family of a route template such as `/api/peers/{peer_id}`.
fn family(template: &str) -> Option<Guard> {
    if template == openapi::PATH {
        return Some(Guard::Public);
    }
    let segments: Vec<&str> = template.strip_prefix("/api/")?.split('/').collect();
    let family = match segments.as_slice() {
        ["accounts", ..] => Family::Accounts,
        ["users", "current"] => Family::CurrentUser,
        ["users", _, "tokens", ..] => Family::Tokens,
        ["users", ..] => Family::Users,
        ["peers", _, "ingress", ..] | ["ingress", ..] => Family::Ingress,
        ["peers", ..] => Family::Peers,
        ["groups", ..] => Family::Groups,
        ["setup-keys", ..] => Family::SetupKeys,
        ["policies" | "posture-checks" | "locations", ..] => Family::Policies,
        ["routes", ..] => Family::Routes,
        ["networks", ..] => Family::Networks,
        ["dns", ..] => Family::Dns,
        ["events", ..] => Family::Events,
        ["reverse-proxies", ..] => Family::ReverseProxies,
        _ => return None,
    };
    Some(Guard::Family(family))
}

/// `GET` (and `HEAD`) read; everything else writes.
fn operation(method: &Method) -> Operation {
    if method == Method::GET || method == Method::HEAD {
        Operation::Read
    } else {
        Operation::Write
    }
}

/// The permission layer: authenticates the caller, checks its role against
/// the route and hands the handler the admitted [`Caller`].
pub async fn authorize(State(app): State<App>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let family = match family(&template) {
        Some(Guard::Public) => return next.run(Request::from_parts(parts, body)).await,
        Some(Guard::Family(family)) => family,
        None => {
            tracing::error!(route = %template, "route without a permission family");
            return Failure::forbidden("permission denied").into_response();
        }
    };
    let (account, user) = match authenticate(&parts, &app).await {
        Ok(found) => found,
        Err(failure) => return failure.into_response(),
    };
    let access = match permissions::check(user.role, family, operation(&parts.method)) {
        Ok(access) => access,
        Err(denied) => return Failure::from(denied).into_response(),
    };
    parts.extensions.insert(Caller {
        account,
        user,
        access,
    });
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::{family, Guard};

    /// Every operation the server documents has a family (or is public).
    #[test]
    fn every_documented_route_has_a_family() {
        let document: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi/openapi.json"))
                .expect("the OpenAPI document");
        let paths = document["paths"].as_object().expect("paths");
        assert!(!paths.is_empty());
        for path in paths.keys() {
            assert!(family(path).is_some(), "{path} has no family");
        }
    }

    #[test]
    fn nested_routes_take_the_family_of_what_they_act_on() {
        let of = |t: &str| match family(t) {
            Some(Guard::Family(f)) => format!("{f:?}"),
            Some(Guard::Public) => "public".to_string(),
            None => "none".to_string(),
        };
        assert_eq!(of("/api/users/current"), "CurrentUser");
        assert_eq!(of("/api/users/{user_id}/tokens/{token_id}"), "Tokens");
        assert_eq!(of("/api/users/{user_id}/invite"), "Users");
        assert_eq!(of("/api/peers/{peer_id}/ingress/ports"), "Ingress");
        assert_eq!(of("/api/peers/{peer_id}/temporary-access"), "Peers");
        assert_eq!(of("/api/locations/countries"), "Policies");
        assert_eq!(of("/api/openapi.json"), "public");
        assert_eq!(of("/api/billing"), "none");
        assert_eq!(of("/healthz"), "none");
    }
}
