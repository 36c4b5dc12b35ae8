//! The one body type every proxy response uses, so forwarded (streamed) and
//! locally generated responses share a handler signature.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// A response body: a backend's streamed body or a page the proxy made.
pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A complete, in-memory body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
