//! TLS material shared by meshplane's programs: the management server's
//! listener (`--tls-cert`/`--tls-key`), the reverse proxy's certificate, and
//! the clients that check a server against the Mozilla roots plus, where an
//! operator runs a private CA, its certificate (`--management-ca`).
//!
//! Every configuration names its crypto provider (ring), so no process-wide
//! default has to be installed first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read {path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every configuration made here.
pub fn crypto() -> Arc<CryptoProvider> {
    Arc::new(provider::default_provider())
}

/// The certificate chain in PEM file `path`, leaf first.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

/// The private key in PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A server configuration presenting `chain` and `key`, offering the ALPN
/// protocols `alpn` in order of preference.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The certificates a client accepts a server's chain from: the Mozilla
/// root set, plus an operator's private CA when one is given (a management
/// server or relay with a certificate of its own CA, `--management-ca`).
/// Cheap to clone: the roots are shared.
#[derive(Debug, Clone)]
pub struct Trust {
    roots: Arc<RootCertStore>,
}

impl Trust {
    /// The Mozilla roots only.
    pub fn system() -> Trust {
        Trust {
            roots: Arc::new(system_roots()),
        }
    }

    /// The Mozilla roots and, when given, every certificate of PEM file
    /// `extra_ca`; a file without a usable certificate is an error naming
    /// it, never silently ignored.
    pub fn new(extra_ca: Option<&Path>) -> Result<Trust, TlsError> {
        let mut roots = system_roots();
        if let Some(path) = extra_ca {
            for cert in read_chain(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.to_path_buf(),
                    reason: format!("not a CA certificate: {e}"),
                })?;
            }
        }
        Ok(Trust {
            roots: Arc::new(roots),
        })
    }

    /// A client configuration checking servers against these roots,
    /// offering the ALPN protocols `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(crypto())
            .with_safe_default_protocol_versions()
            // The ring provider supports the default versions.
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The check of a server's chain against these roots, for clients that
    /// build their own configuration (tonic's channels).
    pub fn verifier(&self) -> Arc<dyn ServerCertVerifier> {
        WebPkiServerVerifier::builder_with_provider(Arc::clone(&self.roots), crypto())
            .build()
            // Fails only without any root; the Mozilla set is never empty.
            .unwrap_or_else(|e| unreachable!("the Mozilla roots make a verifier: {e}"))
    }
}

fn system_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A client configuration that trusts the Mozilla root set and, when given,
/// the certificates of PEM file `extra_ca` (a private CA), offering the ALPN
/// protocols `alpn`.
pub fn client_config(
    extra_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    Ok(Trust::new(extra_ca)?.client_config(alpn))
}

/// A failed TLS handshake a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    /// The chain does not lead to a trusted root: a private CA the client
    /// was not given, or a self-signed certificate.
    #[error("the server's certificate is not signed by a trusted CA")]
    UntrustedIssuer,
    /// The certificate is for other names than the one dialled.
    #[error("the server's certificate is not valid for {expected} (it names {presented})")]
    WrongName { expected: String, presented: String },
    #[error("the server's certificate has expired")]
    Expired,
    #[error("the server's certificate is not valid yet")]
    NotValidYet,
    /// Any other refusal of the certificate.
    #[error("the server's certificate is refused: {0}")]
    Refused(String),
    /// What came back was no TLS: a plain-HTTP server, most likely.
    #[error("the server does not speak TLS on this port (is it an http:// URL?)")]
    NotTls,
}

/// Why a TLS handshake failed, when `error` (or one of its sources, also
/// inside an `io::Error`) is a handshake failure a user can act on; `None`
/// for anything else.
pub fn handshake_failure(error: &(dyn std::error::Error + 'static)) -> Option<HandshakeFailure> {
    let mut next = Some(error);
    while let Some(e) = next {
        let found = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(failure) = found.and_then(classify) {
            return Some(failure);
        }
        next = e.source();
    }
    None
}

fn classify(error: &rustls::Error) -> Option<HandshakeFailure> {
    use rustls::CertificateError as C;
    Some(match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => HandshakeFailure::UntrustedIssuer,
            C::NotValidForName => HandshakeFailure::WrongName {
                expected: "the name dialled".to_string(),
                presented: "others".to_string(),
            },
            C::NotValidForNameContext {
                expected,
                presented,
            } => HandshakeFailure::WrongName {
                expected: server_name(expected),
                presented: presented
                    .iter()
                    .map(|name| unquoted(name))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            C::Expired | C::ExpiredContext { .. } => HandshakeFailure::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => HandshakeFailure::NotValidYet,
            other => HandshakeFailure::Refused(format!("{other:?}")),
        },
        rustls::Error::InvalidMessage(_) => HandshakeFailure::NotTls,
        _ => return None,
    })
}

/// A name rustls shows as `DnsName("example.com")`, as a user writes it.
fn unquoted(name: &str) -> &str {
    name.split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(name)
}

/// A server name as a user typed it.
fn server_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_load_and_make_configurations() {
        let dir = std::env::temp_dir().join(format!("meshplane-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let chain = read_chain(&cert_path).unwrap();
        assert_eq!(chain.len(), 1);
        let server = server_config(chain, read_key(&key_path).unwrap(), &[b"h2"]).unwrap();
        assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
        let client = Trust::new(Some(&cert_path))
            .unwrap()
            .client_config(&[b"h2", b"http/1.1"]);
        assert_eq!(client.alpn_protocols.len(), 2);
        // A key file is no CA, and says which file it is.
        let err = Trust::new(Some(&key_path)).unwrap_err().to_string();
        assert!(
            err.contains("no certificate in") && err.contains("key.pem"),
            "{err}"
        );

        // A key file is no certificate, and a missing file says which.
        assert!(matches!(
            read_chain(&key_path),
            Err(TlsError::NoCertificate(_))
        ));
        let missing = dir.join("missing.pem");
        let err = read_key(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn handshake_failures_are_found_inside_io_errors() {
        // tokio-rustls reports a refused certificate as an io::Error
        // around the rustls error; a transport error wraps that again.
        let refused =
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec!["DnsName(\"localhost\")".into()],
            });
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Transport(#[source] std::io::Error);
        let failure = handshake_failure(&Transport(io)).unwrap();
        assert_eq!(
            failure.to_string(),
            "the server's certificate is not valid for 127.0.0.1 (it names localhost)"
        );
        let untrusted = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            handshake_failure(&untrusted),
            Some(HandshakeFailure::UntrustedIssuer)
        );
        let other = std::io::Error::other("connection refused");
        assert_eq!(handshake_failure(&other), None);
    }
}
