//! `sockdemo watch`: the kernel's socket table, live.
//!
//! Every `--interval` it asks the kernel for its TCP and UDP tables through
//! sock_diag (as `ss` does, see [`crate::engine::observe`]), keeps the rows
//! it was asked for, and shows them again only if something changed. The
//! table is cheap to read (a few netlink messages), and between two looks
//! the process sleeps, so an idle watch costs almost no CPU.
//!
//! On a terminal the table is redrawn in place with ANSI cursor movements;
//! anywhere else (a pipe, a file, `TERM=dumb`, `--color never`) each new
//! snapshot is printed below the last one, so nothing but text reaches a file.

use crate::cli::{OutputArgs, WatchArgs};
use crate::engine::errors::Lesson;
use crate::engine::event::{Proto, TcpState};
use crate::engine::observe::{self, TableEntry, TimerKind};
use crate::render::watch::{self as view, Snapshot, View};
use crate::render::{ColorChoice, Settings};
use crate::t;
use anyhow::Context;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A countdown may redraw the table at most this often.
const TIMER_REDRAW: Duration = Duration::from_secs(1);

pub fn run(args: &WatchArgs, output: &OutputArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let result = watch(args, output, start);
    if let Err(e) = &result {
        if output.json {
            // Scripts reading the snapshots see why they stopped.
            let (code, error, text) = match e.downcast_ref::<Lesson>() {
                Some(l) => (l.code, l.summary.clone(), l.explanation.clone()),
                None => ("other", format!("{e:#}"), String::new()),
            };
            let t = (start.elapsed().as_secs_f64() * 1e6).round() / 1e6;
            let line = serde_json::json!({
                "t": t, "kind": "error", "code": code, "error": error, "text": text,
            });
            // A closed stdout is no reason to panic: ignore the failure.
            let _ = writeln!(io::stdout(), "{line}");
        }
    }
    result
}

fn unsupported() -> anyhow::Error {
    Lesson {
        summary: t!(
            "watch needs Linux: it reads the kernel's socket table through sock_diag netlink, which this OS does not have",
            "watch 需要 Linux：它通过 sock_diag netlink 读取内核的套接字表，而这个操作系统没有这个接口"
        ),
        explanation: t!(
            "The other commands work here, with the states they show inferred from the protocol.\nFor a one-time view of the table: `netstat -an` (macOS: `netstat -an -p tcp`, Windows: `netstat -ano`).",
            "其他命令在这里都能用，只是显示的状态是根据协议推断的。\n想看一次套接字表：`netstat -an`（macOS：`netstat -an -p tcp`，Windows：`netstat -ano`）。"
        ),
        code: "unsupported",
    }
    .into()
}

fn watch(args: &WatchArgs, output: &OutputArgs, start: Instant) -> anyhow::Result<()> {
    if !observe::KERNEL_STATES {
        return Err(unsupported());
    }
    let settings = Settings::resolve(output.json, output.color);
    colored::control::set_override(settings.color);
    // Cursor movements are escape sequences too: only where colour could be
    // (a real terminal, not TERM=dumb) and not when the user said never.
    // NO_COLOR is about colour alone, so it keeps the redraw.
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    let live = !output.json && settings.terminal && !dumb && output.color != ColorChoice::Never;

    // Ctrl-C and SIGTERM wake the sleep below at once; the loop then ends
    // normally, so the cursor comes back (exit status 130 or 143).
    let (stop_tx, stop) = mpsc::channel::<()>();
    super::shared::on_signal(move || {
        let _ = stop_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    let mut screen = Screen::new(live);
    let mut table = Table::new(args.port);
    let mut last: Option<Shown> = None;
    let mut refresh = 0u64;
    let mut stopped = false;
    loop {
        refresh += 1;
        let rows = table.read()?;
        let size = live.then(|| terminal_size::terminal_size().map(|(w, h)| (w.0, h.0)));
        let shown = Shown::of(&rows, size.flatten());
        let draw = match &last {
            None => true,
            Some(before) if *before != shown => true,
            Some(before) => before.timers != shown.timers && before.at.elapsed() >= TIMER_REDRAW,
        };
        if draw {
            let snap = Snapshot {
                t: start.elapsed().as_secs_f64(),
                refresh,
                port: args.port,
                rows: &rows,
            };
            let written = if output.json {
                screen.write(view::json_line(&snap).as_bytes())
            } else {
                let (width, height) = match size.flatten() {
                    Some((w, h)) => (Some(w as usize), Some(h as usize)),
                    None => (None, None),
                };
                let lines = view::table(
                    &snap,
                    &View {
                        live,
                        interval: args.interval,
                        width,
                        height,
                    },
                );
                screen.draw(&lines)
            };
            if !written? {
                // The reader went away (`| head`): its choice, not an error.
                return Ok(());
            }
            last = Some(shown);
        }
        if args.count == Some(refresh) {
            break;
        }
        match stop.recv_timeout(args.interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                stopped = true;
                break;
            }
        }
    }
    screen.finish(stopped)?;
    Ok(())
}

/// Which rows to ask for and how to read the kernel's tables.
struct Table {
    port: Option<u16>,
    /// Cleared when the kernel cannot list UDP sockets (said once).
    udp: bool,
}

impl Table {
    fn new(port: Option<u16>) -> Table {
        Table { port, udp: true }
    }

    /// The rows to show, in a stable order.
    fn read(&mut self) -> anyhow::Result<Vec<TableEntry>> {
        let mut rows = observe::dump_all(self.port, Proto::Tcp)
            .context("cannot read the kernel's TCP socket table (sock_diag)")?;
        if self.udp {
            match observe::dump_all(self.port, Proto::Udp) {
                Ok(udp) => rows.extend(udp),
                // The kernel answers ENOENT when its udp_diag module is missing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.udp = false;
                    crate::render::output::to_stderr(&format!(
                        "sockdemo: {}",
                        t!(
                            "UDP sockets are not shown: this kernel cannot list them (its udp_diag module is not loaded)",
                            "不显示 UDP 套接字：这个内核无法列出它们（没有加载 udp_diag 模块）"
                        )
                    ));
                }
                Err(e) => {
                    return Err(e).context("cannot read the kernel's UDP socket table (sock_diag)")
                }
            }
        }
        if self.port.is_none() {
            rows.retain(|r| is_local_scope(r.local.ip()));
        }
        rows.sort_by_key(sort_key);
        Ok(rows)
    }
}

/// Without `--port`: the sockets on this machine's loopback and the ones
/// bound to the wildcard address (servers reachable from here), but not
/// the connections to other machines, which would fill the screen with a
/// browser's tabs and say nothing about the lesson.
fn is_local_scope(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

/// TCP before UDP; listeners first, then connections in the order of the
/// lesson (opening, open, closing); then by address.
fn sort_key(row: &TableEntry) -> (u8, u8, SocketAddr, SocketAddr) {
    let proto = match row.proto {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    };
    let stage = match row.state {
        TcpState::Listen | TcpState::Closed => 0,
        TcpState::SynSent | TcpState::SynReceived => 1,
        TcpState::Established => 2,
        TcpState::FinWait1 | TcpState::FinWait2 | TcpState::CloseWait => 3,
        TcpState::Closing | TcpState::LastAck => 4,
        TcpState::TimeWait => 5,
    };
    (proto, stage, row.local, row.remote)
}

/// A row without its countdown: protocol, state, addresses, queues, timer kind.
type RowLayout = (
    Proto,
    TcpState,
    SocketAddr,
    SocketAddr,
    u32,
    u32,
    Option<TimerKind>,
);

/// What was last shown, to tell whether a new look is worth drawing.
struct Shown {
    /// Everything but the countdowns: any change here redraws at once.
    layout: Vec<RowLayout>,
    /// A terminal resized needs a new drawing too.
    size: Option<(u16, u16)>,
    /// The countdowns as shown: a change here redraws at most once a second.
    timers: Vec<Option<String>>,
    at: Instant,
}

impl Shown {
    fn of(rows: &[TableEntry], size: Option<(u16, u16)>) -> Shown {
        Shown {
            layout: rows
                .iter()
                .map(|r| {
                    (
                        r.proto,
                        r.state,
                        r.local,
                        r.remote,
                        r.recv_queue,
                        r.send_queue,
                        r.timer_kind,
                    )
                })
                .collect(),
            size,
            timers: rows.iter().map(view::timer_text).collect(),
            at: Instant::now(),
        }
    }
}

impl PartialEq for Shown {
    fn eq(&self, other: &Shown) -> bool {
        self.layout == other.layout && self.size == other.size
    }
}

/// Where the snapshots go. On a terminal: the last drawing is erased and
/// drawn again, with the cursor hidden meanwhile. Elsewhere: appended.
struct Screen {
    out: io::Stdout,
    live: bool,
    /// Lines of the drawing on screen (live) or snapshots printed (appended).
    drawn: usize,
    cursor_hidden: bool,
}

// ANSI/ECMA-48 control sequences, written only when `live`.
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";
/// Erase from the cursor to the end of the screen.
const ERASE_BELOW: &str = "\x1b[J";
/// Back to the start of the line, erased (where the terminal echoed `^C`).
const ERASE_LINE: &str = "\r\x1b[K";

impl Screen {
    fn new(live: bool) -> Screen {
        Screen {
            out: io::stdout(),
            live,
            drawn: 0,
            cursor_hidden: false,
        }
    }

    /// Writes and flushes; `Ok(false)` when the reader has gone.
    fn write(&mut self, bytes: &[u8]) -> io::Result<bool> {
        let mut out = self.out.lock();
        match out.write_all(bytes).and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Shows one table: in place of the last one, or after it.
    fn draw(&mut self, lines: &[String]) -> io::Result<bool> {
        let mut frame = String::new();
        if self.live {
            if !self.cursor_hidden {
                frame.push_str(HIDE_CURSOR);
                self.cursor_hidden = true;
            }
            if self.drawn > 0 {
                // Cursor Previous Line: to the first column, `drawn` lines up.
                frame.push_str(&format!("\x1b[{}F", self.drawn));
            }
            frame.push_str(ERASE_BELOW);
        } else if self.drawn > 0 {
            frame.push('\n');
        }
        for line in lines {
            frame.push_str(line);
            frame.push('\n');
        }
        self.drawn = if self.live {
            lines.len()
        } else {
            self.drawn + 1
        };
        // One write per frame, so the terminal never shows half a table.
        self.write(frame.as_bytes())
    }

    /// Gives the cursor back and, after Ctrl-C, erases the `^C` the terminal echoed.
    fn finish(&mut self, interrupted: bool) -> io::Result<()> {
        if self.cursor_hidden {
            self.cursor_hidden = false;
            let tail = if interrupted { ERASE_LINE } else { "" };
            self.write(format!("{tail}{SHOW_CURSOR}").as_bytes())?;
        }
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // An error or a panic must not leave the terminal without a cursor.
        let _ = self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_scope_is_loopback_and_wildcard() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(is_local_scope(ip("127.0.0.1")));
        assert!(is_local_scope(ip("127.8.9.10")));
        assert!(is_local_scope(ip("::1")));
        assert!(is_local_scope(ip("0.0.0.0")));
        assert!(is_local_scope(ip("::")));
        assert!(is_local_scope(ip("::ffff:127.0.0.1")));
        assert!(!is_local_scope(ip("192.168.1.2")));
        assert!(!is_local_scope(ip("2001:db8::1")));
    }

    /// The countdown alone does not count as a change of the table.
    #[test]
    fn countdowns_are_not_layout() {
        let mut row = TableEntry {
            proto: Proto::Tcp,
            state: TcpState::TimeWait,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:8888".parse().unwrap(),
            timer: Some(Duration::from_millis(59_500)),
            timer_kind: Some(TimerKind::TimeWait),
            recv_queue: 0,
            send_queue: 0,
        };
        let before = Shown::of(std::slice::from_ref(&row), None);
        row.timer = Some(Duration::from_millis(58_500));
        let after = Shown::of(std::slice::from_ref(&row), None);
        assert!(before == after);
        assert_ne!(before.timers, after.timers);
        row.state = TcpState::Closed;
        assert!(before != Shown::of(std::slice::from_ref(&row), None));
    }
}
