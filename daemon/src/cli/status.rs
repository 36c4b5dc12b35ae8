//! `meshplane status`, with the flags `netbird status` has: a short
//! summary by default, `-d/--detail` for every peer, `--json` and `--yaml`
//! for the whole report, `-4` for the mesh IP alone, and filters on the
//! peers by status, name, IP and connection type.
//!
//! The filters apply to the peers that are listed and counted ("Peers
//! count: 1/2 Connected" counts the peers that pass), in every format.
//! Times are relative ("12 seconds ago") in the human forms and RFC 3339
//! timestamps in JSON and YAML.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use thiserror::Error;

use crate::control::{self, PeerReport, Reply, Request, StatusReport};
use crate::engine::wg::ConnectionKind;

/// The flags of `meshplane status`.
#[derive(Debug, Default, Args)]
pub struct StatusArgs {
    /// Every peer in detail (connection type, endpoint, last handshake,
    /// transfer, latency, routes), then the full summary.
    #[arg(short = 'd', long)]
    detail: bool,
    /// The whole status as JSON.
    #[arg(short = 'j', long, conflicts_with_all = ["yaml", "ipv4"])]
    json: bool,
    /// The whole status as YAML.
    #[arg(short = 'y', long, conflicts_with = "ipv4")]
    yaml: bool,
    /// Only this peer's mesh IP, e.g. 100.64.0.33.
    #[arg(short = '4', long, conflicts_with = "detail")]
    ipv4: bool,
    /// Only the peers in this state.
    #[arg(
        short = 'S',
        long,
        value_name = "STATUS",
        value_enum,
        ignore_case = true
    )]
    filter_by_status: Option<PeerState>,
    /// Only the peers whose FQDN starts with one of these names (any
    /// case), e.g. `--filter-by-names peer-a,peer-b.example.com`.
    #[arg(short = 'N', long, value_name = "NAMES", value_delimiter = ',')]
    filter_by_names: Vec<String>,
    /// Only the peers with one of these mesh IPs, e.g. `-I 100.64.0.2`.
    #[arg(short = 'I', long, value_name = "IPS", value_delimiter = ',')]
    filter_by_ips: Vec<Ipv4Addr>,
    /// Only the peers reached this way.
    #[arg(short = 'T', long, value_name = "TYPE", value_enum, ignore_case = true)]
    filter_by_connection_type: Option<ConnectionType>,
}

/// A peer's state, as `--filter-by-status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerState {
    /// A WireGuard session with the peer is current.
    Connected,
    /// No current session.
    Idle,
}

/// How a peer is reached, as `--filter-by-connection-type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectionType {
    /// Directly over UDP.
    P2p,
    /// Through the relay.
    Relayed,
}

/// Why `status` printed nothing.
#[derive(Debug, Error)]
pub enum StatusError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("{0}")]
    Daemon(String),
    #[error("unexpected reply from the daemon: {0}")]
    Unexpected(String),
    #[error("cannot write the status as {format}: {message}")]
    Encode {
        format: &'static str,
        message: String,
    },
}

/// Asks the daemon on `socket` and prints the status as `args` say.
pub fn run(socket: &Path, args: &StatusArgs) -> Result<(), StatusError> {
    let mut report = match control::call(socket, &Request::Status)? {
        Reply::Status(report) => *report,
        Reply::Error(message) => return Err(StatusError::Daemon(message)),
        other => return Err(StatusError::Unexpected(format!("{other:?}"))),
    };
    report.peers.retain(|p| args.keeps(p));
    print!("{}", args.render(&report, now_ms())?);
    Ok(())
}

impl StatusArgs {
    /// Whether `peer` passes every filter given.
    fn keeps(&self, peer: &PeerReport) -> bool {
        let wg = &peer.wireguard;
        let state = if wg.connected {
            PeerState::Connected
        } else {
            PeerState::Idle
        };
        let fqdn = peer.fqdn.as_deref().unwrap_or_default().to_lowercase();
        self.filter_by_status.is_none_or(|s| s == state)
            && (self.filter_by_names.is_empty()
                || self
                    .filter_by_names
                    .iter()
                    .any(|name| fqdn.starts_with(&name.to_lowercase())))
            && (self.filter_by_ips.is_empty() || self.filter_by_ips.contains(&wg.mesh_ip))
            && self
                .filter_by_connection_type
                .is_none_or(|t| connection_type(peer) == Some(t))
    }

    /// The text to print for `report` (its peers filtered already), with
    /// times relative to `now` (Unix milliseconds).
    fn render(&self, report: &StatusReport, now: i64) -> Result<String, StatusError> {
        if self.json {
            let mut text =
                serde_json::to_string_pretty(report).map_err(|e| StatusError::Encode {
                    format: "JSON",
                    message: e.to_string(),
                })?;
            text.push('\n');
            return Ok(text);
        }
        if self.yaml {
            return serde_norway::to_string(report).map_err(|e| StatusError::Encode {
                format: "YAML",
                message: e.to_string(),
            });
        }
        if self.ipv4 {
            return Ok(report.ip.map(|ip| format!("{ip}\n")).unwrap_or_default());
        }
        if self.detail {
            return Ok(detail(report, now));
        }
        Ok(summary(report, false))
    }
}

/// The current time in Unix milliseconds.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn connection_type(peer: &PeerReport) -> Option<ConnectionType> {
    match peer.wireguard.connection? {
        ConnectionKind::Direct => Some(ConnectionType::P2p),
        ConnectionKind::Relayed => Some(ConnectionType::Relayed),
    }
}

/// `-` for nothing.
fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_string())
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary; `full` adds this peer's keys and addresses, the DNS
/// resolver's zones and upstreams, and the networks with their routing
/// peers in place of the short list.
fn summary(r: &StatusReport, full: bool) -> String {
    let mut out = String::new();
    let daemon = match &r.mode {
        Some(_) if r.up => "Up",
        _ => "Down",
    };
    let management = match (r.up, r.management_connected, &r.management_error) {
        (false, _, _) => "Disconnected".to_string(),
        (true, true, _) => "Connected".to_string(),
        (true, false, Some(e)) => format!("Disconnected, reason: {e}"),
        (true, false, None) => "Connecting".to_string(),
    };
    let management = match &r.management_url {
        Some(url) => format!("{management} to {url}"),
        None => management,
    };
    let signal = if r.signal_connected {
        "Connected"
    } else {
        "Disconnected"
    };
    let relay = r.relay.as_ref().map(|url| {
        let state = if r.relay_connected {
            "Available"
        } else {
            "Unavailable"
        };
        format!("{url} ({state})")
    });
    let interface = r.mode.as_deref().map(|mode| match mode {
        "netstack" => "Userspace (netstack)".to_string(),
        kernel => format!("Kernel ({})", kernel.trim_start_matches("kernel ")),
    });
    let dns = r
        .dns
        .as_ref()
        .map(|d| format!("{} (host: {})", d.listen, d.host));
    let networks: Vec<String> = r
        .routes
        .networks
        .iter()
        .map(|n| n.network.clone().unwrap_or_else(|| n.domains.join(",")))
        .collect();
    let exit = r.exit_node.as_ref().map(|e| {
        format!(
            "{} ({})",
            e.fqdn.as_deref().unwrap_or(&e.peer_id),
            e.peer_ip
        )
    });
    let connected = r.peers.iter().filter(|p| p.wireguard.connected).count();
    let _ = writeln!(out, "Daemon status: {daemon}");
    let _ = writeln!(out, "Management: {management}");
    let _ = writeln!(out, "Signal: {signal}");
    let _ = writeln!(out, "Relay: {}", or_dash(relay));
    let _ = writeln!(out, "Nameserver: {}", or_dash(dns));
    let _ = writeln!(out, "FQDN: {}", or_dash(r.fqdn.clone()));
    let _ = writeln!(out, "Mesh IP: {}", or_dash(r.ip.map(|ip| ip.to_string())));
    let _ = writeln!(out, "Interface type: {}", or_dash(interface));
    let _ = writeln!(
        out,
        "WireGuard port: {}",
        or_dash(r.listen.map(|l| l.port().to_string()))
    );
    if !full {
        let _ = writeln!(out, "Networks: {}", list(&networks));
    }
    let _ = writeln!(out, "Exit node: {}", or_dash(exit));
    if full {
        let _ = writeln!(out, "Peer id: {}", or_dash(r.peer_id.clone()));
        let _ = writeln!(out, "Public key: {}", r.public_key);
        let _ = writeln!(out, "Candidates: {}", list(&r.candidates));
        let _ = writeln!(
            out,
            "Dropped by the firewall: {} packets",
            r.firewall_dropped
        );
        render_dns(&mut out, r.dns.as_deref());
        out.push_str(&crate::routing::render(&r.routes));
    }
    let _ = writeln!(out, "Peers count: {connected}/{} Connected", r.peers.len());
    out
}

/// Every peer in detail, then the full summary.
fn detail(r: &StatusReport, now: i64) -> String {
    let mut out = String::from("Peers detail:\n");
    for peer in &r.peers {
        let wg = &peer.wireguard;
        let status = if wg.connected { "Connected" } else { "Idle" };
        let (kind, endpoint) = match (connection_type(peer), wg.endpoint) {
            (Some(ConnectionType::P2p), at) => ("P2P", or_dash(at.map(|a| a.to_string()))),
            (Some(ConnectionType::Relayed), _) => ("Relayed", or_dash(r.relay.clone())),
            (None, _) => ("-", "-".to_string()),
        };
        let routes: Vec<&str> = r
            .routes
            .networks
            .iter()
            .filter(|n| n.routing_peer_ip == Some(wg.mesh_ip))
            .filter_map(|n| n.network.as_deref())
            .collect();
        let name = peer.fqdn.clone().unwrap_or_else(|| wg.mesh_ip.to_string());
        let _ = writeln!(out, " {name}:");
        let _ = writeln!(out, "  Mesh IP: {}", wg.mesh_ip);
        let _ = writeln!(out, "  Public key: {}", wg.public_key);
        let _ = writeln!(out, "  Status: {status}");
        let _ = writeln!(out, "  -- detail --");
        let _ = writeln!(out, "  Connection type: {kind}");
        let _ = writeln!(out, "  Endpoint: {endpoint}");
        let _ = writeln!(
            out,
            "  Last WireGuard handshake: {}",
            wg.last_handshake
                .map_or_else(|| "-".to_string(), |t| ago(now - t.as_millis()))
        );
        let _ = writeln!(
            out,
            "  Transfer status (received/sent): {}/{}",
            iec(wg.rx_bytes),
            iec(wg.tx_bytes)
        );
        let _ = writeln!(out, "  Handshakes: {}", wg.handshakes);
        let _ = writeln!(
            out,
            "  Latency: {}",
            or_dash(wg.latency_ms.map(|ms| format!("{ms} ms")))
        );
        let _ = writeln!(out, "  Networks: {}", list(&routes));
        out.push('\n');
    }
    out.push_str(&summary(r, true));
    out
}

/// The DNS lines of the detailed summary.
fn render_dns(out: &mut String, dns: Option<&crate::dns::DnsReport>) {
    let Some(dns) = dns else {
        return;
    };
    let _ = writeln!(out, "DNS zones: {}", list(&dns.zones));
    for m in &dns.match_domains {
        let _ = writeln!(out, "  {} -> {}", m.domain, list(&m.nameservers));
    }
    if !dns.primary.is_empty() {
        let _ = writeln!(out, "DNS primary: {}", list::<SocketAddr>(&dns.primary));
    }
    let _ = writeln!(out, "DNS upstream: {}", list(&dns.host_upstream));
}

/// A past moment `elapsed_ms` ago in words: "Now", "12 seconds ago",
/// "1 minute, 5 seconds ago", "3 hours, 2 minutes ago", "2 days ago".
fn ago(elapsed_ms: i64) -> String {
    let seconds = elapsed_ms.max(0) / 1000;
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    let two = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{} ago", unit(big, big_unit))
        } else {
            format!("{}, {} ago", unit(big, big_unit), unit(small, small_unit))
        }
    };
    match seconds {
        0 => "Now".to_string(),
        s if s < 60 => format!("{} ago", unit(s, "second")),
        s if s < 3600 => two(s / 60, "minute", s % 60, "second"),
        s if s < 86_400 => two(s / 3600, "hour", s % 3600 / 60, "minute"),
        s => two(s / 86_400, "day", s % 86_400 / 3600, "hour"),
    }
}

/// Bytes in binary units: "512 B", "1.5 KiB", "3.2 MiB".
fn iec(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024 * 1024 && unit < UNITS.len() - 1 {
        value /= 1024;
        unit += 1;
    }
    // One decimal: the remainder's tenths.
    let whole = value / 1024;
    let tenths = value % 1024 * 10 / 1024;
    format!("{whole}.{tenths} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_netbird_prints_them() {
        assert_eq!(ago(400), "Now");
        assert_eq!(ago(1_000), "1 second ago");
        assert_eq!(ago(12_300), "12 seconds ago");
        assert_eq!(ago(60_000), "1 minute ago");
        assert_eq!(ago(65_000), "1 minute, 5 seconds ago");
        assert_eq!(ago(2 * 3_600_000 + 60_000), "2 hours, 1 minute ago");
        assert_eq!(ago(3 * 86_400_000), "3 days ago");
        assert_eq!(ago(-5_000), "Now");
    }

    #[test]
    fn sizes_are_binary_with_one_decimal() {
        assert_eq!(iec(0), "0 B");
        assert_eq!(iec(1023), "1023 B");
        assert_eq!(iec(1024), "1.0 KiB");
        assert_eq!(iec(1536), "1.5 KiB");
        assert_eq!(iec(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
        assert_eq!(iec(u64::MAX), "15.9 EiB");
    }
}
