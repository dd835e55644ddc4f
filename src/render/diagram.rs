//! The timeline as a sequence diagram, for slides: `--diagram FILE.svg`
//! draws a picture, `--diagram FILE.mmd` writes Mermaid text.
//!
//! A diagram is built from the very events the timeline printed (the
//! recorder keeps them all), in two steps, both pure:
//!
//! 1. A story: the events become lifelines (S and the clients C1, C2…)
//!    and steps: an arrow for everything that crossed the wire, a box for
//!    every state change, a small label for `accept()` and for errors.
//!    Each step keeps the stage of its event, so both drawings can head
//!    each stage (listen, request, confirm, transfer, close).
//! 2. A drawing: [`mermaid`] or [`svg`], each a function from events to text.
//!
//! **What crosses the wire.** Without packet events, the arrows are
//! deduced from the calls, as a teacher would draw them: `connect()` is the
//! handshake, `send()` carries data, `shutdown()` and `close()` send FIN,
//! `close()` after `SO_LINGER` 0 sends RST, and an `ECONNRESET` means an RST
//! arrived. Once packets are captured (`"kind":"packet"` events), the
//! arrows are the packets themselves (SYN, SYN-ACK, ACK, FIN, RST, data),
//! and each call only names the packet it caused (see `merge_calls`).
//!
//! Narration notes are left out: a slide shows the protocol.
//!
//! **Escaping.** Previews of data come from the network. They are already
//! escaped like Rust string literals by [`super::sanitize`], and each
//! format escapes them again for itself: XML entities in SVG, Mermaid's
//! `#code;` entities in Mermaid (where `;`, `#` and `:` would otherwise end
//! or cut a message).

use crate::engine::event::{Body, Dir, Event, Proto, Side, Source, Stage, TcpState};
use crate::t;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

/// The file formats `--diagram` can write, chosen by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.mmd`: Mermaid `sequenceDiagram` text (GitHub, GitLab, Notion, mermaid.live…).
    Mermaid,
    /// `.svg`: a self-contained picture.
    Svg,
}

/// What `--diagram` accepts, for error messages.
pub const EXTENSIONS: &str = ".svg (a picture) or .mmd (Mermaid text)";

impl Format {
    /// The format a file name asks for, or a message that says which work.
    pub fn from_path(path: &Path) -> Result<Format, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("mmd") => Ok(Format::Mermaid),
            Some(other) => Err(format!(
                "a diagram cannot be written as .{other}: the file name must end in {EXTENSIONS}, such as tour.svg"
            )),
            None => Err(format!(
                "the file name must end in {EXTENSIONS}, such as tour.svg"
            )),
        }
    }

    /// The diagram of `events` in this format, titled `title`.
    pub fn render(self, events: &[Event], title: &str) -> String {
        match self {
            Format::Mermaid => mermaid(events, title),
            Format::Svg => svg(events, title),
        }
    }

    /// The diagram as pages for slides (`--diagram-pages`): SVG only;
    /// Mermaid text is one page (a viewer scrolls it).
    pub fn render_pages(self, events: &[Event], title: &str) -> Vec<String> {
        match self {
            Format::Mermaid => vec![mermaid(events, title)],
            Format::Svg => svg_pages(events, title),
        }
    }
}

// ───────────────────────────── the story ─────────────────────────────

/// A part of a [`Story`] to draw (all of it, or one page).
struct StoryRef<'a> {
    lanes: &'a [String],
    steps: &'a [Step],
}

/// Lifelines and what happened on and between them, in order.
#[derive(Debug)]
struct Story {
    /// "S", then the clients in number order: "C1", "C2", …
    lanes: Vec<String>,
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    stage: Stage,
    /// The client lifeline of the connection it belongs to, if any.
    conn: Option<usize>,
    proto: Proto,
    what: What,
}

#[derive(Debug)]
enum What {
    Arrow(Arrow),
    State(StateBox),
    /// A call that does not cross the wire but matters (`accept()`), or an error.
    Mark {
        lane: usize,
        text: String,
        error: bool,
    },
}

#[derive(Debug)]
struct Arrow {
    from: usize,
    to: usize,
    /// What a person would say: "send() 14 bytes", "close() · FIN", "SYN-ACK".
    label: String,
    /// A second line: the escaped preview of the data (quoted), or what
    /// the handshake consists of.
    detail: Option<Detail>,
    wire: Wire,
    /// Deduced from a call, not seen as a packet.
    from_call: bool,
}

#[derive(Debug)]
enum Detail {
    /// Bytes from the network, already escaped, shown quoted in a monospace font.
    Preview(String),
    Words(String),
}

/// What kind of thing crossed the wire; decides the arrow's colour and head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// The three-way handshake, or a SYN / SYN-ACK packet.
    Handshake,
    Data,
    /// A FIN: "I will send nothing more".
    Fin,
    /// A reset, or an ICMP error: the connection (or datagram) is refused or torn down.
    Reset,
    /// Sent, but no answer came (a SYN that timed out).
    Lost,
    /// A packet with only ACK set: the quiet bookkeeping of TCP.
    Ack,
}

#[derive(Debug)]
struct StateBox {
    lane: usize,
    /// Whose socket: "S" (the listener), "S·C1" (the server's socket for
    /// C1) or "C1".
    owner: String,
    /// True for the server's socket of one connection (drawn on S).
    per_client: bool,
    state: TcpState,
    source: Source,
}

/// The lifelines: S first, then every connection label in number order.
fn lanes_of(events: &[Event]) -> Vec<String> {
    let mut clients: Vec<String> = Vec::new();
    for e in events {
        // "S" is the server's own lane (a traced listener is labelled so).
        if let Some(conn) = e.conn.as_deref().filter(|c| *c != "S") {
            if !clients.iter().any(|c| c == conn) {
                clients.push(conn.to_string());
            }
        }
    }
    // "C10" after "C9": by the number, then by the text.
    clients.sort_by_key(|c| {
        let digits: String = c.chars().filter(|ch| ch.is_ascii_digit()).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), c.clone())
    });
    let mut lanes = vec!["S".to_string()];
    lanes.extend(clients);
    lanes
}

/// Builds the story. Keeps, per connection, what has already been drawn, so
/// that each FIN or RST appears once however many events reveal it.
struct Builder<'a> {
    events: &'a [Event],
    lanes: Vec<String>,
    steps: Vec<Step>,
    /// Data events already shown with the call before them.
    used: HashSet<usize>,
    /// (conn, sender lane): FIN already drawn.
    fin: HashSet<(String, usize)>,
    /// Connections torn down by a reset.
    reset: HashSet<String>,
    /// (conn, lane): SO_LINGER 0 set, so close() sends RST.
    linger0: HashSet<(String, usize)>,
    /// Connections whose handshake completed (only they close with FIN).
    open: HashSet<String>,
    /// The client lifeline and the protocol of the event being read.
    conn: (Option<usize>, Proto),
    /// (conn, from, to): bytes drawn by sends minus bytes drawn by receives.
    /// A send is drawn unless the receiver already drew those bytes, and a
    /// receive only when no send drew them: each byte once, whichever side
    /// reported first.
    balance: HashMap<(String, usize, usize), i64>,
}

fn story(events: &[Event]) -> Story {
    // In time order: packets are read a moment after they pass, and events
    // from different threads can reach the recorder out of order.
    let mut sorted = events.to_vec();
    sorted.sort_by(|a, b| a.t.total_cmp(&b.t));
    let events = &sorted[..];
    let from_packets = events.iter().any(|e| matches!(e.body, Body::Packet { .. }));
    let mut b = Builder {
        events,
        lanes: lanes_of(events),
        steps: Vec::new(),
        used: HashSet::new(),
        fin: HashSet::new(),
        reset: HashSet::new(),
        linger0: HashSet::new(),
        open: HashSet::new(),
        conn: (None, Proto::Tcp),
        balance: HashMap::new(),
    };
    for (i, e) in events.iter().enumerate() {
        b.conn = (e.conn.as_deref().and_then(|c| b.lane(c)), e.proto);
        b.event(i, e);
    }
    let steps = if from_packets {
        merge_calls(b.steps)
    } else {
        b.steps
    };
    Story {
        lanes: b.lanes,
        steps: group_stages(steps),
    }
}

/// How far (in steps) a call may be from the packet it caused.
const CALL_TO_PACKET: usize = 40;

/// With packets, the arrows are the packets; each arrow deduced from a
/// call is folded into the packet it caused (same ends, same kind, the
/// first one not yet claimed within [`CALL_TO_PACKET`] steps, so calls and
/// packets keep their order), which then names the call ("connect()",
/// "shutdown(SHUT_WR)") or shows the data's preview. A deduced arrow with
/// no packet stays only if it tells what no packet here can: a reset, a
/// SYN that got no answer, an ICMP error (not captured), or a connection
/// whose packets could not be told apart (a refused connect has no
/// address to name it by).
fn merge_calls(mut steps: Vec<Step>) -> Vec<Step> {
    let mut claimed = vec![false; steps.len()];
    let mut drop = vec![false; steps.len()];
    let has_packets = |steps: &[Step], conn: Option<usize>, proto: Proto| {
        steps.iter().any(|s| {
            s.conn == conn && s.proto == proto && matches!(&s.what, What::Arrow(a) if !a.from_call)
        })
    };
    for k in 0..steps.len() {
        let What::Arrow(call) = &steps[k].what else {
            continue;
        };
        if !call.from_call {
            continue;
        }
        let (from, to, wire) = (call.from, call.to, call.wire);
        let (conn, proto) = (steps[k].conn, steps[k].proto);
        let lo = k.saturating_sub(CALL_TO_PACKET);
        let hi = (k + CALL_TO_PACKET).min(steps.len() - 1);
        // The first packet not yet claimed: calls and packets keep their order.
        let packet = (lo..=hi).find(|&j| {
            !claimed[j]
                && steps[j].conn == conn
                && steps[j].proto == proto
                && matches!(&steps[j].what, What::Arrow(p)
                    if !p.from_call && p.from == from && p.to == to && p.wire == wire)
        });
        match packet {
            Some(j) => {
                claimed[j] = true;
                drop[k] = true;
                let note = match &steps[k].what {
                    What::Arrow(Arrow {
                        detail: Some(Detail::Preview(p)),
                        ..
                    }) => Some(Detail::Preview(p.clone())),
                    What::Arrow(a) if a.label.contains('(') => {
                        let call = a.label.split(" · ").next().unwrap_or(&a.label);
                        Some(Detail::Words(call.to_string()))
                    }
                    _ => None,
                };
                if let (What::Arrow(p), Some(note)) = (&mut steps[j].what, note) {
                    p.detail.get_or_insert(note);
                }
            }
            None => {
                let telling = matches!(wire, Wire::Reset | Wire::Lost);
                drop[k] = !telling && has_packets(&steps, conn, proto);
            }
        }
    }
    steps
        .into_iter()
        .zip(drop)
        .filter_map(|(s, d)| (!d).then_some(s))
        .collect()
}

/// Keeps a stage in one piece where a connection's state was reported
/// late. Packets are read as they pass, but the state a call reveals is
/// reported when the call returns: the client's SYN-SENT comes after the
/// SYN-ACK and ACK packets of the same handshake. A state that would
/// reopen the stage just closed, when everything since belongs to its own
/// connection, joins that stage instead of splitting it in two.
fn group_stages(steps: Vec<Step>) -> Vec<Step> {
    let mut blocks: Vec<Vec<Step>> = Vec::new();
    for step in steps {
        let n = blocks.len();
        if n > 0 && blocks[n - 1][0].stage == step.stage {
            blocks[n - 1].push(step);
            continue;
        }
        let rejoins = n >= 2
            && matches!(step.what, What::State(_))
            && step.conn.is_some()
            && blocks[n - 2][0].stage == step.stage
            && (step.stage as u8) < (blocks[n - 1][0].stage as u8)
            && blocks[n - 2].last().is_some_and(|s| s.conn == step.conn)
            && blocks[n - 1].iter().all(|s| s.conn == step.conn);
        if rejoins {
            blocks[n - 2].push(step);
        } else {
            blocks.push(vec![step]);
        }
    }
    blocks.into_iter().flatten().collect()
}

impl Builder<'_> {
    fn lane(&self, label: &str) -> Option<usize> {
        self.lanes.iter().position(|l| l == label)
    }

    /// The lifeline an event belongs to, and the one at the other end of
    /// its connection (none for the listening socket).
    fn ends(&self, e: &Event) -> (usize, Option<usize>) {
        let conn_lane = e.conn.as_deref().and_then(|c| self.lane(c));
        match e.side {
            Side::Server => (0, conn_lane),
            Side::Client => (conn_lane.unwrap_or(0), conn_lane.map(|_| 0)),
        }
    }

    fn push(&mut self, stage: Stage, what: What) {
        let (conn, proto) = self.conn;
        // A label (accept(), an error) is told under the stage it happens
        // in, without opening a stage of its own.
        let stage = match (&what, self.steps.last()) {
            (What::Mark { .. }, Some(last)) => last.stage,
            _ => stage,
        };
        self.steps.push(Step {
            stage,
            conn,
            proto,
            what,
        });
    }

    fn arrow(&mut self, stage: Stage, from: usize, to: usize, label: String, wire: Wire) {
        self.arrow_with(stage, from, to, label, None, wire);
    }

    fn arrow_with(
        &mut self,
        stage: Stage,
        from: usize,
        to: usize,
        label: String,
        detail: Option<Detail>,
        wire: Wire,
    ) {
        self.push(
            stage,
            What::Arrow(Arrow {
                from,
                to,
                label,
                detail,
                wire,
                from_call: true,
            }),
        );
    }

    fn event(&mut self, i: usize, e: &Event) {
        let (own, peer) = self.ends(e);
        let conn = e.conn.as_deref().unwrap_or("").to_string();
        match &e.body {
            Body::State { to, source, .. } => {
                let owner = match (e.side, e.conn.as_deref()) {
                    (Side::Server, None) => "S".to_string(),
                    (Side::Server, Some(c)) => format!("S·{c}"),
                    (Side::Client, c) => c.unwrap_or("C").to_string(),
                };
                self.push(
                    e.stage,
                    What::State(StateBox {
                        lane: own,
                        owner,
                        per_client: e.side == Side::Server && e.conn.is_some(),
                        state: *to,
                        source: *source,
                    }),
                );
            }
            Body::Error { code, error, .. } => {
                let text = format!("✗ {}", short_error(error, code));
                self.push(
                    e.stage,
                    What::Mark {
                        lane: own,
                        text,
                        error: true,
                    },
                );
                // ECONNRESET: a reset arrived, whether or not we saw it sent.
                if *code == "reset" {
                    if let Some(peer) = peer {
                        self.reset_arrives(e.stage, &conn, peer, own);
                    }
                }
            }
            Body::Syscall {
                call,
                args,
                ok,
                ret,
                error,
                ..
            } => {
                if *call == "accept" && *ok {
                    self.open.insert(conn.clone());
                    self.push(
                        e.stage,
                        What::Mark {
                            lane: 0,
                            text: format!("accept() → {conn}"),
                            error: false,
                        },
                    );
                }
                let Some(peer) = peer else { return };
                let error = error.as_deref().unwrap_or("");
                self.syscall(i, e, call, args, *ok, ret.unwrap_or(0), error, own, peer);
            }
            Body::Packet { flags, len, .. } => {
                if let Some(arrow) = self.packet_arrow(e, flags, *len) {
                    self.push(e.stage, What::Arrow(arrow));
                }
            }
            Body::Data { .. } | Body::Note { .. } => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn syscall(
        &mut self,
        i: usize,
        e: &Event,
        call: &str,
        args: &str,
        ok: bool,
        ret: i64,
        error: &str,
        own: usize,
        peer: usize,
    ) {
        let conn = e.conn.as_deref().unwrap_or("").to_string();
        let tcp = e.proto == Proto::Tcp;
        let stage = e.stage;
        // A non-blocking connect() starts the handshake; how it ended is
        // told by getsockopt(SO_ERROR), or by a poll() that timed out.
        let (call, ok, error) = match call {
            "connect" if error.starts_with("EINPROGRESS") => {
                self.forget(&conn);
                return;
            }
            "getsockopt" if args.contains("SO_ERROR, [0]") => ("connect", true, ""),
            "getsockopt" if args.contains("SO_ERROR, [ECONNREFUSED]") => {
                ("connect", false, "ECONNREFUSED")
            }
            "poll" if ok && ret == 0 => ("connect", false, "ETIMEDOUT"),
            _ => (call, ok, error),
        };
        match call {
            "connect" if tcp && ok => {
                // A new connection under this label (a demo may reuse C1).
                self.forget(&conn);
                self.open.insert(conn);
                self.arrow_with(
                    stage,
                    own,
                    peer,
                    "connect()".into(),
                    Some(Detail::Words(t!(
                        "handshake: SYN → SYN-ACK → ACK",
                        "三次握手：SYN → SYN-ACK → ACK"
                    ))),
                    Wire::Handshake,
                );
            }
            "connect" if tcp => {
                self.forget(&conn);
                if error.starts_with("ECONNREFUSED") {
                    self.arrow(stage, own, peer, "connect() · SYN".into(), Wire::Handshake);
                    self.arrow(
                        stage,
                        peer,
                        own,
                        t!("RST: nothing listens there", "RST：那里没有程序在监听"),
                        Wire::Reset,
                    );
                    self.reset.insert(conn);
                } else {
                    let why = if error.contains("timed out") || error.starts_with("ETIMEDOUT") {
                        t!("no answer", "没有回应")
                    } else {
                        c_name(error).to_string()
                    };
                    self.arrow(
                        stage,
                        own,
                        peer,
                        format!("connect() · SYN: {why}"),
                        Wire::Lost,
                    );
                }
            }
            "send" | "sendto" | "write" if ok && ret > 0 => {
                let preview = self.preview(i, e, Dir::Out);
                let key = (conn, own, peer);
                let before = *self.balance.get(&key).unwrap_or(&0);
                self.balance.insert(key, before + ret);
                if before >= 0 {
                    let label = sized(call, ret, e.proto);
                    self.arrow_with(stage, own, peer, label, preview, Wire::Data);
                }
            }
            "recv" | "recvfrom" | "read" if ok && ret > 0 => {
                let preview = self.preview(i, e, Dir::In);
                let key = (conn, peer, own);
                let before = *self.balance.get(&key).unwrap_or(&0);
                self.balance.insert(key, before - ret);
                if before <= 0 {
                    let label = sized(call, ret, e.proto);
                    self.arrow_with(stage, peer, own, label, preview, Wire::Data);
                }
            }
            // 0 bytes: end of stream, the peer's FIN (drawn once).
            "recv" | "read"
                if tcp
                    && ok
                    && !self.fin.contains(&(conn.clone(), peer))
                    && !self.reset.contains(&conn) =>
            {
                self.fin.insert((conn, peer));
                self.arrow(stage, peer, own, "FIN".into(), Wire::Fin);
            }
            "send" | "sendto" | "recv" | "recvfrom"
                if !tcp && error.starts_with("ECONNREFUSED") =>
            {
                // UDP has no connection to refuse: the kernel of the other
                // end answered an earlier datagram with ICMP "port unreachable".
                self.arrow(
                    stage,
                    peer,
                    own,
                    t!("ICMP: port unreachable", "ICMP：端口不可达"),
                    Wire::Reset,
                );
            }
            "setsockopt" if ok && args.contains("SO_LINGER") && args.contains("{on, 0") => {
                self.linger0.insert((conn, own));
            }
            "shutdown"
                if tcp
                    && ok
                    && (args.contains("SHUT_WR") || args.contains("SHUT_RDWR"))
                    && !self.fin.contains(&(conn.clone(), own)) =>
            {
                self.fin.insert((conn, own));
                let label = format!("shutdown({args}) · FIN");
                self.arrow(stage, own, peer, label, Wire::Fin);
            }
            "close" if tcp && ok && self.open.contains(&conn) && !self.reset.contains(&conn) => {
                if self.linger0.contains(&(conn.clone(), own)) {
                    self.reset.insert(conn);
                    self.arrow(
                        stage,
                        own,
                        peer,
                        "close() with SO_LINGER 0 · RST".into(),
                        Wire::Reset,
                    );
                } else if self.fin.insert((conn, own)) {
                    self.arrow(stage, own, peer, "close() · FIN".into(), Wire::Fin);
                }
            }
            _ => {}
        }
    }

    /// A reset reached `to`; draw it unless it is already drawn.
    fn reset_arrives(&mut self, stage: Stage, conn: &str, from: usize, to: usize) {
        if self.reset.insert(conn.to_string()) {
            self.arrow(stage, from, to, "RST".into(), Wire::Reset);
        }
    }

    /// Forget what was drawn for a label that now names a new connection.
    fn forget(&mut self, conn: &str) {
        self.fin.retain(|(c, _)| c != conn);
        self.linger0.retain(|(c, _)| c != conn);
        self.balance.retain(|(c, _, _), _| c != conn);
        self.reset.remove(conn);
        self.open.remove(conn);
    }

    /// The data event that follows call `i` on the same socket, if the
    /// next event of that socket is one: its preview goes on the arrow.
    fn preview(&mut self, i: usize, call: &Event, dir: Dir) -> Option<Detail> {
        let same_socket =
            |e: &Event| e.side == call.side && e.conn == call.conn && e.proto == call.proto;
        let (j, e) = self
            .events
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, e)| same_socket(e))?;
        match &e.body {
            Body::Data {
                dir: d, text, cut, ..
            } if *d == dir && !self.used.contains(&j) => {
                self.used.insert(j);
                Some(Detail::Preview(short_preview(text, *cut > 0)))
            }
            _ => None,
        }
    }

    /// One packet, one arrow: from the sender (the event's side) to the
    /// other end of its connection.
    fn packet_arrow(&self, e: &Event, flags: &str, len: usize) -> Option<Arrow> {
        let (from, to) = self.ends(e);
        let to = to?;
        let flags: Vec<&str> = flags
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|f| !f.is_empty())
            .collect();
        let has = |f: &str| flags.iter().any(|x| x.eq_ignore_ascii_case(f));
        let (name, wire) = if has("RST") {
            ("RST".to_string(), Wire::Reset)
        } else if has("SYN") && has("ACK") {
            ("SYN-ACK".to_string(), Wire::Handshake)
        } else if has("SYN") {
            ("SYN".to_string(), Wire::Handshake)
        } else if has("FIN") {
            ("FIN".to_string(), Wire::Fin)
        } else if len > 0 || e.proto == Proto::Udp {
            (sized("data", len as i64, e.proto), Wire::Data)
        } else {
            ("ACK".to_string(), Wire::Ack)
        };
        // The flags as the packet had them, where the name does not say it all.
        let mut named: Vec<&str> = name.split('-').collect();
        let mut sorted = flags.clone();
        named.sort_unstable();
        sorted.sort_unstable();
        let label = if flags.is_empty() || sorted == named {
            name
        } else {
            format!("{name} [{}]", flags.join(","))
        };
        Some(Arrow {
            from,
            to,
            label,
            detail: None,
            wire,
            from_call: false,
        })
    }
}

/// "send() 14 bytes"; UDP's are datagrams.
fn sized(call: &str, n: i64, proto: Proto) -> String {
    let call = if call == "data" {
        String::new()
    } else {
        format!("{call}() ")
    };
    match proto {
        Proto::Tcp => t!("{call}{n} bytes", "{call}{n} 字节"),
        Proto::Udp => t!("{call}{n}-byte datagram", "{call}{n} 字节的数据报"),
    }
}

/// How many characters of a preview fit on an arrow.
const PREVIEW_ON_ARROW: usize = 28;

/// The preview, quoted, cut to fit an arrow ("…" where bytes are left
/// out). It is cut between escapes, never inside one: half of `\x1b`
/// would read as a different byte.
fn short_preview(text: &str, cut: bool) -> String {
    let mut shown = String::new();
    let mut count = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let mut piece = c.to_string();
        if c == '\\' {
            match chars.next() {
                Some('x') => {
                    piece.push('x');
                    piece.extend(chars.by_ref().take(2));
                }
                Some('u') => {
                    piece.push('u');
                    for d in chars.by_ref() {
                        piece.push(d);
                        if d == '}' {
                            break;
                        }
                    }
                }
                Some(other) => piece.push(other),
                None => {}
            }
        }
        count += piece.chars().count();
        if count > PREVIEW_ON_ARROW {
            return format!("\"{shown}\"…");
        }
        shown.push_str(&piece);
    }
    format!("\"{shown}\"{}", if cut { "…" } else { "" })
}

/// "recv(127.0.0.1:5) failed: ECONNRESET: Connection reset by peer" →
/// "recv(): ECONNRESET"; anything else → its code.
fn short_error(error: &str, code: &str) -> String {
    let call = error
        .split_once('(')
        .map(|(call, _)| call)
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'));
    let cause = error
        .split_once("failed: ")
        .map(|(_, cause)| c_name(cause))
        .unwrap_or(code);
    match call {
        Some(call) => format!("{call}(): {cause}"),
        None => cause.to_string(),
    }
}

/// "ECONNRESET: Connection reset by peer" → "ECONNRESET"; "timed out" stays.
fn c_name(error: &str) -> &str {
    match error.split_once(':') {
        Some((name, _))
            if name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
        {
            name
        }
        _ => error,
    }
}

fn source_word(source: Source) -> String {
    match source {
        Source::Kernel => t!("kernel", "内核"),
        Source::Packet => t!("seen in packets", "从数据包看到"),
        Source::Inferred => t!("inferred", "推断"),
    }
}

/// "1 LISTEN", "the server listens": the timeline's heading in two parts.
fn stage_parts(stage: Stage) -> (String, String) {
    let heading = super::human::stage_heading(stage, crate::engine::event::Proto::Tcp);
    match heading.split_once(" · ") {
        Some((name, words)) => (name.to_string(), words.to_string()),
        None => (heading, String::new()),
    }
}

// ───────────────────────────── Mermaid ─────────────────────────────

/// The events as a Mermaid `sequenceDiagram`.
pub fn mermaid(events: &[Event], title: &str) -> String {
    let story = story(events);
    let ids: Vec<String> = story
        .lanes
        .iter()
        .enumerate()
        .map(|(i, l)| mermaid_id(l, i))
        .collect();
    let mut out = String::new();
    out.push_str("%% Made by sockdemo from the events of its timeline.\n");
    out.push_str("%% Paste into any Mermaid viewer (GitHub, GitLab, mermaid.live).\n");
    out.push_str("sequenceDiagram\n");
    let _ = writeln!(out, "    title {}", mermaid_text(title));
    for (i, id) in ids.iter().enumerate() {
        let role = if i == 0 {
            t!("server", "服务器")
        } else {
            t!("client", "客户端")
        };
        let _ = writeln!(
            out,
            "    participant {id} as {}",
            mermaid_text(&format!("{} ({role})", story.lanes[i]))
        );
    }
    let span = match ids.len() {
        1 => ids[0].clone(),
        n => format!("{},{}", ids[0], ids[n - 1]),
    };
    let mut last_stage = None;
    for step in &story.steps {
        if last_stage != Some(step.stage) {
            last_stage = Some(step.stage);
            let (name, words) = stage_parts(step.stage);
            let heading = if words.is_empty() {
                name
            } else {
                format!("{name} · {words}")
            };
            let _ = writeln!(out, "    Note over {span}: {}", mermaid_text(&heading));
        }
        match &step.what {
            What::Arrow(a) => {
                let head = match a.wire {
                    Wire::Handshake | Wire::Data | Wire::Fin => "->>",
                    Wire::Ack => "-->>",
                    Wire::Reset => "-x",
                    Wire::Lost => "--x",
                };
                let mut text = a.label.clone();
                match &a.detail {
                    Some(Detail::Preview(p)) => {
                        text.push(' ');
                        text.push_str(p);
                    }
                    Some(Detail::Words(w)) => {
                        text.push_str(" · ");
                        text.push_str(w);
                    }
                    None => {}
                }
                let _ = writeln!(
                    out,
                    "    {}{head}{}: {}",
                    ids[a.from],
                    ids[a.to],
                    mermaid_text(&text)
                );
            }
            What::State(s) => {
                let text = format!(
                    "{}: {} ({})",
                    s.owner,
                    s.state.name(),
                    source_word(s.source)
                );
                let _ = writeln!(
                    out,
                    "    Note over {}: {}",
                    ids[s.lane],
                    mermaid_text(&text)
                );
            }
            What::Mark { lane, text, .. } => {
                let _ = writeln!(out, "    Note over {}: {}", ids[*lane], mermaid_text(text));
            }
        }
    }
    out
}

/// A participant's name as Mermaid reads it: letters and digits only.
fn mermaid_id(label: &str, index: usize) -> String {
    if !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric()) {
        label.to_string()
    } else {
        format!("P{index}")
    }
}

/// Text for a Mermaid message, note or title.
///
/// Mermaid ends a message at `;` or a line break and treats `#` as the
/// start of a comment; `:` begins the message and `%%` a comment; `<`, `>`,
/// `&` and `"` reach an HTML renderer. Each becomes an entity code
/// (`#59;`), which Mermaid turns back into the character when it draws.
/// The private markers Mermaid uses for entities internally (ﬂ°, ¶ß) are
/// encoded too, so no text can forge one.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            ':' => out.push_str("#58;"),
            '%' => out.push_str("#37;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '"' => out.push_str("#quot;"),
            'ﬂ' | '°' | '¶' | 'ß' => {
                let _ = write!(out, "#{};", c as u32);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        // A message must have text.
        "-".to_string()
    } else {
        trimmed.to_string()
    }
}

// ───────────────────────────── SVG ─────────────────────────────

// Fonts every system has one of; the CJK ones for Chinese narration (--lang zh).
const SANS: &str = "DejaVu Sans, Verdana, Arial, Helvetica, Noto Sans CJK SC, PingFang SC, Microsoft YaHei, sans-serif";
const MONO: &str =
    "DejaVu Sans Mono, Menlo, Consolas, Courier New, Noto Sans Mono CJK SC, monospace";
/// Room on the left for the stage headings.
const GUTTER: f64 = 210.0;
const RIGHT: f64 = 30.0;
/// The width a projector shows well; more lifelines make it wider.
const MIN_WIDTH: f64 = 1200.0;
/// The least room between two lifelines: a state box must fit.
const MIN_LANE: f64 = 240.0;
const INK: &str = "#111111";
const MUTED: &str = "#444444";

/// Colours by stage: a faint band behind the stage, a strong strip beside it.
fn stage_colours(stage: Stage) -> (&'static str, &'static str) {
    match stage {
        Stage::Listen => ("#eef3fb", "#1d4ed8"),
        Stage::Request => ("#fdf6e7", "#b45309"),
        Stage::Confirm => ("#edf8f0", "#15803d"),
        Stage::Transfer => ("#f4effb", "#6d28d9"),
        Stage::Close => ("#fbeeee", "#b91c1c"),
    }
}

fn wire_colour(wire: Wire) -> &'static str {
    match wire {
        Wire::Handshake => "#1d4ed8",
        Wire::Data => INK,
        Wire::Fin => "#b45309",
        Wire::Reset => "#c00000",
        Wire::Lost => "#666666",
        Wire::Ack => "#555555",
    }
}

/// A rough width of `text` in pixels (no font metrics in a pure function):
/// generous, so boxes and gaps are never too small.
fn text_width(text: &str, size: f64, mono: bool) -> f64 {
    text.chars()
        .map(|c| {
            let em = if mono {
                0.62
            } else if c.is_ascii_uppercase() || c == '—' {
                0.72
            } else if c == ' ' || c == '.' || c == ',' || c == '(' || c == ')' || c == '·' {
                0.36
            } else if c.is_ascii() {
                0.58
            } else if (c as u32) >= 0x2e80 {
                1.0
            } else {
                0.7
            };
            em * size
        })
        .sum()
}

/// XML text or attribute value: the five special characters as entities,
/// and characters XML 1.0 forbids (most controls) replaced.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// How a piece of text looks. Every text in the picture is drawn through
/// [`Txt::draw`], which escapes it.
#[derive(Clone, Copy)]
struct Txt {
    size: f64,
    bold: bool,
    italic: bool,
    mono: bool,
    colour: &'static str,
    centred: bool,
    /// A white outline behind the letters keeps a label readable where it
    /// crosses a lifeline.
    halo: bool,
}

impl Txt {
    fn new(size: f64) -> Txt {
        Txt {
            size,
            bold: false,
            italic: false,
            mono: false,
            colour: INK,
            centred: false,
            halo: false,
        }
    }
    fn bold(self) -> Txt {
        Txt { bold: true, ..self }
    }
    fn italic(self) -> Txt {
        Txt {
            italic: true,
            ..self
        }
    }
    fn mono(self) -> Txt {
        Txt { mono: true, ..self }
    }
    fn centred(self) -> Txt {
        Txt {
            centred: true,
            ..self
        }
    }
    fn halo(self) -> Txt {
        Txt { halo: true, ..self }
    }
    fn colour(self, colour: &'static str) -> Txt {
        Txt { colour, ..self }
    }

    fn width(&self, text: &str) -> f64 {
        text_width(text, self.size, self.mono)
    }

    fn draw(&self, out: &mut String, x: f64, y: f64, text: &str) {
        let family = if self.mono { MONO } else { SANS };
        let weight = if self.bold { "bold" } else { "normal" };
        let style = if self.italic { "italic" } else { "normal" };
        let anchor = if self.centred { "middle" } else { "start" };
        let halo = if self.halo {
            " stroke=\"#ffffff\" stroke-width=\"6\" stroke-linejoin=\"round\" paint-order=\"stroke\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-family=\"{family}\" font-size=\"{}\" font-weight=\"{weight}\" font-style=\"{style}\" text-anchor=\"{anchor}\" fill=\"{}\"{halo}>{}</text>",
            self.size,
            self.colour,
            xml(text)
        );
    }
}

/// Words wrapped to lines of about `max` pixels.
fn wrap(text: &str, size: f64, max: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if !line.is_empty() && text_width(&candidate, size, false) > max {
            lines.push(std::mem::replace(&mut line, word.to_string()));
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Where each step goes, before anything is drawn (the stage bands behind
/// the steps need their heights).
struct Placed<'a> {
    y: f64,
    height: f64,
    step: &'a Step,
}

struct Section {
    stage: Stage,
    top: f64,
    bottom: f64,
}

fn row_height(what: &What) -> f64 {
    match what {
        What::Arrow(a) if a.detail.is_some() => 92.0,
        What::Arrow(_) => 66.0,
        What::State(_) => 70.0,
        What::Mark { .. } => 54.0,
    }
}

/// The events as a self-contained SVG picture.
pub fn svg(events: &[Event], title: &str) -> String {
    let story = story(events);
    svg_page(
        &story.lanes,
        &story.steps,
        title,
        packets_seen(&story.steps),
    )
}

/// Did any state come from the packets? (The legend says what green means.)
fn packets_seen(steps: &[Step]) -> bool {
    steps
        .iter()
        .any(|s| matches!(&s.what, What::State(b) if b.source == Source::Packet))
}

/// At most this many rows on one page of `--diagram-pages`: with the
/// headings, a page stays about as tall as a 1080-pixel slide is high.
const ROWS_PER_PAGE: usize = 9;

/// The diagram as pages for slides: a new page at each stage, and after
/// [`ROWS_PER_PAGE`] rows. Each page is a whole SVG, with the lifelines.
pub fn svg_pages(events: &[Event], title: &str) -> Vec<String> {
    let story = story(events);
    let mut pages: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=story.steps.len() {
        let new_stage = i < story.steps.len() && story.steps[i].stage != story.steps[i - 1].stage;
        if i == story.steps.len() || new_stage || i - start >= ROWS_PER_PAGE {
            pages.push(start..i);
            start = i;
        }
    }
    let n = pages.len();
    // One legend for every page, from the whole story.
    let packets = packets_seen(&story.steps);
    pages
        .into_iter()
        .enumerate()
        .map(|(k, range)| {
            let page = k + 1;
            let title = t!("{title} ({page}/{n})", "{title}（{page}/{n}）");
            svg_page(&story.lanes, &story.steps[range], &title, packets)
        })
        .collect()
}

/// One SVG of `steps` on the lifelines `lanes`.
fn svg_page(lanes_of_story: &[String], steps: &[Step], title: &str, packets: bool) -> String {
    let story = StoryRef {
        lanes: lanes_of_story,
        steps,
    };
    let lanes = story.lanes.len() as f64;
    let width = MIN_WIDTH.max(GUTTER + RIGHT + lanes * MIN_LANE);
    let spacing = (width - GUTTER - RIGHT) / lanes;
    let lane_x = |i: usize| GUTTER + spacing * (i as f64 + 0.5);

    // Place the rows and the stage sections.
    let heads_top = 104.0;
    let heads_height = 64.0;
    let mut y: f64 = heads_top + heads_height + 24.0;
    let mut placed = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    for step in story.steps {
        if sections.last().map(|s| s.stage) != Some(step.stage) {
            if let Some(last) = sections.last_mut() {
                last.bottom = y.max(last.top + stage_heading_height(last.stage));
                y = last.bottom;
            }
            sections.push(Section {
                stage: step.stage,
                top: y,
                bottom: y,
            });
            y += 12.0;
        }
        let height = row_height(&step.what);
        placed.push(Placed { y, height, step });
        y += height;
    }
    if let Some(last) = sections.last_mut() {
        last.bottom = (y + 12.0).max(last.top + stage_heading_height(last.stage));
        y = last.bottom;
    }
    let feet_top = y + 24.0;
    let height = feet_top + heads_height + 30.0;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-labelledby=\"diagram-title\">"
    );
    let _ = writeln!(out, "<title id=\"diagram-title\">{}</title>", xml(title));
    let _ = writeln!(
        out,
        "<desc>{}</desc>",
        xml(&t!(
            "A sequence diagram made by sockdemo: the server S and its clients as lifelines, arrows for what crossed the wire, boxes for the TCP states, the stages on the left.",
            "sockdemo 生成的时序图：服务器 S 和各个客户端是生命线，箭头是线路上传过的东西，方框是 TCP 状态，左边是各个阶段。"
        ))
    );
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>"
    );

    // Title and legend.
    Txt::new(30.0).bold().draw(&mut out, 24.0, 46.0, title);
    let seen_in_packets = packets;
    let legend = if seen_in_packets {
        t!(
            "S = the server, C1, C2… = clients · blue box: the kernel reported the state · green: seen in packets · dashed: inferred",
            "S = 服务器，C1、C2… = 客户端 · 蓝框：内核报告的状态 · 绿框：从数据包看到 · 虚线框：推断的"
        )
    } else {
        t!(
            "S = the server, C1, C2… = clients · solid box: the kernel reported the state · dashed box: inferred, not observed",
            "S = 服务器，C1、C2… = 客户端 · 实线框：内核报告的状态 · 虚线框：推断的，没有观测到"
        )
    };
    Txt::new(17.0)
        .colour(MUTED)
        .draw(&mut out, 24.0, 80.0, &legend);

    // Stage bands and headings down the side.
    for s in &sections {
        let (band, strip) = stage_colours(s.stage);
        let _ = writeln!(
            out,
            "<rect x=\"0\" y=\"{:.1}\" width=\"{width:.0}\" height=\"{:.1}\" fill=\"{band}\"/>",
            s.top,
            s.bottom - s.top
        );
        let _ = writeln!(
            out,
            "<rect x=\"0\" y=\"{:.1}\" width=\"8\" height=\"{:.1}\" fill=\"{strip}\"/>",
            s.top,
            s.bottom - s.top
        );
        let _ = writeln!(
            out,
            "<line x1=\"0\" y1=\"{:.1}\" x2=\"{width:.0}\" y2=\"{:.1}\" stroke=\"{strip}\" stroke-width=\"2\"/>",
            s.top, s.top
        );
        let (name, words) = stage_parts(s.stage);
        Txt::new(23.0)
            .bold()
            .colour(strip)
            .draw(&mut out, 22.0, s.top + 34.0, &name);
        for (k, line) in wrap(&words, 17.0, GUTTER - 36.0).iter().enumerate() {
            Txt::new(17.0).draw(&mut out, 22.0, s.top + 60.0 + 22.0 * k as f64, line);
        }
    }

    // Lifelines, with the participants at the top and again at the bottom.
    for (i, label) in story.lanes.iter().enumerate() {
        let x = lane_x(i);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{feet_top:.1}\" stroke=\"#555555\" stroke-width=\"2.5\"/>",
            heads_top + heads_height
        );
        for top in [heads_top, feet_top] {
            participant(&mut out, x, top, heads_height, label, i == 0);
        }
    }

    for p in &placed {
        match &p.step.what {
            What::Arrow(a) => draw_arrow(&mut out, a, lane_x(a.from), lane_x(a.to), p.y, width),
            What::State(s) => draw_state(&mut out, s, lane_x(s.lane), p.y, p.height, width),
            What::Mark { lane, text, error } => {
                draw_mark(&mut out, lane_x(*lane), p.y, text, *error, width)
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// How tall a stage's heading is in the gutter: the section is at least that tall.
fn stage_heading_height(stage: Stage) -> f64 {
    let (_, words) = stage_parts(stage);
    60.0 + 22.0 * wrap(&words, 17.0, GUTTER - 36.0).len() as f64
}

fn participant(out: &mut String, x: f64, top: f64, height: f64, label: &str, server: bool) {
    let (fill, stroke) = if server {
        ("#1d4ed8", "#1e3a8a")
    } else {
        ("#0f766e", "#134e4a")
    };
    let w = 150.0;
    let _ = writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{w}\" height=\"{height}\" rx=\"10\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"2\"/>",
        x - w / 2.0
    );
    let white = Txt::new(26.0).bold().centred().colour("#ffffff");
    white.draw(out, x, top + 31.0, label);
    let role = if server {
        t!("server", "服务器")
    } else {
        t!("client", "客户端")
    };
    Txt {
        size: 16.0,
        bold: false,
        ..white
    }
    .draw(out, x, top + 53.0, &role);
}

fn draw_arrow(out: &mut String, a: &Arrow, x1: f64, x2: f64, top: f64, width: f64) {
    let colour = wire_colour(a.wire);
    let line_y = top + 42.0;
    let dir = if x2 >= x1 { 1.0 } else { -1.0 };
    let head = 18.0;
    // Stop short of the lifeline a little, so the head is visible on it.
    let tip = x2 - dir * 3.0;
    let (end, dash, stroke) = match a.wire {
        // A lost SYN never arrives: the line stops two thirds of the way, crossed out.
        Wire::Lost => (x1 + (x2 - x1) * 0.66, " stroke-dasharray=\"10 7\"", 3.0),
        Wire::Ack => (tip - dir * head, " stroke-dasharray=\"4 6\"", 2.5),
        Wire::Reset => (tip - dir * head, "", 4.0),
        _ => (tip - dir * head, "", 3.5),
    };
    let _ = writeln!(
        out,
        "<line x1=\"{x1:.1}\" y1=\"{line_y:.1}\" x2=\"{end:.1}\" y2=\"{line_y:.1}\" stroke=\"{colour}\" stroke-width=\"{stroke}\"{dash}/>"
    );
    if a.wire == Wire::Lost {
        let s = 10.0;
        let _ = writeln!(
            out,
            "<path d=\"M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}\" stroke=\"#c00000\" stroke-width=\"4\"/>",
            end - s, line_y - s, end + s, line_y + s, end - s, line_y + s, end + s, line_y - s
        );
    } else {
        let back = tip - dir * head;
        let _ = writeln!(
            out,
            "<polygon points=\"{tip:.1},{line_y:.1} {back:.1},{:.1} {back:.1},{:.1}\" fill=\"{colour}\"/>",
            line_y - 9.0,
            line_y + 9.0
        );
        if a.wire == Wire::Reset {
            // A reset ends the connection at once: a bar at the arrow's tip.
            let _ = writeln!(
                out,
                "<line x1=\"{tip:.1}\" y1=\"{:.1}\" x2=\"{tip:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"4\"/>",
                line_y - 14.0,
                line_y + 14.0
            );
        }
    }
    // Labels centred on the arrow, kept inside the picture.
    let centre = |text: &str, style: &Txt| {
        let half = style.width(text) / 2.0;
        ((x1 + x2) / 2.0).clamp(GUTTER + half + 4.0, width - half - 8.0)
    };
    let label_colour = match a.wire {
        Wire::Data | Wire::Lost | Wire::Ack => INK,
        _ => colour,
    };
    let label = Txt::new(20.0).bold().centred().halo().colour(label_colour);
    label.draw(out, centre(&a.label, &label), line_y - 12.0, &a.label);
    match &a.detail {
        Some(Detail::Preview(p)) => {
            let preview = Txt::new(19.0).mono().centred().halo().colour("#14532d");
            preview.draw(out, centre(p, &preview), line_y + 30.0, p);
        }
        Some(Detail::Words(w)) => {
            let words = Txt::new(17.0).centred().halo().colour(MUTED);
            words.draw(out, centre(w, &words), line_y + 30.0, w);
        }
        None => {}
    }
}

/// Where a box of width `w` centred on `x` goes: on its lifeline, but
/// never out of the picture.
fn keep_inside(x: f64, w: f64, width: f64) -> f64 {
    x.clamp(
        GUTTER + w / 2.0,
        (width - 4.0 - w / 2.0).max(GUTTER + w / 2.0),
    )
}

fn draw_state(out: &mut String, s: &StateBox, x: f64, top: f64, height: f64, width: f64) {
    let name = s.state.name();
    let mut second = source_word(s.source);
    if s.per_client {
        // On the server's lifeline: say which client this socket serves.
        second = format!("{} · {second}", s.owner.trim_start_matches("S·"));
    } else if s.owner == "S" {
        second = t!("listener · {second}", "监听套接字 · {second}");
    }
    let w = text_width(name, 20.0, false)
        .max(text_width(&second, 16.0, false))
        .max(110.0)
        + 28.0;
    let h = height - 14.0;
    let x = keep_inside(x, w, width);
    let (fill, stroke, dash) = match s.source {
        Source::Kernel => ("#dbe8ff", "#1d4ed8", ""),
        Source::Packet => ("#dcfce7", "#15803d", ""),
        Source::Inferred => ("#ffffff", "#555555", " stroke-dasharray=\"8 5\""),
    };
    let _ = writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"10\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"2.5\"{dash}/>",
        x - w / 2.0,
        top + 7.0
    );
    Txt::new(20.0)
        .bold()
        .centred()
        .draw(out, x, top + 34.0, name);
    let small = Txt::new(16.0).centred().colour(MUTED);
    let small = if s.source == Source::Inferred {
        small.italic()
    } else {
        small
    };
    small.draw(out, x, top + 55.0, &second);
}

fn draw_mark(out: &mut String, x: f64, top: f64, text: &str, error: bool, width: f64) {
    let (fill, stroke, ink) = if error {
        ("#fee2e2", "#b91c1c", "#7f1d1d")
    } else {
        ("#f3f4f6", "#374151", INK)
    };
    let w = text_width(text, 18.0, true) + 26.0;
    let x = keep_inside(x, w, width);
    let _ = writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"38\" rx=\"19\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"2\"/>",
        x - w / 2.0,
        top + 8.0
    );
    Txt::new(18.0)
        .bold()
        .mono()
        .centred()
        .colour(ink)
        .draw(out, x, top + 33.0, text);
}

// ───────────────────────────── tests ─────────────────────────────

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ev(side: Side, stage: Stage, conn: Option<&str>, body: Body) -> Event {
        Event {
            t: 0.0,
            side,
            stage,
            proto: Proto::Tcp,
            local: None,
            remote: None,
            conn: conn.map(Arc::from),
            task: None,
            body,
        }
    }

    fn call(
        side: Side,
        stage: Stage,
        conn: Option<&str>,
        call: &'static str,
        args: &str,
        ret: i64,
    ) -> Event {
        ev(
            side,
            stage,
            conn,
            Body::Syscall {
                call,
                fd: None,
                args: args.into(),
                ok: ret >= 0,
                ret: Some(ret),
                error: None,
                syscall: None,
                took: 0.0,
                why: None,
            },
        )
    }

    fn failed(side: Side, stage: Stage, conn: &str, call: &'static str, error: &str) -> Event {
        ev(
            side,
            stage,
            Some(conn),
            Body::Syscall {
                call,
                fd: None,
                args: String::new(),
                ok: false,
                ret: Some(-1),
                error: Some(error.into()),
                syscall: None,
                took: 0.0,
                why: None,
            },
        )
    }

    fn state(
        side: Side,
        conn: Option<&str>,
        from: TcpState,
        to: TcpState,
        source: Source,
    ) -> Event {
        let stage = match to {
            TcpState::Listen => Stage::Listen,
            TcpState::SynSent => Stage::Request,
            TcpState::SynReceived | TcpState::Established => Stage::Confirm,
            _ => Stage::Close,
        };
        ev(
            side,
            stage,
            conn,
            Body::State {
                from,
                to,
                source,
                via: None,
                detail: None,
            },
        )
    }

    fn data(side: Side, conn: &str, dir: Dir, text: &str) -> Event {
        ev(
            side,
            Stage::Transfer,
            Some(conn),
            Body::Data {
                dir,
                bytes: text.len(),
                text: text.into(),
                cut: 0,
            },
        )
    }

    /// The events of a tour with `n` clients, in the order the tour emits them.
    fn tour(n: usize) -> Vec<Event> {
        use Side::{Client, Server};
        use TcpState::*;
        let mut v = vec![
            call(
                Server,
                Stage::Listen,
                None,
                "socket",
                "AF_INET, SOCK_STREAM, IPPROTO_TCP",
                3,
            ),
            call(Server, Stage::Listen, None, "listen", "backlog=16", 0),
            state(Server, None, Closed, Listen, Source::Kernel),
        ];
        let labels: Vec<String> = (1..=n).map(|i| format!("C{i}")).collect();
        for c in &labels {
            let c = Some(c.as_str());
            v.push(call(
                Client,
                Stage::Request,
                c,
                "connect",
                "127.0.0.1:5000",
                0,
            ));
            v.push(state(Client, c, Closed, SynSent, Source::Inferred));
            v.push(state(Client, c, SynSent, Established, Source::Kernel));
            v.push(call(Server, Stage::Confirm, c, "accept", "", 5));
            v.push(state(Server, c, Listen, SynReceived, Source::Inferred));
            v.push(state(Server, c, SynReceived, Established, Source::Kernel));
        }
        for c in &labels {
            let msg = format!("hello from {c}\\n");
            let s = Some(c.as_str());
            v.push(call(Client, Stage::Transfer, s, "send", "14 bytes", 14));
            v.push(data(Client, c, Dir::Out, &msg));
            v.push(call(Server, Stage::Transfer, s, "recv", "", 14));
            v.push(data(Server, c, Dir::In, &msg));
            v.push(call(Server, Stage::Transfer, s, "send", "14 bytes", 14));
            v.push(data(Server, c, Dir::Out, &msg));
            v.push(call(Client, Stage::Transfer, s, "recv", "", 14));
            v.push(data(Client, c, Dir::In, &msg));
        }
        for c in &labels {
            let s = Some(c.as_str());
            v.push(call(Client, Stage::Close, s, "shutdown", "SHUT_WR", 0));
            v.push(state(Client, s, Established, FinWait1, Source::Kernel));
            v.push(call(Server, Stage::Close, s, "recv", "", 0));
            v.push(state(Server, s, Established, CloseWait, Source::Kernel));
            v.push(call(Server, Stage::Close, s, "close", "", 0));
            v.push(state(Server, s, CloseWait, LastAck, Source::Inferred));
            v.push(state(Server, s, LastAck, Closed, Source::Kernel));
            v.push(call(Client, Stage::Close, s, "recv", "", 0));
            v.push(state(Client, s, FinWait1, TimeWait, Source::Kernel));
            v.push(call(Client, Stage::Close, s, "close", "", 0));
        }
        v
    }

    fn arrows(story: &Story) -> Vec<(String, String, String)> {
        story
            .steps
            .iter()
            .filter_map(|s| match &s.what {
                What::Arrow(a) => Some((
                    story.lanes[a.from].clone(),
                    story.lanes[a.to].clone(),
                    a.label.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_lifeline_for_the_server_and_one_per_client_in_number_order() {
        let mut events = tour(3);
        // A client numbered 10 goes after 9, not after 1.
        events.push(call(
            Side::Client,
            Stage::Request,
            Some("C10"),
            "socket",
            "",
            4,
        ));
        events.push(call(
            Side::Client,
            Stage::Request,
            Some("C9"),
            "socket",
            "",
            4,
        ));
        assert_eq!(story(&events).lanes, ["S", "C1", "C2", "C3", "C9", "C10"]);
        let mmd = mermaid(&tour(3), "t");
        let participants: Vec<&str> = mmd
            .lines()
            .filter(|l| l.trim_start().starts_with("participant "))
            .collect();
        assert_eq!(participants.len(), 4, "{mmd}");
        for (p, id) in participants.iter().zip(["S", "C1", "C2", "C3"]) {
            assert!(
                p.trim_start().starts_with(&format!("participant {id} as ")),
                "{p}"
            );
        }
    }

    #[test]
    fn a_tour_draws_each_crossing_once_in_order() {
        let got = arrows(&story(&tour(2)));
        let want: Vec<(&str, &str, &str)> = vec![
            ("C1", "S", "connect()"),
            ("C2", "S", "connect()"),
            ("C1", "S", "send() 14 bytes"),
            ("S", "C1", "send() 14 bytes"),
            ("C2", "S", "send() 14 bytes"),
            ("S", "C2", "send() 14 bytes"),
            ("C1", "S", "shutdown(SHUT_WR) · FIN"),
            ("S", "C1", "close() · FIN"),
            ("C2", "S", "shutdown(SHUT_WR) · FIN"),
            ("S", "C2", "close() · FIN"),
        ];
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn mermaid_arrows_come_in_the_order_of_the_events() {
        let mmd = mermaid(&tour(3), "sockdemo tour");
        let arrow_lines: Vec<&str> = mmd.lines().filter(|l| l.contains("->>")).collect();
        assert!(
            arrow_lines[0].trim_start().starts_with("C1->>S: connect()"),
            "{mmd}"
        );
        assert!(
            arrow_lines[3]
                .trim_start()
                .starts_with("C1->>S: send() 14 bytes #quot;hello from C1\\n#quot;"),
            "{mmd}"
        );
        assert!(
            arrow_lines[4].trim_start().starts_with("S->>C1: send()"),
            "{mmd}"
        );
        let last = arrow_lines.last().unwrap().trim_start();
        assert!(last.starts_with("S->>C3: close() · FIN"), "{last}");
        // States are notes over their own lifeline, marked by where they were seen.
        assert!(
            mmd.contains("Note over C1: C1#58; ESTABLISHED (kernel)"),
            "{mmd}"
        );
        assert!(
            mmd.contains("Note over C2: C2#58; SYN-SENT (inferred)"),
            "{mmd}"
        );
        assert!(
            mmd.contains("Note over S: S·C3#58; CLOSE-WAIT (kernel)"),
            "{mmd}"
        );
        assert!(mmd.contains("Note over S: S#58; LISTEN (kernel)"), "{mmd}");
        // Stage headings span every lifeline.
        for stage in ["1 LISTEN", "2 REQUEST", "3 CONFIRM", "TRANSFER", "CLOSE"] {
            assert!(
                mmd.contains(&format!("Note over S,C3: {stage} · ")),
                "{stage}: {mmd}"
            );
        }
        check_mermaid(&mmd);
    }

    /// What our Mermaid must obey, from Mermaid's sequence grammar
    /// (sequenceDiagram.jison): a message or note is `: text` to the end of
    /// the line, where the text may hold no `;` (a statement break) and no
    /// `#` (a comment) except as an entity code `#name;`; participants are
    /// plain names declared before use; only these statement forms appear.
    fn check_mermaid(mmd: &str) {
        let mut lines = mmd.lines().filter(|l| !l.trim_start().starts_with("%%"));
        assert_eq!(lines.next(), Some("sequenceDiagram"));
        let mut declared: Vec<String> = Vec::new();
        let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric());
        let text_ok = |t: &str| {
            assert!(!t.trim().is_empty(), "empty text");
            assert!(!t.contains(';') || entities_only(t, ';'), "bare ; in {t:?}");
            assert!(entities_only(t, '#'), "bare # in {t:?}");
            assert!(!t.contains(':'), "bare : in {t:?}");
            for bad in ['<', '>', '"', '&', '%', '\n', '\r'] {
                assert!(!t.contains(bad), "{bad:?} in {t:?}");
            }
        };
        for line in lines {
            let l = line.trim_start();
            assert!(line.starts_with("    "), "not indented: {line:?}");
            if let Some(rest) = l.strip_prefix("title ") {
                text_ok(rest);
            } else if let Some(rest) = l.strip_prefix("participant ") {
                let (name, alias) = rest.split_once(" as ").expect("participant X as Y");
                assert!(name_ok(name), "{name}");
                text_ok(alias);
                declared.push(name.to_string());
            } else if let Some(rest) = l.strip_prefix("Note over ") {
                let (who, text) = rest.split_once(": ").expect("Note over X: text");
                for name in who.split(',') {
                    assert!(declared.iter().any(|d| d == name), "undeclared {name}");
                }
                text_ok(text);
            } else {
                let (head, text) = l.split_once(": ").expect("an arrow with text");
                let arrow = ["-->>", "->>", "--x", "-x"]
                    .into_iter()
                    .find(|a| head.contains(a))
                    .unwrap_or_else(|| panic!("no arrow in {line:?}"));
                let (from, to) = head.split_once(arrow).unwrap();
                assert!(declared.iter().any(|d| d == from), "undeclared {from}");
                assert!(declared.iter().any(|d| d == to), "undeclared {to}");
                text_ok(text);
            }
        }
    }

    /// Every `c` in `t` is part of an entity code `#word;`.
    fn entities_only(t: &str, c: char) -> bool {
        let bytes = t.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'#' {
                let end = t[i + 1..].find(';').map(|e| i + 1 + e);
                match end {
                    Some(end)
                        if end > i + 1
                            && t[i + 1..end].chars().all(|ch| ch.is_ascii_alphanumeric()) =>
                    {
                        i = end + 1;
                        continue;
                    }
                    _ => return false,
                }
            }
            if bytes[i] == c as u8 {
                return false;
            }
            i += 1;
        }
        true
    }

    const HOSTILE: &str = "\"<script>alert(1)</script> & ]]> ; # : %% --> end";

    fn hostile_events() -> Vec<Event> {
        vec![
            call(Side::Client, Stage::Request, Some("C1"), "connect", "", 0),
            call(Side::Client, Stage::Transfer, Some("C1"), "send", "", 60),
            data(Side::Client, "C1", Dir::Out, HOSTILE),
        ]
    }

    #[test]
    fn hostile_previews_are_escaped_in_mermaid() {
        let mmd = mermaid(&hostile_events(), "a <title>; # with : in it");
        check_mermaid(&mmd);
        let send = mmd.lines().find(|l| l.contains("send()")).unwrap();
        assert!(
            send.contains("#quot;#lt;script#gt;alert(1)#lt;/scri"),
            "{send}"
        );
        assert!(mermaid_text("a;b#c:d%e").eq("a#59;b#35;c#58;d#37;e"));
        // Mermaid's own entity markers cannot be forged.
        assert_eq!(mermaid_text("ﬂ°°59¶ß"), "#64258;#176;#176;59#182;#223;");
        assert_eq!(mermaid_text(" \n "), "-");
    }

    #[test]
    fn hostile_previews_are_escaped_in_svg() {
        let long = format!("{HOSTILE}{HOSTILE}");
        let mut events = hostile_events();
        events.push(call(
            Side::Server,
            Stage::Transfer,
            Some("C1"),
            "send",
            "",
            5,
        ));
        events.push(data(Side::Server, "C1", Dir::Out, &long));
        let svg = svg(&events, "title with <b> & \u{1b}[31m");
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("]]>"), "{svg}");
        assert!(!svg.contains('\u{1b}'));
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(
            svg.contains("title with &lt;b&gt; &amp; \u{fffd}[31m"),
            "{svg}"
        );
        assert_balanced(&svg);
    }

    #[test]
    fn xml_escapes_every_special_character() {
        assert_eq!(
            xml("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
        assert_eq!(xml("a\u{0}b\u{ffff}"), "a\u{fffd}b\u{fffd}");
    }

    /// Tags open and close in pairs, and no `<` or `&` is loose in text.
    fn assert_balanced(svg: &str) {
        let body = svg.split_once("?>").map_or(svg, |(_, b)| b);
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
                    "loose & in {text:?}"
                );
            }
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag[1..].contains('<'), "< inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap();
                stack.push(name);
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn svg_has_lifelines_states_and_stages() {
        let svg = svg(&tour(3), "sockdemo tour");
        assert_balanced(&svg);
        for label in ["S", "C1", "C2", "C3"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        for state in [
            "LISTEN",
            "SYN-SENT",
            "ESTABLISHED",
            "CLOSE-WAIT",
            "TIME-WAIT",
        ] {
            assert!(svg.contains(&format!(">{state}</text>")), "{state}");
        }
        for stage in ["1 LISTEN", "2 REQUEST", "3 CONFIRM", "TRANSFER", "CLOSE"] {
            assert!(svg.contains(&format!(">{stage}</text>")), "{stage}");
        }
        assert!(svg.contains("&quot;hello from C1\\n&quot;"));
        // Projector-sized, and taller the more happens.
        assert!(svg.contains("width=\"1200\""), "{}", &svg[..300]);
        let height = |s: &str| -> f64 {
            let h = s.split("height=\"").nth(1).unwrap();
            h[..h.find('"').unwrap()].parse().unwrap()
        };
        assert!(height(&svg) > height(&self::svg(&tour(1), "t")) + 500.0);
        // Many clients widen the picture instead of crowding it.
        assert!(!self::svg(&tour(8), "t").contains("width=\"1200\""));
    }

    #[test]
    fn resets_refusals_and_timeouts_have_their_own_arrows() {
        use Side::{Client, Server};
        let c2 = Some("C2");
        let events = vec![
            failed(
                Client,
                Stage::Request,
                "C1",
                "connect",
                "ECONNREFUSED: Connection refused",
            ),
            call(Client, Stage::Request, c2, "connect", "", 0),
            call(Server, Stage::Confirm, c2, "accept", "", 5),
            call(
                Server,
                Stage::Close,
                c2,
                "setsockopt",
                "SOL_SOCKET, SO_LINGER, {on, 0 s}",
                0,
            ),
            call(Server, Stage::Close, c2, "close", "", 0),
            failed(
                Client,
                Stage::Transfer,
                "C2",
                "send",
                "ECONNRESET: Connection reset by peer",
            ),
            ev(
                Client,
                Stage::Close,
                c2,
                Body::Error {
                    code: "reset",
                    error: "send(127.0.0.1:5) failed: ECONNRESET: Connection reset by peer".into(),
                    text: String::new(),
                },
            ),
            call(Client, Stage::Close, c2, "close", "", 0),
            failed(Client, Stage::Request, "C3", "connect", "timed out"),
        ];
        let s = story(&events);
        let got = arrows(&s);
        let labels: Vec<&str> = got.iter().map(|(_, _, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "connect() · SYN",
                "RST: nothing listens there",
                "connect()",
                "close() with SO_LINGER 0 · RST",
                "connect() · SYN: no answer",
            ]
        );
        let marks: Vec<&str> = s
            .steps
            .iter()
            .filter_map(|st| match &st.what {
                What::Mark { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(marks, ["accept() → C2", "✗ send(): ECONNRESET"]);
        let mmd = mermaid(&events, "errors");
        check_mermaid(&mmd);
        assert!(
            mmd.contains("S-xC1: RST#58; nothing listens there"),
            "{mmd}"
        );
        assert!(
            mmd.contains("C3--xS: connect() · SYN#58; no answer"),
            "{mmd}"
        );
        assert_balanced(&svg(&events, "errors"));
    }

    #[test]
    fn a_reset_seen_only_by_its_victim_is_drawn_once() {
        use Side::{Client, Server};
        let c = Some("C1");
        let reset = || {
            ev(
                Server,
                Stage::Close,
                c,
                Body::Error {
                    code: "reset",
                    error: "recv(127.0.0.1:5) failed: ECONNRESET: Connection reset by peer".into(),
                    text: String::new(),
                },
            )
        };
        let events = vec![
            call(Client, Stage::Request, c, "connect", "", 0),
            reset(),
            reset(),
        ];
        let got = arrows(&story(&events));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ("C1".into(), "S".into(), "RST".into()));
    }

    #[test]
    fn a_receive_nobody_sent_is_drawn_from_the_receiver() {
        let c = Some("C1");
        let events = vec![
            call(Side::Client, Stage::Transfer, c, "recv", "", 6),
            data(Side::Client, "C1", Dir::In, "hello\\n"),
            // The sender reports afterwards: the bytes are drawn already.
            call(Side::Server, Stage::Transfer, c, "send", "", 6),
        ];
        let got = arrows(&story(&events));
        assert_eq!(got, [("S".into(), "C1".into(), "recv() 6 bytes".into())]);
    }

    fn packet(side: Side, stage: Stage, conn: &str, flags: &str, len: usize) -> Event {
        ev(
            side,
            stage,
            Some(conn),
            Body::Packet {
                flags: flags.into(),
                seq: 0,
                ack: Some(0),
                len,
            },
        )
    }

    #[test]
    fn packets_replace_the_arrows_deduced_from_calls() {
        use Side::{Client, Server};
        let mut events = tour(1);
        let segments = [
            packet(Client, Stage::Request, "C1", "SYN", 0),
            packet(Server, Stage::Confirm, "C1", "SYN,ACK", 0),
            packet(Client, Stage::Confirm, "C1", "ACK", 0),
            packet(Client, Stage::Transfer, "C1", "PSH,ACK", 14),
            packet(Client, Stage::Close, "C1", "FIN,ACK", 0),
            packet(Server, Stage::Close, "C1", "RST", 0),
        ];
        // Packets are read a little after the calls: they come later in the
        // recorder, with earlier times.
        for (k, mut p) in segments.into_iter().enumerate() {
            p.t = -1.0 + k as f64 * 0.01;
            events.push(p);
        }
        let got = arrows(&story(&events));
        let want = [
            ("C1", "S", "SYN"),
            ("S", "C1", "SYN-ACK"),
            ("C1", "S", "ACK"),
            ("C1", "S", "14 bytes [PSH,ACK]"),
            ("C1", "S", "FIN [FIN,ACK]"),
            ("S", "C1", "RST"),
        ];
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(got, want);
        let mmd = mermaid(&events, "packets");
        check_mermaid(&mmd);
        assert!(mmd.contains("C1-->>S: ACK"), "{mmd}");
        // Each packet names the call that sent it, or shows its data.
        assert!(mmd.contains("C1->>S: SYN · connect()"), "{mmd}");
        assert!(
            mmd.contains("C1->>S: 14 bytes [PSH,ACK] #quot;hello from C1\\n#quot;"),
            "{mmd}"
        );
        assert!(
            mmd.contains("C1->>S: FIN [FIN,ACK] · shutdown(SHUT_WR)"),
            "{mmd}"
        );
        // No arrow is drawn twice: the calls' arrows became the packets'.
        assert_eq!(mmd.matches("connect()").count(), 1, "{mmd}");
        assert!(mmd.contains("S-xC1: RST"), "{mmd}");
        // A UDP datagram has no flags.
        let mut udp = packet(Client, Stage::Transfer, "C1", "", 3);
        udp.proto = Proto::Udp;
        let got = arrows(&story(&[udp]));
        assert_eq!(got, [("C1".into(), "S".into(), "3-byte datagram".into())]);
    }

    #[test]
    fn file_names_choose_the_format() {
        assert_eq!(Format::from_path(Path::new("tour.svg")), Ok(Format::Svg));
        assert_eq!(Format::from_path(Path::new("/tmp/T.SVG")), Ok(Format::Svg));
        assert_eq!(
            Format::from_path(Path::new("slides/hs.mmd")),
            Ok(Format::Mermaid)
        );
        let err = Format::from_path(Path::new("tour.png")).unwrap_err();
        assert!(
            err.contains(".png") && err.contains(".svg") && err.contains(".mmd"),
            "{err}"
        );
        assert!(Format::from_path(Path::new("tour")).is_err());
    }

    #[test]
    fn previews_are_cut_to_fit_and_never_mid_escape() {
        assert_eq!(short_preview("hi\\n", false), "\"hi\\n\"");
        assert_eq!(short_preview("hi", true), "\"hi\"…");
        let long = format!("{}\\x1b[31m", "a".repeat(PREVIEW_ON_ARROW - 3));
        assert_eq!(
            short_preview(&long, false),
            format!("\"{}\"…", "a".repeat(PREVIEW_ON_ARROW - 3))
        );
    }

    #[test]
    fn errors_are_shortened_to_the_call_and_its_c_name() {
        assert_eq!(
            short_error(
                "bind(127.0.0.1:5) failed: EADDRINUSE: Address already in use",
                "addr-in-use"
            ),
            "bind(): EADDRINUSE"
        );
        assert_eq!(
            short_error("connect(127.0.0.1:5) failed: timed out", "timeout"),
            "connect(): timed out"
        );
        assert_eq!(
            short_error(
                "the OS limit on open file descriptors is reached",
                "fd-limit"
            ),
            "fd-limit"
        );
    }
}
