//! One exposed service as the proxy sees it.

use std::net::SocketAddrV4;

/// A service the proxy routes to: the daemon converts each `ExposedService`
/// of the management server's table into one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Host name visitors use, e.g. `myapp-a1b2c3.proxy.example.com`.
    pub domain: String,
    /// The exposing peer's mesh address and local port.
    pub target: SocketAddrV4,
    /// Protocol `https`: the target speaks TLS. Its certificate is not
    /// verified: it is the peer's own local service, reached through the
    /// already authenticated WireGuard tunnel.
    pub backend_tls: bool,
    /// argon2id PHC string of the PIN, when PIN protection is on.
    pub pin_hash: Option<String>,
    /// argon2id PHC string of the password, when password protection is on.
    pub password_hash: Option<String>,
    /// Group names a visitor's SSO identity must carry one of.
    pub user_groups: Vec<String>,
}

impl Service {
    /// Whether visitors must authenticate before reaching the target.
    pub fn is_protected(&self) -> bool {
        self.pin_hash.is_some() || self.password_hash.is_some() || !self.user_groups.is_empty()
    }

    /// Whether an SSO identity with `groups` may use this service.
    pub(crate) fn admits_groups(&self, groups: &[String]) -> bool {
        self.user_groups.iter().any(|g| groups.contains(g))
    }
}

/// The service answering for `host` (already normalised: lower case, no
/// port), if any.
pub(crate) fn find<'a>(services: &'a [Service], host: &str) -> Option<&'a Service> {
    services.iter().find(|s| {
        s.domain
            .strip_suffix('.')
            .unwrap_or(&s.domain)
            .eq_ignore_ascii_case(host)
    })
}
