//! Batched I/O on the engine's UDP socket.
//!
//! A bulk transfer is a stream of equal-size WireGuard datagrams to one
//! address. Sending them one system call each costs more than encrypting
//! them, so [`Outbox`] queues consecutive datagrams to one address and
//! hands them to the kernel in one `sendmsg` with UDP generic segmentation
//! offload (`UDP_SEGMENT`: the kernel cuts the buffer into datagrams of
//! the first one's size). On receive, UDP generic receive offload
//! (`UDP_GRO`) lets one `recvmsg` return a run of equal-size datagrams from
//! one sender ([`Inbox`]). A kernel that refuses either is used one
//! datagram per call, as before.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The most datagrams one GSO send may carry (the kernel's
/// `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// The most bytes one GSO send may carry: a UDP payload's limit.
const MAX_BYTES: usize = 65_507;
/// Room for a coalesced receive: the largest UDP payload.
const RECV_BUF: usize = 65_536;

/// Datagrams queued for one address, sent together.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Whether the kernel takes `UDP_SEGMENT` (cleared on its first refusal).
    gso: bool,
    to: Option<SocketAddr>,
    /// The size of every queued datagram but possibly the last.
    segment: usize,
    count: usize,
    /// A shorter datagram ended the run: nothing may follow it.
    closed: bool,
    buf: Vec<u8>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            gso: true,
            to: None,
            segment: 0,
            count: 0,
            closed: false,
            buf: Vec::with_capacity(MAX_BYTES),
        }
    }
}

impl Outbox {
    /// Whether `len` bytes to `to` can join the queue (otherwise it must be
    /// flushed first).
    pub(super) fn fits(&self, to: SocketAddr, len: usize) -> bool {
        self.count == 0
            || (self.to == Some(to)
                && !self.closed
                && len <= self.segment
                && self.count < MAX_SEGMENTS
                && self.buf.len() + len <= MAX_BYTES)
    }

    /// Queues `datagram` for `to`; call only when [`Outbox::fits`].
    pub(super) fn push(&mut self, to: SocketAddr, datagram: &[u8]) {
        if self.count == 0 {
            self.to = Some(to);
            self.segment = datagram.len();
        } else if datagram.len() < self.segment {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
        self.count += 1;
    }

    /// Sends what is queued: one GSO `sendmsg`, or one datagram per call
    /// where the kernel cannot segment.
    pub(super) async fn flush(&mut self, socket: &UdpSocket) {
        let Some(to) = self.to.take() else {
            return;
        };
        let mut refused = false;
        if self.count > 1 && self.gso {
            match send_segmented(socket, to, &self.buf, self.segment).await {
                Ok(()) => return self.clear(),
                // No checksum offload on the route's device, or no GSO.
                Err(e) if is_gso_refusal(&e) => {
                    tracing::debug!("udp segmentation offload refused: {e}");
                    refused = true;
                }
                Err(e) => {
                    tracing::debug!("udp send to {to}: {e}");
                    return self.clear();
                }
            }
        }
        for datagram in self.buf.chunks(self.segment.max(1)) {
            if let Err(e) = socket.send_to(datagram, to).await {
                tracing::debug!("udp send to {to}: {e}");
                break;
            }
            // The same datagrams pass one by one: the kernel cannot
            // segment, so stop asking it to. (When they fail too, the
            // refusal was about the datagrams, not the offload.)
            if refused {
                tracing::debug!("udp segmentation offload off: one datagram per call");
                self.gso = false;
                refused = false;
            }
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        self.to = None;
    }
}

fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP)
    )
}

async fn send_segmented(
    socket: &UdpSocket,
    to: SocketAddr,
    buf: &[u8],
    segment: usize,
) -> io::Result<()> {
    let size = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let addr = SockaddrStorage::from(to);
    socket
        .async_io(Interest::WRITABLE, || {
            sendmsg(
                socket.as_raw_fd(),
                &[IoSlice::new(buf)],
                &[ControlMessage::UdpGsoSegments(&size)],
                MsgFlags::empty(),
                Some(&addr),
            )
            .map_err(io::Error::from)
        })
        .await
        .map(|_| ())
}

/// The receive side: one buffer that a coalesced run of datagrams fits.
#[derive(Debug)]
pub(super) struct Inbox {
    buf: Vec<u8>,
    cmsg: Vec<u8>,
}

impl Inbox {
    /// Asks the kernel to coalesce received datagrams on `socket`; a
    /// refusal leaves one datagram per receive.
    pub(super) fn new(socket: &UdpSocket) -> Inbox {
        if let Err(e) = setsockopt(socket, sockopt::UdpGroSegment, &true) {
            tracing::debug!("udp receive offload unavailable: {e}");
        }
        Inbox {
            buf: vec![0; RECV_BUF],
            cmsg: nix::cmsg_space!(i32),
        }
    }

    /// Receives what is waiting without blocking: the sender and its
    /// datagrams (one, or a coalesced run of equal-size ones, the last
    /// possibly shorter). `WouldBlock` when nothing is waiting.
    pub(super) fn try_recv(
        &mut self,
        socket: &UdpSocket,
    ) -> io::Result<(SocketAddr, impl Iterator<Item = &[u8]>)> {
        let (n, from, segment) = socket.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let msg = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut self.cmsg),
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?;
            let segment = msg
                .cmsgs()
                .map_err(io::Error::from)?
                .find_map(|c| match c {
                    ControlMessageOwned::UdpGroSegments(size) => usize::try_from(size).ok(),
                    _ => None,
                })
                .filter(|&s| s > 0)
                .unwrap_or(msg.bytes);
            let from = msg.address.as_ref().and_then(socket_addr);
            Ok((msg.bytes, from, segment))
        })?;
        let from = from.ok_or_else(|| io::Error::other("datagram without a sender address"))?;
        Ok((from, self.buf[..n].chunks(segment.max(1))))
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        (a, b)
    }

    /// Everything received until `want` datagrams arrived, in order.
    async fn receive(inbox: &mut Inbox, socket: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < want {
            socket.readable().await.expect("readable");
            match inbox.try_recv(socket) {
                Ok((_, datagrams)) => got.extend(datagrams.map(<[u8]>::to_vec)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn a_run_of_datagrams_arrives_as_sent() {
        let (a, b) = pair().await;
        let to = b.local_addr().expect("addr");
        let mut inbox = Inbox::new(&b);
        let mut outbox = Outbox::default();
        // 40 full datagrams and a short one: one run.
        let sent: Vec<Vec<u8>> = (0..41u8)
            .map(|i| vec![i; if i == 40 { 300 } else { 1452 }])
            .collect();
        for d in &sent {
            assert!(outbox.fits(to, d.len()));
            outbox.push(to, d);
        }
        assert!(!outbox.fits(to, 1452), "nothing follows a short datagram");
        outbox.flush(&a).await;
        assert_eq!(receive(&mut inbox, &b, sent.len()).await, sent);
    }

    #[tokio::test]
    async fn a_longer_datagram_or_another_address_starts_a_new_run() {
        let (a, b) = pair().await;
        let to = b.local_addr().expect("addr");
        let mut outbox = Outbox::default();
        outbox.push(to, &[1; 100]);
        assert!(!outbox.fits(to, 101));
        assert!(!outbox.fits(a.local_addr().expect("addr"), 100));
        assert!(outbox.fits(to, 100));
        let mut inbox = Inbox::new(&b);
        outbox.flush(&a).await;
        outbox.push(to, &[2; 200]);
        outbox.flush(&a).await;
        assert_eq!(
            receive(&mut inbox, &b, 2).await,
            vec![vec![1; 100], vec![2; 200]]
        );
    }
}
