//! `sockdemo watch`'s views of the kernel's socket table: a table for
//! people (with a line on what each state means) and one JSON object per
//! snapshot for programs. Like every renderer, it never touches a socket:
//! `cmd/watch.rs` reads the table and hands the rows here.

use crate::engine::event::{Proto, TcpState};
use crate::engine::observe::{TableEntry, TimerKind};
use crate::t;
use colored::{ColoredString, Colorize};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One look at the table, the rows already filtered and sorted.
pub struct Snapshot<'a> {
    /// Seconds since `watch` started.
    pub t: f64,
    /// Which look this is: 1, 2, 3… (also those that were not shown).
    pub refresh: u64,
    /// `--port`, when given.
    pub port: Option<u16>,
    pub rows: &'a [TableEntry],
}

/// What a person sees, and how much room there is.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Redrawn in place on a terminal (the heading says how often), or
    /// printed one snapshot after another (the heading says when).
    pub live: bool,
    pub interval: Duration,
    /// Columns of the terminal: longer lines are cut so none wraps (a
    /// wrapped line would break the redraw). `None`: never cut.
    pub width: Option<usize>,
    /// Lines of the terminal: rows that do not fit are counted instead of shown.
    pub height: Option<usize>,
}

/// One sentence on what a socket in this state is doing, in the current language.
pub fn explain(row: &TableEntry) -> String {
    if row.proto == Proto::Udp {
        return match row.state {
            TcpState::Established => t!(
                "connect() fixed the peer: send() goes there, and datagrams from anyone else are dropped",
                "connect() 固定了对端：send() 发往那里，来自其他地址的数据报被丢弃"
            ),
            _ => t!(
                "bound to a port: takes datagrams from anyone; no connection, no handshake",
                "绑定在一个端口上：接收任何人发来的数据报；没有连接，也没有握手"
            ),
        };
    }
    match row.state {
        TcpState::Listen => t!(
            "waits for connections: the kernel completes handshakes by itself and queues them for accept()",
            "等待连接：内核自己完成握手，把连接排进队列等待 accept()"
        ),
        TcpState::SynSent => t!(
            "connect() sent a SYN and waits for the SYN-ACK",
            "connect() 已发出 SYN，正在等待 SYN-ACK"
        ),
        TcpState::SynReceived => t!(
            "a SYN came in and the SYN-ACK went out; waiting for the handshake's last ACK",
            "收到了 SYN 并回了 SYN-ACK；正在等待握手的最后一个 ACK"
        ),
        TcpState::Established => t!(
            "the handshake is done: data can flow both ways",
            "握手已完成：数据可以双向流动"
        ),
        TcpState::FinWait1 => t!(
            "this side closed (sent FIN); waiting for the peer to acknowledge it",
            "这一端已关闭（发出了 FIN）；正在等待对端确认"
        ),
        TcpState::FinWait2 => t!(
            "our FIN was acknowledged; waiting for the peer to close too",
            "我们的 FIN 已被确认；正在等待对端也关闭"
        ),
        TcpState::CloseWait => t!(
            "the peer closed; this program has not called close() yet",
            "对端已关闭；这个程序还没有调用 close()"
        ),
        TcpState::Closing => t!(
            "both sides closed at the same moment; waiting for the ACK of our FIN",
            "双方同时关闭；正在等待对我们 FIN 的 ACK"
        ),
        TcpState::LastAck => t!(
            "the peer closed first, then we did; waiting for the ACK of our FIN",
            "对端先关闭，我们随后关闭；正在等待对我们 FIN 的 ACK"
        ),
        TcpState::TimeWait => t!(
            "closed first; waits 60 s so late segments die before the addresses are used again",
            "先关闭的一方；等待 60 秒，让迟到的报文段在地址被再次使用之前消失"
        ),
        TcpState::Closed => t!(
            "no connection and not listening",
            "没有连接，也没有在监听"
        ),
    }
}

/// The timer as a person reads a countdown: whole seconds, rounded up (a
/// long keepalive in minutes, so it does not redraw the table every second).
/// Two snapshots whose timer texts are equal look the same.
pub fn timer_text(row: &TableEntry) -> Option<String> {
    let (kind, left) = (row.timer_kind?, row.timer?);
    let secs = left.as_millis().div_ceil(1000);
    let amount = if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    };
    Some(format!("{} {amount}", kind.name()))
}

#[derive(Serialize)]
struct JsonSnapshot {
    t: f64,
    kind: &'static str,
    refresh: u64,
    port: Option<u16>,
    sockets: Vec<JsonSocket>,
}

#[derive(Serialize)]
struct JsonSocket {
    proto: Proto,
    state: &'static str,
    local: String,
    remote: String,
    recv_queue: u32,
    send_queue: u32,
    timer: Option<TimerKind>,
    timer_s: Option<f64>,
    explain: String,
}

/// One snapshot as one line of JSON (docs/events.md, "kind":"snapshot").
pub fn json_line(snap: &Snapshot) -> String {
    let sockets = snap
        .rows
        .iter()
        .map(|row| JsonSocket {
            proto: row.proto,
            state: row.state_name(),
            local: row.local.to_string(),
            remote: row.remote.to_string(),
            recv_queue: row.recv_queue,
            send_queue: row.send_queue,
            timer: row.timer_kind,
            timer_s: row.timer.map(|d| d.as_millis() as f64 / 1000.0),
            explain: explain(row),
        })
        .collect();
    let object = JsonSnapshot {
        t: (snap.t * 1e6).round() / 1e6,
        kind: "snapshot",
        refresh: snap.refresh,
        port: snap.port,
        sockets,
    };
    let mut line = serde_json::to_string(&object)
        .unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"error\":\"{e}\"}}"));
    line.push('\n');
    line
}

/// A peer "anywhere" (a listener, an unconnected UDP socket) is written
/// `*`, as `ss` does; the kernel stores it as address 0, port 0.
fn address(addr: &SocketAddr) -> String {
    if addr.port() == 0 && addr.ip().is_unspecified() {
        "*".to_string()
    } else {
        addr.to_string()
    }
}

/// The queues column: a listener's accept queue and backlog, otherwise
/// the bytes waiting in each direction.
fn queues(row: &TableEntry) -> String {
    if row.is_listener() {
        format!("accept {}/{}", row.recv_queue, row.send_queue)
    } else {
        format!("recv {} send {}", row.recv_queue, row.send_queue)
    }
}

fn paint_state(text: &str, row: &TableEntry) -> ColoredString {
    match (row.proto, row.state) {
        (Proto::Udp, TcpState::Established) | (Proto::Tcp, TcpState::Established) => text.cyan(),
        (Proto::Udp, _) | (_, TcpState::Listen) => text.green(),
        (_, TcpState::SynSent | TcpState::SynReceived) => text.blue(),
        // The one state that waits for the program, not for the network.
        (_, TcpState::CloseWait) => text.red(),
        _ => text.yellow(),
    }
}

fn width_of(text: &str) -> usize {
    textwrap::core::display_width(text)
}

fn pad(text: &str, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(width_of(text))))
}

/// `text` cut to `width` terminal columns, with `…` where it was cut.
fn fit(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else {
        return text.to_string();
    };
    if width_of(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = width_of(c.encode_utf8(&mut [0u8; 4]));
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The table for people, as lines without their line ends.
pub fn table(snap: &Snapshot, view: &View) -> Vec<String> {
    // One column less than the terminal: a line that ends exactly at the
    // right edge makes some terminals wrap.
    let width = view.width.map(|w| w.saturating_sub(1).max(20));
    let count = snap.rows.len();
    let sockets = if crate::i18n::current() == crate::lessons::Lang::Zh {
        format!("{count} 个套接字")
    } else if count == 1 {
        "1 socket".to_string()
    } else {
        format!("{count} sockets")
    };
    let scope = match snap.port {
        Some(port) => t!("port {port}", "端口 {port}"),
        None => t!("loopback and wildcard addresses", "环回地址和通配地址"),
    };
    let heading = if view.live {
        let every = view.interval.as_secs_f64();
        t!(
            "sockdemo watch · {scope} · {sockets} · every {every} s · Ctrl-C stops",
            "sockdemo watch · {scope} · {sockets} · 每 {every} 秒刷新 · 按 Ctrl-C 停止"
        )
    } else {
        let at = format!("{:.3}", snap.t);
        t!(
            "t={at} s · {scope} · {sockets}",
            "t={at} 秒 · {scope} · {sockets}"
        )
    };
    let mut lines = vec![fit(&heading, width).bold().to_string()];
    if snap.rows.is_empty() {
        let none = t!(
            "(no TCP or UDP socket here yet)",
            "（这里还没有 TCP 或 UDP 套接字）"
        );
        lines.push(fit(&none, width).dimmed().to_string());
        return lines;
    }

    let titles = [
        t!("PROTO", "协议"),
        t!("STATE", "状态"),
        t!("LOCAL", "本地地址"),
        t!("REMOTE", "远端地址"),
        t!("QUEUES", "队列"),
        t!("TIMER", "计时器"),
    ];
    let cells: Vec<[String; 6]> = snap
        .rows
        .iter()
        .map(|row| {
            [
                match row.proto {
                    Proto::Tcp => "tcp".to_string(),
                    Proto::Udp => "udp".to_string(),
                },
                row.state_name().to_string(),
                address(&row.local),
                address(&row.remote),
                queues(row),
                timer_text(row).unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = titles.clone().map(|t| width_of(&t));
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width_of(cell));
        }
    }
    let gap = "  ";
    // The first two columns are painted; the rest is cut to fit.
    let lead_width = widths[0] + widths[1] + 2 * gap.len();
    let rest_width = width.map(|w| w.saturating_sub(lead_width));
    let rest = |cells: &[String]| {
        let text = cells
            .iter()
            .zip(&widths[2..])
            .map(|(c, w)| pad(c, *w))
            .collect::<Vec<_>>()
            .join(gap);
        fit(text.trim_end(), rest_width)
    };
    lines.push(
        format!(
            "{}{gap}{}{gap}{}",
            pad(&titles[0], widths[0]),
            pad(&titles[1], widths[1]),
            rest(&titles[2..])
        )
        .trim_end()
        .bold()
        .to_string(),
    );

    // The states on screen, each explained once, in the order they appear.
    let mut legend: Vec<(&'static str, &TableEntry)> = Vec::new();
    for row in snap.rows {
        if !legend.iter().any(|(name, _)| *name == row.state_name()) {
            legend.push((row.state_name(), row));
        }
    }
    let has_listener = snap.rows.iter().any(|r| r.is_listener());
    let footer = 1 + legend.len() + usize::from(has_listener);
    // The rows that fit on the screen (the heading and the last line, where
    // the cursor waits, take one each).
    let room = view
        .height
        .map(|h| h.saturating_sub(lines.len() + footer + 2).max(1))
        .unwrap_or(usize::MAX);
    let shown = if count > room {
        room.saturating_sub(1).max(1)
    } else {
        count
    };
    for (row, cell) in snap.rows.iter().zip(&cells).take(shown) {
        lines.push(format!(
            "{}{gap}{}{gap}{}",
            pad(&cell[0], widths[0]),
            paint_state(&pad(&cell[1], widths[1]), row),
            rest(&cell[2..])
        ));
    }
    if shown < count {
        let more = count - shown;
        let text = t!(
            "… and {more} more that do not fit in the window (--port shows fewer)",
            "……还有 {more} 个放不下（用 --port 只看一部分）"
        );
        lines.push(fit(&text, width).dimmed().to_string());
    }

    lines.push(String::new());
    let name_width = legend.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let legend_rest = width.map(|w| w.saturating_sub(name_width + gap.len()));
    for (name, row) in &legend {
        lines.push(format!(
            "{}{gap}{}",
            paint_state(&pad(name, name_width), row),
            fit(&explain(row), legend_rest).dimmed()
        ));
    }
    if has_listener {
        let text = t!(
            "accept N/B on a listener: N connections wait for accept(), B is the backlog; recv/send: bytes not yet read by the program / not yet acknowledged by the peer",
            "监听套接字的 accept N/B：N 个连接在等待 accept()，B 是 backlog；recv/send：程序还没读走的字节 / 对端还没确认的字节"
        );
        lines.push(fit(&text, width).dimmed().to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(proto: Proto, state: TcpState, local: &str, remote: &str) -> TableEntry {
        TableEntry {
            proto,
            state,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            timer: None,
            timer_kind: None,
            recv_queue: 0,
            send_queue: 0,
        }
    }

    #[test]
    fn timers_read_like_countdowns() {
        let mut tw = row(
            Proto::Tcp,
            TcpState::TimeWait,
            "127.0.0.1:5000",
            "127.0.0.1:8888",
        );
        assert_eq!(timer_text(&tw), None);
        tw.timer_kind = Some(TimerKind::TimeWait);
        tw.timer = Some(Duration::from_millis(59_001));
        assert_eq!(timer_text(&tw).as_deref(), Some("time-wait 60 s"));
        tw.timer = Some(Duration::from_millis(59_000));
        assert_eq!(timer_text(&tw).as_deref(), Some("time-wait 59 s"));
        tw.timer_kind = Some(TimerKind::Keepalive);
        tw.timer = Some(Duration::from_secs(7199));
        assert_eq!(timer_text(&tw).as_deref(), Some("keepalive 120 min"));
    }

    #[test]
    fn json_snapshot_names_udp_states_and_listener_queues() {
        let mut listener = row(Proto::Tcp, TcpState::Listen, "127.0.0.1:8888", "0.0.0.0:0");
        listener.send_queue = 128;
        let udp = row(Proto::Udp, TcpState::Closed, "[::1]:8888", "[::]:0");
        let rows = [listener, udp];
        let line = json_line(&Snapshot {
            t: 0.25,
            refresh: 2,
            port: Some(8888),
            rows: &rows,
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "snapshot");
        assert_eq!(v["refresh"], 2);
        assert_eq!(v["sockets"][0]["state"], "LISTEN");
        assert_eq!(v["sockets"][0]["send_queue"], 128);
        assert_eq!(v["sockets"][0]["timer_s"], serde_json::Value::Null);
        assert_eq!(v["sockets"][1]["proto"], "udp");
        assert_eq!(v["sockets"][1]["state"], "UNCONNECTED");
        assert_eq!(v["sockets"][1]["remote"], "[::]:0");
    }

    #[test]
    fn lines_fit_the_terminal() {
        colored::control::set_override(false);
        let rows: Vec<TableEntry> = (0..50)
            .map(|i| {
                row(
                    Proto::Tcp,
                    TcpState::TimeWait,
                    &format!("[::ffff:127.0.0.1]:{}", 40000 + i),
                    "[::ffff:127.0.0.1]:8888",
                )
            })
            .collect();
        let view = View {
            live: true,
            interval: Duration::from_millis(250),
            width: Some(60),
            height: Some(20),
        };
        let snap = Snapshot {
            t: 1.0,
            refresh: 1,
            port: Some(8888),
            rows: &rows,
        };
        let lines = table(&snap, &view);
        assert!(lines.len() < 20, "{lines:#?}");
        assert!(lines.iter().all(|l| width_of(l) < 60), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("more that do not fit")));
        assert!(fit("一二三四", Some(5)).ends_with('…'));
        assert!(width_of(&fit("一二三四", Some(5))) <= 5);
    }
}
