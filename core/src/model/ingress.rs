//! Ingress peers and the port allocations forwarded through them.

use serde::{Deserialize, Serialize};

use super::ids::{AllocationId, IngressPeerId, PeerId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPeer {
    pub id: IngressPeerId,
    pub peer_id: PeerId,
    pub ingress_ip: String,
    pub enabled: bool,
    #[serde(default)]
    pub fallback: bool,
    #[serde(default)]
    pub region: String,
}

/// Transport of a forwarded range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PortProtocol {
    #[serde(rename = "tcp")]
    Tcp,
    #[serde(rename = "udp")]
    Udp,
    #[serde(rename = "tcp/udp")]
    TcpUdp,
}

impl PortProtocol {
    /// Whether two mappings compete for the same ingress ports.
    pub fn overlaps(self, other: PortProtocol) -> bool {
        self == other || self == PortProtocol::TcpUdp || other == PortProtocol::TcpUdp
    }
}

/// One forwarded range: ingress ports map onto the target peer's ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub translated_start: u16,
    pub translated_end: u16,
    pub ingress_start: u16,
    pub ingress_end: u16,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPortAllocation {
    pub id: AllocationId,
    pub name: String,
    /// The peer whose ports are forwarded.
    pub peer_id: PeerId,
    pub ingress_peer_id: IngressPeerId,
    pub enabled: bool,
    pub port_range_mappings: Vec<PortMapping>,
}
