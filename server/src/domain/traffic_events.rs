//! A traffic event as the store keeps it: the gRPC ReportTraffic call
//! writes it (`crate::grpc::traffic`), the REST traffic listing reads it
//! (`crate::http::traffic`).

use std::net::Ipv4Addr;

use meshplane_core::Timestamp;
use serde::{Deserialize, Serialize};

/// One reported event as the store keeps it (the row's `data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub flow_id: String,
    /// `TYPE_START`, `TYPE_END`, `TYPE_DROP` (or `TYPE_UNKNOWN`).
    #[serde(rename = "type")]
    pub kind: String,
    /// When the peer saw it.
    pub timestamp: Timestamp,
    /// When the server stored it.
    pub received: Timestamp,
    pub protocol: u8,
    /// `INGRESS`, `EGRESS` or `DIRECTION_UNKNOWN`.
    pub direction: String,
    pub source_ip: Ipv4Addr,
    pub source_port: u16,
    pub destination_ip: Ipv4Addr,
    pub destination_port: u16,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub icmp_type: u8,
    pub icmp_code: u8,
}
