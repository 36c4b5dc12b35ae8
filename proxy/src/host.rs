//! Parsing the `Host` a request is addressed to.

use http::Request;

/// Why a request's host cannot be used for routing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HostError {
    #[error("missing Host header")]
    Missing,
    #[error("invalid Host header")]
    Invalid,
    #[error("more than one Host header")]
    Repeated,
    #[error("the request target and the Host header differ")]
    Mismatch,
}

/// The host a request is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHost {
    /// Lower-cased, without port or trailing dot: what routing compares.
    pub name: String,
    /// Lower-cased as the visitor wrote it, port included: what links back
    /// to this host (the SSO callback) must use.
    pub authority: String,
}

/// The host a request is for: its one `Host` header, or an absolute-form
/// request target's authority. RFC 9112 has the target win over `Host`,
/// but a proxy in front of this one (or a cache keyed on `Host`) may read
/// the other, so when both are present they must name the same host and
/// port; two `Host` headers are refused outright (RFC 9112, section 3.2).
pub(crate) fn of_request<B>(req: &Request<B>) -> Result<RequestHost, HostError> {
    let mut headers = req.headers().get_all(http::header::HOST).iter();
    let header = match (headers.next(), headers.next()) {
        (_, Some(_)) => return Err(HostError::Repeated),
        (Some(value), None) => Some(value.to_str().map_err(|_| HostError::Invalid)?),
        (None, None) => None,
    };
    let raw = match (req.uri().authority(), header) {
        (Some(target), Some(header)) => {
            if !target.as_str().eq_ignore_ascii_case(header) {
                return Err(HostError::Mismatch);
            }
            header
        }
        (Some(target), None) => target.as_str(),
        (None, Some(header)) => header,
        (None, None) => return Err(HostError::Missing),
    };
    Ok(RequestHost {
        name: normalise(raw)?,
        authority: raw.to_ascii_lowercase(),
    })
}

fn normalise(raw: &str) -> Result<String, HostError> {
    let name = match raw.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return Err(HostError::Invalid),
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid {
        return Err(HostError::Invalid);
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_port_case_and_trailing_dot() {
        assert_eq!(
            normalise("App.Example.COM:8443").unwrap(),
            "app.example.com"
        );
        assert_eq!(normalise("app.example.com.").unwrap(), "app.example.com");
        assert_eq!(normalise("app"), Ok("app".into()));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(normalise(""), Err(HostError::Invalid));
        assert_eq!(normalise("a b"), Err(HostError::Invalid));
        assert_eq!(normalise("a:b"), Err(HostError::Invalid));
        assert_eq!(normalise("<script>"), Err(HostError::Invalid));
        assert_eq!(normalise("[::1]:80"), Err(HostError::Invalid));
    }

    fn request(target: &str, hosts: &[&str]) -> Request<()> {
        let mut req = Request::get(target);
        for host in hosts {
            req = req.header(http::header::HOST, *host);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn target_and_host_header_must_agree() {
        let host = |target, hosts: &[&str]| of_request(&request(target, hosts)).map(|h| h.name);
        assert_eq!(host("/", &["A.example"]), Ok("a.example".into()));
        assert_eq!(host("http://a.example/x", &[]), Ok("a.example".into()));
        assert_eq!(
            host("http://a.example:8080/x", &["A.Example:8080"]),
            Ok("a.example".into())
        );
        assert_eq!(
            host("http://a.example/x", &["b.example"]),
            Err(HostError::Mismatch)
        );
        assert_eq!(
            host("http://a.example/x", &["a.example:8080"]),
            Err(HostError::Mismatch)
        );
        assert_eq!(
            host("/", &["a.example", "a.example"]),
            Err(HostError::Repeated)
        );
        assert_eq!(host("/", &[]), Err(HostError::Missing));
    }
}
