//! The data plane: the WireGuard engine ([`wg`]) and what attaches it to
//! the host ([`kernel_tun`], with the TUN device's offloads in
//! [`offload`]; [`netstack`] with [`forward`]), the packet
//! parsing they share ([`packet`]) and the flow log of what the firewall
//! let through ([`flows`]). It knows nothing of the management protocol:
//! it is fed [`crate::engine::wg::NetworkUpdate`]s built from the core's map types.

pub mod flows;
pub mod forward;
#[cfg(target_os = "linux")]
pub mod kernel_tun;
pub mod netstack;
#[cfg(target_os = "linux")]
pub mod offload;
pub mod packet;
pub mod wg;
