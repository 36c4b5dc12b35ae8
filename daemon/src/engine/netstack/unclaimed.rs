//! Connections to ports that nobody listens on.
//!
//! smoltcp can only listen on one port per socket, and a SYN that no socket
//! takes is answered with a reset. To accept connections on any port, the
//! driver looks at each SYN from the tunnel before smoltcp does: when it is
//! addressed to a port without a [`TcpListener`](super::TcpListener) and
//! belongs to no existing socket, the driver keeps the packet and hands an
//! [`Unclaimed`] to the receiver from
//! [`Netstack::unclaimed`](super::Netstack::unclaimed). Accepting it opens a
//! socket for exactly that SYN (a listening socket, fed the held packet on
//! its own, so no other SYN can take it); refusing it lets smoltcp answer
//! the SYN with a reset. Retransmissions of a held SYN are dropped.
//!
//! So no listening socket waits for a connection that may never come: each
//! one is created for a SYN already here, and lives on as that connection.

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;

use smoltcp::socket::tcp::State as TcpState;
use smoltcp::socket::Socket;
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpPacket};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::tcp::{new_socket, TcpStream};
use super::{Shared, State};

/// Connection attempts that may wait for an answer at once (offered or
/// being dialled).
pub(super) const HELD: usize = 128;
/// Accepted connections send a keep-alive after this much silence...
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// ...and are closed when the peer has sent nothing for this long (it is
/// gone: a live peer answers keep-alives). This also ends a handshake the
/// peer never completes.
const DEAD_AFTER: Duration = Duration::from_secs(120);

/// A connection attempt from `remote` to `port` of this stack, waiting for
/// [`Unclaimed::accept`] or [`Unclaimed::refuse`]. Dropping it refuses.
#[derive(Debug)]
pub struct Unclaimed {
    shared: Arc<Shared>,
    remote: SocketAddrV4,
    port: u16,
    /// Accepted or refused: nothing left to do on drop.
    answered: bool,
}

/// The receiving end of [`Netstack::unclaimed`](super::Netstack::unclaimed).
#[derive(Debug)]
pub struct UnclaimedConnections {
    rx: mpsc::Receiver<Unclaimed>,
}

impl UnclaimedConnections {
    pub(super) fn new(rx: mpsc::Receiver<Unclaimed>) -> Self {
        UnclaimedConnections { rx }
    }

    /// The next attempt; `None` once the stack has stopped or another
    /// receiver took over.
    pub async fn recv(&mut self) -> Option<Unclaimed> {
        self.rx.recv().await
    }
}

impl Unclaimed {
    /// Who is connecting.
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// The port of this stack it connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Completes the handshake; the stream once it is established. Put a
    /// timeout on it: a peer that stops answering is only given up after
    /// two minutes.
    pub async fn accept(mut self) -> io::Result<TcpStream> {
        self.answered = true;
        let handle = {
            let mut st = self.shared.state();
            let gone = || io::Error::from(io::ErrorKind::ConnectionAborted);
            if st.stopped {
                return Err(gone());
            }
            let syn = st.held.remove(&(self.remote, self.port)).ok_or_else(gone)?;
            let mut socket = new_socket();
            socket
                .listen(self.port)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            socket.set_keep_alive(Some(KEEP_ALIVE));
            socket.set_timeout(Some(DEAD_AFTER));
            let handle = st.sockets.add(socket);
            // The held SYN alone, so that this socket takes it and nothing
            // else; whatever else waits to enter the stack goes after.
            let waiting = std::mem::take(&mut st.device.rx);
            st.device.rx.push_back(syn);
            let now = self.shared.now();
            st.poll(now);
            let mut rest = waiting;
            rest.extend(st.device.rx.drain(..));
            st.device.rx = rest;
            let taken = st
                .sockets
                .get::<smoltcp::socket::tcp::Socket>(handle)
                .state()
                != TcpState::Listen;
            if !taken {
                st.sockets.remove(handle);
                return Err(gone());
            }
            handle
        };
        TcpStream::established(Arc::clone(&self.shared), handle, self.remote).await
    }

    /// Resets the connection attempt.
    pub fn refuse(mut self) {
        self.release();
    }

    /// Lets smoltcp have the held SYN: with no socket for it, it answers
    /// with a reset.
    fn release(&mut self) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let mut st = self.shared.state();
        if let Some(syn) = st.held.remove(&(self.remote, self.port)) {
            st.device.rx.push_back(syn);
        }
        drop(st);
        self.shared.wake.notify_one();
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        self.release();
    }
}

/// The source and destination port of a connection-opening SYN (SYN
/// without ACK) to `address`, if `packet` is one.
fn syn_to(packet: &[u8], address: std::net::Ipv4Addr) -> Option<(SocketAddrV4, u16)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp
        || ip.dst_addr() != address
        || ip.more_frags()
        || ip.frag_offset() != 0
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    (tcp.syn() && !tcp.ack() && !tcp.rst()).then(|| {
        (
            SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
            tcp.dst_port(),
        )
    })
}

/// Whether a socket already serves the connection `remote` → `port`.
fn has_socket(st: &State, remote: SocketAddrV4, port: u16) -> bool {
    let remote = (IpAddress::Ipv4(*remote.ip()), remote.port());
    st.sockets.iter().any(|(_, socket)| match socket {
        Socket::Tcp(s) => {
            s.local_endpoint().is_some_and(|l| l.port == port)
                && s.remote_endpoint()
                    .is_some_and(|r| (r.addr, r.port) == remote)
        }
        _ => false,
    })
}

/// Queues a packet from the tunnel for smoltcp, unless it is a SYN for an
/// unclaimed port: that one is held and offered to the receiver.
pub(super) fn admit(st: &mut State, shared: &Arc<Shared>, packet: Vec<u8>) {
    let syn = st
        .unclaimed
        .as_ref()
        .and_then(|_| syn_to(&packet, st.address));
    let Some((remote, port)) = syn else {
        st.device.rx.push_back(packet);
        return;
    };
    let key = (remote, port);
    if st.held.contains_key(&key) {
        // A retransmission while the first one waits for its answer.
        return;
    }
    if st.listened.contains_key(&port) || has_socket(st, remote, port) {
        st.device.rx.push_back(packet);
        return;
    }
    let Some(tx) = st.unclaimed.as_ref() else {
        return;
    };
    if st.held.len() >= HELD {
        // As a full backlog: the peer retries the SYN.
        return;
    }
    let offer = Unclaimed {
        shared: Arc::clone(shared),
        remote,
        port,
        answered: false,
    };
    match tx.try_send(offer) {
        Ok(()) => {
            st.held.insert(key, packet);
        }
        Err(TrySendError::Full(mut offer)) => {
            // The peer retries the SYN; the lock is held, so the offer
            // must not try to release anything.
            offer.answered = true;
        }
        Err(TrySendError::Closed(mut offer)) => {
            offer.answered = true;
            st.unclaimed = None;
            st.device.rx.push_back(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Ipv4Address, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};

    fn tcp(control: TcpControl, ack: bool) -> Vec<u8> {
        let (src, dst) = (
            Ipv4Address::new(100, 64, 0, 1),
            Ipv4Address::new(100, 64, 0, 2),
        );
        let tcp = TcpRepr {
            src_port: 40_000,
            dst_port: 8080,
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: ack.then_some(TcpSeqNumber(1)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 20 + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut packet, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &src.into(),
            &dst.into(),
            &caps,
        );
        buf
    }

    #[test]
    fn only_an_opening_syn_to_this_address_counts() {
        let me = std::net::Ipv4Addr::new(100, 64, 0, 2);
        let syn = tcp(TcpControl::Syn, false);
        assert_eq!(
            syn_to(&syn, me),
            Some(("100.64.0.1:40000".parse().unwrap(), 8080))
        );
        assert_eq!(syn_to(&syn, std::net::Ipv4Addr::new(100, 64, 0, 3)), None);
        assert_eq!(syn_to(&tcp(TcpControl::Syn, true), me), None);
        assert_eq!(syn_to(&tcp(TcpControl::None, true), me), None);
        assert_eq!(syn_to(&tcp(TcpControl::Rst, false), me), None);
        assert_eq!(syn_to(&syn[..10], me), None);
    }
}
