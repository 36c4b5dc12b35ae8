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
use meshplane_proto::framing::{frame, unframe, FramingError, MAX_MESSAGE, PREFIX};
use prost::Message;
use tonic::codegen::tokio_stream::Stream;
use tonic::Status;

pub use meshplane_proto::framing::SYNC_PATH;
/// NetBird's Sync call.
pub const NETBIRD_SYNC_PATH: &str = "/management.ManagementService/Sync";

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
    let body = axum::body::to_bytes(request.into_body(), PREFIX + MAX_MESSAGE)
        .await
        .map_err(|_| Status::resource_exhausted("the request is larger than 4 MiB"))?;
    let message = unframe(&body).map_err(|e| match e {
        FramingError::Compressed => Status::unimplemented(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    })?;
    M::decode(message)
        .map_err(|e| Status::invalid_argument(format!("the request does not decode: {e}")))
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
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame(&message))))))
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
