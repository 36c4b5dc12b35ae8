//! STUN binding (RFC 8489) as meshplane uses it: a daemon learns its
//! server-reflexive address by sending a binding request from its WireGuard
//! socket to the management server's port over UDP, and the server answers
//! with the address it saw in XOR-MAPPED-ADDRESS.
//!
//! The daemon's socket carries WireGuard and STUN alike; [`is_stun`] tells
//! them apart by the first bytes. The codec is `stun-types`; this module
//! holds only what the two sides need of it.
//!
//! The same socket answers ICE connectivity checks (RFC 8445 §7), which
//! NetBird's clients send before they use a direct path: binding requests
//! authenticated with the short-term credentials the peers exchanged in
//! their signal offers ([`ice_request`], [`parse_ice_request`],
//! [`ice_response`], [`parse_ice_response`]). [`crate::ice`] runs the checks.

use std::net::SocketAddr;

use stun_types::attribute::{
    AttributeStaticType, AttributeType, MessageIntegrity, RawAttribute, Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageWrite,
    MessageWriteExt, MessageWriteVec, ShortTermCredentials, BINDING, MAGIC_COOKIE,
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
    Some(mapped_success(packet, from)?.finish())
}

/// A binding success response to `packet` naming `from` in
/// XOR-MAPPED-ADDRESS, still open for more attributes; `None` when
/// `packet` is no binding request. Both the plain answer and the answer
/// to an ICE check start from it.
fn mapped_success(packet: &[u8], from: SocketAddr) -> Option<MessageWriteVec> {
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
    Some(response)
}

/// PRIORITY (RFC 8445 §16.1): the priority a peer-reflexive candidate
/// learned from the check would get.
const PRIORITY: AttributeType = AttributeType::new(0x0024);
/// USE-CANDIDATE: the controlling agent nominates the pair it checks.
const USE_CANDIDATE: AttributeType = AttributeType::new(0x0025);
/// ICE-CONTROLLED, with the sender's tie-breaker.
const ICE_CONTROLLED: AttributeType = AttributeType::new(0x8029);
/// ICE-CONTROLLING, with the sender's tie-breaker.
const ICE_CONTROLLING: AttributeType = AttributeType::new(0x802A);

/// The ICE role a check is sent in, with the sender's tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    Controlling(u64),
    Controlled(u64),
}

/// What a connectivity check (an ICE binding request) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCheck {
    /// The checking peer's username fragment (USERNAME's second half).
    pub remote_ufrag: String,
    /// PRIORITY, 0 when absent.
    pub priority: u32,
    /// The role it checks in, when it says.
    pub role: Option<IceRole>,
    /// The controlling peer nominates this pair.
    pub use_candidate: bool,
}

/// A connectivity check to a peer whose credentials are `remote_ufrag` and
/// `remote_pwd`, from us (`local_ufrag`): USERNAME `remote:local`, PRIORITY,
/// the role, USE-CANDIDATE when nominating, MESSAGE-INTEGRITY (HMAC-SHA1
/// keyed by the remote password) and FINGERPRINT, in RFC 8445's order.
/// Returns the transaction id with the message; `None` only when a
/// fragment is too long for USERNAME (513 bytes).
pub fn ice_request(
    remote_ufrag: &str,
    local_ufrag: &str,
    remote_pwd: &str,
    priority: u32,
    role: IceRole,
    use_candidate: bool,
) -> Option<(TransactionId, Vec<u8>)> {
    let mut request = Message::builder_request(BINDING, MessageWriteVec::new());
    let id = request.transaction_id();
    let username = Username::new(&format!("{remote_ufrag}:{local_ufrag}")).ok()?;
    request.add_attribute(&username).ok()?;
    let priority = priority.to_be_bytes();
    request
        .add_attribute(&RawAttribute::new(PRIORITY, &priority))
        .ok()?;
    let (kind, tie_breaker) = match role {
        IceRole::Controlling(t) => (ICE_CONTROLLING, t),
        IceRole::Controlled(t) => (ICE_CONTROLLED, t),
    };
    let tie_breaker = tie_breaker.to_be_bytes();
    request
        .add_attribute(&RawAttribute::new(kind, &tie_breaker))
        .ok()?;
    if use_candidate {
        request
            .add_attribute(&RawAttribute::new(USE_CANDIDATE, &[]))
            .ok()?;
    }
    add_integrity(&mut request, remote_pwd)?;
    Some((id, request.finish()))
}

/// The connectivity check in `packet` when it is a binding request for our
/// username fragment `local_ufrag` whose MESSAGE-INTEGRITY verifies with
/// `local_pwd`; `None` for anything else (other STUN, WireGuard, a check
/// for another fragment, a forged or damaged one). FINGERPRINT, when
/// present, is checked by the parser.
pub fn parse_ice_request(packet: &[u8], local_ufrag: &str, local_pwd: &str) -> Option<IceCheck> {
    if !is_stun(packet) {
        return None;
    }
    let message = Message::from_bytes(packet).ok()?;
    if !message.has_method(BINDING) || !message.has_class(MessageClass::Request) {
        return None;
    }
    let username = message.attribute::<Username>().ok()?;
    let (ours, remote_ufrag) = username.username().split_once(':')?;
    if ours != local_ufrag || remote_ufrag.is_empty() {
        return None;
    }
    message.validate_integrity(&credentials(local_pwd)).ok()?;
    let value = |kind| message.raw_attribute(kind).map(|a| a.value.to_vec());
    let tie_breaker = |v: Vec<u8>| <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes);
    let role = match (value(ICE_CONTROLLING), value(ICE_CONTROLLED)) {
        (Some(v), None) => Some(IceRole::Controlling(tie_breaker(v)?)),
        (None, Some(v)) => Some(IceRole::Controlled(tie_breaker(v)?)),
        _ => None,
    };
    let priority = value(PRIORITY)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map_or(0, u32::from_be_bytes);
    Some(IceCheck {
        remote_ufrag: remote_ufrag.to_string(),
        priority,
        role,
        use_candidate: message.has_attribute(USE_CANDIDATE),
    })
}

/// The success response to a verified check (`packet`, from `from`):
/// XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY keyed by our password (the one
/// the request was keyed by) and FINGERPRINT. `None` when `packet` is no
/// binding request.
pub fn ice_response(packet: &[u8], from: SocketAddr, local_pwd: &str) -> Option<Vec<u8>> {
    let mut response = mapped_success(packet, from)?;
    add_integrity(&mut response, local_pwd)?;
    Some(response.finish())
}

/// The transaction id of a binding success response that carries
/// MESSAGE-INTEGRITY: the answer to a connectivity check (the server's
/// answers to discovery carry none). Its integrity is checked by
/// [`parse_ice_response`] once the id names the check and its password.
pub fn ice_response_id(packet: &[u8]) -> Option<TransactionId> {
    if !is_stun(packet) {
        return None;
    }
    let message = Message::from_bytes(packet).ok()?;
    (message.has_method(BINDING)
        && message.has_class(MessageClass::Success)
        && message.has_attribute(MessageIntegrity::TYPE))
    .then(|| message.transaction_id())
}

/// The mapped address of the answer to a connectivity check, when its
/// MESSAGE-INTEGRITY verifies with the password the check was keyed by.
pub fn parse_ice_response(packet: &[u8], remote_pwd: &str) -> Option<SocketAddr> {
    let message = Message::from_bytes(packet).ok()?;
    if !message.has_method(BINDING) || !message.has_class(MessageClass::Success) {
        return None;
    }
    message.validate_integrity(&credentials(remote_pwd)).ok()?;
    let mapped = message.attribute::<XorMappedAddress>().ok()?;
    Some(mapped.addr(message.transaction_id()))
}

/// Whether `packet` is a binding request (a connectivity check or a
/// discovery request).
pub fn is_binding_request(packet: &[u8]) -> bool {
    is_stun(packet)
        && Message::from_bytes(packet)
            .is_ok_and(|m| m.has_method(BINDING) && m.has_class(MessageClass::Request))
}

fn credentials(password: &str) -> MessageIntegrityCredentials {
    MessageIntegrityCredentials::ShortTerm(ShortTermCredentials::new(password.to_string()))
}

/// MESSAGE-INTEGRITY (HMAC-SHA1, as ICE uses) then FINGERPRINT.
fn add_integrity(message: &mut MessageWriteVec, password: &str) -> Option<()> {
    message
        .add_message_integrity(&credentials(password), IntegrityAlgorithm::Sha1)
        .ok()?;
    message.add_fingerprint().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_check_round_trip() {
        let role = IceRole::Controlling(0x0102_0304_0506_0708);
        let (id, request) = ice_request(
            "remoteUfrag",
            "localUfrag",
            "remotePassword",
            1234,
            role,
            true,
        )
        .unwrap();
        assert!(is_stun(&request));
        assert!(is_binding_request(&request));
        // The receiver sees its own fragment first.
        let check = parse_ice_request(&request, "remoteUfrag", "remotePassword").unwrap();
        assert_eq!(
            check,
            IceCheck {
                remote_ufrag: "localUfrag".to_string(),
                priority: 1234,
                role: Some(role),
                use_candidate: true,
            }
        );
        assert_eq!(parse_ice_request(&request, "remoteUfrag", "wrong"), None);
        assert_eq!(
            parse_ice_request(&request, "localUfrag", "remotePassword"),
            None
        );
        let from: SocketAddr = "192.0.2.9:51820".parse().unwrap();
        let response = ice_response(&request, from, "remotePassword").unwrap();
        assert_eq!(ice_response_id(&response), Some(id));
        assert_eq!(parse_ice_response(&response, "remotePassword"), Some(from));
        assert_eq!(parse_ice_response(&response, "wrong"), None);
        // Discovery's plain answers are not check answers.
        let (_, plain) = binding_request();
        assert_eq!(
            ice_response_id(&binding_response(&plain, from).unwrap()),
            None
        );
        assert!(parse_ice_request(&plain, "remoteUfrag", "remotePassword").is_none());
    }

    #[test]
    fn a_tampered_check_is_refused() {
        let (_, mut request) =
            ice_request("a", "b", "password", 7, IceRole::Controlled(9), false).unwrap();
        // Flip a bit of the tie-breaker: integrity (or fingerprint) fails.
        let at = request.len() - 40;
        request[at] ^= 1;
        assert_eq!(parse_ice_request(&request, "a", "password"), None);
    }

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
