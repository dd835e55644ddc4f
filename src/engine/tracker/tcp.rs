//! The TCP state machine of RFC 9293 (section 3.3.2, figure 5), as the
//! tracker applies it to evidence: which state a socket moves to when a
//! segment goes out or comes in, and which states lie between two states
//! the kernel reported.

use crate::engine::event::TcpState::{self, *};

/// What happens to one socket, in the RFC's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// listen(): the socket waits for SYNs.
    Listen,
    /// Our SYN goes out (connect()).
    SynOut,
    /// A SYN comes in (to a listener: a new connection is born).
    SynIn,
    /// The SYN-ACK answering our SYN comes in.
    SynAckIn,
    /// The ACK of our SYN-ACK comes in: the handshake is complete.
    AckIn,
    /// Our FIN goes out (shutdown() or close()).
    FinOut,
    /// The peer's FIN comes in.
    FinIn,
    /// The ACK of our FIN comes in.
    FinAckedIn,
    /// An RST goes out or comes in.
    Reset,
}

/// The state after `step`, or None where the step does not apply.
pub fn step(state: TcpState, step: Step) -> Option<TcpState> {
    Some(match (state, step) {
        (Closed, Step::Listen) => Listen,
        (Closed, Step::SynOut) => SynSent,
        (Listen, Step::SynIn) => SynReceived,
        (SynSent, Step::SynIn) => SynReceived,
        (SynSent, Step::SynAckIn) => Established,
        (SynReceived, Step::AckIn) => Established,
        (SynReceived | Established, Step::FinOut) => FinWait1,
        // In SYN-RECEIVED a FIN comes with the ACK that first completes
        // the handshake: the tracker applies the ACK, then the FIN.
        (Established, Step::FinIn) => CloseWait,
        (FinWait1, Step::FinAckedIn) => FinWait2,
        (FinWait1, Step::FinIn) => Closing,
        (FinWait2, Step::FinIn) => TimeWait,
        (Closing, Step::FinAckedIn) => TimeWait,
        (CloseWait, Step::FinOut) => LastAck,
        (LastAck, Step::FinAckedIn) => Closed,
        (Listen | Closed, Step::Reset) => return None,
        (_, Step::Reset) => Closed,
        _ => return None,
    })
}

/// What the evidence says happened, which decides the path between states.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    /// Our FIN went out (shutdown() or close() was called, or it was seen).
    pub our_fin: bool,
    /// The peer's FIN came in (recv() returned 0, or it was seen).
    pub their_fin: bool,
}

/// The states a socket passed through from `from` to `to`, `to` last,
/// along the RFC's shortest path that the facts allow: a FIN is only
/// assumed where the evidence says it was sent or received. `None` when no
/// such path exists (the tracker then says less: the jump, not a story).
pub fn path(from: TcpState, to: TcpState, facts: Facts) -> Option<Vec<TcpState>> {
    if from == to {
        return Some(Vec::new());
    }
    // Steps in order of preference: where two shortest paths exist, the
    // common one wins (FIN-WAIT-1 → FIN-WAIT-2, not CLOSING, which needs
    // both FINs to cross on the wire).
    let steps = [
        Step::SynOut,
        Step::SynIn,
        Step::SynAckIn,
        Step::AckIn,
        Step::FinAckedIn,
        Step::FinOut,
        Step::FinIn,
    ];
    let allowed = |s: Step| match s {
        Step::FinOut => facts.our_fin,
        Step::FinIn => facts.their_fin,
        _ => true,
    };
    // Breadth first over the eleven states: the first path found is a shortest one.
    let mut queue = std::collections::VecDeque::from([(from, Vec::new())]);
    let mut seen = vec![from];
    while let Some((state, trail)) = queue.pop_front() {
        for s in steps.into_iter().filter(|s| allowed(*s)) {
            let Some(next) = step(state, s) else { continue };
            // A simultaneous open is never inferred, and a path never goes
            // round through CLOSED into a new connection.
            if state == SynSent && s == Step::SynIn {
                continue;
            }
            if s == Step::SynOut && state != from {
                continue;
            }
            if seen.contains(&next) {
                continue;
            }
            let mut trail = trail.clone();
            trail.push(next);
            if next == to {
                return Some(trail);
            }
            seen.push(next);
            queue.push_back((next, trail));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Facts = Facts {
        our_fin: true,
        their_fin: true,
    };

    #[test]
    fn the_peer_closes_first() {
        // recv() = 0, then our shutdown(): CLOSE-WAIT, LAST-ACK, CLOSED. No reset.
        assert_eq!(path(CloseWait, Closed, BOTH), Some(vec![LastAck, Closed]));
        assert_eq!(
            path(Established, Closed, BOTH),
            Some(vec![CloseWait, LastAck, Closed])
        );
    }

    #[test]
    fn we_close_first_and_pass_through_fin_wait_2() {
        assert_eq!(
            path(Established, TimeWait, BOTH),
            Some(vec![FinWait1, FinWait2, TimeWait])
        );
        assert_eq!(
            path(FinWait1, TimeWait, BOTH),
            Some(vec![FinWait2, TimeWait])
        );
    }

    #[test]
    fn no_fin_is_invented() {
        // The kernel says CLOSED and no FIN was seen or made: no story.
        assert_eq!(path(Established, Closed, Facts::default()), None);
        // Without the peer's FIN, TIME-WAIT cannot be reached.
        let ours = Facts {
            our_fin: true,
            their_fin: false,
        };
        assert_eq!(path(Established, TimeWait, ours), None);
        assert_eq!(
            path(Established, FinWait2, ours),
            Some(vec![FinWait1, FinWait2])
        );
    }

    #[test]
    fn no_path_goes_round_into_a_new_connection() {
        assert_eq!(path(CloseWait, Established, BOTH), None);
        assert_eq!(path(TimeWait, SynSent, BOTH), None);
    }

    #[test]
    fn handshakes() {
        let none = Facts::default();
        assert_eq!(
            path(Closed, Established, none),
            Some(vec![SynSent, Established])
        );
        assert_eq!(
            path(Listen, Established, none),
            Some(vec![SynReceived, Established])
        );
        assert_eq!(
            path(Listen, CloseWait, BOTH),
            Some(vec![SynReceived, Established, CloseWait])
        );
    }

    #[test]
    fn segments_move_states_as_the_rfc_says() {
        assert_eq!(step(FinWait1, Step::FinAckedIn), Some(FinWait2));
        assert_eq!(step(FinWait1, Step::FinIn), Some(Closing));
        assert_eq!(step(Closing, Step::FinAckedIn), Some(TimeWait));
        assert_eq!(step(LastAck, Step::FinAckedIn), Some(Closed));
        assert_eq!(step(Established, Step::Reset), Some(Closed));
        assert_eq!(step(Listen, Step::Reset), None);
        assert_eq!(step(Established, Step::SynOut), None);
    }
}
