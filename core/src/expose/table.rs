//! The management server's table of expose sessions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::names::generate_name;
use super::{ExposeError, ExposeEvent, ExposeEventKind};
use crate::keys;
use crate::model::{AccountSettings, Group, GroupId, PeerId};
use crate::time::{Duration, Timestamp};
use crate::validate::{
    self, Domain, ExposeProtocol, NamePrefix, Password, Pin, Port, ValidationError,
};

/// How many fresh names create draws before it reports `domain already
/// taken`. With 36^4 suffixes a repeated collision means the namespace is
/// crowded, not bad luck.
pub const MAX_NAME_ATTEMPTS: usize = 8;

/// Server-side constants of peer expose (SEMANTICS.md "Peer expose").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableConfig {
    /// Lifetime of a session without renewal; every renewal resets it.
    pub ttl: Duration,
    /// Active sessions one peer may hold at once.
    pub max_sessions_per_peer: usize,
    /// The proxy cluster domain generated names live under.
    pub proxy_domain: String,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            ttl: Duration::from_secs(90),
            max_sessions_per_peer: 10,
            proxy_domain: "proxy.example.com".to_string(),
        }
    }
}

/// The peer asking to expose a service, with the ids of its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposePeer {
    pub id: PeerId,
    pub name: String,
    #[serde(default)]
    pub groups: Vec<GroupId>,
}

/// What create needs to know about the account the peer belongs to.
#[derive(Debug, Clone, Copy)]
pub struct ExposeContext<'a> {
    pub settings: &'a AccountSettings,
    /// The account's groups, to resolve `--with-user-groups` names.
    pub groups: &'a [Group],
    /// Custom domains registered to the account.
    pub custom_domains: &'a [Domain],
    pub peer: &'a ExposePeer,
}

/// The flags of `meshplane expose`, raw as they arrive from the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeRequest {
    pub port: i64,
    /// `http` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Names (not ids) of user groups allowed through SSO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
}

/// A request whose flags passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidExposeRequest {
    pub port: Port,
    pub protocol: ExposeProtocol,
    pub pin: Option<Pin>,
    pub password: Option<Password>,
    /// Trimmed names; `None` when the request restricts no user groups.
    pub user_groups: Option<Vec<String>>,
    pub custom_domain: Option<Domain>,
    pub name_prefix: Option<NamePrefix>,
}

impl ExposeRequest {
    /// Checks every flag with the messages of SEMANTICS.md, in flag order.
    /// The only check of an expose request: the daemon runs it before it
    /// calls the server (so a typo fails without a round trip) and the
    /// server's session table runs it again on what arrives.
    pub fn validate(&self) -> Result<ValidExposeRequest, ValidationError> {
        let port = Port::try_from(self.port)?;
        let protocol = match &self.protocol {
            Some(p) => p.parse()?,
            None => ExposeProtocol::default(),
        };
        let pin = self.pin.as_deref().map(str::parse).transpose()?;
        let password = self.password.as_deref().map(str::parse).transpose()?;
        let user_groups = self
            .user_groups
            .as_deref()
            .map(validate::user_groups)
            .transpose()?;
        let custom_domain = self.custom_domain.as_deref().map(str::parse).transpose()?;
        let name_prefix = self.name_prefix.as_deref().map(str::parse).transpose()?;
        Ok(ValidExposeRequest {
            port,
            protocol,
            pin,
            password,
            user_groups,
            custom_domain,
            name_prefix,
        })
    }
}

/// How visitors must authenticate. Secrets are kept only as argon2id hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub user_group_ids: Vec<GroupId>,
}

impl SessionAuth {
    /// Whether any method protects the service (the audit meta flag).
    pub fn enabled(&self) -> bool {
        self.pin_hash.is_some() || self.password_hash.is_some() || !self.user_group_ids.is_empty()
    }
}

/// One active exposed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The domain again: it is the globally unique key renew and stop use.
    pub id: String,
    pub peer_id: PeerId,
    pub peer_name: String,
    pub name: String,
    pub domain: String,
    pub url: String,
    pub protocol: ExposeProtocol,
    pub port: Port,
    pub auth: SessionAuth,
    pub created_at: Timestamp,
    /// The session is expired at and after this instant.
    pub deadline: Timestamp,
}

/// Every active expose session of a management server, keyed by domain.
///
/// Feed it with `create` / `renew` / `stop` / `remove_peer` and with
/// [`handle_timeout`](Self::handle_timeout) whenever
/// [`poll_timeout`](Self::poll_timeout) comes due; drain audit events with
/// [`poll_event`](Self::poll_event) after each call.
#[derive(Debug, Clone, Default)]
pub struct SessionTable {
    config: TableConfig,
    sessions: BTreeMap<String, Session>,
    /// (deadline, domain): the next session to expire is the first entry.
    deadlines: BTreeSet<(Timestamp, String)>,
    by_peer: BTreeMap<PeerId, BTreeSet<String>>,
    events: VecDeque<ExposeEvent>,
}

impl SessionTable {
    pub fn new(config: TableConfig) -> Self {
        SessionTable {
            config,
            ..SessionTable::default()
        }
    }

    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// Exposes a service for `ctx.peer`. Salts for the PIN and password
    /// hashes are drawn from `rng` after the name.
    pub fn create(
        &mut self,
        ctx: &ExposeContext<'_>,
        request: &ExposeRequest,
        rng: &mut impl RngCore,
        now: Timestamp,
    ) -> Result<Session, ExposeError> {
        self.handle_timeout(now);
        let req = request.validate()?;
        if !may_expose(ctx.settings, ctx.peer) {
            return Err(ExposeError::PermissionDenied);
        }
        let user_group_ids = match &req.user_groups {
            Some(names) => resolve_groups(ctx.groups, names)?,
            None => Vec::new(),
        };
        let parent = match &req.custom_domain {
            Some(d) if ctx.custom_domains.contains(d) => d.as_str(),
            Some(d) => return Err(ExposeError::UnknownCustomDomain(d.to_string())),
            None => self.config.proxy_domain.as_str(),
        };
        let active = self.sessions_of(&ctx.peer.id).count();
        if active >= self.config.max_sessions_per_peer {
            return Err(ExposeError::LimitReached(self.config.max_sessions_per_peer));
        }
        let (name, domain) = self.free_name(req.name_prefix.as_ref(), parent, rng)?;
        let auth = SessionAuth {
            pin_hash: req
                .pin
                .map(|p| keys::hash_argon2(p.as_str(), rng))
                .transpose()?,
            password_hash: req
                .password
                .map(|p| keys::hash_argon2(p.as_str(), rng))
                .transpose()?,
            user_group_ids,
        };
        let session = Session {
            id: domain.clone(),
            peer_id: ctx.peer.id.clone(),
            peer_name: ctx.peer.name.clone(),
            name,
            url: format!("https://{domain}"),
            domain,
            protocol: req.protocol,
            port: req.port,
            auth,
            created_at: now,
            deadline: now + self.config.ttl,
        };
        self.admit(session, now)
    }

    /// Adds a session [`create`](Self::create) made on another copy of the
    /// table (a server sharing its sessions with others creates on a copy,
    /// then admits the result to the shared one), checking again what may
    /// have changed meanwhile: the peer's limit and whether the domain is
    /// free. Answers the session.
    pub fn admit(&mut self, session: Session, now: Timestamp) -> Result<Session, ExposeError> {
        self.handle_timeout(now);
        let active = self.sessions_of(&session.peer_id).count();
        if active >= self.config.max_sessions_per_peer {
            return Err(ExposeError::LimitReached(self.config.max_sessions_per_peer));
        }
        if self.sessions.contains_key(&session.domain) {
            return Err(ExposeError::DomainTaken);
        }
        self.insert(session.clone());
        self.events
            .push_back(ExposeEvent::new(ExposeEventKind::Exposed, &session, now));
        Ok(session)
    }

    /// Puts back a session that was admitted before (read from where a
    /// server keeps its sessions), with no event: the table then decides
    /// about it as if it had created it. An older session on the same
    /// domain is replaced.
    pub fn restore(&mut self, session: Session) {
        self.unlink(&session.domain);
        self.insert(session);
    }

    /// Drops the session on `domain` with no event (it ended where the
    /// server keeps its sessions, and that end was reported there).
    pub fn forget(&mut self, domain: &str) -> Option<Session> {
        self.unlink(domain)
    }

    /// Draws names until one gives a domain nobody holds.
    fn free_name(
        &self,
        prefix: Option<&NamePrefix>,
        parent: &str,
        rng: &mut impl RngCore,
    ) -> Result<(String, String), ExposeError> {
        for _ in 0..MAX_NAME_ATTEMPTS {
            let name = generate_name(prefix, rng);
            let domain = format!("{name}.{parent}");
            if !self.sessions.contains_key(&domain) {
                return Ok((name, domain));
            }
        }
        Err(ExposeError::DomainTaken)
    }

    /// Resets the TTL of `peer`'s session on `domain`; answers the new
    /// deadline.
    pub fn renew(
        &mut self,
        peer: &PeerId,
        domain: &str,
        now: Timestamp,
    ) -> Result<Timestamp, ExposeError> {
        self.handle_timeout(now);
        let ttl = self.config.ttl;
        let session = self.owned_mut(peer, domain)?;
        let old = session.deadline;
        session.deadline = now + ttl;
        let new = session.deadline;
        self.deadlines.remove(&(old, domain.to_string()));
        self.deadlines.insert((new, domain.to_string()));
        Ok(new)
    }

    /// Ends `peer`'s session on `domain` (Ctrl+C on the client).
    pub fn stop(&mut self, peer: &PeerId, domain: &str, now: Timestamp) -> Result<(), ExposeError> {
        self.handle_timeout(now);
        self.owned_mut(peer, domain)?;
        self.end(domain, ExposeEventKind::Unexposed, now);
        Ok(())
    }

    /// Ends every session of a deleted peer; answers how many ended.
    pub fn remove_peer(&mut self, peer: &PeerId, now: Timestamp) -> usize {
        self.handle_timeout(now);
        let domains = self.by_peer.get(peer).cloned().unwrap_or_default();
        for domain in &domains {
            self.end(domain, ExposeEventKind::Unexposed, now);
        }
        domains.len()
    }

    /// The earliest deadline: call [`handle_timeout`](Self::handle_timeout)
    /// then (or later; nothing outlives its deadline either way).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The sessions whose deadline is at or before `now`, the earliest
    /// first: what [`handle_timeout`](Self::handle_timeout) would expire.
    pub fn due(&self, now: Timestamp) -> impl Iterator<Item = &Session> {
        self.deadlines
            .iter()
            .take_while(move |(deadline, _)| *deadline <= now)
            .filter_map(|(_, domain)| self.sessions.get(domain))
    }

    /// Expires every session whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some((deadline, domain)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.end(&domain, ExposeEventKind::Expired, deadline);
        }
    }

    /// The next audit event, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ExposeEvent> {
        self.events.pop_front()
    }

    /// Every active session, sorted by domain.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The active sessions of one peer, sorted by domain.
    pub fn sessions_of<'a>(&'a self, peer: &PeerId) -> impl Iterator<Item = &'a Session> {
        self.by_peer
            .get(peer)
            .into_iter()
            .flatten()
            .filter_map(|d| self.sessions.get(d))
    }

    pub fn get(&self, domain: &str) -> Option<&Session> {
        self.sessions.get(domain)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session on `domain` if `peer` owns it.
    fn owned_mut(&mut self, peer: &PeerId, domain: &str) -> Result<&mut Session, ExposeError> {
        match self.sessions.get_mut(domain) {
            None => Err(ExposeError::NotFound(domain.to_string())),
            Some(s) if &s.peer_id != peer => Err(ExposeError::PermissionDenied),
            Some(s) => Ok(s),
        }
    }

    fn insert(&mut self, session: Session) {
        self.deadlines
            .insert((session.deadline, session.domain.clone()));
        self.by_peer
            .entry(session.peer_id.clone())
            .or_default()
            .insert(session.domain.clone());
        self.sessions.insert(session.domain.clone(), session);
    }

    /// Removes a session and reports how it ended.
    fn end(&mut self, domain: &str, kind: ExposeEventKind, at: Timestamp) {
        if let Some(session) = self.unlink(domain) {
            self.events.push_back(ExposeEvent::new(kind, &session, at));
        }
    }

    /// Removes the session on `domain` from every index.
    fn unlink(&mut self, domain: &str) -> Option<Session> {
        let session = self.sessions.remove(domain)?;
        self.deadlines
            .remove(&(session.deadline, session.domain.clone()));
        if let Some(set) = self.by_peer.get_mut(&session.peer_id) {
            set.remove(domain);
            if set.is_empty() {
                self.by_peer.remove(&session.peer_id);
            }
        }
        Some(session)
    }
}

/// The permission rule (see the module docs): enabled, and in one of the
/// allowed groups unless that list is empty.
fn may_expose(settings: &AccountSettings, peer: &ExposePeer) -> bool {
    settings.peer_expose_enabled
        && (settings.peer_expose_groups.is_empty()
            || settings
                .peer_expose_groups
                .iter()
                .any(|g| peer.groups.contains(g)))
}

/// Group ids for user-group names, in the order given, without repeats.
fn resolve_groups(groups: &[Group], names: &[String]) -> Result<Vec<GroupId>, ExposeError> {
    let mut ids: Vec<GroupId> = Vec::with_capacity(names.len());
    for name in names {
        let group = groups
            .iter()
            .find(|g| &g.name == name)
            .ok_or_else(|| ExposeError::UnknownUserGroup(name.clone()))?;
        if !ids.contains(&group.id) {
            ids.push(group.id.clone());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A generator that always answers zero: every name it draws is the same.
    struct ZeroRng;

    impl RngCore for ZeroRng {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }

    fn secs(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    fn settings(enabled: bool, groups: &[&str]) -> AccountSettings {
        AccountSettings {
            peer_expose_enabled: enabled,
            peer_expose_groups: groups.iter().map(|g| GroupId::new(*g)).collect(),
            ..AccountSettings::default()
        }
    }

    fn peer(id: &str, groups: &[&str]) -> ExposePeer {
        ExposePeer {
            id: PeerId::new(id),
            name: format!("{id}-host"),
            groups: groups.iter().map(|g| GroupId::new(*g)).collect(),
        }
    }

    fn http(port: i64) -> ExposeRequest {
        ExposeRequest {
            port,
            ..ExposeRequest::default()
        }
    }

    #[test]
    fn permission_rule() {
        let p = peer("p1", &["g1"]);
        let groups = [Group::new("ug", "devs", vec![])];
        let mut table = SessionTable::new(TableConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cases = [
            (settings(false, &[]), false),
            (settings(true, &[]), true),
            (settings(true, &["g2"]), false),
            (settings(true, &["g2", "g1"]), true),
        ];
        for (s, allowed) in cases {
            let ctx = ExposeContext {
                settings: &s,
                groups: &groups,
                custom_domains: &[],
                peer: &p,
            };
            let got = table.create(&ctx, &http(80), &mut rng, secs(0));
            assert_eq!(got.is_ok(), allowed, "{s:?}");
            if !allowed {
                assert_eq!(got.unwrap_err(), ExposeError::PermissionDenied);
            }
        }
    }

    #[test]
    fn limit_collision_renew_stop_and_expiry() {
        let s = settings(true, &[]);
        let (a, b) = (peer("a", &[]), peer("b", &[]));
        let ctx = |p| ExposeContext {
            settings: &s,
            groups: &[],
            custom_domains: &[],
            peer: p,
        };
        let mut table = SessionTable::new(TableConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for i in 0..10 {
            table
                .create(&ctx(&a), &http(1000 + i), &mut rng, secs(0))
                .unwrap();
        }
        let err = table
            .create(&ctx(&a), &http(1), &mut rng, secs(0))
            .unwrap_err();
        assert_eq!(err.code(), "limit_reached");
        assert_eq!(
            err.to_string(),
            "peer has reached the maximum number of active expose sessions (10)"
        );
        // The same name every draw: the second create cannot find a free one.
        table
            .create(&ctx(&b), &http(1), &mut ZeroRng, secs(0))
            .unwrap();
        let err = table
            .create(&ctx(&b), &http(2), &mut ZeroRng, secs(0))
            .unwrap_err();
        assert_eq!(
            (err.code(), err.kind()),
            ("domain_taken", crate::Kind::AlreadyExists)
        );

        let b_domain = table.sessions_of(&b.id).next().unwrap().domain.clone();
        assert_eq!(b_domain, "aaaaaaaaaaaa.proxy.example.com");
        assert_eq!(
            table.renew(&a.id, &b_domain, secs(10)),
            Err(ExposeError::PermissionDenied)
        );
        assert_eq!(
            table.stop(&a.id, &b_domain, secs(10)),
            Err(ExposeError::PermissionDenied)
        );
        assert_eq!(table.renew(&b.id, &b_domain, secs(80)), Ok(secs(170)));
        // a's sessions expire at exactly 90 s; b's renewed one lives on.
        let first_a = table.sessions_of(&a.id).next().unwrap().domain.clone();
        assert_eq!(
            table.renew(&a.id, &first_a, secs(90)),
            Err(ExposeError::NotFound(first_a.clone()))
        );
        assert_eq!(table.len(), 1);
        let events: Vec<ExposeEvent> = std::iter::from_fn(|| table.poll_event()).collect();
        assert_eq!(events.len(), 21);
        assert!(events[11..]
            .iter()
            .all(|e| e.kind == ExposeEventKind::Expired && e.at == secs(90)));
        assert_eq!(table.poll_timeout(), Some(secs(170)));
        table.stop(&b.id, &b_domain, secs(100)).unwrap();
        assert!(table.is_empty());
        assert_eq!(table.poll_event().unwrap().activity, 112);
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn a_copy_creates_and_the_shared_table_admits() {
        let s = settings(true, &[]);
        let a = peer("a", &[]);
        let ctx = ExposeContext {
            settings: &s,
            groups: &[],
            custom_domains: &[],
            peer: &a,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut shared = SessionTable::new(TableConfig::default());
        for i in 0..9 {
            shared
                .create(&ctx, &http(1000 + i), &mut rng, secs(0))
                .unwrap();
        }
        // Two copies of the shared table each create the tenth session.
        let mut copy = SessionTable::new(TableConfig::default());
        for session in shared.sessions() {
            copy.restore(session.clone());
        }
        copy.restore(shared.sessions().next().unwrap().clone());
        assert_eq!(copy.len(), 9);
        assert!(copy.poll_event().is_none());
        let first = copy
            .clone()
            .create(&ctx, &http(1), &mut rng, secs(1))
            .unwrap();
        let second = copy.create(&ctx, &http(2), &mut rng, secs(1)).unwrap();
        let _ = std::iter::from_fn(|| shared.poll_event()).count();
        assert_eq!(shared.admit(first.clone(), secs(2)), Ok(first.clone()));
        assert_eq!(shared.poll_event().unwrap().kind, ExposeEventKind::Exposed);
        assert_eq!(
            shared.admit(second, secs(2)),
            Err(ExposeError::LimitReached(10))
        );
        shared.stop(&a.id, &first.domain, secs(3)).unwrap();
        let again = shared.admit(first.clone(), secs(3)).unwrap();
        assert_eq!(again.domain, first.domain);
        let other = peer("b", &[]);
        let taken = Session {
            peer_id: other.id.clone(),
            ..first
        };
        assert_eq!(shared.admit(taken, secs(3)), Err(ExposeError::DomainTaken));
        // A restored session expires at its own deadline.
        assert_eq!(shared.poll_timeout(), Some(secs(90)));
        assert_eq!(shared.due(secs(89)).count(), 0);
        assert_eq!(shared.due(secs(90)).count(), 9);
        // A forgotten session ends without an event.
        let _ = std::iter::from_fn(|| shared.poll_event()).count();
        assert_eq!(
            shared.forget(&again.domain).map(|s| s.domain),
            Some(again.domain.clone())
        );
        assert_eq!(shared.forget(&again.domain), None);
        assert!(shared.poll_event().is_none());
    }

    #[test]
    fn auth_groups_and_custom_domains() {
        let s = settings(true, &[]);
        let p = peer("p", &[]);
        let groups = [Group::new("g-eng", "engineering", vec![])];
        let custom: [Domain; 1] = ["apps.example.org".parse().unwrap()];
        let ctx = ExposeContext {
            settings: &s,
            groups: &groups,
            custom_domains: &custom,
            peer: &p,
        };
        let mut table = SessionTable::new(TableConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let req = ExposeRequest {
            port: 8080,
            pin: Some("123456".into()),
            user_groups: Some(vec!["engineering".into(), "engineering".into()]),
            custom_domain: Some("apps.example.org".into()),
            name_prefix: Some("demo".into()),
            ..ExposeRequest::default()
        };
        let session = table.create(&ctx, &req, &mut rng, secs(0)).unwrap();
        assert!(
            session.domain.starts_with("demo-") && session.domain.ends_with(".apps.example.org")
        );
        assert_eq!(session.auth.user_group_ids, vec![GroupId::new("g-eng")]);
        assert!(keys::verify_argon2(
            "123456",
            session.auth.pin_hash.as_deref().unwrap()
        ));
        assert!(table.poll_event().unwrap().auth_enabled);

        let unknown = ExposeRequest {
            custom_domain: Some("other.example.org".into()),
            ..http(80)
        };
        assert_eq!(
            table
                .create(&ctx, &unknown, &mut rng, secs(0))
                .unwrap_err()
                .code(),
            "unknown_custom_domain"
        );
        let bad_group = ExposeRequest {
            user_groups: Some(vec!["ops".into()]),
            ..http(80)
        };
        assert_eq!(
            table
                .create(&ctx, &bad_group, &mut rng, secs(0))
                .unwrap_err()
                .to_string(),
            "unknown user group \"ops\""
        );
        assert_eq!(table.remove_peer(&p.id, secs(1)), 1);
        assert_eq!(table.poll_event().unwrap().kind, ExposeEventKind::Unexposed);
    }
}
