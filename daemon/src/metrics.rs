//! The daemon's Prometheus metrics (`meshplane daemon --metrics-listen
//! ADDR`, served by `meshplane-metrics`).
//!
//! They are read from the daemon's status at each scrape rather than
//! counted packet by packet: the WireGuard engine keeps per-peer byte and
//! handshake counts and the firewall's drops anyway, so the data path pays
//! nothing for metrics. The engine's counts start at zero when a peer
//! enters it (or the tunnel comes up), which Prometheus sees as a counter
//! reset. A peer's series are dropped a while after it left the map.
//!
//! | metric | labels |
//! |---|---|
//! | `meshplane_up`, `meshplane_management_connected`, `meshplane_signal_connected`, `meshplane_relay_connected` (0 or 1) | |
//! | `meshplane_peers` (in the map), `meshplane_peers_connected` | `connection` (`direct`, `relayed`) |
//! | `meshplane_peer_received_bytes_total`, `meshplane_peer_sent_bytes_total`, `meshplane_peer_handshakes_total` | `peer` (mesh IP), `fqdn` |
//! | `meshplane_firewall_dropped_packets_total` | |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshplane_metrics::{Exporter, MetricsError};

use crate::control::StatusReport;
use crate::engine::wg::ConnectionKind;
use crate::service::Daemon;

/// How long a series nobody set stays: a peer gone from the map for this
/// long is no longer reported (every live series is set at each scrape).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Serves the daemon's metrics on `listen`; the address it listens on.
pub async fn serve(listen: SocketAddr, daemon: Arc<Daemon>) -> Result<SocketAddr, MetricsError> {
    Exporter::new()
        .with_refresh(move || {
            let daemon = Arc::clone(&daemon);
            async move {
                match daemon.status().await {
                    Ok(report) => record(&report),
                    Err(e) => tracing::warn!(error = %e, "metrics: no status"),
                }
            }
        })
        .forget_after(FORGET_AFTER)
        .serve(listen)
        .await
}

/// Sets every metric from `report`.
#[allow(clippy::cast_precision_loss)] // counts of peers, far below 2^52
fn record(report: &StatusReport) {
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    metrics::gauge!("meshplane_up").set(flag(report.up));
    metrics::gauge!("meshplane_management_connected").set(flag(report.management_connected));
    metrics::gauge!("meshplane_signal_connected").set(flag(report.signal_connected));
    metrics::gauge!("meshplane_relay_connected").set(flag(report.relay_connected));
    metrics::counter!("meshplane_firewall_dropped_packets_total").absolute(report.firewall_dropped);
    let (mut direct, mut relayed) = (0_u32, 0_u32);
    for peer in &report.peers {
        let wg = &peer.wireguard;
        let labels = [
            ("peer", wg.mesh_ip.to_string()),
            ("fqdn", peer.fqdn.clone().unwrap_or_default()),
        ];
        metrics::counter!("meshplane_peer_received_bytes_total", &labels).absolute(wg.rx_bytes);
        metrics::counter!("meshplane_peer_sent_bytes_total", &labels).absolute(wg.tx_bytes);
        metrics::counter!("meshplane_peer_handshakes_total", &labels).absolute(wg.handshakes);
        match wg.connection {
            Some(ConnectionKind::Direct) if wg.connected => direct += 1,
            Some(ConnectionKind::Relayed) if wg.connected => relayed += 1,
            _ => {}
        }
    }
    metrics::gauge!("meshplane_peers").set(report.peers.len() as f64);
    metrics::gauge!("meshplane_peers_connected", "connection" => "direct").set(f64::from(direct));
    metrics::gauge!("meshplane_peers_connected", "connection" => "relayed").set(f64::from(relayed));
}
