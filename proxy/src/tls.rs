//! TLS towards visitors (serving) and towards `https` targets (client).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    ring as provider, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use rustls::pki_types::pem::PemObject;
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
    #[error("read {path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider, named explicitly so that no process-wide default
/// needs installing.
pub(crate) fn crypto() -> Arc<CryptoProvider> {
    Arc::new(provider::default_provider())
}

/// The server configuration for `tls` (None for plain HTTP).
pub(crate) fn server_config(
    tls: &Tls,
    domain: &str,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (chain, key) = match tls {
        Tls::Plain => return Ok(None),
        Tls::SelfSigned => self_signed(domain)?,
        Tls::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
    };
    let mut config = ServerConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
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
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|reason| TlsError::Pem {
        path: PathBuf::new(),
        reason: reason.to_owned(),
    })?;
    Ok((vec![cert.der().clone()], key))
}

fn read_chain(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.clone(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.clone()));
    }
    Ok(chain)
}

fn read_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.clone(),
        reason: e.to_string(),
    })
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
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = ClientConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
