//! A NetBird client's requests in our terms: its login request and system
//! facts become ours (so registration and login take exactly our daemons'
//! path, [`crate::grpc::log_in`]), and what it may ask besides: fresh
//! system facts (SyncMeta) and leaving the network (Logout, which deletes
//! the peer as NetBird's server does).

use meshplane_core::model::{Activity, AuditEvent};
use meshplane_proto::netbird as nb;
use meshplane_proto::v1;
use tonic::Status;

use crate::domain::peer_removal::{delete_peer, removal_meta};
use crate::grpc::{self, internal, Shared};
use crate::ids;

/// Our login request for NetBird's. Stock clients send setup keys in lower
/// case; the login path accepts either.
pub fn login_request(req: &nb::LoginRequest) -> v1::LoginRequest {
    v1::LoginRequest {
        setup_key: req.setup_key.clone(),
        meta: req.meta.clone().map(peer_meta),
        extra_dns_labels: req.dns_labels.clone(),
    }
}

/// Our system facts for NetBird's: the OS as Go names it (what posture
/// checks compare), and the processes the client reports running.
pub fn peer_meta(m: nb::PeerSystemMeta) -> v1::PeerSystemMeta {
    v1::PeerSystemMeta {
        hostname: m.hostname,
        os: m.go_os,
        os_version: m.os_version,
        kernel_version: m.kernel_version,
        client_version: m.netbird_version,
        ui_version: m.ui_version,
        serial_number: m.sys_serial_number,
        network_addresses: m.network_addresses.into_iter().map(|a| a.net_ip).collect(),
        processes: m
            .files
            .into_iter()
            .filter(|f| f.process_is_running)
            .map(|f| f.path)
            .collect(),
    }
}

/// The peer's own settings as Login answers them (its Sync stream sends
/// the rest, SSH included).
pub fn peer_config(answer: &v1::LoginResponse) -> nb::PeerConfig {
    nb::PeerConfig {
        address: answer.address.clone(),
        fqdn: answer.fqdn.clone(),
        routing_peer_dns_resolution_enabled: true,
        ..Default::default()
    }
}

/// Deletes the peer holding `key`, as the REST delete does, with the peer
/// itself as the initiator; its expose sessions end with it.
pub async fn log_out(shared: &Shared, key: &str) -> Result<(), Status> {
    let now = ids::now();
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (record, peer) = grpc::checked_peer(&mut tx, key, now).await?;
    let account_id = record.id.as_str();
    delete_peer(&mut tx, account_id, &peer)
        .await
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    let details = removal_meta(&peer);
    tx.append_event(account_id, |seq| {
        AuditEvent::new(
            seq.to_string(),
            now,
            Activity::PEER_REMOVED_BY_USER,
            peer.id.as_str(),
            peer.id.as_str(),
            details,
        )
    })
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    shared.expose.remove_peer(&peer.id).await;
    Ok(())
}
