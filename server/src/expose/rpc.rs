//! CreateExpose, RenewExpose and StopExpose: the sealed sender is the
//! exposing peer. It must be registered and pass the login checks Sync
//! makes (not blocked, login not expired); the core's session table does
//! the rest, and its errors reach the daemon through the core-kind to
//! gRPC-status mapping (the limit as RESOURCE_EXHAUSTED).
//!
//! The sender is checked by [`super::senders`], which keeps the few rows
//! those checks read, so on SQLite a renewal costs no database round trip,
//! and on PostgreSQL a share of one batched write transaction (the stored
//! session's new deadline).

use std::sync::Arc;

use meshplane_core::expose::{ExposeContext, ExposeError, ExposePeer, ExposeRequest, Session};
use meshplane_core::model::Group;
use meshplane_proto::status::from_core;
use meshplane_proto::v1::{
    CreateExposeRequest, CreateExposeResponse, ExposeSession, RenewExposeRequest,
    RenewExposeResponse, StopExposeRequest, StopExposeResponse,
};
use tonic::Status;

use super::domains::custom_domains;
use super::senders::Sender;
use super::sessions::{Drafted, SessionError};
use super::Expose;
use crate::grpc::internal;
use crate::store::Store;

/// An empty string means "not given" on the wire (PIN and password are
/// `optional` fields instead, so an empty one sent on purpose is refused).
fn given(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// The core's request from the wire's, field by field: the core's
/// request validation decides what is acceptable. An empty user-group list
/// means none (the wire cannot tell it from an absent one).
fn request(req: CreateExposeRequest) -> ExposeRequest {
    let user_groups = Some(req.user_groups).filter(|g| !g.is_empty());
    ExposeRequest {
        port: i64::from(req.port),
        protocol: given(req.protocol),
        pin: req.pin,
        password: req.password,
        user_groups,
        custom_domain: given(req.custom_domain),
        name_prefix: given(req.name_prefix),
    }
}

fn session(s: &Session) -> ExposeSession {
    ExposeSession {
        name: s.name.clone(),
        domain: s.domain.clone(),
        url: s.url.clone(),
        protocol: s.protocol.as_str().to_string(),
        port: u32::from(s.port.get()),
        expires_at_ms: s.deadline.as_millis(),
    }
}

/// Drafts of one create: a draft whose domain was taken meanwhile (by
/// another peer, or through another server) is drawn again (with a new random name), this many times at
/// most before the create fails with `domain already taken`.
const DRAFTS: usize = 3;

/// The status of a failed session operation: the table's refusals through
/// the core-kind mapping, the store's as INTERNAL, UNAVAILABLE when the
/// server is stopping.
fn status(e: SessionError) -> Status {
    match e {
        SessionError::Refused(e) => from_core(&e),
        SessionError::Store(e) => internal(e),
        stopping @ SessionError::Stopping => Status::unavailable(stopping.to_string()),
    }
}

/// CreateExpose for the peer holding `key`.
pub async fn create(
    expose: &Expose,
    store: &Store,
    key: &str,
    req: CreateExposeRequest,
) -> Result<CreateExposeResponse, Status> {
    let Sender { record, peer } = expose.senders().check(key).await?;
    let mut tx = store.read().await.map_err(internal)?;
    let groups = tx.list::<Group>(&record.id).await.map_err(internal)?;
    let domains = custom_domains(&mut tx, &record.id)
        .await
        .map_err(internal)?;
    drop(tx);
    let exposing = ExposePeer {
        groups: groups
            .iter()
            .filter(|g| g.peers.contains(&peer.id))
            .map(|g| g.id.clone())
            .collect(),
        id: peer.id,
        name: peer.name,
    };
    let account = record.id.clone();
    let drafting = Arc::new((record, groups, domains, exposing, request(req)));
    let mut attempt = 1;
    loop {
        let (expose_, drafting_) = (expose.clone(), drafting.clone());
        // PIN and password hashing take tens of milliseconds.
        let draft = tokio::task::spawn_blocking(move || {
            let (record, groups, domains, exposing, request) = &*drafting_;
            let ctx = ExposeContext {
                settings: &record.settings,
                groups,
                custom_domains: domains,
                peer: exposing,
            };
            expose_.draft(&record.id, &ctx, request)
        })
        .await
        .map_err(internal)?
        .map_err(|e| from_core(&e))?;
        let admitted = match draft {
            Drafted::Created(created) => Ok(created),
            Drafted::Draft(draft) => expose.admit(&account, draft).await,
        };
        match admitted {
            Err(SessionError::Refused(ExposeError::DomainTaken)) if attempt < DRAFTS => {
                attempt += 1;
            }
            admitted => {
                return Ok(CreateExposeResponse {
                    session: Some(session(&admitted.map_err(status)?)),
                })
            }
        }
    }
}

/// RenewExpose for the peer holding `key`.
pub async fn renew(
    expose: &Expose,
    key: &str,
    req: RenewExposeRequest,
) -> Result<RenewExposeResponse, Status> {
    let Sender { record, peer } = expose.senders().check(key).await?;
    let deadline = expose
        .renew(&record.id, &peer.id, &req.domain)
        .await
        .map_err(status)?;
    Ok(RenewExposeResponse {
        expires_at_ms: deadline.as_millis(),
    })
}

/// StopExpose for the peer holding `key`.
pub async fn stop(
    expose: &Expose,
    key: &str,
    req: StopExposeRequest,
) -> Result<StopExposeResponse, Status> {
    let Sender { record, peer } = expose.senders().check(key).await?;
    expose
        .stop(&record.id, &peer.id, &req.domain)
        .await
        .map_err(status)?;
    Ok(StopExposeResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_blanks_mean_not_given() {
        let none = request(CreateExposeRequest {
            port: 8080,
            ..CreateExposeRequest::default()
        });
        assert_eq!(
            none,
            ExposeRequest {
                port: 8080,
                ..ExposeRequest::default()
            }
        );
        let blank_groups = request(CreateExposeRequest {
            user_groups: vec![" ".into()],
            ..CreateExposeRequest::default()
        });
        assert_eq!(blank_groups.user_groups, Some(vec![" ".to_string()]));
    }
}
