//! The public base URL of a reverse proxy: the scheme and port visitors
//! reach it on (`meshplane proxy --public-url`). An exposed service's URL
//! is its domain on that scheme and port, so a development proxy serving
//! plain HTTP on :8081 is advertised as `http://name.domain:8081`, not as
//! an `https://` URL nobody answers.
//!
//! The URL's host is the proxy's domain: services live under it (or under
//! a custom domain pointed at the same proxy), on the one port it serves.

use thiserror::Error;

/// A proxy's base URL, checked against the domain it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// Whether visitors connect with TLS (`https`) or not (`http`).
    pub tls: bool,
    /// The port visitors connect to; `None` for the scheme's default.
    pub port: Option<u16>,
}

/// Why a public URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublicUrlError {
    #[error("public URL {0:?}: it must start with http:// or https://")]
    Scheme(String),
    #[error("public URL {url:?}: its host must be the proxy domain {domain:?}")]
    Host { url: String, domain: String },
    #[error("public URL {0:?}: invalid port")]
    Port(String),
    #[error("public URL {0:?}: only scheme, host and port are allowed (no path, query or user)")]
    Extra(String),
}

impl Default for PublicUrl {
    /// What a proxy that said nothing is assumed to serve: HTTPS on 443.
    fn default() -> Self {
        PublicUrl {
            tls: true,
            port: None,
        }
    }
}

impl PublicUrl {
    /// The base of a proxy serving `tls` or plain HTTP on `port` (a
    /// scheme's default port is left out of URLs).
    pub fn new(tls: bool, port: u16) -> PublicUrl {
        let default = if tls { 443 } else { 80 };
        PublicUrl {
            tls,
            port: (port != default).then_some(port),
        }
    }

    /// Parses `url` (`http[s]://DOMAIN[:PORT][/]`) of a proxy serving
    /// `domain`; the host is compared without regard to case.
    pub fn parse(url: &str, domain: &str) -> Result<PublicUrl, PublicUrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| PublicUrlError::Scheme(url.to_string()))?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(PublicUrlError::Scheme(url.to_string()));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(PublicUrlError::Extra(url.to_string()));
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| PublicUrlError::Port(url.to_string()))?;
                (host, Some(port))
            }
            None => (authority, None),
        };
        let domain = domain.trim_end_matches('.');
        if !host.trim_end_matches('.').eq_ignore_ascii_case(domain) {
            return Err(PublicUrlError::Host {
                url: url.to_string(),
                domain: domain.to_string(),
            });
        }
        let default = if tls { 443 } else { 80 };
        Ok(PublicUrl {
            tls,
            port: port.filter(|p| *p != default),
        })
    }

    /// The URL of the service at `domain` behind this proxy.
    pub fn service_url(&self, domain: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.port {
            Some(port) => format!("{scheme}://{domain}:{port}"),
            None => format!("{scheme}://{domain}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_proxy_serves() {
        let plain = PublicUrl::parse("http://proxy.localhost:8081", "proxy.localhost");
        assert_eq!(plain, Ok(PublicUrl::new(false, 8081)));
        assert_eq!(
            plain.map(|p| p.service_url("demo-ab12.proxy.localhost")),
            Ok("http://demo-ab12.proxy.localhost:8081".to_string())
        );
        let tls = PublicUrl::parse("HTTPS://Proxy.Example.com:443/", "proxy.example.com");
        assert_eq!(tls, Ok(PublicUrl::default()));
        assert_eq!(
            PublicUrl::new(false, 80).service_url("a.b"),
            "http://a.b".to_string()
        );
        assert_eq!(
            PublicUrl::new(true, 8443).service_url("a.b"),
            "https://a.b:8443"
        );
    }

    #[test]
    fn refuses_what_is_no_base_url_of_the_domain() {
        let d = "proxy.localhost";
        for (url, want) in [
            ("proxy.localhost:8081", "must start with"),
            ("ftp://proxy.localhost", "must start with"),
            ("http://other.example:8081", "host must be the proxy domain"),
            ("http://proxy.localhost:0", "invalid port"),
            ("http://proxy.localhost:99999", "invalid port"),
            ("http://proxy.localhost:x", "invalid port"),
            ("http://proxy.localhost/app", "no path"),
            ("http://u@proxy.localhost", "no path"),
            ("http://proxy.localhost?x=1", "no path"),
        ] {
            let err = PublicUrl::parse(url, d).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
