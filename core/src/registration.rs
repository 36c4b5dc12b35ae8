//! Peer registration and login: what happens when a daemon presents a setup
//! key (a new peer) or its WireGuard key (a registered one).
//!
//! Registration decides everything about the new peer — whether the key may
//! be used, its address (random free host, [`crate::ipam`]), its DNS label
//! (with the collision fallback, [`crate::dns_label`]), its groups (`All`
//! plus the key's auto groups), whether it waits for approval — and returns
//! the peer together with the key's updated usage, for the shell to persist
//! in one transaction.
//!
//! The setup-key refusals name their cause (expired, revoked, used up) rather
//! than the reference's single "setup key is invalid": an operator reading a
//! daemon's error should not have to guess. An unknown key keeps the
//! reference's wording.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dns_label;
use crate::error::{ErrorCode, Kind};
use crate::ipam::{self, IpamError};
use crate::model::{
    Account, AccountSettings, GroupId, Peer, PeerId, PeerMeta, SetupKey, SetupKeyState,
    SetupKeyType, User, UserStatus,
};
use crate::time::{Duration, Timestamp};
use crate::validate::{self, Cidr, ValidationError};

/// Why a peer may not register or log in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistrationError {
    #[error("couldn't add peer: setup key is invalid")]
    UnknownSetupKey,
    #[error("couldn't add peer: setup key has expired")]
    SetupKeyExpired,
    #[error("couldn't add peer: setup key is revoked")]
    SetupKeyRevoked,
    #[error("couldn't add peer: setup key has reached its usage limit")]
    SetupKeyExhausted,
    #[error("peer has been already registered")]
    AlreadyRegistered,
    #[error("setup key does not allow extra DNS labels")]
    ExtraLabelsNotAllowed,
    #[error("invalid extra DNS label: {0}")]
    ExtraLabel(ValidationError),
    #[error("invalid WireGuard public key: must be 32 bytes in base64")]
    BadWireGuardKey,
    #[error("peer is not registered")]
    NotRegistered,
    #[error("peer login has expired, please log in once more")]
    LoginExpired,
    #[error("user is blocked")]
    UserBlocked,
    #[error("account network {0} is invalid")]
    BadNetwork(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

impl ErrorCode for RegistrationError {
    fn code(&self) -> &'static str {
        match self {
            RegistrationError::UnknownSetupKey => "setup_key_invalid",
            RegistrationError::SetupKeyExpired => "setup_key_expired",
            RegistrationError::SetupKeyRevoked => "setup_key_revoked",
            RegistrationError::SetupKeyExhausted => "setup_key_exhausted",
            RegistrationError::AlreadyRegistered => "peer_already_registered",
            RegistrationError::ExtraLabelsNotAllowed => "extra_dns_labels_not_allowed",
            RegistrationError::ExtraLabel(_) => "invalid_extra_dns_label",
            RegistrationError::BadWireGuardKey => "invalid_wireguard_key",
            RegistrationError::NotRegistered => "peer_not_registered",
            RegistrationError::LoginExpired => "peer_login_expired",
            RegistrationError::UserBlocked => "user_blocked",
            RegistrationError::BadNetwork(_) => "invalid_account_network",
            RegistrationError::Ipam(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RegistrationError::UnknownSetupKey
            | RegistrationError::SetupKeyExpired
            | RegistrationError::SetupKeyRevoked
            | RegistrationError::SetupKeyExhausted
            | RegistrationError::LoginExpired
            | RegistrationError::UserBlocked => Kind::PermissionDenied,
            RegistrationError::AlreadyRegistered => Kind::AlreadyExists,
            RegistrationError::NotRegistered => Kind::NotFound,
            RegistrationError::ExtraLabelsNotAllowed
            | RegistrationError::ExtraLabel(_)
            | RegistrationError::BadWireGuardKey => Kind::InvalidArgument,
            RegistrationError::BadNetwork(_) | RegistrationError::Ipam(_) => {
                Kind::FailedPrecondition
            }
        }
    }
}

/// What the daemon sends when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistrationRequest {
    /// The peer's WireGuard public key, base64.
    pub wg_key: String,
    pub hostname: String,
    pub meta: PeerMeta,
    pub extra_dns_labels: Vec<String>,
    /// The address the server saw the request come from.
    pub connection_ip: Option<String>,
}

/// The outcome of a registration: the new peer, the groups it joins, and the
/// setup key with its usage counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub peer: Peer,
    pub groups: Vec<GroupId>,
    pub setup_key: SetupKey,
}

impl Registration {
    /// Adds the peer to `account` (memberships included) and stores the
    /// updated key: what the shell persists, applied in memory.
    pub fn apply(self, account: &mut Account) {
        let joins: BTreeSet<&GroupId> = self.groups.iter().collect();
        for g in account.groups.iter_mut().filter(|g| joins.contains(&g.id)) {
            g.peers.push(self.peer.id.clone());
        }
        account.peers.push(self.peer);
        account.serial += 1;
    }
}

/// Checks that `key` may register a peer at `now`.
pub fn check_setup_key(key: &SetupKey, now: Timestamp) -> Result<(), RegistrationError> {
    match key.state(now) {
        SetupKeyState::Valid => Ok(()),
        SetupKeyState::Revoked => Err(RegistrationError::SetupKeyRevoked),
        SetupKeyState::Expired => Err(RegistrationError::SetupKeyExpired),
        SetupKeyState::Overused => Err(RegistrationError::SetupKeyExhausted),
    }
}

/// Whether `b64` is a 32-byte key in standard base64 (as WireGuard writes
/// it: 43 characters and one `=`).
fn is_wireguard_key(b64: &str) -> bool {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    STANDARD.decode(b64).is_ok_and(|b| b.len() == 32)
}

/// Checks that `wg_key` is a WireGuard public key no peer of `account` has.
pub fn check_new_key(account: &Account, wg_key: &str) -> Result<(), RegistrationError> {
    if !is_wireguard_key(wg_key) {
        return Err(RegistrationError::BadWireGuardKey);
    }
    if account.peers.iter().any(|p| p.key == wg_key) {
        return Err(RegistrationError::AlreadyRegistered);
    }
    Ok(())
}

/// A new peer of `account` with key `wg_key` (checked with
/// [`check_new_key`]): a random free address of the account network and a
/// DNS label of its own, registered, seen and logged in at `now`.
pub fn new_peer(
    account: &Account,
    peer_id: PeerId,
    hostname: &str,
    wg_key: &str,
    ephemeral: bool,
    now: Timestamp,
    rng: &mut impl RngCore,
) -> Result<Peer, RegistrationError> {
    let network: Cidr = account
        .settings
        .network_range
        .parse()
        .map_err(|_| RegistrationError::BadNetwork(account.settings.network_range.clone()))?;
    let taken_ips: BTreeSet<Ipv4Addr> = account.peers.iter().map(|p| p.ip).collect();
    let ip = ipam::allocate(network, |ip| taken_ips.contains(&ip), rng)?;
    let taken_labels: BTreeSet<&str> = account.peers.iter().map(|p| p.dns_label.as_str()).collect();
    let label = dns_label::label_for(hostname, ip, ephemeral, |l| taken_labels.contains(l));

    let mut peer = Peer::new(peer_id.0, hostname, ip);
    peer.key = wg_key.to_string();
    peer.dns_label = label;
    peer.hostname = hostname.to_string();
    peer.last_seen = now;
    peer.last_login = now;
    peer.created_at = now;
    peer.ephemeral = ephemeral;
    Ok(peer)
}

/// Registers a new peer with setup key `key` (already found by its hash).
pub fn register_with_setup_key(
    account: &Account,
    key: &SetupKey,
    request: &RegistrationRequest,
    peer_id: PeerId,
    now: Timestamp,
    rng: &mut impl RngCore,
) -> Result<Registration, RegistrationError> {
    check_setup_key(key, now)?;
    check_new_key(account, &request.wg_key)?;
    if !request.extra_dns_labels.is_empty() && !key.allow_extra_dns_labels {
        return Err(RegistrationError::ExtraLabelsNotAllowed);
    }
    for label in &request.extra_dns_labels {
        validate::dns_label(label).map_err(RegistrationError::ExtraLabel)?;
    }

    let mut peer = new_peer(
        account,
        peer_id,
        &request.hostname,
        &request.wg_key,
        key.ephemeral,
        now,
        rng,
    )?;
    peer.extra_dns_labels = request.extra_dns_labels.clone();
    peer.meta = request.meta.clone();
    peer.approval_required = account.settings.extra.peer_approval_enabled;
    peer.connection_ip = request.connection_ip.clone();

    let mut groups: Vec<GroupId> = account
        .groups
        .iter()
        .filter(|g| g.is_all() || (key.auto_groups.contains(&g.id)))
        .map(|g| g.id.clone())
        .collect();
    groups.sort();
    groups.dedup();

    let mut setup_key = key.clone();
    setup_key.used_times += 1;
    setup_key.last_used = Some(now);
    if setup_key.kind == SetupKeyType::OneOff {
        setup_key.usage_limit = 1;
    }
    Ok(Registration {
        peer,
        groups,
        setup_key,
    })
}

/// Checks that a registered peer may log in (and sync) at `now`: its login
/// has not expired and the user that added it is not blocked.
pub fn check_login<'a>(
    account: &'a Account,
    wg_key: &str,
    now: Timestamp,
) -> Result<&'a Peer, RegistrationError> {
    let peer = account
        .peers
        .iter()
        .find(|p| p.key == wg_key)
        .ok_or(RegistrationError::NotRegistered)?;
    check_found_login(account, peer, now)?;
    Ok(peer)
}

/// [`check_login`] for `peer` of `account`, already found (by its id
/// through an index, say, where the search by key walks every peer).
pub fn check_found_login(
    account: &Account,
    peer: &Peer,
    now: Timestamp,
) -> Result<(), RegistrationError> {
    let owner = peer
        .user_id
        .as_ref()
        .and_then(|id| account.users.iter().find(|u| &u.id == id));
    check_peer_login(peer, owner, &account.settings, now)
}

/// [`check_login`] for a peer already found, with the user that added it
/// (`None` when it names a user the account no longer has) and its
/// account's settings: what a server that looks the peer up by its key
/// needs, without the rest of the account.
pub fn check_peer_login(
    peer: &Peer,
    owner: Option<&User>,
    settings: &AccountSettings,
    now: Timestamp,
) -> Result<(), RegistrationError> {
    if peer.user_id.is_some()
        && owner.is_none_or(|u| u.is_blocked || u.status == UserStatus::Blocked)
    {
        return Err(RegistrationError::UserBlocked);
    }
    if peer.login_expired(settings, now) {
        return Err(RegistrationError::LoginExpired);
    }
    Ok(())
}

/// How long an ephemeral peer may stay offline before the server deletes
/// it (SEMANTICS.md: 10 minutes).
pub const EPHEMERAL_OFFLINE: Duration = Duration::from_secs(600);

/// Which ephemeral peers are due for deletion, and when the next one will
/// be, so the server can sleep until then.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EphemeralSweep {
    /// Ephemeral peers offline for at least the period at `now`.
    pub due: Vec<PeerId>,
    /// The earliest time another, offline ephemeral peer becomes due.
    pub next: Option<Timestamp>,
}

/// The ephemeral peers among `peers` that have been offline for `offline`
/// or longer at `now` (counted from `last_seen`, which the server sets
/// when the peer's last stream ends). Connected and ordinary peers are
/// never due.
pub fn ephemeral_sweep<'a>(
    peers: impl IntoIterator<Item = &'a Peer>,
    now: Timestamp,
    offline: Duration,
) -> EphemeralSweep {
    let mut sweep = EphemeralSweep::default();
    for peer in peers {
        if !peer.ephemeral || peer.connected {
            continue;
        }
        let due_at = peer.last_seen.saturating_add(offline);
        if due_at <= now {
            sweep.due.push(peer.id.clone());
        } else {
            sweep.next = Some(sweep.next.map_or(due_at, |next| next.min(due_at)));
        }
    }
    sweep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, ephemeral: bool, connected: bool, last_seen_s: i64) -> Peer {
        let mut p = Peer::new(id, "k", Ipv4Addr::new(100, 64, 0, 1));
        p.ephemeral = ephemeral;
        p.connected = connected;
        p.last_seen = Timestamp::from_millis(last_seen_s * 1000);
        p
    }

    #[test]
    fn only_ephemeral_peers_offline_for_the_period_are_due() {
        let peers = [
            peer("gone", true, false, 0),
            peer("exactly", true, false, 400),
            peer("soon", true, false, 500),
            peer("later", true, false, 900),
            peer("online", true, true, 0),
            peer("ordinary", false, false, 0),
        ];
        let now = Timestamp::from_millis(1000 * 1000);
        let sweep = ephemeral_sweep(&peers, now, EPHEMERAL_OFFLINE);
        assert_eq!(sweep.due, vec![PeerId::new("gone"), PeerId::new("exactly")]);
        assert_eq!(sweep.next, Some(Timestamp::from_millis(1100 * 1000)));

        let quiet = ephemeral_sweep(&peers[4..], now, EPHEMERAL_OFFLINE);
        assert_eq!(quiet, EphemeralSweep::default());
    }
}
