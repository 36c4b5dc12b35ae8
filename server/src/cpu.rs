//! CPU-bound work (every peer's network map, for the peer list or for the
//! map pushes) runs on blocking threads, at most one job per core at a
//! time. A burst of such requests queues here instead of spreading over
//! every core at once, which would leave the request handlers (a writer's
//! among them) a thin slice of the machine and hold a response's worth of
//! memory per request in flight.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;
use tokio::task::JoinError;

/// One slot per core.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

/// Runs `work` on a blocking thread once a slot is free; the slot is held
/// until the work ends, even if the caller stops waiting for it.
pub async fn run<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, JoinError> {
    // The semaphore is never closed, so acquiring cannot fail.
    let slot = SLOTS.clone().acquire_owned().await;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
}
