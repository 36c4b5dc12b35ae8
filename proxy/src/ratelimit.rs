//! Limits on failed login attempts, against guessing a 6-digit PIN.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed per client address and service in one window.
pub(crate) const MAX_FAILURES: u32 = 10;
/// Failed attempts allowed per service from all addresses together in one
/// window, so that many addresses cannot share the guessing between them.
pub(crate) const MAX_SERVICE_FAILURES: u32 = 100;
/// The window the failures are counted in.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before expired ones are swept, so a flood of addresses
/// cannot grow the table without bound between sweeps.
const SWEEP_AT: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed attempts per (client address, service domain), and per
/// service domain alone (the `None` address), in fixed one-minute windows;
/// at [`MAX_FAILURES`] (or [`MAX_SERVICE_FAILURES`]) further attempts are
/// refused until the window ends, without checking the secret at all.
#[derive(Debug, Default)]
pub(crate) struct FailureLimiter {
    windows: Mutex<HashMap<(Option<IpAddr>, String), Window>>,
}

impl FailureLimiter {
    /// `Err(seconds to wait)` when `ip` has used up its attempts on `domain`.
    pub fn check(&self, ip: IpAddr, domain: &str, now: Instant) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let blocked = |key: Option<IpAddr>, max: u32| match windows.get(&(key, domain.to_owned())) {
            Some(w) if w.failures >= max && now < w.started + WINDOW => {
                let left = (w.started + WINDOW).saturating_duration_since(now);
                Some(left.as_secs().max(1))
            }
            _ => None,
        };
        match blocked(Some(ip), MAX_FAILURES).or_else(|| blocked(None, MAX_SERVICE_FAILURES)) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records one failed attempt.
    pub fn fail(&self, ip: IpAddr, domain: &str, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| now < w.started + WINDOW);
        }
        for key in [Some(ip), None] {
            let w = windows.entry((key, domain.to_owned())).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now >= w.started + WINDOW {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// Forgets the failures of `ip` on `domain` after a success (the
    /// service-wide count stays: it limits guessers, not this visitor).
    pub fn succeed(&self, ip: IpAddr, domain: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.remove(&(Some(ip), domain.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_window_ends() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(ip, "a", t0).is_ok());
            limiter.fail(ip, "a", t0);
        }
        assert_eq!(limiter.check(ip, "a", t0), Err(60));
        assert!(limiter.check(ip, "b", t0).is_ok());
        assert!(limiter.check(ip, "a", t0 + WINDOW).is_ok());
        limiter.succeed(ip, "a");
        assert!(limiter.check(ip, "a", t0).is_ok());
    }

    #[test]
    fn many_addresses_share_one_service_budget() {
        let limiter = FailureLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_SERVICE_FAILURES {
            let ip = IpAddr::from([198, 51, (i / 256) as u8, (i % 256) as u8]);
            assert!(limiter.check(ip, "a", t0).is_ok());
            limiter.fail(ip, "a", t0);
        }
        let fresh: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(limiter.check(fresh, "a", t0), Err(60));
        assert!(limiter.check(fresh, "b", t0).is_ok());
        assert!(limiter.check(fresh, "a", t0 + WINDOW).is_ok());
    }
}
