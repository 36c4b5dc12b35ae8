//! STUN binding (RFC 8489) as meshplane uses it: a daemon learns its
//! server-reflexive address by sending a binding request from its WireGuard
//! socket to the management server's port over UDP, and the server answers
//! with the address it saw in XOR-MAPPED-ADDRESS.
//!
//! The daemon's socket carries WireGuard and STUN alike; [`is_stun`] tells
//! them apart by the first bytes. The codec is `stun-types`; this module
//! holds only what the two sides need of it.

use std::net::SocketAddr;

use stun_types::attribute::XorMappedAddress;
use stun_types::message::{
    Message, MessageClass, MessageWrite, MessageWriteExt, MessageWriteVec, BINDING, MAGIC_COOKIE,
};

pub use stun_types::message::TransactionId;

/// Length of a STUN header; every STUN message is at least this long.
pub const HEADER_LEN: usize = 20;

/// Whether `packet` is shaped like a STUN message: the top two bits of its
/// first byte clear, the magic cookie `21 12 A4 42` at bytes 4..8, and the
/// length at bytes 2..4 that of the rest. WireGuard messages start with
/// their type (1 to 4) and three zero bytes, so their length field reads 0
/// while none is as short as a bare STUN header: they never match, whatever
/// their sender index (bytes 4..8) happens to be.
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= HEADER_LEN
        && packet[0] & 0xC0 == 0
        && packet[4..8] == MAGIC_COOKIE.to_be_bytes()
        && usize::from(u16::from_be_bytes([packet[2], packet[3]])) == packet.len() - HEADER_LEN
}

/// A binding request with a fresh random transaction id, and that id (to
/// match the response with).
pub fn binding_request() -> (TransactionId, Vec<u8>) {
    let request = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let id = Message::from_bytes(&request)
        .map(|m| m.transaction_id())
        .unwrap_or_else(|_| TransactionId::from(0));
    (id, request)
}

/// The transaction id and mapped address of a binding success response;
/// `None` for anything else (WireGuard, other STUN messages, garbage).
pub fn parse_binding_response(packet: &[u8]) -> Option<(TransactionId, SocketAddr)> {
    if !is_stun(packet) {
        return None;
    }
    let message = Message::from_bytes(packet).ok()?;
    if !message.has_method(BINDING) || !message.has_class(MessageClass::Success) {
        return None;
    }
    let id = message.transaction_id();
    let mapped = message.attribute::<XorMappedAddress>().ok()?;
    Some((id, mapped.addr(id)))
}

/// The answer to `packet` received from `from`: a binding success response
/// naming `from` in XOR-MAPPED-ADDRESS when `packet` is a binding request,
/// `None` for anything else, which is ignored. The answer carries nothing
/// more (32 bytes for IPv4, 44 for IPv6, against a request's 20 at least),
/// so a forged source address gains little from it. An IPv4 sender seen
/// through a dual-stack IPv6 socket (`::ffff:a.b.c.d`) is answered with its
/// IPv4 address, the one its NAT mapped.
pub fn binding_response(packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(packet) {
        return None;
    }
    let request = Message::from_bytes(packet).ok()?;
    if !request.has_method(BINDING) || !request.has_class(MessageClass::Request) {
        return None;
    }
    let mut response = Message::builder_success(&request, MessageWriteVec::new());
    response
        .add_attribute(&XorMappedAddress::new(
            SocketAddr::new(from.ip().to_canonical(), from.port()),
            request.transaction_id(),
        ))
        .ok()?;
    Some(response.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_round_trip() {
        for from in ["198.51.100.7:40123", "[2001:db8::5]:51820"] {
            let from: SocketAddr = from.parse().unwrap();
            let (id, request) = binding_request();
            assert!(is_stun(&request));
            assert_eq!(
                parse_binding_response(&request),
                None,
                "a request is no response"
            );
            let response = binding_response(&request, from).unwrap();
            assert!(is_stun(&response));
            assert_eq!(parse_binding_response(&response), Some((id, from)));
            // A response is not answered.
            assert_eq!(binding_response(&response, from), None);
        }
    }

    #[test]
    fn mapped_ipv4_senders_get_their_ipv4_address() {
        let (id, request) = binding_request();
        let seen: SocketAddr = "[::ffff:198.51.100.7]:40123".parse().unwrap();
        let response = binding_response(&request, seen).unwrap();
        let v4: SocketAddr = "198.51.100.7:40123".parse().unwrap();
        assert_eq!(parse_binding_response(&response), Some((id, v4)));
    }

    #[test]
    fn transaction_ids_differ() {
        assert_ne!(binding_request().0, binding_request().0);
    }

    #[test]
    fn wireguard_and_garbage_are_not_stun() {
        let from: SocketAddr = "192.0.2.1:1".parse().unwrap();
        // WireGuard handshake initiation, response, cookie reply and the
        // shortest data message, even with the cookie as sender index.
        for (kind, len) in [(1u8, 148), (2, 92), (3, 64), (4, 32)] {
            let mut packet = vec![0u8; len];
            packet[0] = kind;
            packet[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            assert!(!is_stun(&packet));
            assert_eq!(binding_response(&packet, from), None);
            assert_eq!(parse_binding_response(&packet), None);
        }
        for packet in [&[][..], &[0u8; 19][..], &[0xffu8; 64][..]] {
            assert!(!is_stun(packet));
            assert_eq!(binding_response(packet, from), None);
        }
        // The cookie but a length beyond the datagram.
        let (_, mut request) = binding_request();
        request[3] = 40;
        assert!(!is_stun(&request));
        assert_eq!(binding_response(&request, from), None);
    }
}
