//! Where a name that is not the mesh's goes, and the forwarding itself.
//!
//! Names under a nameserver group's match domains go to that group's
//! nameservers (the most specific domain wins); a primary group takes
//! every other name; without one, the host's original upstream does.
//! A query goes to one nameserver at a time over UDP, again over TCP when
//! the answer came truncated, and on to the next nameserver when one does
//! not answer in time or answers SERVFAIL/REFUSED.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::Name;
use meshplane_core::netmap::owned::{Dns, NameserverGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::zone::fqdn;

/// How long one nameserver gets to answer over one transport.
pub const PER_SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest DNS message: TCP frames carry a 16-bit length.
pub const MAX_MESSAGE: usize = 65_535;
/// At most this many nameservers of one group are tried for one query, so
/// a long list cannot stretch a client's wait without end.
const MAX_TRIED: usize = 3;

/// One nameserver group's match domain and its nameservers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchDomain {
    pub domain: Name,
    pub nameservers: Vec<SocketAddr>,
}

/// The forwarding table of one map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// Most specific domain first.
    pub matches: Vec<MatchDomain>,
    /// The primary group's nameservers, when the map has one.
    pub primary: Vec<SocketAddr>,
    /// The host's nameservers from before this peer configured it.
    pub host: Vec<SocketAddr>,
}

/// A nameserver group's nameservers that parse; the rest are skipped
/// with a warning (the server checks them, an old map might not).
fn nameservers(group: &NameserverGroup) -> Vec<SocketAddr> {
    group
        .nameservers
        .iter()
        .filter_map(|ns| match ns.ip.parse::<IpAddr>() {
            Ok(ip) if ns.ns_type == "udp" => Some(SocketAddr::new(ip, ns.port)),
            _ => {
                tracing::warn!("nameserver {ns:?} of group {} skipped", group.name);
                None
            }
        })
        .collect()
}

impl Upstreams {
    /// The table for a map's DNS part, with the host's original
    /// nameservers `host` for everything no group takes.
    pub fn from_map(dns: &Dns, host: Vec<SocketAddr>) -> Upstreams {
        let mut matches: Vec<MatchDomain> = Vec::new();
        let mut primary = Vec::new();
        for group in dns.nameserver_groups.iter().filter(|_| dns.service_enable) {
            let servers = nameservers(group);
            if group.primary {
                primary.extend(servers.iter().copied());
            }
            for domain in &group.domains {
                let Some(domain) = fqdn(domain) else {
                    tracing::warn!("match domain {domain:?} of group {} skipped", group.name);
                    continue;
                };
                match matches.iter_mut().find(|m| m.domain == domain) {
                    Some(m) => m.nameservers.extend(servers.iter().copied()),
                    None => matches.push(MatchDomain {
                        domain,
                        nameservers: servers.clone(),
                    }),
                }
            }
        }
        matches.sort_by_key(|m| std::cmp::Reverse(m.domain.num_labels()));
        Upstreams {
            matches,
            primary,
            host,
        }
    }

    /// The nameservers for `name`: its most specific match domain's, else
    /// the primary group's, else the host's.
    pub fn for_name(&self, name: &Name) -> &[SocketAddr] {
        if let Some(m) = self.matches.iter().find(|m| m.domain.zone_of(name)) {
            return &m.nameservers;
        }
        if self.primary.is_empty() {
            &self.host
        } else {
            &self.primary
        }
    }
}

/// Why no nameserver gave an answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no nameserver for this name")]
    NoNameserver,
    #[error("the query cannot be encoded: {0}")]
    Encode(String),
    #[error("no nameserver answered ({0})")]
    Unanswered(String),
}

/// Forwards `request` to `servers` in turn; the first usable answer, as
/// raw bytes with the request's id. An answer over UDP that came
/// truncated is asked again over TCP of the same nameserver.
pub async fn forward(request: &Message, servers: &[SocketAddr]) -> Result<Vec<u8>, UpstreamError> {
    if servers.is_empty() {
        return Err(UpstreamError::NoNameserver);
    }
    let mut last = String::new();
    for &server in servers.iter().take(MAX_TRIED) {
        match ask(request, server).await {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                tracing::debug!("nameserver {server}: {e}");
                last = format!("{server}: {e}");
            }
        }
    }
    Err(UpstreamError::Unanswered(last))
}

/// One nameserver: UDP, then TCP when truncated.
async fn ask(request: &Message, server: SocketAddr) -> Result<Vec<u8>, UpstreamError> {
    // Our own id on the wire, so answers are matched against what we
    // sent, not what a client chose.
    let id: u16 = rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u16;
    let mut outgoing = request.clone();
    outgoing.metadata.id = id;
    let bytes = outgoing
        .to_vec()
        .map_err(|e| UpstreamError::Encode(e.to_string()))?;
    let answer = match timeout(PER_SERVER_TIMEOUT, over_udp(&bytes, server, &outgoing)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(UpstreamError::Unanswered(e)),
        Err(_) => return Err(UpstreamError::Unanswered("timed out over UDP".into())),
    };
    let answer = if truncated(&answer) {
        match timeout(PER_SERVER_TIMEOUT, over_tcp(&bytes, server, &outgoing)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(UpstreamError::Unanswered(e)),
            Err(_) => return Err(UpstreamError::Unanswered("timed out over TCP".into())),
        }
    } else {
        answer
    };
    let mut answer = answer;
    answer[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
    Ok(answer)
}

/// Whether the TC bit of a (checked) message is set.
fn truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// Whether `answer` answers `sent`: a response with its id and question.
/// SERVFAIL and REFUSED count as no answer, so the next nameserver is
/// tried.
fn check(answer: &[u8], sent: &Message) -> Result<(), String> {
    let parsed = Message::from_vec(answer).map_err(|e| format!("malformed answer: {e}"))?;
    if parsed.metadata.id != sent.metadata.id
        || parsed.metadata.message_type != MessageType::Response
        || parsed.queries != sent.queries
    {
        return Err("an answer to another question".into());
    }
    match parsed.metadata.response_code {
        ResponseCode::ServFail | ResponseCode::Refused => {
            Err(format!("answered {}", parsed.metadata.response_code))
        }
        _ => Ok(()),
    }
}

async fn over_udp(bytes: &[u8], server: SocketAddr, sent: &Message) -> Result<Vec<u8>, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        // A connected socket only hears from the server; a stray or
        // spoofed datagram with the wrong id is skipped, within the
        // caller's timeout.
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        match check(&buf[..n], sent) {
            Ok(()) => return Ok(buf[..n].to_vec()),
            Err(e) if n >= 2 && buf[..2] == sent.metadata.id.to_be_bytes() => return Err(e),
            Err(_) => continue,
        }
    }
}

async fn over_tcp(bytes: &[u8], server: SocketAddr, sent: &Message) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(bytes.len()).map_err(|_| "query too long".to_string())?;
    let mut frame = Vec::with_capacity(bytes.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await.map_err(|e| e.to_string())?;
    let answer = read_frame(&mut stream).await.map_err(|e| e.to_string())?;
    check(&answer, sent)?;
    Ok(answer)
}

/// Reads one length-prefixed DNS message from a TCP stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(stream: &mut R) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

/// Writes one DNS message with its length prefix.
pub async fn write_frame<W: AsyncWriteExt + Unpin>(
    stream: &mut W,
    message: &[u8],
) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::other("DNS message longer than 65535 bytes"))?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame).await
}

#[cfg(test)]
mod tests {
    use meshplane_core::model::{Nameserver, NameserverGroupId};

    use super::*;

    fn group(primary: bool, domains: &[&str], ip: &str) -> NameserverGroup {
        NameserverGroup {
            id: NameserverGroupId::new(format!("ns-{ip}")),
            name: format!("group {ip}"),
            nameservers: vec![Nameserver {
                ip: ip.to_string(),
                ns_type: "udp".to_string(),
                port: 53,
            }],
            primary,
            domains: domains.iter().map(|d| d.to_string()).collect(),
            search_domains_enabled: false,
        }
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), 53)
    }

    #[test]
    fn the_most_specific_match_domain_wins_then_primary_then_host() {
        let dns = Dns {
            service_enable: true,
            custom_zones: Vec::new(),
            nameserver_groups: vec![
                group(false, &["corp.example"], "10.0.0.1"),
                group(false, &["eu.corp.example"], "10.0.0.2"),
                group(true, &[], "10.0.0.3"),
            ],
        };
        let table = Upstreams::from_map(&dns, vec![at("192.0.2.53")]);
        assert_eq!(
            table.for_name(&name("a.eu.corp.example.")),
            [at("10.0.0.2")]
        );
        assert_eq!(table.for_name(&name("A.Corp.Example.")), [at("10.0.0.1")]);
        assert_eq!(table.for_name(&name("corp.example.")), [at("10.0.0.1")]);
        assert_eq!(table.for_name(&name("example.org.")), [at("10.0.0.3")]);
        let no_primary = Dns {
            nameserver_groups: dns.nameserver_groups[..2].to_vec(),
            ..dns
        };
        let table = Upstreams::from_map(&no_primary, vec![at("192.0.2.53")]);
        assert_eq!(table.for_name(&name("example.org.")), [at("192.0.2.53")]);
    }
}
