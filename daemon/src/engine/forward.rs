//! Inbound forwarding in netstack mode: a TCP connection from a peer to
//! this peer's mesh IP on port P reaches whatever listens on
//! `127.0.0.1:P` on the host, as NetBird's userspace mode does. So services
//! on the host are reachable over the mesh without a TUN interface, and
//! `meshplane expose` works on a netstack daemon.
//!
//! Only connections the firewall let in get here (the engine filters every
//! packet from the tunnel before the stack sees it). The local service is
//! dialled before the peer's handshake is answered: when nothing listens
//! on the port, the peer's SYN is answered with a reset, so its connect
//! fails at once as it would against a closed port. Bytes are then copied
//! both ways; when one side closes its half, the other's write half is
//! closed in turn, and the connection ends when both are done.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::engine::netstack::{Netstack, Unclaimed, UnclaimedConnections};

/// Forwarded connections open at once; attempts beyond are reset.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long the local service may take to accept.
const DIAL_WITHIN: Duration = Duration::from_secs(5);
/// How long the peer may take to complete its handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Forwards a stack's unclaimed connections to the host's loopback until
/// dropped (which also ends the connections it carries).
#[derive(Debug)]
pub struct Forwarder {
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Takes over `stack`'s connections to ports that no listener of its
    /// own has.
    pub fn start(stack: &Netstack) -> Forwarder {
        Forwarder {
            task: tokio::spawn(run(stack.unclaimed())),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(mut incoming: UnclaimedConnections) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped with this task: aborts every connection still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            attempt = incoming.recv() => {
                let Some(attempt) = attempt else { return };
                match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(forward(attempt, permit));
                    }
                    Err(_) => {
                        tracing::warn!(
                            "refusing {} -> port {}: {MAX_CONNECTIONS} forwarded connections open",
                            attempt.remote(),
                            attempt.port()
                        );
                        attempt.refuse();
                    }
                }
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// One connection: dial the local service, then accept the peer and copy.
async fn forward(attempt: Unclaimed, _permit: OwnedSemaphorePermit) {
    let (remote, port) = (attempt.remote(), attempt.port());
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut local = match timeout(DIAL_WITHIN, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("{remote} -> port {port}: {target}: {e}; resetting");
            attempt.refuse();
            return;
        }
        Err(_) => {
            tracing::debug!("{remote} -> port {port}: {target} did not answer; resetting");
            attempt.refuse();
            return;
        }
    };
    let _ = local.set_nodelay(true);
    let mut mesh = match timeout(HANDSHAKE_WITHIN, attempt.accept()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("{remote} -> port {port}: handshake: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("{remote} -> port {port}: handshake not completed");
            return;
        }
    };
    match tokio::io::copy_bidirectional(&mut mesh, &mut local).await {
        Ok((up, down)) => {
            tracing::debug!("{remote} -> {target}: closed after {up} B in, {down} B out");
        }
        Err(e) => tracing::debug!("{remote} -> {target}: {e}"),
    }
}
