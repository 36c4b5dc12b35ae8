//! TLS towards visitors (serving) and towards `https` targets (client).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

/// How the proxy serves visitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP, for a proxy behind a TLS-terminating load balancer.
    Plain,
    /// A certificate for `<domain>` and `*.<domain>` generated at start.
    SelfSigned,
    /// A PEM certificate chain and private key.
    Files { cert: PathBuf, key: PathBuf },
}

/// Errors of setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Pem(#[from] meshplane_tls::TlsError),
    #[error("{0}")]
    Key(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

use meshplane_tls::crypto;

/// The server configuration for `tls` (None for plain HTTP).
pub(crate) fn server_config(
    tls: &Tls,
    domain: &str,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (chain, key) = match tls {
        Tls::Plain => return Ok(None),
        Tls::SelfSigned => self_signed(domain)?,
        Tls::Files { cert, key } => (
            meshplane_tls::read_chain(cert)?,
            meshplane_tls::read_key(key)?,
        ),
    };
    Ok(Some(meshplane_tls::server_config(
        chain,
        key,
        &[b"http/1.1"],
    )?))
}

fn self_signed(
    domain: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![format!("*.{domain}"), domain.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|reason| TlsError::Key(reason.to_owned()))?;
    Ok((vec![cert.der().clone()], key))
}

/// The client configuration towards `https` targets. The target's
/// certificate is not checked: the target is the exposing peer's own local
/// service (typically self-signed), reached through the WireGuard tunnel
/// that already authenticated the peer. Handshake signatures still are.
pub(crate) fn backend_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let crypto = crypto();
    let mut config = ClientConfig::builder_with_provider(crypto.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(crypto)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate; see [`backend_client_config`] for why.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration towards identity providers: verified against
/// the Mozilla root set.
pub(crate) fn web_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    Ok(meshplane_tls::client_config(None, &[b"http/1.1"])?)
}
