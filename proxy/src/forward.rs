//! Forwarding one request to a target and streaming the answer back.

use std::net::IpAddr;

use http::header::{HeaderName, CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::backend::{uri_for, BackendClient};
use crate::body::ProxyBody;
use crate::pages;
use crate::server::stopped;
use crate::service::Service;
use crate::session;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one hop's connection, not the message (RFC 9110
/// section 7.6.1), plus the non-standard ones proxies commonly drop.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Where a request came from, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub client_ip: IpAddr,
    /// `http` or `https`: how the visitor reached the proxy.
    pub proto: &'static str,
}

/// Sends `req` to `service`'s target and returns its response with the body
/// streamed through. An `Upgrade` (WebSocket) that the target accepts with
/// 101 becomes a byte tunnel that lives until either side closes or the
/// proxy shuts down.
pub(crate) async fn forward(
    client: &BackendClient,
    service: &Service,
    mut req: Request<Incoming>,
    origin: Origin,
    shutdown: watch::Receiver<bool>,
) -> Response<ProxyBody> {
    let original_host = req.headers().get(HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let upgrade = upgrade_protocol(req.headers());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let Ok(uri) = uri_for(service.target, service.backend_tls, &path_and_query) else {
        return pages::bad_request("The request target is not a valid path.");
    };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;

    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    session::strip_cookie(headers);
    if let Some(protocol) = &upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol.clone());
    }
    append_forwarded_for(headers, origin.client_ip);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(origin.proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }

    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let started = std::time::Instant::now();
    let answer = client.request(req).await;
    crate::metrics::upstream(started, answer.is_ok());
    let mut response = match answer {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(domain = %service.domain, target = %service.target, error = %e, "target unreachable");
            return pages::bad_gateway(&service.domain);
        }
    };

    match client_upgrade {
        Some(client_upgrade) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let backend_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(client_upgrade, backend_upgrade, shutdown));
            let protocol = response.headers().get(UPGRADE).cloned();
            strip_hop_by_hop(response.headers_mut());
            if let Some(protocol) = protocol {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("upgrade"));
                response.headers_mut().insert(UPGRADE, protocol);
            }
        }
        _ => strip_hop_by_hop(response.headers_mut()),
    }
    response.map(BodyExt::boxed)
}

/// Copies bytes both ways between the visitor's and the target's upgraded
/// connections.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    mut shutdown: watch::Receiver<bool>,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        _ = stopped(&mut shutdown) => {}
    }
}

/// The protocol a request asks to upgrade to, if it does so properly
/// (`Connection: upgrade` and an `Upgrade` header).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(UPGRADE).cloned()).flatten()
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop headers, including any the `Connection` header
/// names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the visitor's address to `X-Forwarded-For`, keeping what earlier
/// proxies put there.
fn append_forwarded_for(headers: &mut HeaderMap, client_ip: IpAddr) {
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if prior.is_empty() {
        client_ip.to_string()
    } else {
        format!("{}, {client_ip}", prior.join(", "))
    };
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_named_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(
            upgrade_protocol(&h),
            Some(HeaderValue::from_static("websocket"))
        );
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.7"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        append_forwarded_for(&mut h, "192.0.2.1".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.7, 203.0.113.9, 192.0.2.1");
    }
}
