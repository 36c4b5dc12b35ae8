//! Every error the API answers with: JSON `{"message", "code"}` where `code`
//! is the HTTP status, as the reference does. Extractor rejections (bad JSON,
//! wrong content type, undecodable path or query) are turned into the same
//! shape so no client input reaches a bare text body or a 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meshplane_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::domain::account_view::ViewError;
use crate::domain::peer_removal::RemovalError;
use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// 422: the input breaks a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 400: the request cannot be carried out as asked.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no acceptable credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 for a resource of `kind` (`group`, `setup key`, ...) named `id`.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Failure::new(StatusCode::NOT_FOUND, format!("{kind} {id} not found"))
    }

    /// 409: it exists already.
    pub fn conflict(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::CONFLICT, message)
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({"message": self.message, "code": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

impl<E: ErrorCode> From<E> for Failure {
    fn from(e: E) -> Self {
        let status = StatusCode::from_u16(e.kind().http_status())
            .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        Failure::new(status, e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<ViewError> for Failure {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::Missing(id) => Failure::not_found("account", &id),
            ViewError::Store(e) => e.into(),
        }
    }
}

impl From<RemovalError> for Failure {
    fn from(e: RemovalError) -> Self {
        match e {
            e @ RemovalError::Linked { .. } => Failure::bad_request(e.to_string()),
            RemovalError::Store(e) => e.into(),
        }
    }
}

/// A client-side rejection of axum's: keeps its 4xx status (415 becomes 400)
/// and its explanation.
fn rejected(status: StatusCode, text: String) -> Failure {
    let status = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::BAD_REQUEST,
        s if s.is_client_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    Failure::new(status, text)
}

/// A JSON request body whose rejections are [`Failure`]s.
///
/// Request types decode as the reference server decodes its Go structs:
/// they derive `Default` with `#[serde(default)]`, so a field left out takes
/// its zero value and the handler's checks decide (SEMANTICS.md, "Decoding
/// requests like the reference server"); a wrong type is still a 422.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|r: JsonRejection| rejected(r.status(), r.body_text()))
    }
}

/// Path parameters whose rejections are [`Failure`]s.
#[derive(Debug)]
pub struct Ids<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Ids<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Ids(v))
            .map_err(|r: PathRejection| rejected(r.status(), r.body_text()))
    }
}

/// Query parameters whose rejections are [`Failure`]s.
#[derive(Debug)]
pub struct Filter<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Filter<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Filter(v))
            .map_err(|r: QueryRejection| rejected(r.status(), r.body_text()))
    }
}
