//! The flow log: what the data plane's firewall let through or dropped, as
//! the flow events of the account's network traffic log.
//!
//! The engine hands every packet crossing the tunnel, with the firewall's
//! verdict, to [`FlowLog::packet`]. A [`FlowTable`] (plain data, time passed
//! in) follows each flow by the firewall's own flow key and records:
//!
//! - a start event when the first packet of a new flow is accepted;
//! - a drop event when the firewall drops a flow's packet (once per flow
//!   until it has been quiet for [`DROP_QUIET`], so retries do not flood
//!   the log);
//! - an end event, with the packets and bytes counted each way, when a TCP
//!   flow closes (FIN both ways, or RST) or a flow has been idle for its
//!   protocol's firewall timeout ([`FlowLog::sweep`], on the engine's timer).
//!
//! Events wait in a buffer of at most [`BUFFER`]; beyond it the oldest are
//! discarded and counted, and the count goes with the next report.
//! Reporting them is the management side's job
//! (`crate::mgmt::flow_report`): the engine only records.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use meshplane_core::firewall::{FlowKey, Packet, Transport};
use meshplane_core::netmap::firewall::Direction;
use rand_core::OsRng;

/// Most events waiting to be reported.
pub const BUFFER: usize = 8192;
/// Most flows followed at once (as many as the firewall tracks); a flow
/// beyond it is not logged.
pub const MAX_TRACKED: usize = meshplane_core::firewall::MAX_FLOWS;
/// How long a dropped flow must stay quiet before its next drop is
/// reported again, and how long a closed TCP flow's stragglers are
/// absorbed without starting a new flow.
pub const DROP_QUIET: i64 = 60_000;
const CLOSED_LINGER: i64 = 10_000;

/// What happened to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    End,
    Drop,
}

/// One flow event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub flow_id: String,
    pub kind: Kind,
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: i64,
    /// IP protocol number.
    pub protocol: u8,
    /// How the flow's first packet crossed the tunnel.
    pub direction: Direction,
    /// The flow's initiator and responder (ports 0 without TCP or UDP).
    pub source: (Ipv4Addr, u16),
    pub destination: (Ipv4Addr, u16),
    /// Packets and bytes this peer received and sent (end events).
    pub rx: (u64, u64),
    pub tx: (u64, u64),
    /// ICMP type and code of the first packet (ICMP flows).
    pub icmp: (u8, u8),
}

/// Where a followed flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Ended by FIN/RST; late packets are absorbed.
    Closed,
    /// Its packets are being dropped; the drop was reported.
    Dropped,
}

/// A flow being followed.
#[derive(Debug, Clone)]
struct Tracked {
    state: State,
    /// Everything an event of this flow repeats (kind and time aside).
    template: Event,
    last_ms: i64,
    fin_in: bool,
    fin_out: bool,
}

/// The flows and the events waiting to be reported (no I/O, no clock).
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Tracked>,
    events: VecDeque<Event>,
    /// Events discarded because the buffer was full, since the last
    /// [`FlowTable::take`].
    lost: u64,
}

/// What [`FlowTable::take`] hands out: events and the loss before them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub events: Vec<Event>,
    pub lost: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.lost == 0
    }
}

impl FlowTable {
    /// One packet (`ip`, summarised as `packet` for the firewall) that the
    /// firewall `accepted` or dropped at `now_ms` (wall clock).
    pub fn packet(&mut self, ip: &[u8], packet: &Packet, accepted: bool, now_ms: i64) {
        let key = packet.flow();
        let inbound = packet.direction == Direction::In;
        let details = crate::engine::packet::details(ip).unwrap_or_default();
        let size = ip.len() as u64;
        let state = self.flows.get(&key).map(|t| t.state);
        match (accepted, state) {
            (true, Some(State::Open | State::Closed)) | (false, Some(State::Dropped)) => {}
            (true, _) => self.open(key, ip, packet, State::Open, now_ms),
            (false, Some(State::Open)) => {
                self.end(&key, now_ms);
                self.open(key, ip, packet, State::Dropped, now_ms);
            }
            (false, _) => self.open(key, ip, packet, State::Dropped, now_ms),
        }
        let Some(t) = self.flows.get_mut(&key) else {
            return;
        };
        t.last_ms = now_ms;
        if t.state != State::Open {
            return;
        }
        let counter = if inbound {
            &mut t.template.rx
        } else {
            &mut t.template.tx
        };
        counter.0 += 1;
        counter.1 += size;
        if details.fin {
            if inbound {
                t.fin_in = true;
            } else {
                t.fin_out = true;
            }
        }
        if details.rst || (t.fin_in && t.fin_out) {
            self.end(&key, now_ms);
        }
    }

    /// Ends flows idle past their protocol's timeout and forgets closed
    /// and dropped ones that have been quiet long enough.
    pub fn sweep(&mut self, now_ms: i64) {
        let idle: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, t)| {
                let quiet = now_ms - t.last_ms;
                match t.state {
                    State::Open => quiet > k.transport.idle_timeout().as_millis(),
                    State::Closed => quiet > CLOSED_LINGER,
                    State::Dropped => quiet > DROP_QUIET,
                }
            })
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            if self.flows.get(&key).is_some_and(|t| t.state == State::Open) {
                self.end(&key, now_ms);
            }
            self.flows.remove(&key);
        }
    }

    /// Up to `max` of the oldest events, and the loss count (reset).
    pub fn take(&mut self, max: usize) -> Batch {
        let n = self.events.len().min(max);
        Batch {
            events: self.events.drain(..n).collect(),
            lost: std::mem::take(&mut self.lost),
        }
    }

    /// Puts a batch that could not be delivered back in front of the
    /// buffer, discarding (and counting) what no longer fits.
    pub fn restore(&mut self, batch: Batch) {
        self.lost += batch.lost;
        for event in batch.events.into_iter().rev() {
            if self.events.len() >= BUFFER {
                self.lost += 1;
            } else {
                self.events.push_front(event);
            }
        }
    }

    /// How many flows are followed.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Starts following a flow in `state` and records its start or drop.
    fn open(&mut self, key: FlowKey, ip: &[u8], packet: &Packet, state: State, now_ms: i64) {
        if self.flows.len() >= MAX_TRACKED && !self.flows.contains_key(&key) {
            return;
        }
        let Some(template) = template(ip, packet) else {
            return;
        };
        let kind = if state == State::Open {
            Kind::Start
        } else {
            Kind::Drop
        };
        self.record(&template, kind, now_ms);
        self.flows.insert(
            key,
            Tracked {
                state,
                template,
                last_ms: now_ms,
                fin_in: false,
                fin_out: false,
            },
        );
    }

    /// Records the end of an open flow, with its counts; it lingers closed.
    fn end(&mut self, key: &FlowKey, now_ms: i64) {
        let Some(t) = self.flows.get_mut(key) else {
            return;
        };
        t.state = State::Closed;
        let template = t.template.clone();
        self.record(&template, Kind::End, now_ms);
    }

    fn record(&mut self, template: &Event, kind: Kind, now_ms: i64) {
        if self.events.len() >= BUFFER {
            self.events.pop_front();
            self.lost += 1;
        }
        let counted = kind == Kind::End;
        self.events.push_back(Event {
            id: uuid(),
            kind,
            at_ms: now_ms,
            rx: if counted { template.rx } else { (0, 0) },
            tx: if counted { template.tx } else { (0, 0) },
            ..template.clone()
        });
    }
}

/// The parts of a new flow's events that its first packet decides.
fn template(ip: &[u8], packet: &Packet) -> Option<Event> {
    let (src, dst) = crate::engine::packet::addresses(ip)?;
    let details = crate::engine::packet::details(ip)?;
    let ported = matches!(packet.transport, Transport::Tcp | Transport::Udp);
    let port = |p: u16| if ported { p } else { 0 };
    Some(Event {
        id: String::new(),
        flow_id: uuid(),
        kind: Kind::Start,
        at_ms: 0,
        protocol: details.protocol,
        direction: packet.direction,
        source: (src, port(packet.src_port)),
        destination: (dst, port(packet.dst_port)),
        rx: (0, 0),
        tx: (0, 0),
        icmp: details.icmp,
    })
}

/// A random (version 4) UUID, lower case (a setup key is the same in
/// upper case).
fn uuid() -> String {
    meshplane_core::keys::generate_setup_key(&mut OsRng).to_ascii_lowercase()
}

/// The engine's handle on its flow table, shared with the reporter.
#[derive(Debug, Clone, Default)]
pub struct FlowLog(Arc<Mutex<FlowTable>>);

impl FlowLog {
    fn table(&self) -> MutexGuard<'_, FlowTable> {
        // Plain data: a panic elsewhere leaves it usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`FlowTable::packet`].
    pub fn packet(&self, ip: &[u8], packet: &Packet, accepted: bool, now_ms: i64) {
        self.table().packet(ip, packet, accepted, now_ms);
    }

    /// See [`FlowTable::sweep`].
    pub fn sweep(&self, now_ms: i64) {
        self.table().sweep(now_ms);
    }

    pub fn take(&self, max: usize) -> Batch {
        self.table().take(max)
    }

    pub fn restore(&self, batch: Batch) {
        self.table().restore(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report's size, as the reporter takes them.
    const BATCH: usize = 1000;

    const A: [u8; 4] = [100, 64, 0, 1];
    const B: [u8; 4] = [100, 64, 0, 2];

    /// A TCP packet from `src`:`sp` to `dst`:`dp` with `flags`.
    fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, flags: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sp.to_be_bytes());
        p.extend_from_slice(&dp.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0x50, flags]);
        p.extend_from_slice(&[0; 6]);
        p
    }

    /// Feeds `ip` crossing in `direction` with the verdict `accepted`.
    fn feed(t: &mut FlowTable, ip: &[u8], direction: Direction, accepted: bool, at: i64) {
        let summary = crate::engine::packet::summary(ip, direction).unwrap();
        t.packet(ip, &summary, accepted, at);
    }

    fn kinds(batch: &Batch) -> Vec<Kind> {
        batch.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_tcp_flow_starts_counts_and_ends_on_fin_both_ways() {
        let mut t = FlowTable::default();
        let syn = tcp(A, 40000, B, 80, 0x02);
        feed(&mut t, &syn, Direction::Out, true, 1_000);
        feed(
            &mut t,
            &tcp(B, 80, A, 40000, 0x12),
            Direction::In,
            true,
            1_001,
        );
        feed(
            &mut t,
            &tcp(A, 40000, B, 80, 0x11),
            Direction::Out,
            true,
            1_002,
        );
        assert_eq!(kinds(&t.take(BATCH)), [Kind::Start]);
        feed(
            &mut t,
            &tcp(B, 80, A, 40000, 0x11),
            Direction::In,
            true,
            1_003,
        );
        let batch = t.take(BATCH);
        assert_eq!(kinds(&batch), [Kind::End]);
        let end = &batch.events[0];
        assert_eq!((end.rx, end.tx), ((2, 80), (2, 80)));
        assert_eq!(end.direction, Direction::Out);
        assert_eq!(end.source, (Ipv4Addr::from(A), 40000));
        assert_eq!(end.destination, (Ipv4Addr::from(B), 80));
        assert_eq!((end.protocol, end.at_ms), (6, 1_003));
        // The last ACK is absorbed, not a new flow.
        feed(
            &mut t,
            &tcp(A, 40000, B, 80, 0x10),
            Direction::Out,
            true,
            1_004,
        );
        assert!(t.take(BATCH).is_empty());
        t.sweep(1_004 + CLOSED_LINGER + 1);
        assert_eq!(t.flow_count(), 0);
    }

    #[test]
    fn idle_flows_end_at_the_firewall_timeout() {
        let mut t = FlowTable::default();
        feed(&mut t, &tcp(B, 5000, A, 22, 0x02), Direction::In, true, 0);
        let start = t.take(BATCH).events.remove(0);
        assert_eq!(start.direction, Direction::In);
        let timeout = Transport::Tcp.idle_timeout().as_millis();
        t.sweep(timeout);
        assert!(t.take(BATCH).is_empty());
        t.sweep(timeout + 1);
        let end = t.take(BATCH).events.remove(0);
        assert_eq!((end.kind, end.flow_id), (Kind::End, start.flow_id));
        assert_eq!(end.rx, (1, 40));
        assert_eq!(t.flow_count(), 0);
    }

    #[test]
    fn drops_are_reported_once_per_quiet_period() {
        let mut t = FlowTable::default();
        let syn = tcp(A, 40000, B, 22, 0x02);
        feed(&mut t, &syn, Direction::Out, false, 0);
        feed(&mut t, &syn, Direction::Out, false, 1_000);
        let batch = t.take(BATCH);
        assert_eq!(kinds(&batch), [Kind::Drop]);
        assert_eq!(batch.events[0].rx, (0, 0));
        t.sweep(1_000 + DROP_QUIET + 1);
        feed(&mut t, &syn, Direction::Out, false, 1_000 + DROP_QUIET + 2);
        assert_eq!(kinds(&t.take(BATCH)), [Kind::Drop]);
        // A policy change that lets it through starts a flow; revoking it
        // again ends that flow and drops the next packet.
        feed(&mut t, &syn, Direction::Out, true, 100_000);
        feed(&mut t, &syn, Direction::Out, false, 100_001);
        assert_eq!(kinds(&t.take(BATCH)), [Kind::Start, Kind::End, Kind::Drop]);
    }

    #[test]
    fn the_buffer_drops_the_oldest_and_counts_them() {
        let mut t = FlowTable::default();
        for port in 0..u16::try_from(BUFFER + 5).unwrap() {
            feed(&mut t, &tcp(A, port, B, 80, 0x02), Direction::Out, true, 0);
        }
        let batch = t.take(BATCH);
        assert_eq!((batch.events.len(), batch.lost), (BATCH, 5));
        assert_eq!(batch.events[0].source.1, 5);
        assert_eq!(t.take(0).lost, 0);
        t.restore(batch.clone());
        let again = t.take(BATCH);
        assert_eq!(again, batch);
    }

    #[test]
    fn icmp_flows_carry_type_and_code_and_no_ports() {
        let mut t = FlowTable::default();
        let mut echo = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0];
        echo.extend_from_slice(&A);
        echo.extend_from_slice(&B);
        echo.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        feed(&mut t, &echo, Direction::Out, true, 0);
        let start = t.take(BATCH).events.remove(0);
        assert_eq!((start.protocol, start.icmp), (1, (8, 0)));
        assert_eq!((start.source.1, start.destination.1), (0, 0));
        assert_ne!(start.id, start.flow_id);
        assert_eq!(start.flow_id.len(), 36);
        assert_eq!(&start.flow_id[14..15], "4");
    }
}
