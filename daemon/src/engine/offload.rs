//! The TUN device's offloads, in the engine's terms: the kernel hands over
//! (and accepts) a `virtio_net_hdr` followed by one IP packet that may be a
//! TCP "superframe" of up to 64 KiB for the device to cut into MSS-sized
//! segments, or carry a checksum the device must complete. The tunnel
//! carries, filters and counts ordinary IP packets, so [`split`] turns what
//! the kernel reads out into those, and [`coalesce`] joins a run of
//! in-order TCP segments of one flow coming out of the tunnel back into one
//! superframe for the kernel (what GRO does on a NIC): one system call and
//! one pass through the host's stack instead of one per segment.
//!
//! Pure functions over byte slices; IPv4 only, as the tunnel carries only
//! IPv4 (other frames are refused here, and would be dropped by the engine
//! anyway).

use thiserror::Error;

/// The length of `struct virtio_net_hdr` (without `num_buffers`), the
/// TUN device's default header size.
pub const VNET_HDR_LEN: usize = 10;

/// The checksum from `csum_start` to the end is the device's to complete.
const F_NEEDS_CSUM: u8 = 1;
/// The packet's checksums are known good (it was authenticated by the
/// tunnel, as the kernel's WireGuard marks its decrypted packets).
const F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP_L4: u8 = 5;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// Offsets of the checksum field in a TCP and a UDP header.
const TCP_CSUM: usize = 16;
const UDP_CSUM: usize = 6;
/// TCP flags.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;
/// The largest IPv4 packet, and so the largest superframe.
const MAX_PACKET: usize = 65_535;

/// Why a frame from the device could not be turned into packets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OffloadError {
    #[error("frame shorter than its headers")]
    Short,
    #[error("not an IPv4 frame of the kind its offload header names")]
    NotIpv4,
    #[error("segmentation offload type {0} is not supported")]
    UnsupportedGso(u8),
    #[error("checksum position outside the packet")]
    BadChecksumPosition,
    #[error("segment size 0")]
    ZeroSegment,
}

/// `struct virtio_net_hdr`, in the host's byte order (the TUN device's
/// default for a little-endian host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct VnetHdr {
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

impl VnetHdr {
    fn parse(b: &[u8]) -> Option<VnetHdr> {
        let field = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        (b.len() >= VNET_HDR_LEN).then(|| VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: field(2),
            gso_size: field(4),
            csum_start: field(6),
            csum_offset: field(8),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.flags, self.gso_type]);
        for field in [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        ] {
            out.extend_from_slice(&field.to_ne_bytes());
        }
    }
}

/// Turns one frame read from the device (header and packet) into the IP
/// packets it stands for, appended to `packets`, every checksum complete.
pub fn split(frame: &[u8], packets: &mut Vec<Vec<u8>>) -> Result<(), OffloadError> {
    let hdr = VnetHdr::parse(frame).ok_or(OffloadError::Short)?;
    let ip = &frame[VNET_HDR_LEN..];
    match hdr.gso_type {
        GSO_NONE => {
            let mut packet = ip.to_vec();
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_checksum(
                    &mut packet,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )?;
            }
            packets.push(packet);
            Ok(())
        }
        GSO_TCPV4 => split_tcp(ip, usize::from(hdr.gso_size), packets),
        GSO_UDP_L4 => split_udp(ip, usize::from(hdr.gso_size), packets),
        other => Err(OffloadError::UnsupportedGso(other)),
    }
}

/// Writes the checksum the device was asked to fill: the ones' complement
/// of the sum from `start` to the end, where the field (at `start +
/// offset`) already holds the pseudo-header's sum.
fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start + offset;
    if at + 2 > packet.len() {
        return Err(OffloadError::BadChecksumPosition);
    }
    let mut csum = !fold(sum(&packet[start..], 0));
    // UDP sends a computed 0 as all ones (0 means "no checksum").
    if csum == 0 && offset == UDP_CSUM && packet.get(9) == Some(&PROTO_UDP) {
        csum = 0xffff;
    }
    packet[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// An IPv4 header's length, checked against the packet and `protocol`.
fn ipv4_header(ip: &[u8], protocol: u8) -> Result<usize, OffloadError> {
    if ip.len() < 20 {
        return Err(OffloadError::Short);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != protocol {
        return Err(OffloadError::NotIpv4);
    }
    if ip.len() < ihl {
        return Err(OffloadError::Short);
    }
    Ok(ihl)
}

/// A TCP superframe's segments: each with the headers of the first, its
/// own total length, IP id (incremented, as the kernel's segmentation
/// does), sequence number and checksums; FIN and PSH only on the last,
/// CWR only on the first.
fn split_tcp(ip: &[u8], mss: usize, packets: &mut Vec<Vec<u8>>) -> Result<(), OffloadError> {
    let ihl = ipv4_header(ip, PROTO_TCP)?;
    if ip.len() < ihl + 20 {
        return Err(OffloadError::Short);
    }
    let hl = ihl + usize::from(ip[ihl + 12] >> 4) * 4;
    if hl < ihl + 20 || ip.len() < hl {
        return Err(OffloadError::Short);
    }
    if mss == 0 {
        return Err(OffloadError::ZeroSegment);
    }
    let id = u16::from_be_bytes([ip[4], ip[5]]);
    let seq = u32::from_be_bytes([ip[ihl + 4], ip[ihl + 5], ip[ihl + 6], ip[ihl + 7]]);
    let flags = ip[ihl + 13];
    let payload = &ip[hl..];
    let count = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let mut p = piece(&ip[..hl], ihl, chunk, id.wrapping_add(i as u16));
        let offset = (i * mss) as u32;
        p[ihl + 4..ihl + 8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(FIN | PSH);
        }
        if i > 0 {
            f &= !CWR;
        }
        p[ihl + 13] = f;
        transport_checksum(&mut p, ihl, TCP_CSUM);
        packets.push(p);
    }
    Ok(())
}

/// One piece of a superframe: its `headers` (IP header of `ihl` bytes and
/// transport header), then `chunk`, with the IP total length, `id` and
/// header checksum set.
fn piece(headers: &[u8], ihl: usize, chunk: &[u8], id: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(headers.len() + chunk.len());
    p.extend_from_slice(headers);
    p.extend_from_slice(chunk);
    let len = p.len() as u16;
    set_u16(&mut p, 2, len);
    set_u16(&mut p, 4, id);
    ip_checksum(&mut p, ihl);
    p
}

/// A UDP superframe's datagrams (UDP segmentation offload): each with the
/// first's headers, its own lengths, IP id and checksums.
fn split_udp(ip: &[u8], size: usize, packets: &mut Vec<Vec<u8>>) -> Result<(), OffloadError> {
    let ihl = ipv4_header(ip, PROTO_UDP)?;
    let hl = ihl + 8;
    if ip.len() < hl {
        return Err(OffloadError::Short);
    }
    if size == 0 {
        return Err(OffloadError::ZeroSegment);
    }
    let id = u16::from_be_bytes([ip[4], ip[5]]);
    for (i, chunk) in ip[hl..].chunks(size).enumerate() {
        let mut p = piece(&ip[..hl], ihl, chunk, id.wrapping_add(i as u16));
        set_u16(&mut p, ihl + 4, (8 + chunk.len()) as u16);
        transport_checksum(&mut p, ihl, UDP_CSUM);
        packets.push(p);
    }
    Ok(())
}

/// A TCP segment that may join a superframe: its header lengths, sequence
/// number and payload length.
#[derive(Debug, Clone, Copy)]
struct Segment {
    ihl: usize,
    hl: usize,
    seq: u32,
    len: usize,
    flags: u8,
}

/// `ip` as a plain IPv4 TCP data segment (no options beyond TCP's own, not
/// a fragment, no SYN, FIN, RST or URG, carrying data), or `None`.
fn segment(ip: &[u8]) -> Option<Segment> {
    let ihl = ipv4_header(ip, PROTO_TCP).ok()?;
    // Not a fragment (MF clear, offset 0); DF may be set.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
        || usize::from(u16::from_be_bytes([ip[2], ip[3]])) != ip.len()
        || ip.len() < ihl + 20
    {
        return None;
    }
    let hl = ihl + usize::from(ip[ihl + 12] >> 4) * 4;
    let flags = ip[ihl + 13];
    if hl < ihl + 20 || hl >= ip.len() || flags & (SYN | FIN | RST | URG) != 0 {
        return None;
    }
    Some(Segment {
        ihl,
        hl,
        seq: u32::from_be_bytes([ip[ihl + 4], ip[ihl + 5], ip[ihl + 6], ip[ihl + 7]]),
        len: ip.len() - hl,
        flags,
    })
}

/// Whether `next` continues `prev`'s flow in order: the same addresses,
/// ports, acknowledgement, window and options, the IP header equal but for
/// length, id and checksum, and its sequence number right after `prev`'s
/// data.
fn follows(prev: &[u8], p: Segment, next: &[u8], n: Segment) -> bool {
    let same = |a: std::ops::Range<usize>| prev[a.clone()] == next[a];
    n.ihl == p.ihl
        && n.hl == p.hl
        && n.seq == p.seq.wrapping_add(p.len as u32)
        && n.flags & !PSH == p.flags & !PSH
        && n.flags & (CWR | ECE) == 0
        && same(0..2)
        && same(6..10)
        && same(12..p.ihl)
        // Ports, then acknowledgement through window (flags compared above),
        // then urgent pointer and options.
        && same(p.ihl..p.ihl + 4)
        && same(p.ihl + 8..p.ihl + 13)
        && same(p.ihl + 14..p.ihl + 16)
        && same(p.ihl + 18..p.hl)
}

/// Writes into `frame` (cleared first) one frame for the device: the
/// longest run at the start of `packets` that one TCP superframe can carry
/// (segments of one flow in order, all of the first one's size but the
/// last, which may be shorter or carry PSH), or else the first packet
/// alone. Returns how many packets it took (at least one when `packets`
/// is not empty).
pub fn coalesce(packets: &[Vec<u8>], frame: &mut Vec<u8>) -> usize {
    frame.clear();
    let Some(first) = packets.first() else {
        return 0;
    };
    let plain = VnetHdr {
        flags: F_DATA_VALID,
        ..VnetHdr::default()
    };
    let Some(head) = segment(first) else {
        plain.write(frame);
        frame.extend_from_slice(first);
        return 1;
    };
    let mss = head.len;
    let mut taken = 1;
    let (mut prev, mut p) = (first, head);
    let mut total = first.len();
    while p.flags & PSH == 0 && p.len == mss {
        let Some(next) = packets.get(taken) else {
            break;
        };
        let Some(n) = segment(next).filter(|&n| n.len <= mss && follows(prev, p, next, n)) else {
            break;
        };
        if total + n.len > MAX_PACKET {
            break;
        }
        total += n.len;
        taken += 1;
        (prev, p) = (next, n);
    }
    if taken == 1 {
        plain.write(frame);
        frame.extend_from_slice(first);
        return 1;
    }
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: head.hl as u16,
        gso_size: mss as u16,
        csum_start: head.ihl as u16,
        csum_offset: TCP_CSUM as u16,
    }
    .write(frame);
    let ip_at = frame.len();
    frame.extend_from_slice(first);
    for next in &packets[1..taken] {
        frame.extend_from_slice(&next[head.hl..]);
    }
    let ip = &mut frame[ip_at..];
    set_u16(ip, 2, total as u16);
    ip_checksum(ip, head.ihl);
    // The last segment's PSH stands for the frame.
    ip[head.ihl + 13] |= p.flags & PSH;
    // A partial checksum: the pseudo-header's sum, which the kernel
    // completes (or trusts) per segment.
    let tcp_len = (total - head.ihl) as u16;
    let pseudo = fold(pseudo_header(ip, PROTO_TCP, tcp_len));
    set_u16(ip, head.ihl + TCP_CSUM, pseudo);
    taken
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Fills in the IPv4 header checksum.
fn ip_checksum(ip: &mut [u8], ihl: usize) {
    set_u16(ip, 10, 0);
    let c = !fold(sum(&ip[..ihl], 0));
    set_u16(ip, 10, c);
}

/// Fills in the TCP or UDP checksum (field at `field` within the
/// transport header) over the pseudo-header and the whole segment.
fn transport_checksum(ip: &mut [u8], ihl: usize, field: usize) {
    set_u16(ip, ihl + field, 0);
    let len = (ip.len() - ihl) as u16;
    let mut c = !fold(sum(&ip[ihl..], pseudo_header(ip, ip[9], len)));
    // UDP sends a computed 0 as all ones (0 means "no checksum").
    if c == 0 && ip[9] == PROTO_UDP {
        c = 0xffff;
    }
    set_u16(ip, ihl + field, c);
}

/// The IPv4 pseudo-header's sum for a transport segment of `len` bytes.
fn pseudo_header(ip: &[u8], protocol: u8, len: u16) -> u64 {
    sum(&ip[12..20], u64::from(protocol) + u64::from(len))
}

/// Adds `data` as big-endian 16-bit words (a trailing odd byte padded with
/// zero) to `acc`, four bytes at a time, carries deferred to [`fold`].
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds a sum of words into the 16-bit ones' complement sum.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook Internet checksum: 16-bit words, end-around carry.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            s += u32::from(word);
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// Whether `ip`'s IPv4 header and TCP/UDP checksums verify, by
    /// [`reference`].
    fn checksums_verify(ip: &[u8]) -> bool {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, ip[9]]);
        pseudo.extend_from_slice(&((ip.len() - ihl) as u16).to_be_bytes());
        pseudo.extend_from_slice(&ip[ihl..]);
        reference(&ip[..ihl]) == 0 && reference(&pseudo) == 0
    }

    /// A small deterministic generator for sizes and contents.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// An IPv4 TCP packet with timestamps-sized options, `flags` and
    /// `payload`; checksums left as `csum` (zero, or a partial sum).
    fn tcp_packet(id: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0, 100, 64, 0, 1, 100, 64, 0, 2,
        ];
        set_u16(&mut p, 4, id);
        p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&77u32.to_be_bytes());
        p.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        p.extend_from_slice(payload);
        let len = p.len() as u16;
        set_u16(&mut p, 2, len);
        p
    }

    fn with_header(hdr: VnetHdr, ip: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        hdr.write(&mut f);
        f.extend_from_slice(ip);
        f
    }

    fn payload(rng: &mut Lcg, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.next() as u8).collect()
    }

    #[test]
    fn checksums_match_the_reference_at_every_length() {
        let mut rng = Lcg(7);
        for len in 0..300 {
            let data = payload(&mut rng, len);
            assert_eq!(!fold(sum(&data, 0)), reference(&data), "length {len}");
        }
    }

    #[test]
    fn a_superframe_splits_into_valid_segments_carrying_its_bytes() {
        let mut rng = Lcg(42);
        for _ in 0..200 {
            let mss = 1 + rng.below(1400);
            let len = 1 + rng.below(65_535 - 52);
            let data = payload(&mut rng, len);
            let seq = rng.next() as u32;
            let id = rng.next() as u16;
            let mut ip = tcp_packet(id, seq, 0x10 | PSH | FIN | CWR, &data);
            // The kernel leaves the pseudo-header sum in the field.
            let pseudo = fold(pseudo_header(&ip, PROTO_TCP, (ip.len() - 20) as u16));
            set_u16(&mut ip, 36, pseudo);
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 52,
                gso_size: mss as u16,
                csum_start: 20,
                csum_offset: 16,
            };
            let mut out = Vec::new();
            split(&with_header(hdr, &ip), &mut out).expect("splits");
            assert_eq!(out.len(), len.div_ceil(mss));
            let mut joined = Vec::new();
            for (i, s) in out.iter().enumerate() {
                assert!(checksums_verify(s), "segment {i} of {len} at mss {mss}");
                assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
                assert_eq!(u16::from_be_bytes([s[4], s[5]]), id.wrapping_add(i as u16));
                let got_seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
                assert_eq!(got_seq, seq.wrapping_add((i * mss) as u32));
                let last = i + 1 == out.len();
                assert_eq!(
                    s[33] & (PSH | FIN) != 0,
                    last,
                    "PSH and FIN on the last only"
                );
                assert_eq!(s[33] & CWR != 0, i == 0, "CWR on the first only");
                joined.extend_from_slice(&s[52..]);
            }
            assert_eq!(joined, data);
        }
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let mut rng = Lcg(3);
        let data = payload(&mut rng, 999);
        let mut ip = tcp_packet(1, 1, 0x10, &data);
        let pseudo = fold(pseudo_header(&ip, PROTO_TCP, (ip.len() - 20) as u16));
        set_u16(&mut ip, 36, pseudo);
        ip_checksum(&mut ip, 20);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut out = Vec::new();
        split(&with_header(hdr, &ip), &mut out).expect("splits");
        assert_eq!(out.len(), 1);
        assert!(checksums_verify(&out[0]));
        let bad = VnetHdr {
            csum_start: 2000,
            ..hdr
        };
        assert_eq!(
            split(&with_header(bad, &ip), &mut out),
            Err(OffloadError::BadChecksumPosition)
        );
    }

    #[test]
    fn a_udp_superframe_splits_into_valid_datagrams() {
        let mut rng = Lcg(9);
        let data = payload(&mut rng, 5000);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 9, 0x40, 0, 64, PROTO_UDP, 0, 0, 100, 64, 0, 1, 100, 64, 0, 2, 0x30,
            0x39, 0x00, 0x35, 0, 0, 0, 0,
        ];
        ip.extend_from_slice(&data);
        let hdr = VnetHdr {
            gso_type: GSO_UDP_L4,
            gso_size: 1200,
            ..VnetHdr::default()
        };
        let mut out = Vec::new();
        split(&with_header(hdr, &ip), &mut out).expect("splits");
        assert_eq!(out.len(), 5);
        for (i, d) in out.iter().enumerate() {
            assert!(checksums_verify(d), "datagram {i}");
            assert_eq!(
                usize::from(u16::from_be_bytes([d[24], d[25]])),
                d.len() - 20
            );
            assert_eq!(&d[28..], &data[i * 1200..(i * 1200 + 1200).min(5000)]);
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut out = Vec::new();
        assert_eq!(split(&[0; 4], &mut out), Err(OffloadError::Short));
        let tso = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 100,
            ..VnetHdr::default()
        };
        let mut v6 = vec![0x60; 60];
        v6[9] = PROTO_TCP;
        assert_eq!(
            split(&with_header(tso, &v6), &mut out),
            Err(OffloadError::NotIpv4)
        );
        let ip = tcp_packet(1, 1, 0x10, &[1; 500]);
        assert_eq!(
            split(&with_header(tso, &ip[..30]), &mut out),
            Err(OffloadError::Short)
        );
        let zero = VnetHdr { gso_size: 0, ..tso };
        assert_eq!(
            split(&with_header(zero, &ip), &mut out),
            Err(OffloadError::ZeroSegment)
        );
        let tcpv6 = VnetHdr { gso_type: 4, ..tso };
        assert_eq!(
            split(&with_header(tcpv6, &ip), &mut out),
            Err(OffloadError::UnsupportedGso(4))
        );
        assert!(out.is_empty());
    }

    /// Segments as a peer's kernel sends them: checksummed, consecutive.
    fn flow(rng: &mut Lcg, seq: u32, sizes: &[usize], last_flags: u8) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut packets = Vec::new();
        let mut all = Vec::new();
        let mut at = seq;
        for (i, &len) in sizes.iter().enumerate() {
            let data = payload(rng, len);
            let flags = if i + 1 == sizes.len() {
                last_flags
            } else {
                0x10
            };
            let mut p = tcp_packet(i as u16, at, flags, &data);
            ip_checksum(&mut p, 20);
            transport_checksum(&mut p, 20, TCP_CSUM);
            at = at.wrapping_add(len as u32);
            all.extend_from_slice(&data);
            packets.push(p);
        }
        (packets, all)
    }

    #[test]
    fn in_order_segments_coalesce_into_a_superframe_that_splits_back() {
        let mut rng = Lcg(11);
        for _ in 0..100 {
            let mss = 500 + rng.below(900);
            let n = 2 + rng.below(40);
            let mut sizes = vec![mss; n];
            sizes[n - 1] = 1 + rng.below(mss);
            let seq = rng.next() as u32;
            let (packets, data) = flow(&mut rng, seq, &sizes, 0x10 | PSH);
            let mut frame = Vec::new();
            assert_eq!(coalesce(&packets, &mut frame), n);
            let hdr = VnetHdr::parse(&frame).expect("header");
            assert_eq!((hdr.gso_type, usize::from(hdr.gso_size)), (GSO_TCPV4, mss));
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            let ip = &frame[VNET_HDR_LEN..];
            assert_eq!(reference(&ip[..20]), 0, "IP header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
            assert_eq!(&ip[52..], &data[..]);
            // The partial checksum is the pseudo-header's: completed over
            // the whole frame it verifies.
            let mut whole = ip.to_vec();
            complete_checksum(&mut whole, 20, TCP_CSUM).expect("in range");
            assert!(checksums_verify(&whole));
            // What the kernel would make of it: the original segments.
            let mut back = Vec::new();
            split(&frame, &mut back).expect("splits");
            assert_eq!(back.len(), n);
            for (b, p) in back.iter().zip(&packets) {
                assert!(checksums_verify(b));
                assert_eq!(&b[24..28], &p[24..28], "sequence numbers");
                assert_eq!(&b[52..], &p[52..]);
            }
        }
    }

    #[test]
    fn what_cannot_join_a_run_ends_it() {
        let mut rng = Lcg(5);
        let (packets, _) = flow(&mut rng, 1000, &[1000, 1000, 1000], 0x10);
        let mut frame = Vec::new();
        // A gap in the sequence.
        let mut gap = packets.clone();
        gap.remove(1);
        assert_eq!(coalesce(&gap, &mut frame), 1);
        // Another flow (a different port).
        let mut other = packets.clone();
        other[1][21] ^= 1;
        assert_eq!(coalesce(&other, &mut frame), 1);
        // A longer segment after the first.
        let (longer, _) = flow(&mut rng, 1000, &[1000, 1200], 0x10);
        assert_eq!(coalesce(&longer, &mut frame), 1);
        // Nothing follows a short segment or a PSH.
        let (short, _) = flow(&mut rng, 1000, &[1000, 500, 500], 0x10);
        assert_eq!(coalesce(&short, &mut frame), 2);
        let (pushed, _) = flow(&mut rng, 1000, &[1000, 1000], 0x10 | PSH);
        assert_eq!(coalesce(&pushed, &mut frame), 2);
        assert_eq!(coalesce(&pushed[1..], &mut frame), 1);
        // A SYN, a UDP datagram or garbage goes alone with a plain header.
        let mut syn = packets.clone();
        syn[0][33] |= SYN;
        assert_eq!(coalesce(&syn, &mut frame), 1);
        assert_eq!(VnetHdr::parse(&frame).map(|h| h.gso_type), Some(GSO_NONE));
        assert_eq!(&frame[VNET_HDR_LEN..], &syn[0][..]);
        assert_eq!(coalesce(&[vec![1, 2, 3]], &mut frame), 1);
        assert_eq!(&frame[VNET_HDR_LEN..], &[1, 2, 3]);
        assert_eq!(coalesce(&[], &mut frame), 0);
        // The whole run otherwise.
        assert_eq!(coalesce(&packets, &mut frame), 3);
    }

    #[test]
    fn a_superframe_stays_within_an_ip_packet() {
        let mut rng = Lcg(13);
        let (packets, _) = flow(&mut rng, 0, &[1400; 60], 0x10);
        let mut frame = Vec::new();
        let n = coalesce(&packets, &mut frame);
        assert_eq!(n, (65_535 - 52) / 1400);
        assert!(frame.len() - VNET_HDR_LEN <= 65_535);
    }
}
