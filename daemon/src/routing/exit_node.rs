//! The exit node in use: which routing peer of a `0.0.0.0/0` route carries
//! this host's internet traffic, and the policy routing that makes it so
//! ([`super::exit`], kernel TUN mode on Linux).
//!
//! In netstack mode nothing on the host uses the tunnel for the internet,
//! so an exit route is recorded for status but changes no host route.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use meshplane_core::model::PeerId;
use tokio::sync::Mutex;

/// The chosen entry of an exit route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitChoice {
    pub network_id: String,
    pub route_id: String,
    pub peer: PeerId,
    pub peer_ip: Ipv4Addr,
}

/// Whether a route's network is an exit route (`0.0.0.0/0`).
pub fn is_exit(network: Option<&str>) -> bool {
    network
        .and_then(|n| n.parse::<Ipv4Net>().ok())
        .is_some_and(|n| n.prefix_len() == 0)
}

/// The exit node of one link.
#[derive(Debug, Default)]
pub struct ExitNode {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    #[cfg(target_os = "linux")]
    routing: Option<super::exit::ExitRouting>,
    current: Option<ExitChoice>,
}

impl ExitNode {
    /// For a link on the kernel TUN interface `tun` (policy routing, after
    /// removing what an earlier run left), or on the userspace stack
    /// (`None`).
    pub async fn start(tun: Option<&str>) -> ExitNode {
        let mut inner = Inner::default();
        #[cfg(target_os = "linux")]
        if let Some(name) = tun {
            match super::exit::ExitRouting::start(name).await {
                Ok(routing) => inner.routing = Some(routing),
                Err(e) => tracing::warn!("exit nodes unavailable on {name}: {e}"),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = tun;
        ExitNode {
            inner: Mutex::new(inner),
        }
    }

    /// Uses `choice` as the exit node (`None`: the host's own path).
    pub async fn apply(&self, choice: Option<ExitChoice>) {
        let mut inner = self.inner.lock().await;
        if inner.current == choice {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(routing) = inner.routing.as_mut() {
            if let Err(e) = routing.set(choice.is_some()).await {
                tracing::warn!("exit node: {e}");
                return;
            }
        }
        match &choice {
            Some(c) => tracing::info!("exit node {} ({}) in use", c.peer_ip, c.network_id),
            None if inner.current.is_some() => tracing::info!("exit node off"),
            None => {}
        }
        inner.current = choice;
    }

    /// The exit node in use.
    pub async fn current(&self) -> Option<ExitChoice> {
        self.inner.lock().await.current.clone()
    }

    /// Restores the host's own path (before the link goes).
    pub async fn close(&self) {
        self.apply(None).await;
    }
}
