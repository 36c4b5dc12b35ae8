//! Serving visitors over TLS: generated and file-based certificates.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use meshplane_proxy::Tls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    ring::default_provider, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

/// Accepts any certificate and remembers it, to learn a generated one.
#[derive(Debug)]
struct Capture(Arc<CryptoProvider>, Mutex<Option<CertificateDer<'static>>>);

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.1.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(default_provider())
}

/// The certificate the server at `addr` presents.
async fn presented_certificate(addr: SocketAddr) -> CertificateDer<'static> {
    let capture = Arc::new(Capture(provider(), Mutex::new(None)));
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("anything.proxy.test").unwrap();
    within(TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .unwrap();
    let cert = capture.1.lock().unwrap().clone();
    cert.unwrap()
}

/// A GET to `host` over TLS verified against `trusted` alone.
async fn verified_get(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    host: &str,
) -> Result<Reply, std::io::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tls = within(TlsConnector::from(Arc::new(config)).connect(name, tcp)).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = within(sender.send_request(get(host, "/over-tls")))
        .await
        .unwrap();
    Ok(collect(response).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_covers_domain_and_wildcard() {
    let echo = echo_backend("app").await;
    let p = start_proxy_with(vec![service("app.proxy.test", echo)], Tls::SelfSigned, None).await;
    let cert = presented_certificate(p.addr).await;

    let reply = verified_get(p.addr, &cert, "app.proxy.test").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["x-forwarded-proto"][0], "https");
    // The bare domain is covered too (404 here: no service by that name).
    let reply = verified_get(p.addr, &cert, DOMAIN).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Other names are not.
    let err = verified_get(p.addr, &cert, "app.other.test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_key_from_pem_files() {
    let dir = std::env::temp_dir().join(format!("meshplane-proxy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["*.files.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let echo = echo_backend("files").await;
    let tls = Tls::Files {
        cert: cert_path.clone(),
        key: key_path,
    };
    let p = start_proxy_with(vec![service("app.files.test", echo)], tls, None).await;
    let reply = verified_get(p.addr, cert.der(), "app.files.test")
        .await
        .unwrap();
    assert_eq!(reply.json()["name"], "files");
    p.proxy.shutdown().await;

    // A missing key file is an error at start, not a panic.
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    let config = meshplane_proxy::Config {
        domain: "files.test".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Tls::Files {
            cert: cert_path,
            key: dir.join("missing.pem"),
        },
        oidc: None,
        state_dir: None,
    };
    let err = meshplane_proxy::Proxy::start(config, Arc::new(meshplane_proxy::TcpDialer), rx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
