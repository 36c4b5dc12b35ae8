//! Exponential backoff with jitter for retry loops: the wait doubles after
//! each failure up to a ceiling and starts over after a success.
//!
//! Every reconnecting loop (management Sync, signal, relay, the proxy's
//! link, the server's accept loop) waits the same way, so the rule lives
//! here once. Jitter spreads the retries of many clients that lost the same
//! server at the same moment, so they do not come back in lockstep. The
//! type only does arithmetic on durations; the caller sleeps, and seeds the
//! jitter (from the operating system in production, fixed in tests).

use std::time::Duration;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The waits of one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// Waits starting at `min` and doubling up to `max` (`max` is raised to
    /// `min` if smaller), jittered by a generator seeded with `seed`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The wait before the next attempt: the current step, less up to half
    /// of it at random (so never under half the step, never over it), after
    /// which the step doubles up to the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = step.saturating_mul(2).min(self.max);
        let half = step / 2;
        let jitter_nanos = self.rng.gen_range(0..=half.as_nanos());
        // At most half of `step`, so it fits in a Duration.
        let jitter = Duration::from_nanos(u64::try_from(jitter_nanos).unwrap_or(u64::MAX));
        step - jitter.min(half)
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_within_the_jitter_band_and_resets() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        let mut backoff = Backoff::new(min, max, 7);
        let mut step = min;
        for _ in 0..12 {
            let delay = backoff.next_delay();
            assert!(delay >= step / 2 && delay <= step, "{delay:?} for {step:?}");
            step = (step * 2).min(max);
        }
        assert_eq!(step, max);
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn the_same_seed_gives_the_same_waits_and_others_differ() {
        let waits = |seed| {
            let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1), seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(waits(1), waits(1));
        assert_ne!(waits(1), waits(2));
    }

    #[test]
    fn a_ceiling_below_the_start_is_the_start() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1), 0);
        for _ in 0..4 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
    }
}
