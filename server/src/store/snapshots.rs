//! Accounts decoded once per version, and carried forward by the writers
//! that changed them.
//!
//! Decoding an account reads and parses every one of its rows, so at
//! thousands of peers it costs more than computing a map. A reader whose
//! transaction sees a version another reader already decoded reuses that
//! value ([`Snapshots::get_or_load`]). A writer that knows what its commit
//! did to the account (a peer row replaced, a peer added to its groups)
//! leaves the next version as "the value before, with these changes"
//! ([`Snapshots::carry`]): nothing is applied until a reader asks, and then
//! once, on a copy. Registering a peer or a peer coming online then costs
//! no decode at all, however large the account.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// What a committed write did to a decoded value; applied to a copy of the
/// value before it to get the value the commit left.
pub type Change<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// How many changes may wait on one base before a carry is dropped (the
/// next reader then decodes): a version nobody reads must not make every
/// later writer copy a growing list.
const MAX_CHANGES: usize = 256;

/// Values decoded from an account's rows, each kept with the account
/// version it was read at. Readers that ask for a version nobody has
/// decoded yet share one load: the first one decodes, the others wait for
/// its result (after a commit, a burst of readers costs one decode, not one
/// each).
pub struct Snapshots<T> {
    /// Per account, the newest version asked for or carried.
    kept: Mutex<HashMap<String, Kept<T>>>,
}

/// One version of one account.
struct Kept<T> {
    version: i64,
    /// Filled by the first reader.
    value: Slot<T>,
    /// How the value follows from an earlier one, when a writer carried it
    /// forward instead of a reader decoding it.
    derived: Option<Derived<T>>,
}

/// One version's value, filled by the first reader that loads it.
type Slot<T> = Arc<OnceCell<Arc<T>>>;

/// An earlier version's value and the changes committed since, in order.
struct Derived<T> {
    base: Arc<T>,
    changes: Vec<Change<T>>,
}

impl<T> Clone for Derived<T> {
    fn clone(&self) -> Self {
        Derived {
            base: self.base.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<T: Clone> Derived<T> {
    /// The base with the changes applied: in place when nothing else holds
    /// the base any more (a registration, the usual writer, has dropped the
    /// value it read before its commit, and the version it replaced is no
    /// longer kept), so that registering a peer does not copy and drop an
    /// account of thousands of peers; on a copy otherwise.
    fn apply(self) -> T {
        let mut value = Arc::try_unwrap(self.base).unwrap_or_else(|shared| T::clone(&shared));
        for change in &self.changes {
            change(&mut value);
        }
        value
    }
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Snapshots {
            kept: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> fmt::Debug for Snapshots<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accounts = self.kept.lock().map_or(0, |kept| kept.len());
        f.debug_struct("Snapshots")
            .field("accounts", &accounts)
            .finish()
    }
}

impl<T: Clone> Snapshots<T> {
    /// The value of `account` at exactly `version`: the one kept, the one
    /// carried forward to it (applied now, once), or the one `load` makes
    /// (run by one caller at a time; when it fails, the next waiting caller
    /// runs its own). Kept unless a newer version is.
    pub async fn get_or_load<E, F, Fut>(
        &self,
        account: &str,
        version: i64,
        load: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (cell, fallback) = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match kept.get(account) {
                Some(k) if k.version == version => (k.value.clone(), k.derived.clone()),
                // A reader behind a newer one: its value is not kept.
                Some(k) if k.version > version => (Arc::new(OnceCell::new()), None),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    kept.insert(
                        account.to_string(),
                        Kept {
                            version,
                            value: cell.clone(),
                            derived: None,
                        },
                    );
                    (cell, None)
                }
            }
        };
        let slot = cell.clone();
        let value = cell
            .get_or_try_init(|| async move {
                // The reader that fills the slot takes the changes out of
                // it, so that the base can be changed in place; the copy
                // taken above serves when a carry replaced the slot since.
                let derived = match self.take_derived(account, &slot) {
                    Some(derived) => {
                        drop(fallback);
                        Some(derived)
                    }
                    None => fallback,
                };
                match derived {
                    Some(derived) => Ok(Arc::new(derived.apply())),
                    None => load().await.map(Arc::new),
                }
            })
            .await?;
        Ok(value.clone())
    }

    /// The changes that lead to the value of `cell`, taken out of the kept
    /// version when `cell` is still its slot.
    fn take_derived(&self, account: &str, cell: &Slot<T>) -> Option<Derived<T>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get_mut(account)
            .filter(|k| Arc::ptr_eq(&k.value, cell))
            .and_then(|k| k.derived.take())
    }

    /// Keeps `account` at `version` as its value at `before` with `changes`
    /// applied, when the value at `before` is known here (decoded, or
    /// itself carried); otherwise the next reader of `version` decodes it.
    /// Called by a writer after its commit raised the version from `before`
    /// to `version`, with what that commit changed.
    pub fn carry(&self, account: &str, before: i64, version: i64, changes: Vec<Change<T>>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let derived = match kept.get(account) {
            Some(k) if k.version == before => match (k.value.get(), &k.derived) {
                (Some(value), _) => Some(Derived {
                    base: value.clone(),
                    changes,
                }),
                (None, Some(d)) if d.changes.len() + changes.len() <= MAX_CHANGES => {
                    let mut d = d.clone();
                    d.changes.extend(changes);
                    Some(d)
                }
                (None, _) => None,
            },
            _ => None,
        };
        if let Some(derived) = derived {
            kept.insert(
                account.to_string(),
                Kept {
                    version,
                    value: Arc::new(OnceCell::new()),
                    derived: Some(derived),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Loads `value` for `account` at `version`, counting the load.
    async fn load(
        snapshots: &Snapshots<String>,
        loads: &AtomicUsize,
        version: i64,
        value: &str,
    ) -> Result<Arc<String>, String> {
        snapshots
            .get_or_load("a", version, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(value.to_string())
            })
            .await
    }

    fn append(text: &'static str) -> Change<String> {
        Arc::new(move |s: &mut String| s.push_str(text))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_of_one_version_share_one_load() {
        let snapshots = Arc::new(Snapshots::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..32)
            .map(|_| {
                let (snapshots, loads) = (snapshots.clone(), loads.clone());
                tokio::spawn(async move { load(&snapshots, &loads, 7, "v7").await })
            })
            .collect();
        let mut values = Vec::new();
        for reader in readers {
            values.push(reader.await.expect("reader ran").expect("loaded"));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])));
        assert_eq!(*values[0], "v7");
    }

    #[tokio::test]
    async fn a_newer_version_replaces_and_an_older_one_is_not_kept() {
        let snapshots = Snapshots::default();
        let loads = AtomicUsize::new(0);
        assert_eq!(*load(&snapshots, &loads, 1, "v1").await.unwrap(), "v1");
        assert_eq!(*load(&snapshots, &loads, 2, "v2").await.unwrap(), "v2");
        // A reader still at version 1 decodes its own, which is not kept.
        assert_eq!(*load(&snapshots, &loads, 1, "v1").await.unwrap(), "v1");
        assert_eq!(*load(&snapshots, &loads, 2, "other").await.unwrap(), "v2");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept() {
        let snapshots: Snapshots<String> = Snapshots::default();
        let failed = snapshots
            .get_or_load("a", 1, || async { Err::<String, _>("gone".to_string()) })
            .await;
        assert_eq!(failed, Err("gone".to_string()));
        let loads = AtomicUsize::new(0);
        assert_eq!(*load(&snapshots, &loads, 1, "v1").await.unwrap(), "v1");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn carried_versions_apply_their_changes_in_order_without_a_load() {
        let snapshots = Snapshots::default();
        let loads = AtomicUsize::new(0);
        load(&snapshots, &loads, 1, "a").await.unwrap();
        snapshots.carry("a", 1, 2, vec![append("b")]);
        // Not read at 2: version 3 builds on the same base.
        snapshots.carry("a", 2, 3, vec![append("c"), append("d")]);
        assert_eq!(
            *load(&snapshots, &loads, 3, "decoded").await.unwrap(),
            "abcd"
        );
        // Read at 3: version 4 builds on that value.
        snapshots.carry("a", 3, 4, vec![append("e")]);
        assert_eq!(
            *load(&snapshots, &loads, 4, "decoded").await.unwrap(),
            "abcde"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_carried_base_nobody_holds_is_changed_in_place() {
        let snapshots = Snapshots::default();
        let base = snapshots
            .get_or_load("a", 1, || async {
                Ok::<_, ()>(String::with_capacity(64) + "a")
            })
            .await
            .unwrap();
        let at = base.as_ptr();
        drop(base);
        snapshots.carry("a", 1, 2, vec![append("b")]);
        let unread = || async { Err::<String, ()>(()) };
        let next = snapshots.get_or_load("a", 2, unread).await.unwrap();
        assert_eq!(*next, "ab");
        assert_eq!(next.as_ptr(), at, "not changed in place");
        // Still held by a reader: the changes go to a copy, and the
        // reader's value stays as it was.
        snapshots.carry("a", 2, 3, vec![append("c")]);
        let last = snapshots.get_or_load("a", 3, unread).await.unwrap();
        assert_eq!((last.as_str(), next.as_str()), ("abc", "ab"));
        assert_ne!(last.as_ptr(), next.as_ptr());
    }

    #[tokio::test]
    async fn a_carry_from_an_unknown_version_leaves_the_next_reader_to_load() {
        let snapshots = Snapshots::default();
        let loads = AtomicUsize::new(0);
        // Nothing known yet.
        snapshots.carry("a", 1, 2, vec![append("b")]);
        assert_eq!(*load(&snapshots, &loads, 2, "v2").await.unwrap(), "v2");
        // Another writer committed 3 first: a carry from 3 to 4 is not
        // built on version 2.
        snapshots.carry("a", 3, 4, vec![append("x")]);
        assert_eq!(*load(&snapshots, &loads, 4, "v4").await.unwrap(), "v4");
        // A long chain nobody reads stops being carried.
        snapshots.carry("a", 4, 5, vec![append("y"); MAX_CHANGES]);
        snapshots.carry("a", 5, 6, vec![append("z")]);
        assert_eq!(*load(&snapshots, &loads, 6, "v6").await.unwrap(), "v6");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }
}
