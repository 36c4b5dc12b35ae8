//! The STUN responder: UDP on the port number of `--listen` (same address),
//! answering binding requests with the address they came from
//! (XOR-MAPPED-ADDRESS), so a daemon learns its server-reflexive address
//! from the WireGuard socket it asks with ([`meshplane_proto::stun`]).
//!
//! Stateless: each datagram is read into one fixed buffer (anything longer
//! is cut and then fails to parse), answered or ignored, and forgotten.

use std::io;
use std::net::SocketAddr;

use meshplane_proto::stun::binding_response;
use tokio::net::UdpSocket;

/// Longest datagram read; a binding request is 20 bytes plus attributes.
const MAX_DATAGRAM: usize = 1500;

/// Binds the responder's socket at `addr`.
pub async fn bind(addr: SocketAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for STUN on UDP {addr}: {e}"))
}

/// Answers binding requests on `socket` for as long as the task runs.
pub async fn serve(socket: UdpSocket) {
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                log_error(&e);
                continue;
            }
        };
        if let Some(answer) = binding_response(&buf[..len], from) {
            if let Err(e) = socket.send_to(&answer, from).await {
                log_error(&e);
            }
        }
    }
}

/// A failed receive or send concerns one datagram (an unreachable sender,
/// a full buffer): the responder goes on.
fn log_error(e: &io::Error) {
    tracing::debug!(error = %e, "STUN datagram not handled");
}
