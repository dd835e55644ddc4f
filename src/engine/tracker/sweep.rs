//! The sweep: what the tracker remembers stays bounded, however many
//! connections and peers come and go. A socket is forgotten soon after
//! its close (see `expire`); the sweep forgets the rest, now and then:
//! numbers and stages of connections no socket of ours holds any more,
//! connections the kernel finished that the program never accepted, and
//! the labels of peers long quiet (or, in a flood, the least recent).

use super::Tracker;
use crate::engine::evidence::SocketId;
use crate::engine::labels::Pair;
use rustc_hash::{FxHashMap, FxHashSet};
use std::hash::Hash;

/// Seconds that a connection no socket of ours holds keeps its sequence
/// numbers and stage: a late retransmission is still told in its terms.
pub const LINGER: f64 = 10.0;

/// Seconds a connection may wait, quiet, in an accept queue before the
/// tracker stops following it (the program never accepted it).
pub const UNACCEPTED: f64 = 120.0;

impl Tracker {
    /// Forgets what is no longer needed as of `now`; returns how many
    /// labels were forgotten for want of room (worth a note).
    pub fn sweep(&mut self, now: f64) -> usize {
        self.expire(now);
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

/// Gives back a table's room once it holds far fewer than it did.
pub fn shrink_map<K: Hash + Eq, V>(map: &mut FxHashMap<K, V>) {
    if map.capacity() > 4 * map.len().max(256) {
        map.shrink_to_fit();
    }
}
