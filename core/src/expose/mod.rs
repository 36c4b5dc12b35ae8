//! Expose sessions: a peer publishes a local HTTP service through the reverse
//! proxy for as long as `meshplane expose` runs.
//!
//! Two state machines live here, both sans-IO (time is an argument, outputs
//! are drained with `poll_*`):
//!
//! - [`SessionTable`] is the management server's table of ephemeral
//!   services. It checks permission and limits, generates the service name,
//!   keeps a TTL per session that every renewal resets, and reports audit
//!   events ([`ExposeEvent`]). A server that keeps its sessions elsewhere
//!   (servers sharing a database) restores them into a table, lets it
//!   decide, and stores what changed; a session created on a copy of the
//!   table is [`admit`](SessionTable::admit)ted to the shared one, which
//!   checks the limit and the name again.
//! - [`KeepAlive`] is what the daemon runs for one exposed service: it renews
//!   every 30 s, gives up when a renewal fails or times out, and sends a stop
//!   on Ctrl+C.
//!
//! Rules where the seed leaves a choice:
//!
//! - **Permission.** `peer_expose_enabled` must be true, and when
//!   `peer_expose_groups` is non-empty the peer must be in one of them. An
//!   empty group list allows every peer (the seed's troubleshooting text:
//!   "leave the group list empty to allow all peers").
//! - **Order of checks on create.** Input validation first (so a typo is
//!   reported even without permission), then permission, then user-group
//!   names and the custom domain (which need the account), then the per-peer
//!   limit, then the name.
//! - **Expiry is exact.** A session whose deadline is at or before `now` is
//!   expired: a session created at `t` is gone at `t + 90 s`, and a renewal
//!   arriving at exactly that instant fails with "no active expose session".
//!   Every entry point first expires what is due, so a late call never
//!   resurrects a session.
//! - **Events carry the instant the session ended.** An expired session's
//!   event is stamped with its deadline, not with the (possibly later) time
//!   the reaper ran.
//!
//! ```
//! use meshplane_core::expose::{ExposeContext, ExposePeer, ExposeRequest, SessionTable, TableConfig};
//! use meshplane_core::model::AccountSettings;
//! use meshplane_core::{Duration, Timestamp};
//! use rand_chacha::{rand_core::SeedableRng, ChaCha8Rng};
//!
//! let settings = AccountSettings { peer_expose_enabled: true, ..AccountSettings::default() };
//! let peer = ExposePeer { id: "p1".into(), name: "laptop".into(), groups: vec![] };
//! let ctx = ExposeContext { settings: &settings, groups: &[], custom_domains: &[], peer: &peer };
//! let mut table = SessionTable::new(TableConfig::default());
//! let mut rng = ChaCha8Rng::seed_from_u64(1);
//! let t0 = Timestamp::from_secs(1_000);
//!
//! let request = ExposeRequest { port: 8080, name_prefix: Some("demo".into()), ..ExposeRequest::default() };
//! let session = table.create(&ctx, &request, &mut rng, t0).unwrap();
//! assert!(session.url.starts_with("https://demo-"));
//! assert_eq!(table.poll_timeout(), Some(t0 + Duration::from_secs(90)));
//!
//! // Nobody renews: at exactly the deadline the session is gone.
//! table.handle_timeout(t0 + Duration::from_secs(90));
//! assert_eq!(table.len(), 0);
//! let exposed = table.poll_event().unwrap();
//! let expired = table.poll_event().unwrap();
//! assert_eq!((exposed.activity, expired.activity), (111, 113));
//! ```

pub mod grants;
mod keepalive;
mod names;
mod public_url;
mod table;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::keys::KeyError;
use crate::model::{Activity, PeerId};
use crate::time::Timestamp;
use crate::validate::ValidationError;

pub use keepalive::{
    KeepAlive, KeepAliveConfig, KeepAliveEvent, KeepAliveState, Request, RENEW_TIMEOUT_REASON,
};
pub use names::{generate_name, NAME_ALPHABET, PREFIXED_SUFFIX_LEN, RANDOM_NAME_LEN};
pub use public_url::{PublicUrl, PublicUrlError};
pub use table::{
    ExposeContext, ExposePeer, ExposeRequest, Session, SessionAuth, SessionTable, TableConfig,
    ValidExposeRequest, MAX_NAME_ATTEMPTS,
};

/// Why an expose operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExposeError {
    /// A flag of the request is malformed (port, protocol, PIN, ...).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("unknown user group \"{0}\"")]
    UnknownUserGroup(String),
    #[error("custom domain \"{0}\" is not registered to the account")]
    UnknownCustomDomain(String),
    #[error("permission denied")]
    PermissionDenied,
    #[error("peer has reached the maximum number of active expose sessions ({0})")]
    LimitReached(usize),
    #[error("domain already taken")]
    DomainTaken,
    #[error("no active expose session for service {0}")]
    NotFound(String),
    /// Hashing a PIN or password failed (never with valid parameters).
    #[error(transparent)]
    Hash(#[from] KeyError),
}

impl ErrorCode for ExposeError {
    fn code(&self) -> &'static str {
        match self {
            ExposeError::Invalid(e) => e.code(),
            ExposeError::UnknownUserGroup(_) => "unknown_user_group",
            ExposeError::UnknownCustomDomain(_) => "unknown_custom_domain",
            ExposeError::PermissionDenied => "permission_denied",
            ExposeError::LimitReached(_) => "limit_reached",
            ExposeError::DomainTaken => "domain_taken",
            ExposeError::NotFound(_) => "session_not_found",
            ExposeError::Hash(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            ExposeError::Invalid(_)
            | ExposeError::UnknownUserGroup(_)
            | ExposeError::UnknownCustomDomain(_) => Kind::InvalidArgument,
            ExposeError::PermissionDenied => Kind::PermissionDenied,
            // The gRPC shell maps this limit to RESOURCE_EXHAUSTED.
            ExposeError::LimitReached(_) => Kind::FailedPrecondition,
            ExposeError::DomainTaken => Kind::AlreadyExists,
            ExposeError::NotFound(_) => Kind::NotFound,
            ExposeError::Hash(e) => e.kind(),
        }
    }
}

/// How an expose session began or ended, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExposeEventKind {
    /// The peer created the session.
    Exposed,
    /// The peer stopped it, or the peer was deleted.
    Unexposed,
    /// Nobody renewed it within the TTL.
    Expired,
}

impl ExposeEventKind {
    /// The audit activity recorded for this kind.
    pub fn activity(self) -> Activity {
        match self {
            ExposeEventKind::Exposed => Activity::PEER_SERVICE_EXPOSED,
            ExposeEventKind::Unexposed => Activity::PEER_SERVICE_UNEXPOSED,
            ExposeEventKind::Expired => Activity::PEER_SERVICE_EXPOSE_EXPIRED,
        }
    }
}

/// One audit event of the session table, with the meta the seed asks for
/// (peer name, domain, whether authentication is on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeEvent {
    pub kind: ExposeEventKind,
    /// The numeric activity code (111, 112 or 113), kept beside `kind` so a
    /// shell can write the audit row without a lookup.
    pub activity: u32,
    pub at: Timestamp,
    pub peer_id: PeerId,
    pub peer_name: String,
    pub domain: String,
    pub auth_enabled: bool,
}

impl ExposeEvent {
    fn new(kind: ExposeEventKind, session: &Session, at: Timestamp) -> Self {
        ExposeEvent {
            kind,
            activity: kind.activity().id,
            at,
            peer_id: session.peer_id.clone(),
            peer_name: session.peer_name.clone(),
            domain: session.domain.clone(),
            auth_enabled: session.auth.enabled(),
        }
    }
}
