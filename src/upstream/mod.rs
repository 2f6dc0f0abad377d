//! The app's endpoints: where requests go, how one is picked (least
//! outstanding requests), and their pooled keep-alive connections.
//!
//! An `Endpoint` is shared by `Arc` between config snapshots, so state keyed by
//! endpoint (pool, counters) survives a reload that keeps the endpoint.

mod pool;

pub use pool::{PoolSettings, PooledConn};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One app process (or Node cluster master) lifeguard forwards to.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `addr` as text, shared with in-flight entries without reallocating.
    pub name: Arc<String>,
    outstanding: AtomicUsize,
    idle: Mutex<Vec<pool::IdleConn>>,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            name: Arc::new(addr.to_string()),
            outstanding: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Requests currently sent to (or being sent to) this endpoint.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request against this endpoint until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Outstanding {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(self.clone())
    }
}

/// Holds one unit of an endpoint's outstanding count.
#[derive(Debug)]
pub struct Outstanding(Arc<Endpoint>);

impl Outstanding {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A small set of endpoint indexes (configs hold at most 64 endpoints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSet(u64);

impl IndexSet {
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// Picks the endpoint with the fewest outstanding requests among those not in
/// `skip`. Ties rotate (via `rotor`) so equal endpoints share the load.
pub fn pick(endpoints: &[Arc<Endpoint>], skip: IndexSet, rotor: &AtomicUsize) -> Option<usize> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let start = if n == 1 {
        0
    } else {
        rotor.fetch_add(1, Ordering::Relaxed) % n
    };
    let mut best: Option<(usize, usize)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if skip.contains(i) {
            continue;
        }
        let load = endpoints[i].outstanding();
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((i, load));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u16) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| Arc::new(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 3000 + i)))))
            .collect()
    }

    #[test]
    fn least_outstanding_wins() {
        let e = eps(3);
        let rotor = AtomicUsize::new(0);
        let _a = e[0].begin();
        let _b = e[1].begin();
        assert_eq!(pick(&e, IndexSet::default(), &rotor), Some(2));
        let mut skip = IndexSet::default();
        skip.insert(2);
        let _c = e[0].begin();
        assert_eq!(pick(&e, skip, &rotor), Some(1));
    }

    #[test]
    fn ties_rotate_and_exhaustion_is_none() {
        let e = eps(2);
        let rotor = AtomicUsize::new(0);
        let first = pick(&e, IndexSet::default(), &rotor);
        let second = pick(&e, IndexSet::default(), &rotor);
        assert_ne!(first, second);
        let mut skip = IndexSet::default();
        skip.insert(0);
        skip.insert(1);
        assert_eq!(pick(&e, skip, &rotor), None);
    }

    #[test]
    fn outstanding_is_released_on_drop() {
        let e = eps(1);
        let g = e[0].begin();
        assert_eq!(e[0].outstanding(), 1);
        drop(g);
        assert_eq!(e[0].outstanding(), 0);
    }
}
