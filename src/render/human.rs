//! The timeline for people: one line per event, an explanation under the
//! calls that matter, and a heading whenever the story moves to a new stage.

use crate::engine::event::{Body, Dir, Event, Proto, Side, Source, Stage};
use crate::t;
use colored::{ColoredString, Colorize};

/// One column for a single program (`listen`, `connect`), or the server on
/// the left and the clients on the right (`tour`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Single,
    Columns,
}

pub struct Human {
    layout: Layout,
    /// The layout asked for (two columns fall back to one when narrow).
    wanted: Layout,
    width: usize,
    story: Story,
    brief_chat: bool,
    /// Set when the terminal was resized (SIGWINCH): the width is read
    /// again before the next event, not for every event.
    resized: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Explain each kind of call once (the tour with several clients):
    /// the explanations already given, with numbers and labels blanked.
    once: Option<std::collections::HashSet<String>>,
}

/// The narrowest width the timeline is laid out for (a pane beside another).
const MIN_WIDTH: usize = 40;

/// Where the story as a whole is, for the headings: a heading is printed
/// when the timeline moves on to a later stage, not each time one
/// connection's line follows another's. When every connection has closed
/// and a new one comes, the story begins again.
#[derive(Default)]
pub(crate) struct Story {
    /// The latest stage headed, and for which protocol.
    at: Option<(Stage, Proto)>,
    /// Connections not yet in their close stage.
    open: std::collections::HashSet<(Proto, std::sync::Arc<str>)>,
}

/// Connections remembered as open, at most (memory stays bounded).
const OPEN_MAX: usize = 4096;

impl Story {
    /// The heading to print before `ev`, if the story moves on with it.
    pub(crate) fn heading(&mut self, ev: &Event) -> Option<(Stage, Proto)> {
        // A traced program's start, end and output belong to no stage of
        // a connection's story.
        match &ev.body {
            crate::engine::event::Body::Note { topic, .. }
                if matches!(*topic, "started" | "exited" | "output") =>
            {
                return None;
            }
            // A socket closed before it ever had an address (a runtime's
            // probe, as a JVM makes at start): no connection's story.
            crate::engine::event::Body::Syscall { call: "close", .. }
                if ev.local.is_none() && ev.conn.is_none() =>
            {
                return None;
            }
            _ => {}
        }
        let key = ev.conn.clone().map(|c| (ev.proto, c));
        let new_conn = key.as_ref().is_some_and(|k| !self.open.contains(k));
        if let Some(k) = key {
            if ev.stage < Stage::Close {
                if self.open.len() >= OPEN_MAX {
                    // Peers that never close (UDP), or whose close was not
                    // shown: forgetting them costs at most a heading.
                    self.open.clear();
                }
                self.open.insert(k);
            } else {
                self.open.remove(&k);
            }
        }
        let fresh_start = new_conn
            && ev.stage < Stage::Close
            && self.open.len() == 1
            && self.at.is_some_and(|(s, _)| s == Stage::Close);
        let moves_on = match self.at {
            None => true,
            Some((stage, proto)) => ev.stage > stage || (proto != ev.proto && ev.stage >= stage),
        };
        (moves_on || fresh_start).then(|| {
            self.at = Some((ev.stage, ev.proto));
            (ev.stage, ev.proto)
        })
    }
}

const TIME_WIDTH: usize = 8;

pub(crate) fn stage_heading(stage: Stage, proto: Proto) -> String {
    // UDP has no connection: its stages get their own words.
    if proto == Proto::Udp {
        return match stage {
            Stage::Listen => t!(
                "1 LISTEN · the server binds its UDP socket (no listen(), no accept())",
                "1 LISTEN · 服务器绑定它的 UDP 套接字（没有 listen() 和 accept()）"
            ),
            Stage::Request | Stage::Confirm => t!(
                "2 REQUEST · a UDP client gets ready (no connection, no handshake)",
                "2 REQUEST · UDP 客户端准备好（没有连接，没有握手）"
            ),
            Stage::Transfer => t!("TRANSFER · datagrams", "TRANSFER · 数据报"),
            Stage::Close => t!(
                "CLOSE · the UDP socket is closed (nothing goes on the wire)",
                "CLOSE · 关闭 UDP 套接字（线路上什么也不发送）"
            ),
        };
    }
    match stage {
        Stage::Listen => t!("1 LISTEN · the server listens", "1 LISTEN · 服务器监听"),
        Stage::Request => t!(
            "2 REQUEST · a client requests a connection",
            "2 REQUEST · 客户端请求连接"
        ),
        Stage::Confirm => t!(
            "3 CONFIRM · the connection is confirmed",
            "3 CONFIRM · 连接得到确认"
        ),
        Stage::Transfer => t!("TRANSFER · data flows", "TRANSFER · 传输数据"),
        Stage::Close => t!("CLOSE · the connection is closed", "CLOSE · 关闭连接"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Call,
    Failed,
    Kernel,
    Inferred,
    DataIn,
    DataOut,
    Note,
    Why,
    Error,
    Packet,
}

fn paint(text: &str, style: Style) -> ColoredString {
    match style {
        Style::Call => text.cyan(),
        Style::Failed => text.red().bold(),
        Style::Kernel => text.yellow(),
        Style::Inferred => text.yellow().dimmed().italic(),
        Style::DataIn => text.green(),
        Style::DataOut => text.magenta(),
        Style::Note => text.normal(),
        Style::Why => text.dimmed(),
        Style::Error => text.red(),
        Style::Packet => text.blue().bold(),
    }
}

impl Human {
    pub fn new(layout: Layout, width: usize) -> Human {
        let mut human = Human {
            layout,
            wanted: layout,
            width: 0,
            story: Story::default(),
            brief_chat: false,
            resized: None,
            once: None,
        };
        human.set_width(width);
        human
    }

    fn set_width(&mut self, width: usize) {
        self.width = width.clamp(MIN_WIDTH, 200);
        // Two columns narrower than about 40 characters each are harder to
        // read than one column whose lines say who speaks (S·C1, C1).
        self.layout = if self.width < 90 {
            Layout::Single
        } else {
            self.wanted
        };
    }

    /// Give an explanation the first time only: a call explained once is
    /// shown bare when it comes again with the same meaning (C2's socket()
    /// means what C1's did).
    pub fn explain_once(mut self, on: bool) -> Human {
        self.once = on.then(Default::default);
        self
    }

    /// On a terminal: lay each event out for the window's width now, so a
    /// resized window (or pane) is followed.
    pub fn follow_terminal(mut self, on: bool) -> Human {
        self.resized = if on { window_changes() } else { None };
        self
    }

    /// See [`super::Settings::brief_chat`].
    pub fn brief_chat(mut self, on: bool) -> Human {
        self.brief_chat = on;
        self
    }

    /// The lines for one event (with a heading first if the stage changed).
    pub fn render(&mut self, ev: &Event) -> String {
        if self.brief_chat && is_relay_detail(ev) {
            return String::new();
        }
        let resized = self
            .resized
            .as_ref()
            .is_some_and(|r| r.swap(false, std::sync::atomic::Ordering::Relaxed));
        if resized {
            if let Some((w, _)) = terminal_size::terminal_size() {
                self.set_width(w.0 as usize);
            }
        }
        let mut out = String::new();
        if self.story.heading(ev).is_some() {
            let mut title = format!("── {} ", stage_heading(ev.stage, ev.proto));
            if textwrap::core::display_width(&title) > self.width {
                // A narrow pane gets the stage's name alone: "── 2 REQUEST ".
                let heading = stage_heading(ev.stage, ev.proto);
                let name = heading.split(" · ").next().unwrap_or(&heading);
                title = format!("── {name} ");
            }
            let fill = self
                .width
                .saturating_sub(textwrap::core::display_width(&title));
            out.push_str(&format!("{}{}\n", title.bold(), "─".repeat(fill).dimmed()));
        }
        let (who, mut parts) = describe(ev);
        if let (Some(said), Body::Syscall { call, .. }) = (&mut self.once, &ev.body) {
            parts.retain(|(text, style)| {
                *style != Style::Why || said.insert(format!("{call}: {}", blank_numbers(text)))
            });
        }
        let width = match self.layout {
            Layout::Single => self.width.saturating_sub(TIME_WIDTH),
            Layout::Columns => (self.width.saturating_sub(TIME_WIDTH + 3)) / 2,
        }
        .max(24);
        // The speaker starts the first line; every other line is indented
        // under the text, so the speaker column stays clean.
        let lead = match self.layout {
            Layout::Single => format!("{who:<7} "),
            Layout::Columns => format!("{who} "),
        };
        let indent = " ".repeat(lead.chars().count());
        let mut lines: Vec<String> = Vec::new();
        for (i, (text, style)) in parts.into_iter().enumerate() {
            let first_lead = if i == 0 {
                lead.as_str()
            } else {
                indent.as_str()
            };
            // Most lines are short ASCII and fit: no need for the line
            // breaker (the costly part of drawing a busy timeline).
            let fits = text.is_ascii()
                && !text.contains('\n')
                && first_lead.chars().count() + text.len() <= width;
            let ascii = text.is_ascii();
            // A call keeps its result on its line: "bind(3, …) = 0" may
            // break inside the arguments, never before "= 0".
            let text = if fits { text } else { glue_result(&text) };
            let wrapped: Vec<std::borrow::Cow<str>> = if fits {
                vec![format!("{first_lead}{text}").into()]
            } else {
                let mut opts = textwrap::Options::new(width)
                    .initial_indent(first_lead)
                    .subsequent_indent(&indent);
                if ascii {
                    // Spaces are the only break points in ASCII text: no need
                    // for Unicode's line-breaking rules (which Chinese needs).
                    // (The glue is not an ASCII space: no break there.)
                    opts = opts.word_separator(textwrap::WordSeparator::AsciiSpace);
                }
                textwrap::wrap(&text, opts)
            };
            for (j, line) in wrapped.into_iter().enumerate() {
                let shown_lead = if i == 0 && j == 0 {
                    lead.as_str()
                } else {
                    indent.as_str()
                };
                let line = line.replace(GLUE, " ");
                let body = line.strip_prefix(shown_lead).unwrap_or(&line);
                let pad = width.saturating_sub(textwrap::core::display_width(&line));
                lines.push(format!(
                    "{}{}{}",
                    shown_lead.bold(),
                    paint(body, style),
                    " ".repeat(pad)
                ));
            }
        }
        for (i, line) in lines.iter().enumerate() {
            let time = if i == 0 {
                format!("{:>7.3}", ev.t)
            } else {
                String::new()
            };
            let row = match (self.layout, ev.side) {
                (Layout::Single, _) => format!("{:>7} {}", time.dimmed(), line.trim_end()),
                (Layout::Columns, Side::Server) => {
                    format!("{:>7} {line} {}", time.dimmed(), "│".dimmed())
                }
                (Layout::Columns, Side::Client) => {
                    format!(
                        "{:>7} {} {} {}",
                        time.dimmed(),
                        " ".repeat(width),
                        "│".dimmed(),
                        line.trim_end()
                    )
                }
            };
            out.push_str(&row);
            out.push('\n');
        }
        out
    }

    /// The column titles of the two-column layout.
    pub fn header(&self) -> Option<String> {
        (self.layout == Layout::Columns).then(|| {
            let col = ((self.width.saturating_sub(TIME_WIDTH + 3)) / 2).max(24);
            format!(
                "{:>7} {} {} {}\n",
                "t (s)",
                pad_to(&t!("SERVER S", "服务器 S"), col).bold(),
                "│",
                t!("CLIENTS C1, C2, …", "客户端 C1、C2……").bold()
            )
        })
    }
}

/// `text` padded with spaces to `width` terminal columns (a Chinese
/// character takes two).
fn pad_to(text: &str, width: usize) -> String {
    let pad = width.saturating_sub(textwrap::core::display_width(text));
    format!("{text}{}", " ".repeat(pad))
}

/// Who speaks, and the lines to show with their style.
fn describe(ev: &Event) -> (String, Vec<(String, Style)>) {
    let conn = ev.conn.as_deref();
    let who = match (ev.side, conn) {
        // A traced server's listening socket is labelled S itself.
        (Side::Server, Some("S")) => "S".to_string(),
        (Side::Server, Some(c)) => format!("S·{c}"),
        (Side::Server, None) => "S".to_string(),
        (Side::Client, Some(c)) => c.to_string(),
        (Side::Client, None) => "client".to_string(),
    };
    let mut parts = Vec::new();
    match &ev.body {
        Body::Syscall {
            call,
            fd,
            args,
            ok,
            ret,
            error,
            took,
            why,
            ..
        } => {
            let ret = match (ok, ret, error) {
                (true, Some(r), _) => format!(" = {r}"),
                (false, _, Some(e)) => format!(" = -1 {e}"),
                _ => String::new(),
            };
            // As in C (and strace): the descriptor first, then the rest.
            let args = match (fd, args.is_empty()) {
                (Some(fd), true) => fd.to_string(),
                (Some(fd), false) => format!("{fd}, {args}"),
                (None, _) => args.clone(),
            };
            // A call that waited says how long: that wait is the lesson.
            let waited = if *took >= 0.1 {
                let secs = format!("{took:.1}");
                t!(" (waited {secs} s)", "（等了 {secs} 秒）")
            } else {
                String::new()
            };
            parts.push((
                format!("{call}({args}){ret}{waited}"),
                if *ok { Style::Call } else { Style::Failed },
            ));
            if let Some(why) = why {
                parts.push((why.clone(), Style::Why));
            }
        }
        Body::State {
            from,
            to,
            source,
            via,
            detail,
        } => {
            let how = match (source, via) {
                (Source::Kernel, Some(via)) => t!("[kernel: {via}]", "[内核：{via}]"),
                (Source::Kernel, None) => t!("[kernel]", "[内核]"),
                (Source::Packet, _) => t!("[seen in packets]", "[从数据包看到]"),
                (Source::Inferred, _) => t!("[inferred, not observed]", "[推断，未观测]"),
            };
            let detail = detail
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default();
            let style = if *source == Source::Inferred {
                Style::Inferred
            } else {
                Style::Kernel
            };
            parts.push((
                {
                    let (from, to) = (from.name(), to.name());
                    t!(
                        "state {from} → {to} {how}{detail}",
                        "状态 {from} → {to} {how}{detail}"
                    )
                },
                style,
            ));
        }
        Body::Data {
            dir,
            bytes,
            text,
            cut,
        } => {
            let (arrow, style) = match dir {
                Dir::In => ("◀ in ", Style::DataIn),
                Dir::Out => ("▶ out", Style::DataOut),
            };
            let more = if *cut > 0 {
                t!(" … {cut} more bytes not shown", " ……另有 {cut} 字节未显示")
            } else {
                String::new()
            };
            parts.push((
                t!(
                    "{arrow} {bytes} bytes \"{text}\"{more}",
                    "{arrow} {bytes} 字节 \"{text}\"{more}"
                ),
                style,
            ));
        }
        Body::Packet {
            flags,
            seq,
            ack,
            len,
        } => {
            // The arrow points at the receiver: "→ S" or "→ C1".
            let to = match (ev.side, conn) {
                (Side::Client, _) => "S".to_string(),
                (Side::Server, Some(c)) => c.to_string(),
                (Side::Server, None) => t!("client", "客户端"),
            };
            // An RST without ACK carries no acknowledgement number to show.
            let ack = match ack {
                Some(ack) => format!(" ack={ack}"),
                None => String::new(),
            };
            let text = if ev.proto == Proto::Udp {
                // A datagram has no flags and no sequence numbers.
                t!(
                    "→ {to} [UDP datagram] len={len}",
                    "→ {to} [UDP 数据报] len={len}"
                )
            } else {
                t!(
                    "→ {to} [{flags}] seq={seq}{ack} len={len}",
                    "→ {to} [{flags}] seq={seq}{ack} len={len}"
                )
            };
            parts.push((text, Style::Packet));
        }
        Body::Note { text, .. } => parts.push((text.clone(), Style::Note)),
        Body::Error { error, text, .. } => {
            parts.push((t!("error: {error}", "错误：{error}"), Style::Failed));
            for para in text.split('\n') {
                parts.push((para.to_string(), Style::Error));
            }
        }
    }
    (who, parts)
}

/// In a chat, what moves one message along and is not the message: the
/// recv() and send() that worked, their bytes, and the segments that carry
/// data or only acknowledge. (Failures, handshakes, FIN and RST are kept.)
fn is_relay_detail(ev: &Event) -> bool {
    use crate::engine::event::Body;
    match &ev.body {
        Body::Syscall { call, ok, .. } => *ok && matches!(*call, "send" | "recv" | "poll"),
        Body::Data { .. } => true,
        Body::Packet { flags, .. } => !["SYN", "FIN", "RST"].iter().any(|f| flags.contains(f)),
        _ => false,
    }
}

/// A space the line breaker may not break at (U+00A0), turned back into a
/// plain space once the lines are cut.
const GLUE: char = '\u{a0}';

/// `text` with its last `) = RESULT` glued together, so that a call is
/// never split from its result (the rest of the text still wraps).
fn glue_result(text: &str) -> String {
    let Some(at) = text.rfind(") = ") else {
        return text.to_string();
    };
    let (call, rest) = text.split_at(at + 1);
    // " = 0", " = -1 ECONNREFUSED: …": the sign and the number stay.
    let rest = &rest[3..];
    let (number, after) = rest.split_once(' ').map_or((rest, ""), |(n, a)| (n, a));
    let joined = format!("{call}{GLUE}={GLUE}{number}");
    if after.is_empty() {
        joined
    } else {
        format!("{joined} {after}")
    }
}

/// `text` with every run of digits as one `#`: "a new socket just for C2"
/// and "… for C3" mean the same.
fn blank_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A flag that SIGWINCH (the terminal was resized) raises, registered once
/// for the process. None where there is no such signal (Windows).
fn window_changes() -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    #[cfg(unix)]
    {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, OnceLock};
        static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
        FLAG.get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGWINCH, flag.clone())
                .ok()
                .map(|_| flag)
        })
        .clone()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen_by(side: Side, conn: Option<&str>) -> String {
        let ev = Event {
            t: 0.0,
            side,
            stage: Stage::Listen,
            proto: Proto::Tcp,
            local: None,
            remote: None,
            conn: conn.map(Into::into),
            task: None,
            body: Body::Note {
                topic: "demo",
                text: String::new(),
                facts: Default::default(),
            },
        };
        describe(&ev).0
    }

    #[test]
    fn the_speaker_is_s_for_the_listener_and_s_dot_c_for_a_clients_socket() {
        assert_eq!(listen_by(Side::Server, None), "S");
        // A traced server's listener is labelled S: not "S·S".
        assert_eq!(listen_by(Side::Server, Some("S")), "S");
        assert_eq!(listen_by(Side::Server, Some("C2")), "S·C2");
        assert_eq!(listen_by(Side::Client, Some("C2")), "C2");
    }
}
