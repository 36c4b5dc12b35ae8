//! The figures of a run: one line per phase and the summary line.

use std::fmt;
use std::time::{Duration, Instant};

use crate::server::ProcStats;

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub name: String,
    pub started: Instant,
    pub wall: Duration,
    /// Per peer: how long after the change (for the first two phases: after
    /// the phase began, or the login call's own time) it held the result.
    pub latencies: Vec<Duration>,
    /// Changes made in the phase (0 for register and open streams).
    pub changes: usize,
    /// Peers that had to receive the changes, summed over the changes.
    pub receivers: usize,
    /// Encoded sealed messages the peers received during the phase.
    pub bytes: u64,
    pub messages: u64,
    pub bytes_before: u64,
    pub messages_before: u64,
    pub server_before: Option<ProcStats>,
    pub server_after: Option<ProcStats>,
}

impl Default for PhaseReport {
    fn default() -> Self {
        PhaseReport {
            name: String::new(),
            started: Instant::now(),
            wall: Duration::ZERO,
            latencies: Vec::new(),
            changes: 0,
            receivers: 0,
            bytes: 0,
            messages: 0,
            bytes_before: 0,
            messages_before: 0,
            server_before: None,
            server_after: None,
        }
    }
}

impl PhaseReport {
    /// Median and maximum of the latencies.
    pub fn p50_max(&self) -> (Duration, Duration) {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        match sorted.last() {
            Some(max) => (sorted[(sorted.len() - 1) / 2], *max),
            None => (Duration::ZERO, Duration::ZERO),
        }
    }

    /// Bytes per change (the phase's total for a phase without changes).
    pub fn bytes_per_change(&self) -> u64 {
        self.bytes / self.changes.max(1) as u64
    }

    /// Server CPU seconds spent during the phase.
    pub fn server_cpu_secs(&self) -> Option<f64> {
        Some(self.server_after?.cpu_secs - self.server_before?.cpu_secs)
    }

    /// The server's CPU time in the phase as a share of one core's time,
    /// in percent.
    pub fn server_cpu_percent(&self) -> Option<f64> {
        Some(100.0 * self.server_cpu_secs()? / self.wall.as_secs_f64().max(1e-9))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

impl fmt::Display for PhaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p50, max) = self.p50_max();
        write!(
            f,
            "{:<13} wall {:>9} ms | converge p50 {:>8} ms, max {:>8} ms over {} peer results",
            self.name,
            ms(self.wall),
            ms(p50),
            ms(max),
            self.latencies.len()
        )?;
        if self.changes > 0 {
            let per_peer = self.bytes / self.receivers.max(1) as u64;
            write!(
                f,
                " | {} changes, {} bytes per change ({per_peer} per receiving peer), {} messages",
                self.changes,
                self.bytes_per_change(),
                self.messages
            )?;
        } else {
            write!(f, " | {} bytes in {} messages", self.bytes, self.messages)?;
        }
        match (
            self.server_cpu_secs(),
            self.server_cpu_percent(),
            self.server_after,
        ) {
            (Some(cpu), Some(percent), Some(after)) => write!(
                f,
                " | server CPU {cpu:.2} s ({percent:.1} % of a core), peak RSS {} MiB",
                mib(after.peak_rss_kib)
            ),
            _ => write!(f, " | server CPU n/a, peak RSS n/a"),
        }
    }
}

/// A whole run's figures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub phases: Vec<PhaseReport>,
    pub connections: usize,
    pub peak_rss_kib: Option<u64>,
}

impl Report {
    /// The phases that made changes (policy changes and joins).
    fn change_phases(&self) -> impl Iterator<Item = &PhaseReport> {
        self.phases.iter().filter(|p| p.changes > 0)
    }

    /// The slowest peer over every change, in milliseconds.
    pub fn max_ms_per_change(&self) -> f64 {
        self.change_phases()
            .map(|p| p.p50_max().1.as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    }

    /// Bytes received by all peers per change, over every change.
    pub fn bytes_per_change(&self) -> u64 {
        let changes: usize = self.change_phases().map(|p| p.changes).sum();
        let bytes: u64 = self.change_phases().map(|p| p.bytes).sum();
        bytes / changes.max(1) as u64
    }

    /// The last line: the slowest convergence, the bytes per change and
    /// the server's peak memory (a run that did not converge has no report).
    pub fn summary(&self) -> String {
        let rss = self.peak_rss_kib.map_or_else(|| "n/a".to_string(), mib);
        format!(
            "converged: max {:.0} ms per change, {} bytes per change, server peak RSS {rss} MiB",
            self.max_ms_per_change(),
            self.bytes_per_change()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for phase in &self.phases {
            writeln!(f, "{phase}")?;
        }
        writeln!(f, "HTTP/2 connections: {}", self.connections)?;
        write!(f, "{}", self.summary())
    }
}
