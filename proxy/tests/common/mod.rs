//! Shared test fixtures: real HTTP backends, a proxy on loopback dialing
//! them over plain TCP (standing in for the mesh), and a small client.
#![allow(dead_code)]

pub mod issuer;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshplane_proxy::{Config, OidcConfig, Proxy, Service, TcpDialer, Tls};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Generous bound on any single wait, for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub type TestBody = BoxBody<Bytes, std::io::Error>;

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Awaits `fut`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("timed out waiting")
}

/// Starts a real HTTP/1.1 server on loopback answering with `handler`.
pub async fn backend<F, Fut>(handler: F) -> SocketAddrV4
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!("bound to IPv4")
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A backend that answers with a JSON description of the request it got:
/// `{"name": .., "method": .., "path": .., "headers": {name: [values]}, "body_len": n}`.
pub async fn echo_backend(name: &'static str) -> SocketAddrV4 {
    backend(move |req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &parts.headers {
            headers
                .entry(k.as_str().to_owned())
                .or_default()
                .push(v.to_str().unwrap_or("").to_owned());
        }
        let json = serde_json::json!({
            "name": name,
            "method": parts.method.as_str(),
            "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            "headers": headers,
            "body_len": body.len(),
        });
        Response::builder()
            .header("content-type", "application/json")
            .header("keep-alive", "timeout=5")
            .body(full(json.to_string()))
            .unwrap()
    })
    .await
}

/// An unprotected service.
pub fn service(domain: &str, target: SocketAddrV4) -> Service {
    Service {
        domain: domain.to_owned(),
        target,
        backend_tls: false,
        pin_hash: None,
        password_hash: None,
        user_groups: Vec::new(),
    }
}

/// argon2id hash of `secret` as the management server stores it.
pub fn hash(secret: &str) -> String {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    meshplane_core::keys::hash_argon2(secret, &mut rng).unwrap()
}

/// A running proxy and the sender of its service table.
pub struct TestProxy {
    pub proxy: Proxy,
    pub addr: SocketAddr,
    pub services: watch::Sender<Arc<Vec<Service>>>,
}

pub const DOMAIN: &str = "proxy.test";

pub async fn start_proxy(services: Vec<Service>) -> TestProxy {
    start_proxy_with(services, Tls::Plain, None).await
}

pub async fn start_proxy_with(
    services: Vec<Service>,
    tls: Tls,
    oidc: Option<OidcConfig>,
) -> TestProxy {
    let (tx, rx) = watch::channel(Arc::new(services));
    let config = Config {
        domain: DOMAIN.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        oidc,
        state_dir: None,
    };
    let proxy = Proxy::start(config, Arc::new(TcpDialer), rx).await.unwrap();
    TestProxy {
        addr: proxy.local_addr(),
        proxy,
        services: tx,
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A request to `host` + `path` with no body.
pub fn get(host: &str, path: &str) -> Request<TestBody> {
    Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap()
}

/// Opens a client connection to `addr`.
pub async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

/// Sends a GET on a fresh connection and returns the response as it
/// starts, its body still streaming.
pub async fn get_streaming(addr: SocketAddr, host: &str, path: &str) -> Response<Incoming> {
    within(async { connect(addr).await.send_request(get(host, path)).await })
        .await
        .unwrap()
}

/// Sends one request on a fresh connection and reads the whole response.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Reply {
    within(async {
        let mut sender = connect(addr).await;
        let response = sender.send_request(req).await.unwrap();
        collect(response).await
    })
    .await
}

pub async fn collect(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// The value of cookie `name` set by a response's `Set-Cookie`, and the
/// attributes after it.
pub fn set_cookie(reply: &Reply) -> (String, Vec<String>) {
    let raw = reply.header("set-cookie").expect("no Set-Cookie");
    let mut parts = raw.split(';').map(|p| p.trim().to_owned());
    let pair = parts.next().unwrap();
    let value = pair
        .strip_prefix(&format!("{}=", meshplane_proxy::COOKIE_NAME))
        .expect("not the session cookie")
        .to_owned();
    (value, parts.collect())
}

/// A form POST.
pub fn post_form(host: &str, path: &str, form: &[(&str, &str)]) -> Request<TestBody> {
    Request::post(path)
        .header("host", host)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(serde_urlencoded::to_string(form).unwrap()))
        .unwrap()
}
