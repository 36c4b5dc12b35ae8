//! TCP streams and listeners of the netstack.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{RecvError, Socket as TcpSocket, SocketBuffer, State as TcpState};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpEndpoint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Shared;

/// Each direction of a connection buffers this much (it is also the
/// advertised window, so it bounds throughput per connection).
const BUFFER: usize = 512 * 1024;
/// Listening sockets per listener: connections that can complete their
/// handshake before `accept` is called.
const BACKLOG: usize = 4;
/// How long a dropped stream may take to finish closing.
const LINGER: Duration = Duration::from_secs(30);

pub(super) fn new_socket() -> TcpSocket<'static> {
    let mut s = TcpSocket::new(
        SocketBuffer::new(vec![0; BUFFER]),
        SocketBuffer::new(vec![0; BUFFER]),
    );
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s
}

fn to_std(ep: IpEndpoint) -> Option<SocketAddrV4> {
    match ep.addr {
        IpAddress::Ipv4(ip) => Some(SocketAddrV4::new(ip, ep.port)),
    }
}

/// A TCP connection over the mesh.
#[derive(Debug)]
pub struct TcpStream {
    shared: Arc<Shared>,
    handle: SocketHandle,
    peer: SocketAddrV4,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl TcpStream {
    pub(super) async fn connect(
        shared: Arc<Shared>,
        remote: SocketAddrV4,
    ) -> io::Result<TcpStream> {
        let handle = {
            let mut st = shared.state();
            st.check_reachable(*remote.ip())?;
            let port = st.ephemeral_port();
            let mut socket = new_socket();
            let remote_ep = IpEndpoint::new(IpAddress::Ipv4(*remote.ip()), remote.port());
            socket
                .connect(st.iface.context(), remote_ep, port)
                .map_err(invalid)?;
            st.sockets.add(socket)
        };
        TcpStream::established(shared, handle, remote).await
    }

    /// The stream of a socket whose handshake is under way, once it
    /// completes. From the call on, dropping the stream (a cancelled wait
    /// included) releases the socket.
    pub(super) async fn established(
        shared: Arc<Shared>,
        handle: SocketHandle,
        peer: SocketAddrV4,
    ) -> io::Result<TcpStream> {
        let stream = TcpStream {
            shared,
            handle,
            peer,
        };
        stream.shared.wake.notify_one();
        poll_fn(|cx| {
            stream.with_socket(|s| match s.state() {
                TcpState::Established | TcpState::CloseWait => Poll::Ready(Ok::<(), io::Error>(())),
                TcpState::Closed => Poll::Ready(Err(io::ErrorKind::ConnectionRefused.into())),
                _ => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await?;
        Ok(stream)
    }

    /// The remote end.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.peer
    }

    /// This end: the stack's address and the connection's local port.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        self.with_socket(|s| s.local_endpoint())
            .and_then(to_std)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    fn with_socket<R>(&self, f: impl FnOnce(&mut TcpSocket<'static>) -> R) -> R {
        let mut st = self.shared.state();
        f(st.sockets.get_mut::<TcpSocket>(self.handle))
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = self.with_socket(|s| {
            if s.can_recv() {
                match s.recv_slice(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        Poll::Ready(Ok(n))
                    }
                    Err(RecvError::Finished) => Poll::Ready(Ok(0)),
                    Err(RecvError::InvalidState) => {
                        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
                    }
                }
            } else if !s.may_recv() {
                // The peer closed its side (or the connection reset): EOF.
                Poll::Ready(Ok(0))
            } else {
                s.register_recv_waker(cx.waker());
                Poll::Pending
            }
        });
        if let Poll::Ready(Ok(n)) = read {
            if n > 0 {
                // Freed window: let the driver tell the peer.
                self.shared.wake.notify_one();
            }
        }
        read.map_ok(|_| ())
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = self.with_socket(|s| {
            if s.can_send() {
                Poll::Ready(
                    s.send_slice(data)
                        .map_err(|_| io::Error::from(io::ErrorKind::NotConnected)),
                )
            } else if !s.may_send() {
                Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
            } else {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
        });
        if let Poll::Ready(Ok(_)) = written {
            self.shared.wake.notify_one();
        }
        written
    }

    /// Data handed to the stack is sent without further action.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends FIN once the queued data is out.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with_socket(|s| s.close());
        self.shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        let s = st.sockets.get_mut::<TcpSocket>(self.handle);
        s.set_timeout(Some(LINGER));
        s.close();
        st.closing.push(self.handle);
        drop(st);
        self.shared.wake.notify_one();
    }
}

/// Accepts TCP connections on one port of the stack's address.
#[derive(Debug)]
pub struct TcpListener {
    shared: Arc<Shared>,
    port: u16,
    backlog: Vec<SocketHandle>,
}

impl TcpListener {
    pub(super) fn bind(shared: Arc<Shared>, port: u16) -> io::Result<TcpListener> {
        let mut backlog = Vec::with_capacity(BACKLOG);
        {
            let mut st = shared.state();
            for _ in 0..BACKLOG {
                let mut s = new_socket();
                s.listen(port).map_err(invalid)?;
                backlog.push(st.sockets.add(s));
            }
            *st.listened.entry(port).or_default() += 1;
        }
        Ok(TcpListener {
            shared,
            port,
            backlog,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next connection whose handshake has completed.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddrV4)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddrV4)>> {
        let mut st = self.shared.state();
        for slot in self.backlog.iter_mut() {
            let s = st.sockets.get_mut::<TcpSocket>(*slot);
            match s.state() {
                TcpState::Listen | TcpState::SynReceived => s.register_recv_waker(cx.waker()),
                TcpState::Closed => {
                    // Reset during its handshake: listen again.
                    s.listen(self.port).map_err(invalid)?;
                    s.register_recv_waker(cx.waker());
                }
                _ => {
                    let Some(peer) = s.remote_endpoint().and_then(to_std) else {
                        continue;
                    };
                    let mut fresh = new_socket();
                    fresh.listen(self.port).map_err(invalid)?;
                    let handle = std::mem::replace(slot, st.sockets.add(fresh));
                    drop(st);
                    let stream = TcpStream {
                        shared: Arc::clone(&self.shared),
                        handle,
                        peer,
                    };
                    return Poll::Ready(Ok((stream, peer)));
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        for &h in &self.backlog {
            st.sockets.remove(h);
        }
        if let Some(n) = st.listened.get_mut(&self.port) {
            *n -= 1;
            if *n == 0 {
                st.listened.remove(&self.port);
            }
        }
    }
}
