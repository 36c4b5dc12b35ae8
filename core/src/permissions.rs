//! Who may do what through the management API: one table of role ×
//! resource family × operation, as the reference server has it.
//!
//! Every REST route belongs to one [`Family`] and is either a read (`GET`)
//! or a write (anything else). [`check`] answers whether a role may perform
//! it, and how far its reach goes: [`Access::All`] over the whole account,
//! or [`Access::Own`] over what the caller owns (its own tokens, the peers
//! registered under its user). The shells enforce the answer in one place
//! and filter `Own` reads by owner; an object of another account is never
//! reachable at all, whatever the role.
//!
//! In short: the owner and admins do everything; a network admin manages
//! networks, routes, policies and DNS and reads the rest of the account's
//! configuration; an auditor reads everything and changes nothing but its
//! own tokens; a regular user (and a billing admin, who has nothing more on
//! this API) manages its own tokens and sees its own peers.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::model::Role;

/// A group of REST resources that share their permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The account and its settings (`/api/accounts`).
    Accounts,
    /// The account's users (`/api/users` and their approval, invitation).
    Users,
    /// The caller's own user (`/api/users/current`): every role reads it.
    CurrentUser,
    /// Personal access tokens (`/api/users/{id}/tokens`).
    Tokens,
    /// Peers and their temporary access (`/api/peers`).
    Peers,
    /// Groups (`/api/groups`).
    Groups,
    /// Setup keys (`/api/setup-keys`).
    SetupKeys,
    /// Policies, the posture checks they use and the locations those name
    /// (`/api/policies`, `/api/posture-checks`, `/api/locations`).
    Policies,
    /// Network routes (`/api/routes`).
    Routes,
    /// Networks, their resources and routers (`/api/networks`).
    Networks,
    /// DNS settings and nameserver groups (`/api/dns`).
    Dns,
    /// Audit and network-traffic events (`/api/events`).
    Events,
    /// Ingress peers and their port allocations (`/api/ingress`,
    /// `/api/peers/{id}/ingress`).
    Ingress,
    /// Reverse-proxy services and domains (`/api/reverse-proxies`).
    ReverseProxies,
}

impl Family {
    /// Every family, in table order.
    pub const ALL: [Family; 14] = [
        Family::Accounts,
        Family::Users,
        Family::CurrentUser,
        Family::Tokens,
        Family::Peers,
        Family::Groups,
        Family::SetupKeys,
        Family::Policies,
        Family::Routes,
        Family::Networks,
        Family::Dns,
        Family::Events,
        Family::Ingress,
        Family::ReverseProxies,
    ];

    /// How messages name the family.
    pub fn noun(self) -> &'static str {
        match self {
            Family::Accounts => "accounts",
            Family::Users => "users",
            Family::CurrentUser => "the current user",
            Family::Tokens => "tokens",
            Family::Peers => "peers",
            Family::Groups => "groups",
            Family::SetupKeys => "setup keys",
            Family::Policies => "policies",
            Family::Routes => "routes",
            Family::Networks => "networks",
            Family::Dns => "DNS settings",
            Family::Events => "events",
            Family::Ingress => "ingress peers",
            Family::ReverseProxies => "reverse proxies",
        }
    }
}

/// What a request does to its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `GET`: looks, changes nothing.
    Read,
    /// Creates, updates or deletes.
    Write,
}

/// How far an allowed operation reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Everything of the family in the caller's account.
    All,
    /// Only what the caller owns: its own tokens, the peers whose user it is.
    Own,
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PermissionError {
    #[error("permission denied: the {} role may not {} {}", role_name(*.role), verb(*.operation), .family.noun())]
    Denied {
        role: Role,
        family: Family,
        operation: Operation,
    },
}

impl ErrorCode for PermissionError {
    fn code(&self) -> &'static str {
        match self {
            PermissionError::Denied { .. } => "permission_denied",
        }
    }

    fn kind(&self) -> Kind {
        Kind::PermissionDenied
    }
}

/// The role as the API spells it.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::NetworkAdmin => "network_admin",
        Role::Auditor => "auditor",
        Role::User => "user",
        Role::BillingAdmin => "billing_admin",
    }
}

fn verb(operation: Operation) -> &'static str {
    match operation {
        Operation::Read => "read",
        Operation::Write => "change",
    }
}

/// One cell of the table: allowed over everything, over what the caller
/// owns, or refused.
type Cell = Option<Access>;
const A: Cell = Some(Access::All);
const O: Cell = Some(Access::Own);
const N: Cell = None;

/// The column of each role in [`TABLE`].
fn column(role: Role) -> usize {
    match role {
        Role::Owner => 0,
        Role::Admin => 1,
        Role::NetworkAdmin => 2,
        Role::Auditor => 3,
        Role::User => 4,
        Role::BillingAdmin => 5,
    }
}

/// The permissions: one row per family and operation, one column per role.
/// A family without a write route keeps a write row so the owner's and
/// admins' "everything" reads the same in every row.
#[rustfmt::skip]
const TABLE: [(Family, Operation, [Cell; 6]); 28] = {
    use Family::*;
    use Operation::{Read as R, Write as W};
    [
        //                    owner admin net_admin auditor user billing_admin
        (Accounts,       R, [A, A, A, A, N, N]),
        (Accounts,       W, [A, A, N, N, N, N]),
        (Users,          R, [A, A, A, A, N, N]),
        (Users,          W, [A, A, N, N, N, N]),
        (CurrentUser,    R, [A, A, A, A, A, A]),
        (CurrentUser,    W, [A, A, N, N, N, N]),
        (Tokens,         R, [A, A, O, A, O, O]),
        (Tokens,         W, [A, A, O, O, O, O]),
        (Peers,          R, [A, A, N, A, O, O]),
        (Peers,          W, [A, A, N, N, N, N]),
        (Groups,         R, [A, A, A, A, N, N]),
        (Groups,         W, [A, A, N, N, N, N]),
        (SetupKeys,      R, [A, A, A, A, N, N]),
        (SetupKeys,      W, [A, A, N, N, N, N]),
        (Policies,       R, [A, A, A, A, N, N]),
        (Policies,       W, [A, A, A, N, N, N]),
        (Routes,         R, [A, A, A, A, N, N]),
        (Routes,         W, [A, A, A, N, N, N]),
        (Networks,       R, [A, A, A, A, N, N]),
        (Networks,       W, [A, A, A, N, N, N]),
        (Dns,            R, [A, A, A, A, N, N]),
        (Dns,            W, [A, A, A, N, N, N]),
        (Events,         R, [A, A, A, A, N, N]),
        (Events,         W, [A, A, N, N, N, N]),
        (Ingress,        R, [A, A, N, A, N, N]),
        (Ingress,        W, [A, A, N, N, N, N]),
        (ReverseProxies, R, [A, A, N, A, N, N]),
        (ReverseProxies, W, [A, A, N, N, N, N]),
    ]
};

/// Whether `role` may perform `operation` on `family`, and over what.
///
/// ```
/// use meshplane_core::model::Role;
/// use meshplane_core::permissions::{check, Access, Family, Operation};
///
/// assert_eq!(check(Role::Auditor, Family::Groups, Operation::Read), Ok(Access::All));
/// assert_eq!(check(Role::User, Family::Peers, Operation::Read), Ok(Access::Own));
/// let refused = check(Role::Auditor, Family::Groups, Operation::Write).unwrap_err();
/// assert_eq!(
///     refused.to_string(),
///     "permission denied: the auditor role may not change groups"
/// );
/// ```
pub fn check(role: Role, family: Family, operation: Operation) -> Result<Access, PermissionError> {
    TABLE
        .iter()
        .find(|(f, o, _)| *f == family && *o == operation)
        .and_then(|(_, _, cells)| cells[column(role)])
        .ok_or(PermissionError::Denied {
            role,
            family,
            operation,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 6] = [
        Role::Owner,
        Role::Admin,
        Role::NetworkAdmin,
        Role::Auditor,
        Role::User,
        Role::BillingAdmin,
    ];

    #[test]
    fn every_family_and_operation_has_exactly_one_row() {
        for family in Family::ALL {
            for operation in [Operation::Read, Operation::Write] {
                let rows = TABLE
                    .iter()
                    .filter(|(f, o, _)| *f == family && *o == operation)
                    .count();
                assert_eq!(rows, 1, "{family:?} {operation:?}");
            }
        }
    }

    #[test]
    fn owner_and_admin_may_do_everything() {
        for family in Family::ALL {
            for operation in [Operation::Read, Operation::Write] {
                for role in [Role::Owner, Role::Admin] {
                    assert_eq!(check(role, family, operation), Ok(Access::All));
                }
            }
        }
    }

    #[test]
    fn auditors_read_everything_and_change_only_their_tokens() {
        for family in Family::ALL {
            assert_eq!(
                check(Role::Auditor, family, Operation::Read),
                Ok(Access::All)
            );
            let write = check(Role::Auditor, family, Operation::Write);
            if family == Family::Tokens {
                assert_eq!(write, Ok(Access::Own));
            } else {
                assert!(write.is_err(), "{family:?}");
            }
        }
    }

    #[test]
    fn billing_admins_are_regular_users_here() {
        for family in Family::ALL {
            for operation in [Operation::Read, Operation::Write] {
                assert_eq!(
                    check(Role::BillingAdmin, family, operation).ok(),
                    check(Role::User, family, operation).ok()
                );
            }
        }
    }

    #[test]
    fn nothing_but_tokens_and_peers_is_limited_to_the_owner() {
        for role in ROLES {
            for family in Family::ALL {
                for operation in [Operation::Read, Operation::Write] {
                    if check(role, family, operation) == Ok(Access::Own) {
                        assert!(matches!(family, Family::Tokens | Family::Peers));
                    }
                }
            }
        }
    }
}
