//! The argon2id checks of PINs and passwords, on threads of their own.
//!
//! A check holds about 19 MiB for its duration. Run on the runtime's
//! blocking pool, each check could land on a fresh thread, and the
//! allocator keeps the freed block in that thread's arena: after a few
//! bursts the process holds blocks for every thread that ever hashed. A
//! fixed set of threads, as many as the hash permits, bounds that memory
//! by the permit count, and keeps the slow work off the async workers.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Hands checks to the hash threads; they end when it is dropped.
#[derive(Debug)]
pub(crate) struct Hasher {
    jobs: Sender<Job>,
}

impl Hasher {
    /// Starts `threads` hash threads. Callers admit at most that many
    /// checks at once (the limiter's hash permits), so none waits long.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            // A thread that cannot be started leaves the others to do the
            // work; with none at all every check fails closed (no match).
            let _ = std::thread::Builder::new()
                .name("meshplane-hash".into())
                .spawn(move || work(&queue));
        }
        Self { jobs }
    }

    /// Whether `secret` matches the argon2id PHC string `phc`, checked on a
    /// hash thread; `hold` (the attempt's admission) is kept until the
    /// check is over and handed back with the answer, `None` if the check
    /// could not run.
    pub async fn verify<T: Send + 'static>(
        &self,
        secret: String,
        phc: String,
        hold: T,
    ) -> Option<(bool, T)> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            let matches = meshplane_core::keys::verify_argon2(&secret, &phc);
            let _ = answer.send((matches, hold));
        });
        self.jobs.send(job).ok()?;
        answered.await.ok()
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A check that panics fails its attempt, not the thread.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_on_the_hash_threads() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let phc = meshplane_core::keys::hash_argon2("123456", &mut rng).unwrap();
        let hasher = Hasher::new(2);
        let (right, wrong) = tokio::join!(
            hasher.verify("123456".into(), phc.clone(), 1),
            hasher.verify("654321".into(), phc, 2)
        );
        assert_eq!(right, Some((true, 1)));
        assert_eq!(wrong, Some((false, 2)));
    }
}
