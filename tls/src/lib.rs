//! TLS material shared by meshplane's programs: the management server's
//! listener (`--tls-cert`/`--tls-key`), the reverse proxy's certificate, and
//! the clients that check a server against the Mozilla roots plus, where an
//! operator runs a private CA, its certificate (`--management-ca`).
//!
//! Every configuration names its crypto provider (ring), so no process-wide
//! default has to be installed first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

/// A client configuration that trusts the Mozilla root set and, when given,
/// the certificates of PEM file `extra_ca` (a private CA), offering the ALPN
/// protocols `alpn`.
pub fn client_config(
    extra_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca {
        for cert in read_chain(path)? {
            roots.add(cert).map_err(TlsError::Rustls)?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
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
        let client = client_config(Some(&cert_path), &[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(client.alpn_protocols.len(), 2);

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
}
