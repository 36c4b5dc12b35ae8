//! Parsing the `Host` a request is addressed to.

use http::Request;

/// Why a request's host cannot be used for routing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HostError {
    #[error("missing Host header")]
    Missing,
    #[error("invalid Host header")]
    Invalid,
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

/// The host a request is for. HTTP/1.1 puts it in `Host`; an absolute-form
/// request target wins, as RFC 9112 says.
pub(crate) fn of_request<B>(req: &Request<B>) -> Result<RequestHost, HostError> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => req
            .headers()
            .get(http::header::HOST)
            .ok_or(HostError::Missing)?
            .to_str()
            .map_err(|_| HostError::Invalid)?,
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
}
