//! DNS for the tests and the bench: a small authoritative server that
//! answers one zone with one address (a stand-in for a company's or an
//! ISP's nameserver), and a client that asks over UDP or TCP.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// An authoritative UDP server for one zone: every name in it has the A
/// record `ip`; other names in it have no other type; names outside it are
/// refused. Stops on drop.
pub struct ZoneServer {
    pub at: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZoneServer {
    /// Serves `zone` on `socket` (bound by the caller, in whatever
    /// namespace) from a thread of its own.
    pub fn serve(socket: UdpSocket, zone: &str, ip: Ipv4Addr) -> ZoneServer {
        let at = socket.local_addr().expect("bound");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let zone = Name::from_ascii(zone).expect("zone name");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], &zone, ip) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        ZoneServer {
            at,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ZoneServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(bytes: &[u8], zone: &Name, ip: Ipv4Addr) -> Option<Vec<u8>> {
    let request = Message::from_vec(bytes).ok()?;
    let question = request.queries.first()?.clone();
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    reply.metadata.authoritative = true;
    reply.add_query(question.clone());
    if !zone.zone_of(question.name()) {
        reply.metadata.response_code = ResponseCode::Refused;
    } else if question.query_type() == RecordType::A {
        reply.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(A(ip)),
        ));
    }
    reply.to_vec().ok()
}

/// A query for `name`'s `kind` records.
pub fn query(name: &str, kind: RecordType) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
    m
}

fn rand_id() -> u16 {
    rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u16
}

/// Asks `server` over UDP; the answer, or an error after 2 s.
pub fn ask_udp(server: SocketAddr, request: &Message) -> io::Result<Message> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.connect(server)?;
    socket.send(&request.to_vec().map_err(io::Error::other)?)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.recv(&mut buf)?;
        let reply = Message::from_vec(&buf[..n]).map_err(io::Error::other)?;
        if reply.metadata.id == request.metadata.id {
            return Ok(reply);
        }
    }
}

/// Asks `server` over TCP; the answer, or an error after 2 s.
pub fn ask_tcp(server: SocketAddr, request: &Message) -> io::Result<Message> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let bytes = request.to_vec().map_err(io::Error::other)?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    stream.write_all(&[&len.to_be_bytes()[..], &bytes].concat())?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply)?;
    Message::from_vec(&reply).map_err(io::Error::other)
}

/// The IPv4 addresses in an answer.
pub fn addresses(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect()
}
