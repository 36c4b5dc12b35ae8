//! The kernel TUN front-end (Linux, needs CAP_NET_ADMIN): an interface with
//! the mesh address and the tunnel's MTU, whose packets go through the
//! engine, so every program on the host reaches the mesh.
//!
//! The interface is configured (address, netmask, MTU, up) by the `tun-rs`
//! crate's ioctls; the kernel then routes the mesh prefix to it. Closing the
//! device (dropping [`KernelTun`]) removes the interface.
//!
//! The device is opened with the kernel's offloads (`IFF_VNET_HDR`, TCP
//! segmentation and checksum offload): a bulk TCP sender hands over 64 KiB
//! superframes in one read, which [`offload::split`] cuts into the
//! MSS-sized packets the engine filters, counts and encrypts one by one;
//! the other way, [`offload::coalesce`] joins in-order segments of a flow
//! that came out of the tunnel together into one superframe per write.

use std::io;
use std::sync::Arc;

use ipnet::Ipv4Net;
use tokio::task::JoinHandle;

use crate::engine::offload::{self, VNET_HDR_LEN};
use crate::engine::wg::{Tunnel, MTU};

/// The largest frame the device reads or takes: its header and an IP
/// packet of up to 64 KiB.
const FRAME: usize = VNET_HDR_LEN + 65_535;
/// Packets from the tunnel taken in one go to coalesce (a 64 KiB
/// superframe holds about 46 full-size segments).
const BATCH: usize = 128;

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
        let device = tun_rs::DeviceBuilder::new()
            .name(name)
            .ipv4(address.addr(), address.prefix_len(), None)
            .mtu(MTU)
            .offload(true)
            .enable(true)
            .build_async()?;
        let name = device.name()?;
        let device = Arc::new(device);
        let Tunnel {
            outbound,
            mut inbound,
        } = tunnel;
        let reader = Arc::clone(&device);
        let to_mesh = tokio::spawn(async move {
            let mut frame = vec![0u8; FRAME];
            let mut packets = Vec::new();
            loop {
                let n = match reader.recv(&mut frame).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("tun read: {e}");
                        return;
                    }
                };
                if let Err(e) = offload::split(&frame[..n], &mut packets) {
                    tracing::debug!("tun read: frame dropped: {e}");
                }
                for packet in packets.drain(..) {
                    if outbound.send(packet).await.is_err() {
                        return;
                    }
                }
            }
        });
        let from_mesh = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut frame = Vec::with_capacity(FRAME);
            while let Some(packet) = inbound.recv().await {
                batch.push(packet);
                while batch.len() < BATCH {
                    match inbound.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let mut rest = &batch[..];
                while !rest.is_empty() {
                    let taken = offload::coalesce(rest, &mut frame);
                    if let Err(e) = device.send(&frame).await {
                        tracing::debug!("tun write of {taken} packets: {e}");
                        // A kernel that refuses the superframe may still
                        // take its segments one by one.
                        if taken > 1 {
                            for packet in &rest[..taken] {
                                offload::coalesce(std::slice::from_ref(packet), &mut frame);
                                if let Err(e) = device.send(&frame).await {
                                    tracing::debug!("tun write: {e}");
                                }
                            }
                        }
                    }
                    rest = &rest[taken..];
                }
                batch.clear();
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
