//! gRPC's framing of messages on an HTTP/2 stream, for the calls whose
//! messages are framed outside tonic.
//!
//! tonic keeps one buffer per stream, in each direction, as large as the
//! largest message the stream carried, for as long as the stream lives. A
//! Sync stream's first message is a whole map (about 1 MB at 5,000 peers)
//! and every later one a small delta, so thousands of open streams kept
//! gigabytes: on the server, which frames its Sync answers itself, and in
//! a client that follows many streams (the load harness). Here each
//! message has an allocation of its own size, dropped with the message.
//!
//! The framing is gRPC's: before each message, a flag byte (0: not
//! compressed; compression is neither used nor accepted) and its length as
//! a big-endian `u32`.

use std::collections::VecDeque;

use prost::Message;
use thiserror::Error;

/// The bytes before each message: the compressed flag and the length.
pub const PREFIX: usize = 5;
/// The largest message read, as tonic's default decoding limit.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Our Sync call, framed outside tonic by the server and the load harness.
pub const SYNC_PATH: &str = "/meshplane.management.v1.Management/Sync";

/// Why bytes are not the framed messages expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    #[error("compressed messages are not accepted")]
    Compressed,
    #[error("the body is not one gRPC message")]
    NotOneMessage,
    #[error("a message of {length} bytes is larger than the {limit} accepted")]
    TooLarge { length: usize, limit: usize },
    #[error("the body ended inside a message")]
    Truncated,
}

/// `message` with its prefix, in an allocation of exactly that size.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let length = message.encoded_len();
    let mut out = Vec::with_capacity(PREFIX + length);
    out.push(0);
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
    message
        .encode(&mut out)
        .expect("a Vec grows to any message");
    out
}

/// The one message `body` frames.
pub fn unframe(body: &[u8]) -> Result<&[u8], FramingError> {
    let (prefix, message) = body
        .split_first_chunk::<PREFIX>()
        .ok_or(FramingError::NotOneMessage)?;
    let length = length_of(prefix)?;
    if length != message.len() {
        return Err(FramingError::NotOneMessage);
    }
    Ok(message)
}

/// The length a prefix announces.
fn length_of(prefix: &[u8; PREFIX]) -> Result<usize, FramingError> {
    if prefix[0] != 0 {
        return Err(FramingError::Compressed);
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    Ok(usize::try_from(length).unwrap_or(usize::MAX))
}

/// The messages of a stream, gathered from its data chunks however HTTP/2
/// cut them.
#[derive(Debug)]
pub struct Reassembly {
    /// The largest message accepted.
    limit: usize,
    /// The prefix of the next message, while incomplete.
    prefix: Vec<u8>,
    /// The message being gathered and its announced length.
    partial: Option<(usize, Vec<u8>)>,
    /// Whole messages not yet taken.
    ready: VecDeque<Vec<u8>>,
}

impl Reassembly {
    /// Accepts messages of at most `limit` bytes.
    pub fn new(limit: usize) -> Reassembly {
        Reassembly {
            limit,
            prefix: Vec::with_capacity(PREFIX),
            partial: None,
            ready: VecDeque::new(),
        }
    }

    /// Takes in the next data chunk of the stream.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), FramingError> {
        while !chunk.is_empty() {
            let taken = match &mut self.partial {
                Some((length, message)) => {
                    let taken = (*length - message.len()).min(chunk.len());
                    message.extend_from_slice(&chunk[..taken]);
                    taken
                }
                None => {
                    let taken = (PREFIX - self.prefix.len()).min(chunk.len());
                    self.prefix.extend_from_slice(&chunk[..taken]);
                    if let Ok(prefix) = <&[u8; PREFIX]>::try_from(self.prefix.as_slice()) {
                        let length = length_of(prefix)?;
                        if length > self.limit {
                            return Err(FramingError::TooLarge {
                                length,
                                limit: self.limit,
                            });
                        }
                        self.prefix.clear();
                        self.partial = Some((length, Vec::with_capacity(length)));
                    }
                    taken
                }
            };
            chunk = &chunk[taken..];
            if let Some((length, message)) = &self.partial {
                if message.len() == *length {
                    if let Some((_, message)) = self.partial.take() {
                        self.ready.push_back(message);
                    }
                }
            }
        }
        Ok(())
    }

    /// The next whole message, oldest first.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// The stream ended: refused when it ended inside a message.
    pub fn finish(&self) -> Result<(), FramingError> {
        if self.partial.is_some() || !self.prefix.is_empty() {
            return Err(FramingError::Truncated);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::SealedMessage;

    fn sealed(n: usize) -> SealedMessage {
        SealedMessage {
            wg_pub_key: format!("key{n}"),
            body: vec![u8::try_from(n % 251).unwrap(); n],
        }
    }

    #[test]
    fn a_request_is_exactly_one_uncompressed_message() {
        let message = sealed(300);
        let framed = frame(&message);
        assert_eq!(framed.len(), PREFIX + message.encoded_len());
        assert_eq!(framed.capacity(), framed.len());
        let inner = unframe(&framed).unwrap();
        assert_eq!(SealedMessage::decode(inner).unwrap(), message);

        let mut longer = framed.clone();
        longer.push(0);
        assert_eq!(unframe(&longer), Err(FramingError::NotOneMessage));
        assert_eq!(unframe(&framed[..3]), Err(FramingError::NotOneMessage));
        let mut compressed = framed;
        compressed[0] = 1;
        assert_eq!(unframe(&compressed), Err(FramingError::Compressed));
    }

    #[test]
    fn messages_come_back_whole_however_the_chunks_cut_them() {
        let messages: Vec<SealedMessage> = [0, 1, 7, 300, 5000].map(sealed).to_vec();
        let stream: Vec<u8> = messages.iter().flat_map(frame).collect();
        for cut in [1, 2, 4, 5, 6, 64, 999, stream.len()] {
            let mut reassembly = Reassembly::new(1 << 20);
            let mut got = Vec::new();
            for chunk in stream.chunks(cut) {
                reassembly.push(chunk).unwrap();
                while let Some(message) = reassembly.next_message() {
                    assert_eq!(message.capacity(), message.len());
                    got.push(SealedMessage::decode(message.as_slice()).unwrap());
                }
            }
            assert_eq!(reassembly.finish(), Ok(()));
            assert_eq!(got, messages, "chunks of {cut}");
        }
    }

    #[test]
    fn oversized_compressed_and_cut_streams_are_refused() {
        let big = frame(&sealed(5000));
        let mut small = Reassembly::new(100);
        assert!(matches!(
            small.push(&big),
            Err(FramingError::TooLarge { limit: 100, .. })
        ));
        let mut compressed = big.clone();
        compressed[0] = 1;
        assert_eq!(
            Reassembly::new(1 << 20).push(&compressed),
            Err(FramingError::Compressed)
        );
        for end in [3, PREFIX, PREFIX + 10] {
            let mut cut = Reassembly::new(1 << 20);
            cut.push(&big[..end]).unwrap();
            assert_eq!(cut.finish(), Err(FramingError::Truncated), "cut at {end}");
        }
    }
}
