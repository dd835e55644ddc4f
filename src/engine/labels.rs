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
use std::time::{Duration, Instant};

/// Who numbers: a server socket (its own C1, C2…).
pub type Scope = u64;

#[derive(Default)]
pub struct Labels {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_pair: HashMap<Pair, Entry>,
    next: HashMap<Scope, u64>,
}

/// A label, when it was last used, and how long it is kept after that
/// once no socket of ours holds its connection.
struct Entry {
    label: Arc<str>,
    used: Instant,
    keep: Duration,
}

impl Entry {
    fn new(label: Arc<str>, keep: Duration) -> Entry {
        Entry {
            label,
            used: Instant::now(),
            keep,
        }
    }

    /// The label, now used again.
    fn touch(&mut self) -> Arc<str> {
        self.used = Instant::now();
        self.label.clone()
    }
}

/// The label of a UDP peer is kept this long after its last datagram: the
/// same student sending again is still the same Cn.
pub const QUIET: Duration = Duration::from_secs(600);

/// The label of a TCP connection no socket of ours holds any more is kept
/// this long after its last use, so a late packet still carries it (the
/// sequence numbers are kept as long; see the tracker's sweep).
pub const ENDED: Duration = Duration::from_secs(10);

/// At most this many labels outside the live connections: beyond it the
/// least recently used are forgotten (a UDP flood from many addresses).
pub const SPARE: usize = 4096;

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
        self.lock()
            .by_pair
            .get_mut(&Pair::new(a, b))
            .map(Entry::touch)
    }

    /// Gives the connection `a` ⇄ `b` the label `label` (a client names
    /// itself), unless it has one already; returns the one it has.
    pub fn name(&self, a: SocketAddr, b: SocketAddr, label: &Arc<str>) -> Arc<str> {
        self.lock()
            .by_pair
            .entry(Pair::new(a, b))
            .or_insert_with(|| Entry::new(label.clone(), ENDED))
            .touch()
    }

    /// The label of the connection `a` ⇄ `b`, numbering it next in `scope`
    /// if it has none.
    pub fn assign(&self, scope: Scope, a: SocketAddr, b: SocketAddr) -> Arc<str> {
        self.number(scope, a, b, ENDED)
    }

    /// The label of the UDP peer `b` of the socket at `a`, numbering it next
    /// in `scope` if it has none; it is kept for [`QUIET`].
    pub fn assign_peer(&self, scope: Scope, a: SocketAddr, b: SocketAddr) -> Arc<str> {
        self.number(scope, a, b, QUIET)
    }

    fn number(&self, scope: Scope, a: SocketAddr, b: SocketAddr, keep: Duration) -> Arc<str> {
        let mut inner = self.lock();
        if let Some(entry) = inner.by_pair.get_mut(&Pair::new(a, b)) {
            return entry.touch();
        }
        let n = inner.next.entry(scope).or_insert(0);
        *n += 1;
        let label: Arc<str> = format!("C{n}").into();
        inner
            .by_pair
            .insert(Pair::new(a, b), Entry::new(label.clone(), keep));
        label
    }

    /// How many labels `scope` has given out (C1 … this number).
    pub fn numbered(&self, scope: Scope) -> u64 {
        self.lock().next.get(&scope).copied().unwrap_or(0)
    }

    /// Forgets the connection `a` ⇄ `b` (it has ended on every side we hold).
    pub fn forget(&self, a: SocketAddr, b: SocketAddr) {
        self.lock().by_pair.remove(&Pair::new(a, b));
    }

    /// Forgets labels not in `live` and unused for as long as they are kept
    /// ([`ENDED`] for a connection, [`QUIET`] for a UDP peer); then, if more
    /// than [`SPARE`] are left outside `live`, the least recently used of
    /// them. Returns how many were forgotten for want of room (a peer that
    /// comes back after that gets a new number).
    pub fn sweep(&self, live: impl Fn(&Pair) -> bool) -> usize {
        self.sweep_at(Instant::now(), live)
    }

    fn sweep_at(&self, now: Instant, live: impl Fn(&Pair) -> bool) -> usize {
        let mut inner = self.lock();
        inner
            .by_pair
            .retain(|pair, e| live(pair) || now.duration_since(e.used) < e.keep);
        let mut spare: Vec<(Instant, Pair)> = inner
            .by_pair
            .iter()
            .filter(|(pair, _)| !live(pair))
            .map(|(pair, e)| (e.used, *pair))
            .collect();
        if spare.len() <= SPARE {
            if inner.by_pair.capacity() > 4 * inner.by_pair.len().max(256) {
                inner.by_pair.shrink_to_fit();
            }
            return 0;
        }
        // Down to three quarters, so the next sweeps have room to spare.
        let excess = spare.len() - SPARE * 3 / 4;
        spare.select_nth_unstable_by_key(excess - 1, |(used, _)| *used);
        for (_, pair) in &spare[..excess] {
            inner.by_pair.remove(pair);
        }
        inner.by_pair.shrink_to_fit();
        excess
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
        assert_eq!(labels.numbered(1), 2);
    }

    #[test]
    fn a_flood_of_peers_is_bounded_and_the_live_are_kept() {
        let labels = Labels::default();
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let peer = |i: usize| SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 4000));
        let live = peer(0);
        labels.assign(1, server, live);
        for i in 1..=SPARE + 100 {
            labels.assign_peer(1, server, peer(i));
        }
        let forgotten = labels.sweep(|p| *p == Pair::new(server, live));
        assert_eq!(forgotten, SPARE + 100 - SPARE * 3 / 4);
        assert_eq!(labels.len(), SPARE * 3 / 4 + 1);
        // The live connection and the most recent peers keep their numbers.
        assert_eq!(labels.get(server, live).as_deref(), Some("C1"));
        let last = peer(SPARE + 100);
        assert_eq!(
            labels.get(server, last).as_deref(),
            Some(&*format!("C{}", SPARE + 101))
        );
        assert_eq!(labels.get(server, peer(1)), None);
        // A peer that comes back is numbered anew.
        assert_eq!(
            &*labels.assign(1, server, peer(1)),
            &*format!("C{}", SPARE + 102)
        );
    }

    #[test]
    fn an_ended_connection_is_forgotten_sooner_than_a_quiet_peer() {
        let labels = Labels::default();
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (conn, peer, live): (SocketAddr, SocketAddr, SocketAddr) = (
            "127.0.0.1:4001".parse().unwrap(),
            "127.0.0.1:4002".parse().unwrap(),
            "127.0.0.1:4003".parse().unwrap(),
        );
        labels.assign(1, server, conn);
        labels.assign_peer(1, server, peer);
        labels.assign(1, server, live);
        let is_live = |p: &Pair| *p == Pair::new(server, live);
        labels.sweep_at(Instant::now() + ENDED / 2, is_live);
        assert_eq!(labels.len(), 3, "nothing is forgotten early");
        labels.sweep_at(Instant::now() + ENDED + Duration::from_secs(1), is_live);
        assert_eq!(labels.get(server, conn), None, "the ended connection");
        assert_eq!(labels.get(server, peer).as_deref(), Some("C2"));
        assert_eq!(labels.get(server, live).as_deref(), Some("C3"));
        labels.sweep_at(Instant::now() + QUIET + Duration::from_secs(1), is_live);
        assert_eq!(labels.get(server, peer), None, "the peer, quiet too long");
        assert_eq!(labels.get(server, live).as_deref(), Some("C3"));
    }
}
