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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};
    use meshplane_core::netmap::owned::{CustomZone, Dns, Record as MapRecord};

    use super::*;

    fn query(name: &str, kind: RecordType) -> Message {
        let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        m
    }

    /// A zone with one peer, and `upstream` for every other name.
    async fn resolver(upstream: SocketAddr) -> Server {
        let dns = Dns {
            service_enable: true,
            custom_zones: vec![CustomZone {
                domain: "mesh.test".to_string(),
                records: vec![std::sync::Arc::new(MapRecord {
                    name: "a.mesh.test".to_string(),
                    kind: "A".to_string(),
                    class: "IN".to_string(),
                    ttl: 300,
                    rdata: "100.64.0.1".to_string(),
                })],
            }],
            nameserver_groups: Vec::new(),
        };
        Server::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            Answers {
                zones: Zones::from_map(&dns),
                upstreams: Upstreams::from_map(&dns, vec![upstream]),
            },
        )
        .expect("start")
    }

    async fn ask(socket: &UdpSocket, request: &Message) -> Message {
        socket
            .send(&request.to_vec().expect("encode"))
            .await
            .expect("send");
        let mut buf = vec![0u8; 65_535];
        let n = socket.recv(&mut buf).await.expect("an answer");
        Message::from_vec(&buf[..n]).expect("parse")
    }

    async fn client(server: &Server) -> UdpSocket {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        socket.connect(server.local_addr()).await.expect("connect");
        socket
    }

    /// An upstream that answers every A query over UDP with TC set and
    /// nothing else, and over TCP with `count` addresses.
    async fn truncating_upstream(count: u8) -> SocketAddr {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let at = udp.local_addr().expect("addr");
        let tcp = TcpListener::bind(at).await.expect("bind tcp");
        let reply = move |bytes: &[u8], truncated: bool| {
            let request = Message::from_vec(bytes).expect("a query");
            let mut reply = Message::response(request.metadata.id, OpCode::Query);
            reply.add_queries(request.queries.iter().cloned());
            reply.metadata.truncation = truncated;
            if !truncated {
                for i in 0..count {
                    reply.add_answer(Record::from_rdata(
                        request.queries[0].name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
                    ));
                }
            }
            reply.to_vec().expect("encode")
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&reply(&buf[..n], true), from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                if let Ok(bytes) = read_frame(&mut stream).await {
                    let _ = write_frame(&mut stream, &reply(&bytes, false)).await;
                }
            }
        });
        at
    }

    #[tokio::test]
    async fn answers_only_queries_and_refuses_any() {
        let server = resolver(SocketAddr::from((Ipv4Addr::LOCALHOST, 9))).await;
        let socket = client(&server).await;
        // A response sent to it is dropped: the next datagram's answer is
        // the first thing that comes back.
        let mut response = query("a.mesh.test.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        socket
            .send(&response.to_vec().expect("encode"))
            .await
            .expect("send");
        let any = ask(&socket, &query("a.mesh.test.", RecordType::ANY)).await;
        assert_eq!(any.metadata.response_code, ResponseCode::Refused);
        let a = ask(&socket, &query("A.MESH.TEST.", RecordType::A)).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        // Garbage with a header gets FORMERR.
        socket
            .send(&[0x12, 0x34, 0, 0, 0, 5, 0xff, 0xff, 0, 0, 0, 0, 9])
            .await
            .expect("send");
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).await.expect("an answer");
        assert_eq!(&buf[..2], &[0x12, 0x34]);
        assert_eq!(buf[3] & 0x0f, ResponseCode::FormErr.low());
        assert!(n >= HEADER_LEN);
    }

    #[tokio::test]
    async fn an_upstream_that_does_not_answer_gives_servfail() {
        // Nothing listens there: the upstream's port is closed at once.
        let closed = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let server = resolver(closed).await;
        let socket = client(&server).await;
        let reply = ask(&socket, &query("example.org.", RecordType::A)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(reply.metadata.id, 4242);
    }

    #[tokio::test]
    async fn a_truncated_upstream_answer_is_fetched_over_tcp_and_fitted_to_the_client() {
        let server = resolver(truncating_upstream(3).await).await;
        let socket = client(&server).await;
        let reply = ask(&socket, &query("www.example.org.", RecordType::A)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 3, "the full answer, fetched over TCP");
        assert_eq!(reply.metadata.id, 4242);

        // 100 addresses do not fit in the 512 bytes of a client without
        // EDNS: it gets TC and the whole answer over TCP.
        let server = resolver(truncating_upstream(100).await).await;
        let socket = client(&server).await;
        let reply = ask(&socket, &query("www.example.org.", RecordType::A)).await;
        assert!(reply.metadata.truncation);
        assert!(reply.answers.is_empty());
        let mut stream = TcpStream::connect(server.local_addr()).await.expect("tcp");
        let request = query("www.example.org.", RecordType::A)
            .to_vec()
            .expect("encode");
        write_frame(&mut stream, &request).await.expect("send");
        let reply =
            Message::from_vec(&read_frame(&mut stream).await.expect("answer")).expect("parse");
        assert_eq!(reply.answers.len(), 100);
    }
}
