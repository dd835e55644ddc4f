//! The packet ledger: each direction's first sequence number, so packets
//! show relative numbers (the SYN is 0), as Wireshark does. One entry per
//! direction of a connection of ours; forgotten with the connection.

use crate::engine::event::Proto;
use crate::engine::evidence::Seen;
use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;

#[derive(Default)]
pub struct Ledger {
    /// (source, destination), canonical → that direction's first sequence
    /// number, and when that direction was last seen.
    isn: HashMap<(SocketAddr, SocketAddr), (u32, f64)>,
}

impl Ledger {
    /// The packet's sequence and acknowledgement numbers, relative to
    /// each direction's first (the acknowledgement is left out where the
    /// segment has no ACK flag, and raw where the other direction was never seen).
    pub fn relative(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        p: &Seen,
        t: f64,
    ) -> (u32, Option<u32>) {
        if p.proto != Proto::Tcp {
            return (0, None);
        }
        let entry = self.isn.entry((src, dst)).or_insert((p.seq, t));
        // A SYN starts a direction; a connection met halfway starts at its first packet.
        if p.flags.syn {
            entry.0 = p.seq;
        }
        entry.1 = t;
        let seq = p.seq.wrapping_sub(entry.0);
        let ack = p.flags.ack.then(|| match self.isn.get(&(dst, src)) {
            Some((isn, _)) => p.ack_no.wrapping_sub(*isn),
            None => p.ack_no,
        });
        (seq, ack)
    }

    /// Forgets the directions not `live` and not seen since `before`
    /// (packets of a connection this program no longer holds).
    pub fn retain(&mut self, live: impl Fn(SocketAddr, SocketAddr) -> bool, before: f64) {
        self.isn
            .retain(|(src, dst), (_, seen)| *seen >= before || live(*src, *dst));
        super::sweep::shrink_map(&mut self.isn);
    }

    /// Forgets both directions of a connection.
    pub fn forget(&mut self, a: SocketAddr, b: SocketAddr) {
        self.isn.remove(&(a, b));
        self.isn.remove(&(b, a));
    }

    /// How many directions are remembered (memory is bounded by this).
    pub fn len(&self) -> usize {
        self.isn.len()
    }
}
