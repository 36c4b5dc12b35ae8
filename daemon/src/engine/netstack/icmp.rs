//! Pinging peers from the stack: one ICMP socket per echo request, bound to
//! a random identifier, so concurrent pings (and the stack's own answers to
//! peers' pings) never see each other's replies.

use std::future::poll_fn;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp::{Endpoint, PacketBuffer, PacketMetadata, Socket as IcmpSocket};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};

use super::Shared;

/// Echo payload bytes, as `ping` sends by default.
const PAYLOAD: usize = 56;
/// The ICMP header in front of the payload.
const HEADER: usize = 8;
/// Replies the socket can hold before it is read.
const SLOTS: usize = 4;

/// An answered echo request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    pub from: Ipv4Addr,
    pub seq: u16,
    /// ICMP bytes in the reply (header and payload), as `ping` counts.
    pub bytes: usize,
    /// From handing the request to the stack to reading the reply.
    pub rtt_us: u64,
}

/// The socket of one ping; removed when the ping ends, however it ends.
struct Probe {
    shared: Arc<Shared>,
    handle: SocketHandle,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.shared.state().sockets.remove(self.handle);
    }
}

fn buffer() -> PacketBuffer<'static> {
    PacketBuffer::new(
        vec![PacketMetadata::EMPTY; SLOTS],
        vec![0; SLOTS * (HEADER + PAYLOAD)],
    )
}

pub(super) async fn ping(
    shared: Arc<Shared>,
    to: Ipv4Addr,
    seq: u16,
    wait: Duration,
) -> io::Result<Option<Echo>> {
    let ident = (OsRng.next_u32() & 0xffff) as u16;
    let mut payload = [0u8; PAYLOAD];
    OsRng.fill_bytes(&mut payload);
    let request = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: seq,
        data: &payload,
    };
    let mut packet = vec![0u8; request.buffer_len()];
    request.emit(
        &mut Icmpv4Packet::new_unchecked(&mut packet[..]),
        &ChecksumCapabilities::default(),
    );
    let probe = {
        let mut st = shared.state();
        st.check_reachable(to)?;
        let mut socket = IcmpSocket::new(buffer(), buffer());
        socket
            .bind(Endpoint::Ident(ident))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        socket
            .send_slice(&packet, IpAddress::Ipv4(to))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Probe {
            handle: st.sockets.add(socket),
            shared: Arc::clone(&shared),
        }
    };
    let sent = Instant::now();
    shared.wake.notify_one();
    let reply = poll_fn(|cx| {
        let mut st = probe.shared.state();
        let socket = st.sockets.get_mut::<IcmpSocket>(probe.handle);
        while let Ok((data, from)) = socket.recv() {
            let IpAddress::Ipv4(from) = from;
            let Ok(icmp) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            let answer = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default());
            if let Ok(Icmpv4Repr::EchoReply {
                ident: i,
                seq_no,
                data: echoed,
            }) = answer
            {
                if from == to && i == ident && seq_no == seq && echoed == payload {
                    return Poll::Ready(Echo {
                        from,
                        seq,
                        bytes: data.len(),
                        rtt_us: u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
        socket.register_recv_waker(cx.waker());
        Poll::Pending
    });
    Ok(tokio::time::timeout(wait, reply).await.ok())
}
