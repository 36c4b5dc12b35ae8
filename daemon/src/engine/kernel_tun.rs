//! The kernel TUN front-end (Linux, needs CAP_NET_ADMIN): an interface with
//! the mesh address and the tunnel's MTU, whose packets go through the
//! engine, so every program on the host reaches the mesh.
//!
//! The interface is configured (address, netmask, MTU, up) by the `tun`
//! crate's ioctls; the kernel then routes the mesh prefix to it. Closing the
//! device (dropping [`KernelTun`]) removes the interface.

use std::io;
use std::sync::Arc;

use ipnet::Ipv4Net;
use tokio::task::JoinHandle;
use tun::AbstractDevice;

use crate::engine::wg::{Tunnel, MTU};

/// A running TUN interface attached to an engine.
#[derive(Debug)]
pub struct KernelTun {
    name: String,
    tasks: [JoinHandle<()>; 2],
}

impl KernelTun {
    /// Creates interface `name` with `address` (mesh IP and prefix) and
    /// starts moving packets between it and `tunnel`.
    pub fn start(name: &str, address: Ipv4Net, tunnel: Tunnel) -> io::Result<KernelTun> {
        let mut config = tun::Configuration::default();
        config
            .tun_name(name)
            .address(address.addr())
            .netmask(address.netmask())
            .mtu(MTU)
            .up();
        let device = tun::create_as_async(&config).map_err(io::Error::other)?;
        let name = device.tun_name().map_err(io::Error::other)?;
        let device = Arc::new(device);
        let Tunnel {
            outbound,
            mut inbound,
        } = tunnel;
        let reader = Arc::clone(&device);
        let to_mesh = tokio::spawn(async move {
            let mut buf = vec![0u8; usize::from(MTU) + 64];
            loop {
                match reader.recv(&mut buf).await {
                    Ok(n) => {
                        if outbound.send(buf[..n].to_vec()).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("tun read: {e}");
                        return;
                    }
                }
            }
        });
        let from_mesh = tokio::spawn(async move {
            while let Some(packet) = inbound.recv().await {
                if let Err(e) = device.send(&packet).await {
                    tracing::debug!("tun write: {e}");
                }
            }
        });
        Ok(KernelTun {
            name,
            tasks: [to_mesh, from_mesh],
        })
    }

    /// The interface's name as the kernel gave it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for KernelTun {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
