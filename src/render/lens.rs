//! A lesson's demo shows its lesson's part of the story. The handshake
//! lesson's demo is made for the handshake; the lessons whose demo is the
//! tour itself (sockets, the triple, the three stages, states, many
//! clients) look at it through a lens: the stages and the kinds of event
//! the lesson is about. What the lens leaves out is counted and said at
//! the end, with the command that shows the whole story. Only the human
//! timeline has a lens; `--json` has every event.

use crate::engine::event::{Body, Event, Stage};
use crate::t;

#[derive(Clone, Copy, Debug)]
pub struct Lens {
    /// The stages shown, first and last.
    pub stages: (Stage, Stage),
    /// Show the packets on the wire.
    pub packets: bool,
    /// Show the TCP states (and the bytes moved).
    pub states: bool,
    /// The command that shows the whole story.
    pub whole: &'static str,
}

impl Lens {
    /// Is `ev` in view? Errors and the events that end a command always are:
    /// a lens never hides a failure.
    pub fn shows(&self, ev: &Event) -> bool {
        if ev.is_essential() || matches!(ev.body, Body::Error { .. }) {
            return true;
        }
        let (first, last) = self.stages;
        if ev.stage < first || ev.stage > last {
            return false;
        }
        match ev.body {
            Body::Packet { .. } => self.packets,
            Body::State { .. } | Body::Data { .. } => self.states,
            _ => true,
        }
    }

    /// The closing line: what was left out, and where to see it.
    pub fn left_out(&self, hidden: u64) -> Option<String> {
        if hidden == 0 {
            return None;
        }
        let whole = self.whole;
        Some(t!(
            "This demo shows only its lesson's part: {hidden} more events (other stages, packets or states) are in `{whole}`, and all of them in `--json`.",
            "这个演示只显示本课相关的部分：另外 {hidden} 个事件（其他阶段、数据包或状态）可以用 `{whole}` 查看，--json 会列出全部。"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{Proto, Side};

    fn ev(stage: Stage, body: Body) -> Event {
        Event {
            t: 0.0,
            side: Side::Client,
            stage,
            proto: Proto::Tcp,
            local: None,
            remote: None,
            conn: Some("C1".into()),
            task: None,
            body,
        }
    }

    fn packet() -> Body {
        Body::Packet {
            flags: "SYN".into(),
            seq: 0,
            ack: None,
            len: 0,
        }
    }

    fn note() -> Body {
        Body::Note {
            topic: "tuple",
            text: String::new(),
            facts: Default::default(),
        }
    }

    #[test]
    fn a_lens_shows_its_stages_and_kinds_and_never_hides_an_error() {
        let lens = Lens {
            stages: (Stage::Listen, Stage::Confirm),
            packets: false,
            states: true,
            whole: "sockdemo tour",
        };
        assert!(lens.shows(&ev(Stage::Confirm, note())));
        assert!(!lens.shows(&ev(Stage::Transfer, note())), "a later stage");
        assert!(
            !lens.shows(&ev(Stage::Request, packet())),
            "packets are off"
        );
        let error = Body::Error {
            code: "reset",
            error: String::new(),
            text: String::new(),
        };
        assert!(lens.shows(&ev(Stage::Close, error)));
        assert!(lens.left_out(0).is_none());
        assert!(lens.left_out(7).unwrap().contains("7 more events"));
    }
}
