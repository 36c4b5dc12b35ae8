//! Admission of PIN and password attempts: limits on guessing a 6-digit
//! PIN, and on the memory the argon2id checks cost (about 19 MiB each).
//!
//! An attempt is counted when it is admitted, before its secret is hashed,
//! under one lock: however many requests arrive at once, no more than the
//! limits are ever checked. A success gives its count back (a visitor who
//! knows the secret is not guessing). Hashes run only with a permit from a
//! semaphore sized to the machine; an attempt that finds none is refused at
//! once rather than queued, so a burst costs neither memory nor a backlog.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Attempts allowed per client address and service in one window.
pub(crate) const MAX_ATTEMPTS: u32 = 10;
/// Attempts allowed per service from all addresses together in one window,
/// so that many addresses cannot share the guessing between them.
pub(crate) const MAX_SERVICE_ATTEMPTS: u32 = 100;
/// The window attempts are counted in.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Attempts of one client address on one service checked at the same time.
pub(crate) const MAX_IN_FLIGHT: u32 = 2;
/// Attempts on one service checked at the same time, so one service under
/// attack leaves hash permits for the others.
pub(crate) const MAX_SERVICE_IN_FLIGHT: u32 = 8;
/// Upper bound of concurrent hashes whatever the core count: 16 × 19 MiB
/// keeps the hashes' memory near 300 MiB even on a large machine.
const MAX_HASH_PERMITS: usize = 16;
/// What `Retry-After` says when an attempt is refused for being one too
/// many at the same time (not for using up the window).
const BUSY_RETRY_SECS: u64 = 1;
/// Entries kept before expired ones are swept, so a flood of addresses
/// cannot grow the table without bound between sweeps.
const SWEEP_AT: usize = 4096;

/// Why an attempt was not admitted; either way its secret is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The window's attempts are used up, for this address or the service.
    #[error("Too many failed attempts. Try again in {0} seconds.")]
    Exhausted(u64),
    /// Too many attempts are being checked right now.
    #[error("Too many attempts at once. Try again in a moment.")]
    Busy,
}

impl Refusal {
    /// Seconds the client should wait (`Retry-After`).
    pub fn retry_after(self) -> u64 {
        match self {
            Refusal::Exhausted(secs) => secs,
            Refusal::Busy => BUSY_RETRY_SECS,
        }
    }
}

/// A client address on a service, or (`None`) the service as a whole.
type Key = (Option<IpAddr>, String);

#[derive(Debug, Clone, Copy)]
struct Counter {
    started: Instant,
    attempts: u32,
    in_flight: u32,
}

impl Counter {
    /// The attempts counted in the window that holds `now`.
    fn attempts_at(&self, now: Instant) -> u32 {
        if now < self.started + WINDOW {
            self.attempts
        } else {
            0
        }
    }

    /// Seconds until the window ends, at least one.
    fn wait_at(&self, now: Instant) -> u64 {
        (self.started + WINDOW)
            .saturating_duration_since(now)
            .as_secs()
            .max(1)
    }
}

type Counters = Arc<Mutex<HashMap<Key, Counter>>>;

fn lock(counters: &Counters) -> MutexGuard<'_, HashMap<Key, Counter>> {
    counters.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts attempts per (client address, service domain) and per service
/// domain alone in fixed windows, with the attempts in flight, and holds
/// the hash permits.
#[derive(Debug)]
pub(crate) struct AttemptLimiter {
    counters: Counters,
    hashes: Arc<Semaphore>,
}

impl AttemptLimiter {
    /// A limiter allowing `hash_permits` argon2 checks at the same time.
    pub fn new(hash_permits: usize) -> Self {
        Self {
            counters: Counters::default(),
            hashes: Arc::new(Semaphore::new(hash_permits)),
        }
    }

    /// One hash permit per core (up to [`MAX_HASH_PERMITS`]): more
    /// concurrent hashes would only wait for a core while holding their
    /// memory.
    pub fn hash_permits_for_this_machine() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        cores.min(MAX_HASH_PERMITS)
    }

    /// Admits one attempt by `ip` on `domain` at `now`: takes a hash permit
    /// and counts the attempt, or refuses it without counting anything.
    pub fn admit(&self, ip: IpAddr, domain: &str, now: Instant) -> Result<Admitted, Refusal> {
        let permit = Arc::clone(&self.hashes)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        let client_key = (Some(ip), domain.to_owned());
        let service_key = (None, domain.to_owned());
        let mut counters = lock(&self.counters);
        if counters.len() >= SWEEP_AT {
            counters.retain(|_, c| c.in_flight > 0 || c.attempts_at(now) > 0);
        }
        let client = counters.get(&client_key).copied();
        let service = counters.get(&service_key).copied();
        let exhausted = |counter: Option<Counter>, max: u32| {
            counter
                .filter(|c| c.attempts_at(now) >= max)
                .map(|c| c.wait_at(now))
        };
        let wait = exhausted(client, MAX_ATTEMPTS).max(exhausted(service, MAX_SERVICE_ATTEMPTS));
        if let Some(wait) = wait {
            return Err(Refusal::Exhausted(wait));
        }
        let in_flight = |counter: Option<Counter>| counter.map_or(0, |c| c.in_flight);
        if in_flight(client) >= MAX_IN_FLIGHT || in_flight(service) >= MAX_SERVICE_IN_FLIGHT {
            return Err(Refusal::Busy);
        }
        let mut started = [now; 2];
        for (key, started) in [client_key, service_key].into_iter().zip(&mut started) {
            let counter = counters.entry(key).or_insert(Counter {
                started: now,
                attempts: 0,
                in_flight: 0,
            });
            if counter.attempts_at(now) == 0 {
                counter.started = now;
                counter.attempts = 0;
            }
            counter.attempts += 1;
            counter.in_flight += 1;
            *started = counter.started;
        }
        Ok(Admitted {
            counters: Arc::clone(&self.counters),
            ip,
            domain: domain.to_owned(),
            started,
            _permit: permit,
        })
    }
}

/// An admitted attempt: counted, holding a hash permit and a place among
/// the attempts in flight until dropped (when its check is over).
#[derive(Debug)]
pub(crate) struct Admitted {
    counters: Counters,
    ip: IpAddr,
    domain: String,
    /// When the windows it was counted in started (client, service).
    started: [Instant; 2],
    _permit: OwnedSemaphorePermit,
}

impl Admitted {
    fn keys(&self) -> [Key; 2] {
        [
            (Some(self.ip), self.domain.clone()),
            (None, self.domain.clone()),
        ]
    }

    /// Takes back the count of an attempt that succeeded, if its windows
    /// are still the current ones.
    pub fn give_back(self) {
        let mut counters = lock(&self.counters);
        for (key, started) in self.keys().iter().zip(self.started) {
            if let Some(counter) = counters.get_mut(key) {
                if counter.started == started {
                    counter.attempts = counter.attempts.saturating_sub(1);
                }
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counters = lock(&self.counters);
        for key in self.keys() {
            if let Some(counter) = counters.get_mut(&key) {
                counter.in_flight = counter.in_flight.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Barrier;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0xc633_0000 + i))
    }

    #[test]
    fn counts_each_attempt_when_admitted_until_the_window_ends() {
        let limiter = AttemptLimiter::new(4);
        let t0 = Instant::now();
        for _ in 0..MAX_ATTEMPTS {
            drop(limiter.admit(ip(1), "a", t0).unwrap());
        }
        assert_eq!(
            limiter.admit(ip(1), "a", t0).unwrap_err(),
            Refusal::Exhausted(60)
        );
        assert_eq!(
            limiter
                .admit(ip(1), "a", t0 + Duration::from_secs(45))
                .unwrap_err(),
            Refusal::Exhausted(15)
        );
        assert!(limiter.admit(ip(1), "b", t0).is_ok());
        assert!(limiter.admit(ip(2), "a", t0).is_ok());
        assert!(limiter.admit(ip(1), "a", t0 + WINDOW).is_ok());
    }

    #[test]
    fn a_success_gives_its_count_back() {
        let limiter = AttemptLimiter::new(4);
        let t0 = Instant::now();
        for _ in 0..MAX_ATTEMPTS * 3 {
            limiter.admit(ip(1), "a", t0).unwrap().give_back();
        }
        for _ in 0..MAX_ATTEMPTS {
            drop(limiter.admit(ip(1), "a", t0).unwrap());
        }
        assert!(limiter.admit(ip(1), "a", t0).is_err());
        // A give-back from an earlier window leaves the new one alone.
        let old = limiter.admit(ip(2), "a", t0).unwrap();
        for _ in 0..MAX_ATTEMPTS - 1 {
            drop(limiter.admit(ip(2), "a", t0 + WINDOW).unwrap());
        }
        old.give_back();
        drop(limiter.admit(ip(2), "a", t0 + WINDOW).unwrap());
        assert!(limiter.admit(ip(2), "a", t0 + WINDOW).is_err());
    }

    #[test]
    fn caps_attempts_in_flight_per_address_and_service() {
        let limiter = AttemptLimiter::new(64);
        let t0 = Instant::now();
        let held: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| limiter.admit(ip(1), "a", t0).unwrap())
            .collect();
        assert_eq!(limiter.admit(ip(1), "a", t0).unwrap_err(), Refusal::Busy);
        drop(held);
        let held: Vec<_> = (0..MAX_SERVICE_IN_FLIGHT)
            .map(|i| limiter.admit(ip(10 + i), "a", t0).unwrap())
            .collect();
        assert_eq!(limiter.admit(ip(99), "a", t0).unwrap_err(), Refusal::Busy);
        assert!(limiter.admit(ip(99), "b", t0).is_ok());
        drop(held);
        // Refusals for busyness were not counted: 2 + 8 attempts so far.
        assert!(limiter.admit(ip(99), "a", t0).is_ok());
    }

    #[test]
    fn without_a_hash_permit_an_attempt_is_refused_at_once_and_not_counted() {
        let limiter = AttemptLimiter::new(1);
        let t0 = Instant::now();
        let held = limiter.admit(ip(1), "a", t0).unwrap();
        assert_eq!(limiter.admit(ip(2), "b", t0).unwrap_err(), Refusal::Busy);
        assert_eq!(Refusal::Busy.retry_after(), BUSY_RETRY_SECS);
        drop(held);
        for _ in 0..MAX_ATTEMPTS {
            drop(limiter.admit(ip(2), "b", t0).unwrap());
        }
        assert!(limiter.admit(ip(2), "b", t0).is_err());
    }

    /// `threads` threads, released together, each trying until refused for
    /// the window (retrying when only busy); how many attempts got in.
    fn burst(limiter: &AttemptLimiter, threads: u32, addresses: u32) -> u32 {
        let t0 = Instant::now();
        let admitted = AtomicU32::new(0);
        let start = Barrier::new(threads as usize);
        std::thread::scope(|s| {
            for i in 0..threads {
                let (admitted, start) = (&admitted, &start);
                s.spawn(move || {
                    start.wait();
                    loop {
                        match limiter.admit(ip(i % addresses), "a", t0) {
                            Ok(attempt) => {
                                admitted.fetch_add(1, Ordering::SeqCst);
                                std::thread::yield_now();
                                drop(attempt);
                            }
                            Err(Refusal::Busy) => std::thread::yield_now(),
                            Err(Refusal::Exhausted(_)) => return,
                        }
                    }
                });
            }
        });
        admitted.into_inner()
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_limits() {
        let limiter = AttemptLimiter::new(4);
        assert_eq!(burst(&limiter, 200, 1), MAX_ATTEMPTS);
        let limiter = AttemptLimiter::new(4);
        assert_eq!(burst(&limiter, 200, 50), MAX_SERVICE_ATTEMPTS);
    }

    #[test]
    fn the_table_is_swept_of_expired_entries() {
        let limiter = AttemptLimiter::new(4);
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            drop(limiter.admit(ip(i), &format!("s{i}"), t0).unwrap());
        }
        drop(limiter.admit(ip(0), "x", t0 + WINDOW).unwrap());
        assert_eq!(lock(&limiter.counters).len(), 2);
    }
}
