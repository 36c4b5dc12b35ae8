//! The Sync calls (ours and NetBird's), framed here rather than by tonic.
//!
//! tonic encodes a stream's messages into one buffer per stream and hands
//! each out as a slice of it, keeping the rest of the allocation for the
//! next message; so every open stream kept the allocation of its largest
//! message, its first whole map (900 KB at 5,000 peers), for as long as it
//! stayed open: gigabytes held by idle streams. Here each message is
//! encoded into an allocation of its own size, freed once HTTP/2 has sent
//! it. The framing is gRPC's: one request message in, a 5-byte prefix
//! (uncompressed flag, big-endian length) before each message out, the
//! status in the trailers, or alone in the headers when the call fails at
//! once. Everything else about the calls is what the services do with
//! them, as through the generated code.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Response};
use hyper::body::Frame;
use prost::Message;
use tonic::codegen::tokio_stream::Stream;
use tonic::Status;

/// Our Sync call.
pub const SYNC_PATH: &str = "/meshplane.management.v1.Management/Sync";
/// NetBird's Sync call.
pub const NETBIRD_SYNC_PATH: &str = "/management.ManagementService/Sync";
/// The largest request accepted, as tonic's default decoding limit.
const MAX_REQUEST: usize = 4 * 1024 * 1024;
/// gRPC's prefix of each message: the compressed flag and the length.
const PREFIX: usize = 5;

/// The answer to a call whose stream opened as `opened`.
pub fn respond<S, M>(opened: Result<S, Status>) -> Response<Body>
where
    S: Stream<Item = Result<M, Status>> + Unpin + Send + 'static,
    M: Message + 'static,
{
    match opened {
        Ok(messages) => {
            let mut response = Response::new(Body::new(Framed {
                messages: Some(messages),
            }));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The call's one request message.
pub async fn message<M: Message + Default>(request: Request) -> Result<M, Status> {
    let body = axum::body::to_bytes(request.into_body(), PREFIX + MAX_REQUEST)
        .await
        .map_err(|_| Status::resource_exhausted("the request is larger than 4 MiB"))?;
    M::decode(unframe(&body)?)
        .map_err(|e| Status::invalid_argument(format!("the request does not decode: {e}")))
}

/// The one message of a request body.
fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let malformed = || Status::invalid_argument("the request is not one gRPC message");
    let (prefix, message) = body.split_at_checked(PREFIX).ok_or_else(malformed)?;
    if prefix[0] != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not accepted",
        ));
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    if usize::try_from(length).ok() != Some(message.len()) {
        return Err(malformed());
    }
    Ok(message)
}

/// A message with its gRPC prefix, in an allocation of exactly its size.
fn frame(message: &impl Message) -> Bytes {
    let length = message.encoded_len();
    let mut out = Vec::with_capacity(PREFIX + length);
    out.push(0);
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
    message
        .encode(&mut out)
        .expect("a Vec grows to any message");
    Bytes::from(out)
}

/// The trailers that end a call with `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert(
            "grpc-status",
            HeaderValue::from(tonic::Code::Internal as i32),
        );
    }
    headers
}

/// The response body: each message framed, then the trailers.
struct Framed<S> {
    /// `None` once the trailers went out.
    messages: Option<S>,
}

impl<S, M> HttpBody for Framed<S>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: Message,
{
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(messages) = self.messages.as_mut() else {
            return Poll::Ready(None);
        };
        let end = match Pin::new(messages).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(message))) => {
                return Poll::Ready(Some(Ok(Frame::data(frame(&message)))))
            }
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.messages = None;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&end)))))
    }

    fn is_end_stream(&self) -> bool {
        self.messages.is_none()
    }
}

#[cfg(test)]
mod tests {
    use meshplane_proto::v1::SealedMessage;

    use super::*;

    #[test]
    fn a_request_is_exactly_one_uncompressed_message() {
        let message = SealedMessage {
            wg_pub_key: "key".into(),
            body: vec![7; 300],
        };
        let framed = frame(&message);
        assert_eq!(framed.len(), PREFIX + message.encoded_len());
        let inner = unframe(&framed).unwrap();
        assert_eq!(SealedMessage::decode(inner).unwrap(), message);

        let mut longer = framed.to_vec();
        longer.push(0);
        assert_eq!(
            unframe(&longer).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            unframe(&framed[..3]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert_eq!(
            unframe(&compressed).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
    }
}
