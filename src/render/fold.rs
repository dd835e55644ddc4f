//! Repeats told once: the tour with several clients tells the first
//! client's part of each stage in full. A later client whose part of that
//! stage is made of the same events (the same calls with the same results,
//! the same packets, the same states; the order in which two threads and
//! the wire interleave may differ) is told in one line that says so and
//! gives what is its own: its descriptors, its port, its thread, its bytes,
//! where its states ended. Anything that differs in the least is told in
//! full, so a fold never hides a difference.
//!
//! Only the human timeline folds; `--json` and `--verbose` have every event.

use crate::engine::event::{Body, Event, Proto, Side, Stage};
use crate::t;
use std::collections::HashMap;
use std::sync::Arc;

/// The connections told so far, and a later one's part held until it ends.
#[derive(Default)]
pub struct Fold {
    /// For each stage, the connection told in full first, and its steps.
    first: HashMap<Stage, Told>,
    /// A later connection's part, held until something else comes.
    held: Option<Held>,
    /// The first folded line has said how to see every event.
    said_how: bool,
    /// The command has `--verbose` (the tour); otherwise `--json` is the way.
    verbose_flag: bool,
}

struct Told {
    conn: Arc<str>,
    steps: Vec<String>,
}

impl Told {
    fn sorted(&self) -> Vec<String> {
        let mut steps = self.steps.clone();
        steps.sort();
        steps
    }
}

struct Held {
    conn: Arc<str>,
    events: Vec<Event>,
}

impl Fold {
    /// A fold for a command that has `--verbose` (`verbose_flag`) or not.
    pub fn new(verbose_flag: bool) -> Fold {
        Fold {
            verbose_flag,
            ..Fold::default()
        }
    }

    /// The events to draw now that `ev` came: none while a part is held,
    /// the held part (folded or whole) when something else comes.
    pub fn push(&mut self, ev: Event) -> Vec<Event> {
        let Some(conn) = ev.conn.clone() else {
            return self.release_with(ev);
        };
        let stage = ev.stage;
        match self.first.get(&stage).map(|told| told.conn.clone()) {
            // The first connection in this stage: told in full, and remembered.
            None => {
                let out = self.release();
                self.first.insert(
                    stage,
                    Told {
                        conn,
                        steps: Vec::new(),
                    },
                );
                self.tell_first(out, ev)
            }
            Some(first) if first == conn => {
                let out = self.release();
                self.tell_first(out, ev)
            }
            // A later connection: hold its part (it may span stages).
            Some(_) => match &mut self.held {
                Some(held) if held.conn == conn => {
                    held.events.push(ev);
                    Vec::new()
                }
                _ => {
                    let out = self.release();
                    self.held = Some(Held {
                        conn,
                        events: vec![ev],
                    });
                    out
                }
            },
        }
    }

    fn tell_first(&mut self, mut out: Vec<Event>, ev: Event) -> Vec<Event> {
        if let Some(told) = self.first.get_mut(&ev.stage) {
            told.steps.push(step(&ev));
        }
        out.push(ev);
        out
    }

    /// Is a part held (to be released when the story pauses)?
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The held part: one line if, stage by stage, it made the same steps
    /// as the first connection, else every event of it.
    pub fn release(&mut self) -> Vec<Event> {
        let Some(held) = self.held.take() else {
            return Vec::new();
        };
        let mut first = None;
        let mut same = held.events.len() > 1;
        let mut stages: Vec<Stage> = held.events.iter().map(|e| e.stage).collect();
        stages.sort();
        stages.dedup();
        for stage in &stages {
            // The same steps, in whatever order the evidence of two
            // threads and the wire happened to interleave.
            let mut part: Vec<String> = held
                .events
                .iter()
                .filter(|e| e.stage == *stage)
                .map(step)
                .collect();
            part.sort();
            match self.first.get(stage) {
                Some(told)
                    if first.as_ref().is_none_or(|f| *f == told.conn) && told.sorted() == part =>
                {
                    first = Some(told.conn.clone());
                }
                _ => same = false,
            }
        }
        match first {
            Some(first) if same => {
                let how = (!self.said_how).then_some(self.verbose_flag);
                let line = summary(&held, &first, how);
                self.said_how = true;
                vec![line]
            }
            _ => held.events,
        }
    }

    fn release_with(&mut self, ev: Event) -> Vec<Event> {
        let mut out = self.release();
        out.push(ev);
        out
    }
}

/// What one event did, without what is the connection's own (descriptor
/// numbers, ports, threads, times, the bytes' text): two connections with
/// the same steps did the same thing.
fn step(ev: &Event) -> String {
    let side = match ev.side {
        Side::Server => "S",
        Side::Client => "C",
    };
    match &ev.body {
        Body::Syscall {
            call,
            ok,
            ret,
            error,
            ..
        } => {
            // A new descriptor's number is the connection's own.
            let ret = if matches!(*call, "socket" | "accept") {
                None
            } else {
                *ret
            };
            format!("{side} {call} {ok} {ret:?} {error:?}")
        }
        Body::State {
            from,
            to,
            source,
            via,
            detail,
        } => format!("{side} state {from:?} {to:?} {source:?} {via:?} {detail:?}"),
        Body::Data {
            dir, bytes, cut, ..
        } => format!("{side} data {dir:?} {bytes} {cut}"),
        Body::Packet {
            flags,
            seq,
            ack,
            len,
        } => format!("{side} packet {flags} {seq} {ack:?} {len}"),
        Body::Note { topic, .. } => format!("{side} note {topic}"),
        Body::Error { code, .. } => format!("{side} error {code}"),
    }
}

/// The one line for a part that repeats `first`'s: how many steps of each
/// kind, what is this connection's own, and where its states ended.
/// `how`: say how to see every event (with `--verbose` if the command has it).
fn summary(held: &Held, first: &str, how: Option<bool>) -> Event {
    let events = &held.events;
    let count = |f: fn(&Body) -> bool| events.iter().filter(|e| f(&e.body)).count();
    let kinds = [
        (
            count(|b| matches!(b, Body::Syscall { .. })),
            t!("call", "个调用"),
            t!("calls", "个调用"),
        ),
        (
            count(|b| matches!(b, Body::Packet { .. })),
            t!("packet", "个数据包"),
            t!("packets", "个数据包"),
        ),
        (
            count(|b| matches!(b, Body::State { .. })),
            t!("state", "个状态"),
            t!("states", "个状态"),
        ),
    ];
    let kinds: Vec<String> = kinds
        .iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, one, many)| match (crate::i18n::current(), n) {
            (crate::lessons::Lang::Zh, n) => format!("{n} {one}"),
            (_, 1) => format!("1 {one}"),
            (_, n) => format!("{n} {many}"),
        })
        .collect();
    let kinds = kinds.join(", ");
    let n = events.len();
    let own = own_facts(events);
    let own = if own.is_empty() {
        String::new()
    } else {
        format!(": {}", own.join(", "))
    };
    let how = match how {
        Some(true) => t!(" (--verbose shows every event)", "（--verbose 逐条显示）"),
        Some(false) => t!(" (--json has every event)", "（--json 包含每个事件）"),
        None => String::new(),
    };
    let at = events.first().expect("a held part has events");
    let stage = events.last().map_or(at.stage, |e| e.stage);
    let mut facts = serde_json::Map::new();
    facts.insert("same_as".into(), first.into());
    facts.insert("events".into(), n.into());
    Event {
        t: at.t,
        side: Side::Client,
        stage,
        proto: at.proto,
        local: None,
        remote: None,
        conn: Some(held.conn.clone()),
        task: None,
        body: Body::Note {
            topic: "same",
            text: t!(
                "the same {n} events as {first} ({kinds}){own}{how}",
                "与 {first} 相同的 {n} 个事件（{kinds}）{own}{how}"
            ),
            facts,
        },
    }
}

/// What is this connection's own in a folded part: the descriptors its
/// calls returned, its ephemeral port, its thread, the first bytes it
/// moved, and the last state of each side.
fn own_facts(events: &[Event]) -> Vec<String> {
    let mut own = Vec::new();
    let who = |ev: &Event| match (ev.side, ev.conn.as_deref()) {
        (Side::Server, Some(c)) => format!("S·{c} "),
        _ => String::new(),
    };
    for ev in events {
        match &ev.body {
            Body::Syscall {
                call: call @ ("socket" | "accept"),
                fd,
                ret: Some(ret),
                ok: true,
                ..
            } => {
                let fd = fd.map(|fd| fd.to_string()).unwrap_or_default();
                own.push(format!("{}{call}({fd}) = {ret}", who(ev)));
            }
            Body::Note { topic, facts, .. } => {
                if let Some(thread) = facts.get("thread").filter(|_| *topic == "thread") {
                    own.push(t!("thread {thread}", "线程 {thread}"));
                }
                if let (Some(tuple), Side::Client) = (facts.get("tuple"), ev.side) {
                    if let Some(port) = tuple[1].as_str().and_then(|a| a.rsplit(':').next()) {
                        own.push(t!("port {port}", "端口 {port}"));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Body::Data { bytes, text, .. }) = events
        .iter()
        .map(|e| &e.body)
        .find(|b| matches!(b, Body::Data { .. }))
    {
        own.push(t!("{bytes} bytes \"{text}\"", "{bytes} 字节 \"{text}\""));
    }
    for side in [Side::Server, Side::Client] {
        let last = events.iter().rev().find_map(|e| match &e.body {
            Body::State { to, .. } if e.side == side && e.proto == Proto::Tcp => {
                Some((who(e), to.name()))
            }
            _ => None,
        });
        if let Some((who, state)) = last {
            let who = if who.is_empty() {
                events
                    .iter()
                    .find_map(|e| e.conn.as_deref().map(|c| format!("{c} ")))
                    .unwrap_or_default()
            } else {
                who
            };
            own.push(format!("{who}{state}"));
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{Source, TcpState};

    fn ev(conn: &str, side: Side, stage: Stage, body: Body) -> Event {
        Event {
            t: 1.0,
            side,
            stage,
            proto: Proto::Tcp,
            local: None,
            remote: None,
            conn: Some(conn.into()),
            task: None,
            body,
        }
    }

    fn call(name: &'static str, ret: i64) -> Body {
        Body::Syscall {
            call: name,
            fd: Some(3),
            args: String::new(),
            ok: true,
            ret: Some(ret),
            error: None,
            syscall: None,
            took: 0.0,
            why: None,
        }
    }

    fn state(from: TcpState, to: TcpState) -> Body {
        Body::State {
            from,
            to,
            source: Source::Packet,
            via: None,
            detail: None,
        }
    }

    /// C1's part of CONFIRM, or another client's with its own numbers.
    fn part(conn: &str, fd: i64) -> Vec<Event> {
        vec![
            ev(conn, Side::Client, Stage::Confirm, call("socket", fd)),
            ev(
                conn,
                Side::Client,
                Stage::Confirm,
                state(TcpState::SynSent, TcpState::Established),
            ),
            ev(conn, Side::Server, Stage::Confirm, call("accept", fd + 1)),
        ]
    }

    fn feed(fold: &mut Fold, events: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        for e in events {
            out.extend(fold.push(e));
        }
        out
    }

    fn text(e: &Event) -> String {
        match &e.body {
            Body::Note { text, .. } => text.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_part_that_repeats_the_first_is_told_in_one_line_with_its_own_numbers() {
        let mut fold = Fold::default();
        assert_eq!(feed(&mut fold, part("C1", 11)).len(), 3, "C1 in full");
        assert!(feed(&mut fold, part("C2", 13)).is_empty(), "C2 held");
        let out = fold.release();
        assert_eq!(out.len(), 1, "{out:?}");
        let line = text(&out[0]);
        assert!(
            line.starts_with("the same 3 events as C1 (2 calls, 1 state)"),
            "{line}"
        );
        for own in ["socket(3) = 13", "S·C2 accept(3) = 14", "C2 ESTABLISHED"] {
            assert!(line.contains(own), "{own} in {line}");
        }
        assert_eq!(out[0].conn.as_deref(), Some("C2"));
    }

    #[test]
    fn a_part_that_differs_in_one_result_is_told_in_full() {
        let mut fold = Fold::default();
        feed(&mut fold, part("C1", 11));
        let mut c2 = part("C2", 13);
        c2[1] = ev(
            "C2",
            Side::Client,
            Stage::Confirm,
            state(TcpState::SynSent, TcpState::Closed),
        );
        feed(&mut fold, c2);
        assert_eq!(fold.release().len(), 3, "every event of C2");
    }

    #[test]
    fn a_shorter_or_longer_part_is_told_in_full() {
        let mut fold = Fold::default();
        feed(&mut fold, part("C1", 11));
        let mut c2 = part("C2", 13);
        c2.pop();
        feed(&mut fold, c2);
        assert_eq!(fold.release().len(), 2);
        let mut c3 = part("C3", 15);
        c3.push(ev("C3", Side::Server, Stage::Confirm, call("accept", 17)));
        feed(&mut fold, c3);
        assert_eq!(fold.release().len(), 4);
    }

    #[test]
    fn the_next_connection_or_a_story_line_releases_what_is_held() {
        let mut fold = Fold::default();
        feed(&mut fold, part("C1", 11));
        assert!(feed(&mut fold, part("C2", 13)).is_empty());
        // C3's first event releases C2's part (folded), and is held itself.
        let out = feed(&mut fold, part("C3", 15));
        assert_eq!(out.len(), 1);
        assert!(fold.holding());
        // A line of the story (no connection) releases C3 before itself.
        let mut story = ev("C1", Side::Server, Stage::Close, call("close", 0));
        story.conn = None;
        let out = fold.push(story);
        assert_eq!(out.len(), 2, "C3's line, then the story's");
        assert!(!fold.holding());
    }

    #[test]
    fn the_first_connection_interleaved_releases_the_later_one_in_full() {
        let mut fold = Fold::default();
        let c1 = part("C1", 11);
        fold.push(c1[0].clone());
        // C2 starts before C1's part is over: its part cannot be compared.
        assert!(fold.push(part("C2", 13)[0].clone()).is_empty());
        let out = fold.push(c1[1].clone());
        assert_eq!(out.len(), 2, "C2's one event in full, then C1's");
        assert!(matches!(out[0].body, Body::Syscall { .. }));
    }
}
