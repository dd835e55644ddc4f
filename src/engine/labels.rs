//! Connection labels: C1, C2, … one per connection, the same on every line
//! about it, whoever names it first.
//!
//! A server numbers its connections in the order it first learns of them:
//! the SYN seen on the wire (when packets are captured) or the socket
//! accept() returns. A client named by the program ("C1" in `connect`, the
//! tour's C1…C3) brings its own label, and a server in the same process
//! then uses that label for the other end of the same connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Who numbers: a server socket (its own C1, C2…).
pub type Scope = u64;

#[derive(Default)]
pub struct Labels {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_pair: HashMap<Pair, Arc<str>>,
    next: HashMap<Scope, u64>,
}

/// The two ends of a connection, in a canonical order, with IPv4-mapped
/// IPv6 addresses written as the IPv4 addresses they are (a packet on the
/// wire carries 127.0.0.1 where a `::` socket says ::ffff:127.0.0.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pair(SocketAddr, SocketAddr);

impl Pair {
    pub fn new(a: SocketAddr, b: SocketAddr) -> Pair {
        let (a, b) = (canonical(a), canonical(b));
        if a <= b {
            Pair(a, b)
        } else {
            Pair(b, a)
        }
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned back into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl Labels {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The label of the connection `a` ⇄ `b`, if it has one.
    pub fn get(&self, a: SocketAddr, b: SocketAddr) -> Option<Arc<str>> {
        self.lock().by_pair.get(&Pair::new(a, b)).cloned()
    }

    /// Gives the connection `a` ⇄ `b` the label `label` (a client names
    /// itself), unless it has one already; returns the one it has.
    pub fn name(&self, a: SocketAddr, b: SocketAddr, label: &Arc<str>) -> Arc<str> {
        self.lock()
            .by_pair
            .entry(Pair::new(a, b))
            .or_insert_with(|| label.clone())
            .clone()
    }

    /// The label of `a` ⇄ `b`, numbering it next in `scope` if it has none.
    pub fn assign(&self, scope: Scope, a: SocketAddr, b: SocketAddr) -> Arc<str> {
        let mut inner = self.lock();
        if let Some(label) = inner.by_pair.get(&Pair::new(a, b)) {
            return label.clone();
        }
        let n = inner.next.entry(scope).or_insert(0);
        *n += 1;
        let label: Arc<str> = format!("C{n}").into();
        inner.by_pair.insert(Pair::new(a, b), label.clone());
        label
    }

    /// Forgets the connection `a` ⇄ `b` (it has ended on every side we hold).
    pub fn forget(&self, a: SocketAddr, b: SocketAddr) {
        self.lock().by_pair.remove(&Pair::new(a, b));
    }

    /// How many connections have a label now (memory is bounded by this).
    pub fn len(&self) -> usize {
        self.lock().by_pair.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_and_mapped_addresses_share_a_label() {
        let labels = Labels::default();
        let server: SocketAddr = "[::ffff:127.0.0.1]:8888".parse().unwrap();
        let client: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        let first = labels.assign(1, server, client);
        assert_eq!(&*first, "C1");
        let on_the_wire: (SocketAddr, SocketAddr) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:8888".parse().unwrap(),
        );
        assert_eq!(labels.get(on_the_wire.0, on_the_wire.1), Some(first));
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(&*labels.assign(1, server, other), "C2");
        assert_eq!(
            &*labels.assign(2, server, "127.0.0.1:1".parse().unwrap()),
            "C1"
        );
        labels.forget(client, server);
        assert_eq!(labels.len(), 2);
    }
}
