//! The resolver's listener: UDP and TCP on one address, answering from the
//! mesh's zones and forwarding the rest ([`super::upstream`]). What it
//! answers with ([`Answers`]) is replaced whole when a map arrives, so a
//! query sees one map's answers, never half of two.
//!
//! Bounded against strangers: it reads only queries (a datagram with the
//! response bit set is dropped, so it cannot be made to reflect), refuses
//! `ANY`, holds at most [`MAX_IN_FLIGHT`] forwarded queries at once
//! (beyond, SERVFAIL at once), at most [`MAX_TCP_CONNECTIONS`] TCP
//! connections each idle no longer than [`TCP_IDLE`], and never sends a
//! UDP answer larger than the client said it takes (it gets the header
//! with TC set and asks again over TCP).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::upstream::{self, read_frame, write_frame, Upstreams};
use super::zone::Zones;

/// Forwarded queries waiting for an upstream at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// TCP connections served at once; more wait in the kernel's backlog.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection with no query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// The largest UDP answer sent, whatever EDNS size a client announces.
const MAX_UDP_ANSWER: usize = 4096;
/// The size of a DNS header.
const HEADER_LEN: usize = 12;

/// What the resolver answers with: the zones and the forwarding table of
/// one map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    pub zones: Zones,
    pub upstreams: Upstreams,
}

/// The shared state of the listener's tasks.
#[derive(Debug)]
struct Shared {
    answers: RwLock<Arc<Answers>>,
    in_flight: Arc<Semaphore>,
}

impl Shared {
    fn current(&self) -> Arc<Answers> {
        Arc::clone(&self.answers.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A running resolver; dropping it closes its sockets.
#[derive(Debug)]
pub struct Server {
    listen: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listens on `listen` over UDP and TCP (port 0 picks one for UDP and
    /// the same for TCP). Must be called inside the tokio runtime.
    pub fn start(listen: SocketAddr, answers: Answers) -> io::Result<Server> {
        let udp = std::net::UdpSocket::bind(listen)?;
        udp.set_nonblocking(true)?;
        let udp = UdpSocket::from_std(udp)?;
        let listen = udp.local_addr()?;
        let tcp = std::net::TcpListener::bind(listen)?;
        tcp.set_nonblocking(true)?;
        let tcp = TcpListener::from_std(tcp)?;
        let shared = Arc::new(Shared {
            answers: RwLock::new(Arc::new(answers)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), Arc::clone(&shared))),
            tokio::spawn(serve_tcp(tcp, Arc::clone(&shared))),
        ];
        Ok(Server {
            listen,
            shared,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Answers from now on with `answers`.
    pub fn set(&self, answers: Answers) {
        *self
            .shared
            .answers
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(answers);
    }

    /// What it answers with now.
    pub fn answers(&self) -> Arc<Answers> {
        self.shared.current()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("DNS over UDP: {e}");
                continue;
            }
        };
        let request = match read_request(&buf[..n]) {
            Request::Drop => continue,
            Request::Reply(reply) => {
                let _ = socket.send_to(&reply, from).await;
                continue;
            }
            Request::Query(request) => request,
        };
        let limit = usize::from(request.max_payload()).min(MAX_UDP_ANSWER);
        match resolve_local(&shared.current(), &request) {
            Resolution::Answer(reply) => {
                let _ = socket.send_to(&fit(reply, &request, limit), from).await;
            }
            Resolution::Forward => {
                let Ok(permit) = Arc::clone(&shared.in_flight).try_acquire_owned() else {
                    let _ = socket.send_to(&fail(&request), from).await;
                    continue;
                };
                let socket = Arc::clone(&socket);
                let answers = shared.current();
                tokio::spawn(async move {
                    let reply = forward(&answers, &request).await;
                    let _ = socket.send_to(&fit(reply, &request, limit), from).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("DNS over TCP: {e}");
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            serve_connection(stream, &shared).await;
            drop(permit);
        });
    }
}

/// Answers the queries of one TCP connection in order until it closes,
/// idles or sends something that is no query.
async fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    loop {
        let bytes = match tokio::time::timeout(TCP_IDLE, read_frame(&mut stream)).await {
            Ok(Ok(bytes)) => bytes,
            _ => return,
        };
        let reply = match read_request(&bytes) {
            Request::Drop => return,
            Request::Reply(reply) => reply,
            Request::Query(request) => match resolve_local(&shared.current(), &request) {
                Resolution::Answer(reply) => reply,
                Resolution::Forward => match Arc::clone(&shared.in_flight).try_acquire_owned() {
                    Ok(_permit) => forward(&shared.current(), &request).await,
                    Err(_) => fail(&request),
                },
            },
        };
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// What came in.
enum Request {
    /// Not worth an answer: too short for a header, or a response.
    Drop,
    /// An error answer, ready to send.
    Reply(Vec<u8>),
    Query(Box<Message>),
}

/// Parses a datagram or TCP frame into a query, or the error answer it
/// deserves.
fn read_request(bytes: &[u8]) -> Request {
    // The QR bit: never answer an answer (no loops, no reflection).
    if bytes.len() < HEADER_LEN || bytes[2] & 0x80 != 0 {
        return Request::Drop;
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let message = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => return Request::Reply(error(id, ResponseCode::FormErr)),
    };
    if message.metadata.op_code != OpCode::Query {
        return Request::Reply(error_to(&message, ResponseCode::NotImp));
    }
    if message.queries.len() != 1 {
        return Request::Reply(error_to(&message, ResponseCode::FormErr));
    }
    if message.queries[0].query_type() == RecordType::ANY {
        return Request::Reply(error_to(&message, ResponseCode::Refused));
    }
    Request::Query(Box::new(message))
}

/// How a query is answered.
enum Resolution {
    Answer(Vec<u8>),
    Forward,
}

/// Answers a query for a mesh name, or says it must be forwarded.
fn resolve_local(answers: &Answers, request: &Message) -> Resolution {
    match answers.zones.answer(request) {
        Some(reply) => Resolution::Answer(encode(&reply, request)),
        None => Resolution::Forward,
    }
}

/// The upstream's answer, or SERVFAIL when none came.
async fn forward(answers: &Answers, request: &Message) -> Vec<u8> {
    let name = request.queries[0].name();
    match upstream::forward(request, answers.upstreams.for_name(name)).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!("forwarding {name}: {e}");
            fail(request)
        }
    }
}

/// A response encoded, or SERVFAIL if it cannot be.
fn encode(reply: &Message, request: &Message) -> Vec<u8> {
    reply.to_vec().unwrap_or_else(|_| fail(request))
}

fn fail(request: &Message) -> Vec<u8> {
    error_to(request, ResponseCode::ServFail)
}

/// An error answer echoing the request's question.
fn error_to(request: &Message, code: ResponseCode) -> Vec<u8> {
    let mut reply = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    reply.metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = code;
    reply.add_queries(request.queries.iter().cloned());
    reply
        .to_vec()
        .unwrap_or_else(|_| error(request.metadata.id, code))
}

/// An error answer with nothing but a header, for a request that did not
/// parse.
fn error(id: u16, code: ResponseCode) -> Vec<u8> {
    let mut header = [0u8; HEADER_LEN];
    header[..2].copy_from_slice(&id.to_be_bytes());
    header[2] = 0x80;
    header[3] = 0x80 | (code.low() & 0x0f);
    header.to_vec()
}

/// `reply` as sent over UDP to a client taking `limit` bytes: whole when it
/// fits, else the header and question with TC set.
fn fit(reply: Vec<u8>, request: &Message, limit: usize) -> Vec<u8> {
    if reply.len() <= limit.max(512) {
        return reply;
    }
    let mut cut = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    cut.metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
    cut.metadata.recursion_available = true;
    cut.metadata.truncation = true;
    cut.add_queries(request.queries.iter().cloned());
    cut.to_vec().unwrap_or_else(|_| fail(request))
}
