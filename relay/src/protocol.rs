//! The relay's wire format: NetBird's relay framing, one WebSocket binary
//! message per frame, so a NetBird client could later talk to our relay.
//!
//! Every frame starts with the protocol version (1) and a message type.
//!
//! | type | name | sender | after the two header bytes |
//! |---|---|---|---|
//! | 3 | transport | both | 36-byte peer id, payload |
//! | 4 | close | both | nothing |
//! | 5 | health check | both | nothing (the server asks, the client echoes) |
//! | 6 | auth | client | magic `21 12 A4 42`, 36-byte peer id, token |
//! | 7 | auth response | server | the relay's instance URL (text) |
//! | 8 / 9 | subscribe / unsubscribe peer state | client | peer ids |
//! | 10 / 11 | peers online / went offline | server | peer ids |
//!
//! A transport frame from a client names the *destination*; the relay
//! rewrites the id to the *source* before it passes the frame on, so the
//! receiver learns who sent it and a sender cannot pose as another peer.
//! Types 1 and 2 (a removed handshake) are never valid.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The only protocol version.
pub const VERSION: u8 = 1;
/// The largest frame either side sends or accepts.
pub const MAX_MESSAGE_SIZE: usize = 8820;
/// The largest auth frame (version, type, magic, peer id, token).
pub const MAX_HANDSHAKE_SIZE: usize = 212;
/// The largest auth response frame.
pub const MAX_AUTH_RESPONSE_SIZE: usize = 8192;
/// The bytes after the header of an auth frame (STUN's magic cookie).
pub const AUTH_MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// The length of a peer id: `sha-` and a SHA-256 digest.
pub const PEER_ID_LEN: usize = 36;
/// Version and type.
const HEADER_LEN: usize = 2;
/// The header and the peer id in front of a transport payload.
const TRANSPORT_HEADER_LEN: usize = HEADER_LEN + PEER_ID_LEN;
/// The header, magic and peer id in front of an auth token.
const AUTH_HEADER_LEN: usize = HEADER_LEN + AUTH_MAGIC.len() + PEER_ID_LEN;
/// The largest payload of one transport frame.
pub const MAX_PAYLOAD_SIZE: usize = MAX_MESSAGE_SIZE - TRANSPORT_HEADER_LEN;
/// The largest token an auth frame carries.
pub const MAX_TOKEN_SIZE: usize = MAX_HANDSHAKE_SIZE - AUTH_HEADER_LEN;
/// Peer ids in one peer-state frame.
const IDS_PER_FRAME: usize = (MAX_MESSAGE_SIZE - HEADER_LEN) / PEER_ID_LEN;
/// The prefix of every peer id.
const PEER_ID_PREFIX: &[u8; 4] = b"sha-";

/// What a frame is, by its second byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    Transport = 3,
    Close = 4,
    HealthCheck = 5,
    Auth = 6,
    AuthResponse = 7,
    SubscribePeerState = 8,
    UnsubscribePeerState = 9,
    PeersOnline = 10,
    PeersWentOffline = 11,
}

/// Why a frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("relay frame too short ({0} bytes)")]
    TooShort(usize),
    #[error("relay frame too long ({len} bytes, at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("unsupported relay protocol version {0}")]
    Version(u8),
    #[error("relay message type {0} is not valid here")]
    Type(u8),
    #[error("relay auth frame without the magic bytes")]
    Magic,
    #[error("relay peer list of {0} bytes is not a whole number of peer ids")]
    PeerList(usize),
    #[error("empty relay peer list")]
    EmptyPeerList,
}

/// A peer's id on the relay: `sha-` followed by the SHA-256 digest of its
/// WireGuard public key as base64 text. Shown as `sha-` and the digest in
/// base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; PEER_ID_LEN]);

impl PeerId {
    /// The id of the peer whose WireGuard public key is `key` (base64, as
    /// the management API and the maps spell it).
    pub fn from_public_key(key: &str) -> PeerId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0; PEER_ID_LEN];
        id[..PEER_ID_PREFIX.len()].copy_from_slice(PEER_ID_PREFIX);
        id[PEER_ID_PREFIX.len()..].copy_from_slice(&digest);
        PeerId(id)
    }

    /// The id in a frame: any 36 bytes (the relay routes by bytes; only
    /// the owner of the key can authenticate as an id anyway).
    pub fn from_bytes(bytes: [u8; PEER_ID_LEN]) -> PeerId {
        PeerId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; PEER_ID_LEN] {
        &self.0
    }

    /// The 36 bytes at the start of `bytes`.
    fn read(bytes: &[u8]) -> PeerId {
        let mut id = [0; PEER_ID_LEN];
        id.copy_from_slice(&bytes[..PEER_ID_LEN]);
        PeerId(id)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, digest) = self.0.split_at(PEER_ID_PREFIX.len());
        write!(
            f,
            "{}{}",
            String::from_utf8_lossy(prefix),
            STANDARD.encode(digest)
        )
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A frame a client sends, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Auth { peer: PeerId, token: &'a [u8] },
    Transport { to: PeerId, payload: &'a [u8] },
    Close,
    HealthCheck,
    Subscribe(Vec<PeerId>),
    Unsubscribe(Vec<PeerId>),
}

/// A frame the relay sends, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    AuthResponse { instance_url: &'a str },
    Transport { from: PeerId, payload: &'a [u8] },
    Close,
    HealthCheck,
    PeersOnline(Vec<PeerId>),
    PeersWentOffline(Vec<PeerId>),
}

/// The version-checked type byte of `frame`.
fn type_byte(frame: &[u8]) -> Result<u8, ProtocolError> {
    if frame.len() < HEADER_LEN {
        return Err(ProtocolError::TooShort(frame.len()));
    }
    if frame.len() > MAX_MESSAGE_SIZE {
        return Err(ProtocolError::TooLong {
            len: frame.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    if frame[0] != VERSION {
        return Err(ProtocolError::Version(frame[0]));
    }
    Ok(frame[1])
}

/// The transport frame's peer id and payload.
fn transport_parts(frame: &[u8]) -> Result<(PeerId, &[u8]), ProtocolError> {
    if frame.len() < TRANSPORT_HEADER_LEN {
        return Err(ProtocolError::TooShort(frame.len()));
    }
    Ok((
        PeerId::read(&frame[HEADER_LEN..]),
        &frame[TRANSPORT_HEADER_LEN..],
    ))
}

/// The peer ids of a peer-state frame.
fn peer_list(frame: &[u8]) -> Result<Vec<PeerId>, ProtocolError> {
    let body = &frame[HEADER_LEN..];
    let ids = body.chunks_exact(PEER_ID_LEN);
    if !ids.remainder().is_empty() {
        return Err(ProtocolError::PeerList(body.len()));
    }
    Ok(ids.map(PeerId::read).collect())
}

impl<'a> ClientFrame<'a> {
    /// Reads one frame a client sent.
    pub fn parse(frame: &'a [u8]) -> Result<ClientFrame<'a>, ProtocolError> {
        let kind = type_byte(frame)?;
        Ok(match kind {
            k if k == MsgType::Auth as u8 => {
                if frame.len() > MAX_HANDSHAKE_SIZE {
                    return Err(ProtocolError::TooLong {
                        len: frame.len(),
                        max: MAX_HANDSHAKE_SIZE,
                    });
                }
                if frame.len() < AUTH_HEADER_LEN {
                    return Err(ProtocolError::TooShort(frame.len()));
                }
                if frame[HEADER_LEN..HEADER_LEN + AUTH_MAGIC.len()] != AUTH_MAGIC {
                    return Err(ProtocolError::Magic);
                }
                ClientFrame::Auth {
                    peer: PeerId::read(&frame[HEADER_LEN + AUTH_MAGIC.len()..]),
                    token: &frame[AUTH_HEADER_LEN..],
                }
            }
            k if k == MsgType::Transport as u8 => {
                let (to, payload) = transport_parts(frame)?;
                ClientFrame::Transport { to, payload }
            }
            k if k == MsgType::Close as u8 => ClientFrame::Close,
            k if k == MsgType::HealthCheck as u8 => ClientFrame::HealthCheck,
            k if k == MsgType::SubscribePeerState as u8 => {
                ClientFrame::Subscribe(peer_list(frame)?)
            }
            k if k == MsgType::UnsubscribePeerState as u8 => {
                ClientFrame::Unsubscribe(peer_list(frame)?)
            }
            other => return Err(ProtocolError::Type(other)),
        })
    }
}

impl<'a> ServerFrame<'a> {
    /// Reads one frame the relay sent.
    pub fn parse(frame: &'a [u8]) -> Result<ServerFrame<'a>, ProtocolError> {
        let kind = type_byte(frame)?;
        Ok(match kind {
            k if k == MsgType::AuthResponse as u8 => ServerFrame::AuthResponse {
                // NetBird's relay sends its URL; a non-UTF-8 one is shown
                // as nothing rather than refusing the relay.
                instance_url: std::str::from_utf8(&frame[HEADER_LEN..]).unwrap_or(""),
            },
            k if k == MsgType::Transport as u8 => {
                let (from, payload) = transport_parts(frame)?;
                ServerFrame::Transport { from, payload }
            }
            k if k == MsgType::Close as u8 => ServerFrame::Close,
            k if k == MsgType::HealthCheck as u8 => ServerFrame::HealthCheck,
            k if k == MsgType::PeersOnline as u8 => ServerFrame::PeersOnline(peer_list(frame)?),
            k if k == MsgType::PeersWentOffline as u8 => {
                ServerFrame::PeersWentOffline(peer_list(frame)?)
            }
            other => return Err(ProtocolError::Type(other)),
        })
    }
}

/// The auth frame for `peer` with `token`.
pub fn auth(peer: &PeerId, token: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let len = AUTH_HEADER_LEN + token.len();
    if len > MAX_HANDSHAKE_SIZE {
        return Err(ProtocolError::TooLong {
            len,
            max: MAX_HANDSHAKE_SIZE,
        });
    }
    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&[VERSION, MsgType::Auth as u8]);
    frame.extend_from_slice(&AUTH_MAGIC);
    frame.extend_from_slice(&peer.0);
    frame.extend_from_slice(token);
    Ok(frame)
}

/// The auth response naming the relay's instance URL.
pub fn auth_response(instance_url: &str) -> Result<Vec<u8>, ProtocolError> {
    let len = HEADER_LEN + instance_url.len();
    if len > MAX_AUTH_RESPONSE_SIZE {
        return Err(ProtocolError::TooLong {
            len,
            max: MAX_AUTH_RESPONSE_SIZE,
        });
    }
    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&[VERSION, MsgType::AuthResponse as u8]);
    frame.extend_from_slice(instance_url.as_bytes());
    Ok(frame)
}

/// A transport frame carrying `payload`, addressed to `peer` (client to
/// relay) or from `peer` (relay to client).
pub fn transport(peer: &PeerId, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    if payload.len() > MAX_PAYLOAD_SIZE {
        return Err(ProtocolError::TooLong {
            len: TRANSPORT_HEADER_LEN + payload.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    let mut frame = Vec::with_capacity(TRANSPORT_HEADER_LEN + payload.len());
    frame.extend_from_slice(&[VERSION, MsgType::Transport as u8]);
    frame.extend_from_slice(&peer.0);
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// Writes `from` over the peer id of a transport frame already parsed, so
/// the relay passes a frame on without copying its payload.
pub fn rewrite_transport(frame: &mut [u8], from: &PeerId) -> Result<(), ProtocolError> {
    if frame.len() < TRANSPORT_HEADER_LEN {
        return Err(ProtocolError::TooShort(frame.len()));
    }
    frame[HEADER_LEN..TRANSPORT_HEADER_LEN].copy_from_slice(&from.0);
    Ok(())
}

/// The close frame.
pub fn close() -> Vec<u8> {
    vec![VERSION, MsgType::Close as u8]
}

/// The health-check frame (the relay's question and the client's answer).
pub fn health_check() -> Vec<u8> {
    vec![VERSION, MsgType::HealthCheck as u8]
}

/// Peer-state frames of `kind` listing `ids`, as many as they need.
pub fn peer_state(kind: MsgType, ids: &[PeerId]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    if ids.is_empty() {
        return Err(ProtocolError::EmptyPeerList);
    }
    let frames = ids
        .chunks(IDS_PER_FRAME)
        .map(|chunk| {
            let mut frame = Vec::with_capacity(HEADER_LEN + chunk.len() * PEER_ID_LEN);
            frame.extend_from_slice(&[VERSION, kind as u8]);
            for id in chunk {
                frame.extend_from_slice(&id.0);
            }
            frame
        })
        .collect();
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "mhG/9LvFKVO6VzUyjUJKU9aPn9YnKcYYfRMTLAG1ahE=";

    #[test]
    fn peer_id_is_prefix_and_digest_of_the_key_text() {
        let id = PeerId::from_public_key(KEY);
        assert_eq!(&id.as_bytes()[..4], b"sha-");
        assert_eq!(
            &id.as_bytes()[4..],
            Sha256::digest(KEY.as_bytes()).as_slice()
        );
        let text = id.to_string();
        assert!(text.starts_with("sha-"));
        assert_eq!(text.len(), 4 + 44);
    }

    #[test]
    fn auth_round_trips_and_is_bounded() {
        let id = PeerId::from_public_key(KEY);
        let frame = auth(&id, b"token").expect("small token");
        assert_eq!(&frame[..6], &[1, 6, 0x21, 0x12, 0xA4, 0x42]);
        assert_eq!(
            ClientFrame::parse(&frame),
            Ok(ClientFrame::Auth {
                peer: id,
                token: b"token"
            })
        );
        assert!(auth(&id, &[0; MAX_TOKEN_SIZE]).is_ok());
        assert!(matches!(
            auth(&id, &[0; MAX_TOKEN_SIZE + 1]),
            Err(ProtocolError::TooLong { .. })
        ));
        let mut bad = frame.clone();
        bad[2] = 0;
        assert_eq!(ClientFrame::parse(&bad), Err(ProtocolError::Magic));
    }

    #[test]
    fn transport_rewrite_names_the_source() {
        let (a, b) = (PeerId::from_public_key("a"), PeerId::from_public_key("b"));
        let mut frame = transport(&b, b"ciphertext").expect("fits");
        assert_eq!(
            ClientFrame::parse(&frame),
            Ok(ClientFrame::Transport {
                to: b,
                payload: b"ciphertext"
            })
        );
        rewrite_transport(&mut frame, &a).expect("long enough");
        assert_eq!(
            ServerFrame::parse(&frame),
            Ok(ServerFrame::Transport {
                from: a,
                payload: b"ciphertext"
            })
        );
        assert!(transport(&a, &[0; MAX_PAYLOAD_SIZE]).is_ok());
        assert!(transport(&a, &[0; MAX_PAYLOAD_SIZE + 1]).is_err());
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(ClientFrame::parse(&[1]), Err(ProtocolError::TooShort(1)));
        assert_eq!(ClientFrame::parse(&[2, 5]), Err(ProtocolError::Version(2)));
        assert_eq!(ClientFrame::parse(&[1, 1]), Err(ProtocolError::Type(1)));
        assert_eq!(ClientFrame::parse(&[1, 7]), Err(ProtocolError::Type(7)));
        assert_eq!(ServerFrame::parse(&[1, 6]), Err(ProtocolError::Type(6)));
        assert_eq!(
            ClientFrame::parse(&[1, 3, 0]),
            Err(ProtocolError::TooShort(3))
        );
        assert_eq!(ClientFrame::parse(&close()), Ok(ClientFrame::Close));
        assert_eq!(
            ServerFrame::parse(&health_check()),
            Ok(ServerFrame::HealthCheck)
        );
    }

    #[test]
    fn peer_state_frames_split_long_lists() {
        let ids: Vec<PeerId> = (0..IDS_PER_FRAME + 3)
            .map(|i| PeerId::from_public_key(&i.to_string()))
            .collect();
        let frames = peer_state(MsgType::PeersOnline, &ids).expect("not empty");
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|f| f.len() <= MAX_MESSAGE_SIZE));
        let mut back = Vec::new();
        for f in &frames {
            match ServerFrame::parse(f) {
                Ok(ServerFrame::PeersOnline(list)) => back.extend(list),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, ids);
        assert_eq!(
            peer_state(MsgType::PeersOnline, &[]),
            Err(ProtocolError::EmptyPeerList)
        );
        assert_eq!(
            ClientFrame::parse(&[1, 8, 0, 0]),
            Err(ProtocolError::PeerList(2))
        );
    }

    #[test]
    fn auth_response_carries_the_url() {
        let frame = auth_response("rel://relay.example:443").expect("short");
        assert_eq!(
            ServerFrame::parse(&frame),
            Ok(ServerFrame::AuthResponse {
                instance_url: "rel://relay.example:443"
            })
        );
    }
}
