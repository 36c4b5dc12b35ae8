//! The caps on relay connections: in total and per source address. A
//! connection holds its [`Admitted`] slot from the upgrade until it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open relay connections, in total and by source address.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    inner: Arc<Mutex<Counts>>,
    total_cap: usize,
    per_address_cap: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    AddressFull,
}

/// One admitted connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    inner: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Admission {
    pub(crate) fn new(total_cap: usize, per_address_cap: usize) -> Admission {
        Admission {
            inner: Arc::default(),
            total_cap,
            per_address_cap,
        }
    }

    /// A slot for one more connection from `ip`, unless a cap is reached.
    /// An IPv4 client of an IPv6 socket counts as its IPv4 address.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Admitted, Refusal> {
        let ip = ip.to_canonical();
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.total_cap {
            return Err(Refusal::Full);
        }
        let from = counts.by_address.entry(ip).or_default();
        if *from >= self.per_address_cap {
            return Err(Refusal::AddressFull);
        }
        *from += 1;
        counts.total += 1;
        Ok(Admitted {
            inner: self.inner.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total -= 1;
        if let Some(from) = counts.by_address.get_mut(&self.ip) {
            *from -= 1;
            if *from == 0 {
                counts.by_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_return() {
        let a = Admission::new(3, 2);
        let one: IpAddr = "10.0.0.1".parse().expect("ip");
        let two: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = a.admit(one).expect("room");
        let _second = a.admit(one).expect("room");
        assert_eq!(a.admit(one).err(), Some(Refusal::AddressFull));
        let _third = a.admit(two).expect("room");
        assert_eq!(a.admit(two).err(), Some(Refusal::Full));
        drop(first);
        assert!(a.admit(one).is_ok());
        assert_eq!(a.open(), 2);
    }
}
