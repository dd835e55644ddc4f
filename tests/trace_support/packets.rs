//! States against packets: a state change that the timeline says a packet
//! caused (`"source":"packet"`) must have that packet on the timeline
//! before it, sent by the right end of the connection, with the right
//! flags (RFC 9293, section 3.3.2, the state diagram).

use serde_json::Value;
use std::collections::HashMap;

/// Which end of the connection sends the packet that causes a change.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sender {
    Me,
    Peer,
}

/// The packet that moves an endpoint from one state to another.
#[derive(Debug)]
struct Cause {
    sender: Sender,
    /// Flags the packet carries…
    with: &'static [&'static str],
    /// …and flags it does not.
    without: &'static [&'static str],
    /// It acknowledges this endpoint's FIN (its ack is past the FIN's seq).
    acks_my_fin: bool,
}

const fn cause(
    sender: Sender,
    with: &'static [&'static str],
    without: &'static [&'static str],
    acks_my_fin: bool,
) -> Cause {
    Cause {
        sender,
        with,
        without,
        acks_my_fin,
    }
}

/// The packet that moves a TCP endpoint from `from` to `to`.
fn cause_of(from: &str, to: &str) -> Option<Cause> {
    use Sender::{Me, Peer};
    Some(match (from, to) {
        ("CLOSED", "SYN-SENT") => cause(Me, &["SYN"], &["ACK"], false),
        ("LISTEN", "SYN-RECEIVED") => cause(Peer, &["SYN"], &["ACK"], false),
        ("SYN-SENT", "ESTABLISHED") => cause(Peer, &["SYN", "ACK"], &[], false),
        ("SYN-RECEIVED", "ESTABLISHED") => cause(Peer, &["ACK"], &["SYN"], false),
        ("ESTABLISHED", "FIN-WAIT-1") | ("CLOSE-WAIT", "LAST-ACK") => {
            cause(Me, &["FIN"], &[], false)
        }
        ("ESTABLISHED", "CLOSE-WAIT") | ("FIN-WAIT-2", "TIME-WAIT") => {
            cause(Peer, &["FIN"], &[], false)
        }
        ("FIN-WAIT-1", "CLOSING") => cause(Peer, &["FIN"], &[], false),
        ("FIN-WAIT-1", "TIME-WAIT") => cause(Peer, &["FIN", "ACK"], &[], true),
        ("FIN-WAIT-1", "FIN-WAIT-2") | ("CLOSING", "TIME-WAIT") | ("LAST-ACK", "CLOSED") => {
            cause(Peer, &["ACK"], &[], true)
        }
        (_, "CLOSED") => cause(Peer, &["RST"], &[], false),
        _ => return None,
    })
}

fn flags(packet: &Value) -> Vec<&str> {
    packet["flags"].as_str().unwrap_or("").split(',').collect()
}

fn addr(e: &Value, field: &str) -> String {
    e[field].as_str().unwrap_or("").to_string()
}

/// Checks every packet-caused state change of `events` (see the top).
/// Returns how many it checked.
pub fn assert_states_follow_packets(events: &[Value], what: &str) -> usize {
    // Per endpoint (local, remote): where the search for its next cause
    // starts (one packet may cause two changes: a FIN,ACK in FIN-WAIT-1),
    // and the seq of its FIN.
    let mut from_index: HashMap<(String, String), usize> = HashMap::new();
    let mut my_fin: HashMap<(String, String), u64> = HashMap::new();
    let mut checked = 0;
    for (i, state) in events.iter().enumerate() {
        if state["kind"] != "state" || state["source"] != "packet" {
            continue;
        }
        let (from, to) = (
            state["from"].as_str().unwrap(),
            state["to"].as_str().unwrap(),
        );
        let Some(cause) = cause_of(from, to) else {
            panic!("{what}: a packet cannot cause {from} → {to}:\n  {state}");
        };
        let me = (addr(state, "local"), addr(state, "remote"));
        assert!(
            !me.0.is_empty() && !me.1.is_empty(),
            "{what}: a packet-caused state without both addresses: {state}"
        );
        let start = from_index.get(&me).copied().unwrap_or(0);
        let found = (start..i).find(|&j| {
            let p = &events[j];
            if p["kind"] != "packet" {
                return false;
            }
            let sent = (addr(p, "local"), addr(p, "remote"));
            let sender = if sent == me {
                Sender::Me
            } else if (sent.1.as_str(), sent.0.as_str()) == (me.0.as_str(), me.1.as_str()) {
                Sender::Peer
            } else {
                return false;
            };
            let f = flags(p);
            let acked = !cause.acks_my_fin
                || match (my_fin.get(&me), p["ack"].as_u64()) {
                    (Some(fin), Some(ack)) => ack > *fin,
                    _ => false,
                };
            sender == cause.sender
                && cause.with.iter().all(|x| f.contains(x))
                && !cause.without.iter().any(|x| f.contains(x))
                && acked
                && p["t"].as_f64() <= state["t"].as_f64()
        });
        let Some(j) = found else {
            let earlier: Vec<String> = events[start..i]
                .iter()
                .filter(|e| e["kind"] == "packet")
                .map(|e| e.to_string())
                .collect();
            panic!(
                "{what}: {} {from} → {to} (source packet) has no packet before it from {:?} \
                 with {:?} (and not {:?}){}:\n  {state}\npackets since the previous change:\n  {}",
                state["side"],
                cause.sender,
                cause.with,
                cause.without,
                if cause.acks_my_fin {
                    ", acknowledging its FIN"
                } else {
                    ""
                },
                earlier.join("\n  ")
            );
        };
        if cause.sender == Sender::Me && cause.with.contains(&"FIN") {
            if let Some(seq) = events[j]["seq"].as_u64() {
                my_fin.insert(me.clone(), seq);
            }
        }
        from_index.insert(me, j);
        checked += 1;
    }
    checked
}

/// The side ("client"/"server") whose packet was the first FIN of the
/// connection between `a` and `b`: the side that closed first.
pub fn first_fin_side(events: &[Value], a: &str, b: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "packet" && flags(e).contains(&"FIN"))
        .find(|e| {
            let (l, r) = (addr(e, "local"), addr(e, "remote"));
            (l == a && r == b) || (l == b && r == a)
        })
        .map(|e| e["side"].as_str().unwrap_or("").to_string())
}
