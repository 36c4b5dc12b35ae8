//! `meshplane ping`: ICMP echo requests sent by the daemon's userspace
//! stack (the host's own `ping` cannot reach the mesh without a TUN
//! interface), one control-socket request per echo, printed as `ping`
//! prints them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::control::{self, ControlError, Reply, Request};
use crate::engine::netstack::Echo;

/// Time between the starts of two echo requests, as `ping` waits.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum PingError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Daemon(String),
    #[error("the daemon sent an unexpected reply: {0}")]
    Unexpected(String),
    #[error("no reply from {0}")]
    NoReply(Ipv4Addr),
}

/// Sends `count` echo requests to `ip`, each waiting up to `wait`; fails
/// when none was answered.
pub fn run(socket: &Path, ip: Ipv4Addr, count: u16, wait: Duration) -> Result<(), PingError> {
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    let mut answered = Vec::new();
    for seq in 1..=count {
        let started = Instant::now();
        let reply = control::call(socket, &Request::Ping { ip, seq, wait_ms })?;
        if seq == 1 && matches!(reply, Reply::Ping(_)) {
            println!("PING {ip}: 56 data bytes");
        }
        match reply {
            Reply::Ping(Some(echo)) => {
                println!("{}", line(&echo));
                answered.push(echo.rtt_us);
            }
            Reply::Ping(None) => println!("no reply from {ip}: icmp_seq={seq}"),
            Reply::Error(message) => return Err(PingError::Daemon(message)),
            other => return Err(PingError::Unexpected(format!("{other:?}"))),
        }
        if seq < count {
            std::thread::sleep(INTERVAL.saturating_sub(started.elapsed()));
        }
    }
    print!("{}", summary(ip, count, &answered));
    if answered.is_empty() {
        return Err(PingError::NoReply(ip));
    }
    Ok(())
}

/// `-W`: seconds, fractions allowed, more than zero.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds above 0"))
}

fn millis(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn line(echo: &Echo) -> String {
    format!(
        "{} bytes from {}: icmp_seq={} time={:.3} ms",
        echo.bytes,
        echo.from,
        echo.seq,
        millis(echo.rtt_us)
    )
}

/// The closing statistics; `rtts` holds the answered requests' times.
fn summary(ip: Ipv4Addr, sent: u16, rtts: &[u64]) -> String {
    let mut out = format!("--- {ip} ping statistics ---\n");
    let received = rtts.len();
    let loss = 100 * (usize::from(sent) - received) / usize::from(sent).max(1);
    let _ = writeln!(
        out,
        "{sent} packets transmitted, {received} received, {loss}% packet loss"
    );
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<u64>() / received as u64;
        let _ = writeln!(
            out,
            "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            millis(*min),
            millis(avg),
            millis(*max)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_ping() {
        let echo = Echo {
            from: Ipv4Addr::new(100, 64, 0, 2),
            seq: 3,
            bytes: 64,
            rtt_us: 1_250,
        };
        assert_eq!(
            line(&echo),
            "64 bytes from 100.64.0.2: icmp_seq=3 time=1.250 ms"
        );
        assert_eq!(
            summary(echo.from, 4, &[1_000, 3_000]),
            "--- 100.64.0.2 ping statistics ---\n\
             4 packets transmitted, 2 received, 50% packet loss\n\
             rtt min/avg/max = 1.000/2.000/3.000 ms\n"
        );
        assert_eq!(
            summary(echo.from, 1, &[]),
            "--- 100.64.0.2 ping statistics ---\n\
             1 packets transmitted, 0 received, 100% packet loss\n"
        );
    }
}
