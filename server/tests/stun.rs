//! The STUN responder of the real server binary, on UDP at the port of
//! `--listen`: real sockets ask for their address.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::Server;
use meshplane_proto::stun::{binding_request, parse_binding_response};

/// Sends a binding request from `socket` until an answer comes (the
/// responder binds a moment after the TCP listener accepts); the first
/// datagram received must be that answer.
fn ask(socket: &UdpSocket, port: u16, before: &[&[u8]]) -> std::net::SocketAddr {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        for packet in before {
            socket.send_to(packet, ("127.0.0.1", port)).unwrap();
        }
        let (id, request) = binding_request();
        socket.send_to(&request, ("127.0.0.1", port)).unwrap();
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from.port(), port, "answered from the listen port");
        let (got, mapped) = parse_binding_response(&buf[..len]).expect("a binding response");
        assert_eq!(got, id, "the request's transaction");
        return mapped;
    }
    panic!("no STUN answer on UDP port {port}");
}

#[test]
fn binding_requests_learn_the_senders_address() {
    let s = Server::start(common::Backend::Sqlite);
    let one = UdpSocket::bind("127.0.0.1:0").unwrap();
    let two = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(ask(&one, s.port, &[]), one.local_addr().unwrap());
    assert_eq!(ask(&two, s.port, &[]), two.local_addr().unwrap());

    // WireGuard's handshake initiation shape, a response instead of a
    // request, and garbage: none is answered, so the first datagram back
    // is the answer to the request sent after them.
    let mut wireguard = vec![0u8; 148];
    wireguard[0] = 1;
    let (_, mut response) = binding_request();
    response[0] = 0x01; // type 0x0101: binding success response
    let garbage = [0xffu8; 64];
    assert_eq!(
        ask(&one, s.port, &[&wireguard, &response, &garbage, &[]]),
        one.local_addr().unwrap()
    );
}
