//! The sweep: what the tracker remembers stays bounded, however many
//! connections and peers come and go. A socket is forgotten soon after
//! its close (see `expire`); the sweep forgets the rest, now and then:
//! numbers and stages of connections no socket of ours holds any more,
//! connections the kernel finished that the program never accepted, and
//! the labels of peers long quiet (or, in a flood, the least recent).

use super::Tracker;
use crate::engine::event::Proto;
use crate::engine::evidence::SocketId;
use crate::engine::labels::{canonical, Pair};
use rustc_hash::{FxHashMap, FxHashSet};
use std::hash::Hash;
use std::net::SocketAddr;

/// Seconds that a connection no socket of ours holds keeps its sequence
/// numbers and stage: a late retransmission is still told in its terms.
pub const LINGER: f64 = 10.0;

/// Seconds a connection may wait, quiet, in an accept queue before the
/// tracker stops following it (the program never accepted it).
pub const UNACCEPTED: f64 = 120.0;

/// Seconds after which a quiet connection is checked against the kernel's
/// table: if the kernel no longer has it, its end was never told (the
/// evidence was lost under load), and it is forgotten.
pub const STALE: f64 = 20.0;

/// The kernel's TCP table for one local port, as (local, remote) pairs;
/// None where it cannot be read.
pub type KernelTable<'a> = &'a dyn Fn(u16) -> Option<Vec<(SocketAddr, SocketAddr)>>;

impl Tracker {
    /// Forgets what is no longer needed as of `now`; returns how many
    /// labels were forgotten for want of room (worth a note).
    pub fn sweep(&mut self, now: f64, kernel: KernelTable) -> usize {
        self.expire(now);
        self.forget_vanished(now, kernel);
        let unaccepted: Vec<SocketId> = self
            .eps
            .iter()
            .filter(|(_, e)| e.fd.is_none() && e.parent.is_some() && now - e.seen > UNACCEPTED)
            .map(|(id, _)| *id)
            .collect();
        for id in unaccepted {
            self.forget(id);
        }
        let live: FxHashSet<Pair> = self
            .by_pair
            .keys()
            .map(|(l, r)| Pair::new(*l, *r))
            .collect();
        let before = now - LINGER;
        self.stages
            .retain(|(_, pair), (_, seen)| *seen >= before || live.contains(pair));
        self.ledger
            .retain(|a, b| live.contains(&Pair::new(a, b)), before);
        let forgotten = self.labels.sweep(|pair| live.contains(pair));
        shrink_map(&mut self.eps);
        shrink_map(&mut self.by_pair);
        shrink_map(&mut self.stages);
        if self.forget_at.capacity() > 4 * self.forget_at.len().max(256) {
            self.forget_at.shrink_to_fit();
        }
        forgotten
    }
}

impl Tracker {
    /// Connections quiet for [`STALE`] that the kernel's table no longer
    /// has: their close was never told (lost under load); forget them.
    fn forget_vanished(&mut self, now: f64, kernel: KernelTable) {
        let stale: Vec<(SocketId, SocketAddr, SocketAddr)> = self
            .eps
            .iter()
            .filter(|(_, e)| e.proto == Proto::Tcp && !e.listener && now - e.seen > STALE)
            .filter_map(|(id, e)| Some((*id, canonical(e.local?), canonical(e.remote?))))
            .collect();
        let mut ports: Vec<u16> = stale.iter().map(|(_, l, _)| l.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut alive: FxHashSet<(SocketAddr, SocketAddr)> = FxHashSet::default();
        for port in ports {
            // Cannot ask: forget nothing (memory waits; the truth does not suffer).
            let Some(rows) = kernel(port) else { return };
            alive.extend(rows.into_iter().map(|(l, r)| (canonical(l), canonical(r))));
        }
        for (id, local, remote) in stale {
            if !alive.contains(&(local, remote)) {
                self.forget(id);
            }
        }
    }
}

/// Gives back a table's room once it holds far fewer than it did.
pub fn shrink_map<K: Hash + Eq, V>(map: &mut FxHashMap<K, V>) {
    if map.capacity() > 4 * map.len().max(256) {
        map.shrink_to_fit();
    }
}
