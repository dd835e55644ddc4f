//! `sockdemo connect`: a TCP client that narrates itself.

use super::shared::{self, PREVIEW_FOR_PEOPLE};
use crate::cli::{ConnectArgs, OutputArgs};
use crate::engine::call::How;
use crate::engine::capture::{PacketMode, PacketWatch};
use crate::engine::client;
use crate::engine::conn::{Conn, Received};
use crate::engine::ctx::{Ctx, Failed};
use crate::engine::errors;
use crate::engine::event::{Proto, Side, Stage};
use crate::engine::framing::{self, Deframer, FrameError, Framing};
use crate::engine::observe;
use crate::engine::sink::Sink;
use crate::render::{self, human::Layout};
use crate::t;
use std::io::{self, BufRead};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

/// How long a client about to exit watches the kernel finish its close.
const SETTLE: Duration = Duration::from_millis(1500);

pub fn run(args: &ConnectArgs, output: &OutputArgs) -> anyhow::Result<()> {
    if output.step && args.send.is_empty() {
        // Both would read the keyboard: the lines to send and the Enter of each step.
        return Err(crate::engine::errors::UsageError(crate::t!(
            "--step with connect needs --send TEXT: the keyboard is for the steps",
            "connect 使用 --step 时需要 --send 文本：键盘要留给单步操作"
        ))
        .into());
    }
    if args.udp {
        return super::udp::connect(args, output);
    }
    let settings = output.settings();
    let (sink, renderer) = render::start(settings, Layout::Single, Side::Client, None);
    let result =
        super::shared::stepping(sink, output).and_then(|sink| connect(args, &sink, output.packets));
    renderer.finish(output.json, result)
}

fn connect(args: &ConnectArgs, sink: &Sink, packets: PacketMode) -> anyhow::Result<()> {
    // Every --send in its framing before any socket call: a text too long
    // for writeUTF is a mistake on the command line, not on the network.
    let outgoing = args
        .send
        .iter()
        .map(|text| args.framing.encode(text).map_err(too_long))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = Ctx::new(sink, Side::Client, Proto::Tcp);
    if !observe::KERNEL_STATES {
        ctx.note(Stage::Request, "platform", shared::platform_text());
    }
    let addrs = shared::resolve(&args.target, &ctx)?;
    // Watch the wire before the SYN goes out; stopped (after the last
    // packets are in) when this function returns.
    let _capture =
        PacketWatch::start_as(sink, args.target.port, packets, Proto::Tcp, Side::Client)?;
    let mut failure = None;
    let mut conn = None;
    for (i, addr) in addrs.iter().enumerate() {
        match client::connect(sink, *addr, args.timeout, "C1") {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(lesson) => {
                if i + 1 < addrs.len() {
                    ctx.note(Stage::Request, "retry", {
                        let summary = &lesson.summary;
                        t!(
                            "{summary}; trying the next address",
                            "{summary}；尝试下一个地址"
                        )
                    });
                }
                failure = Some(lesson);
            }
        }
    }
    let Some(mut conn) = conn else {
        return Err(failure
            .map(anyhow::Error::new)
            .unwrap_or_else(|| anyhow::anyhow!("no address to connect to")));
    };
    conn.preview_in = PREVIEW_FOR_PEOPLE;
    if args.send.is_empty() {
        interactive(conn, args.framing, args.linger0)
    } else {
        scripted(conn, &outgoing, args.framing, args.wait, args.linger0)
    }
}

fn too_long(problem: FrameError) -> errors::UsageError {
    let n = match problem {
        FrameError::TooLong(n) => n,
        _ => framing::UTF_MAX + 1,
    };
    errors::UsageError(t!(
        "--framing utf cannot send this --send TEXT: it is {n} bytes in modified UTF-8, and writeUTF's 2-byte length allows at most 65535",
        "--framing utf 无法发送这个 --send 文本：它的修改版 UTF-8 有 {n} 字节，而 writeUTF 的 2 字节长度最多只能表示 65535"
    ))
}

/// Where the replies go with `--framing utf`: a reader that cuts them into
/// frames and narrates each, as readUTF would read them. Lines and raw
/// bytes are shown as they come (the data events), so they need none.
fn reply_frames(framing: Framing) -> Option<Deframer> {
    (framing == Framing::Utf).then(|| Deframer::new(Framing::Utf, false))
}

/// One recv() of a reply, through the frame reader if there is one.
/// Returns how much of the reply came: frames with a reader, else bytes.
fn recv_reply(
    conn: &Conn,
    buf: &mut [u8],
    frames: &mut Option<Deframer>,
) -> Result<Option<usize>, Failed> {
    let room = frames.as_ref().map_or(buf.len(), |f| f.room(buf.len()));
    match conn.recv(&mut buf[..room])? {
        Received::Bytes(n) => Ok(Some(match frames {
            Some(frames) => {
                let pieces = frames.push(&conn.ctx, &buf[..n]);
                pieces.iter().filter(|p| p.is_frame()).count()
            }
            None => n,
        })),
        Received::End => {
            if let Some(frames) = frames {
                frames.finish(&conn.ctx);
            }
            Ok(None)
        }
    }
}

/// --send: each message in its framing (already encoded), then wait for
/// its echo: as many bytes as were sent, or with utf as many frames.
fn scripted(
    conn: Conn,
    messages: &[Vec<u8>],
    framing: Framing,
    wait: Duration,
    linger0: bool,
) -> anyhow::Result<()> {
    let mut frames = reply_frames(framing);
    let peer_closed = match exchange_all(&conn, messages, &mut frames, wait) {
        Ok(peer_closed) => peer_closed,
        Err(e) => {
            // Even after a failure, the socket is closed (and that is told).
            conn.close();
            return Err(e);
        }
    };
    if linger0 {
        conn.close_with_reset();
        return Ok(());
    }
    finish(conn, peer_closed, &mut frames)
}

/// Sends each message and waits for its echo. True if the peer closed first.
fn exchange_all(
    conn: &Conn,
    messages: &[Vec<u8>],
    frames: &mut Option<Deframer>,
    wait: Duration,
) -> anyhow::Result<bool> {
    // SO_RCVTIMEO: a reply that never comes must not hang the client.
    conn.set_recv_timeout(Some(wait))?;
    let mut buf = vec![0u8; 4096];
    // Counted over the whole run, so a reply that comes in pieces, or two
    // replies in one recv(), are counted right.
    let (mut expected, mut received) = (0, 0);
    for message in messages {
        conn.send_all(message)?;
        expected += if frames.is_some() { 1 } else { message.len() };
        while received < expected {
            match recv_reply(conn, &mut buf, frames) {
                Ok(Some(n)) => received += n,
                Ok(None) => return Ok(true),
                Err(f) if f.is_timeout() => {
                    let secs = format!("{:.1}", wait.as_secs_f64());
                    let text = t!(
                        "no reply within {secs} s; moving on",
                        "{secs} 秒内没有回复；继续"
                    );
                    conn.ctx.note(Stage::Transfer, "no-reply", text);
                    // A late reply counts for the next message.
                    received = expected;
                }
                Err(f) => return Err(f.into()),
            }
        }
    }
    Ok(false)
}

enum Input {
    Line(Vec<u8>),
    StdinEnd,
    PeerEnd,
    PeerError(Failed),
}

/// No --send: lines typed on stdin go out; whatever arrives is shown.
/// One thread reads the keyboard and one the socket, because either may
/// speak first; the main thread acts on whichever does.
fn interactive(conn: Conn, framing: Framing, linger0: bool) -> anyhow::Result<()> {
    conn.ctx.note(
        Stage::Transfer,
        "interactive",
        t!(
            "type lines to send them; end with Ctrl-D (end of input)",
            "输入一行就发送一行；按 Ctrl-D（输入结束）结束"
        ),
    );
    let conn = Arc::new(conn);
    let (tx, rx) = mpsc::channel();
    {
        // Ctrl-C ends the input as Ctrl-D does: our FIN, then the rest of
        // what the server sends, then close(), all narrated (exit 130).
        let tx = tx.clone();
        super::shared::on_ctrl_c(
            &conn.ctx,
            t!(
                "Ctrl-C: we close our side (FIN), read what the server still sends, then close",
                "Ctrl-C：我们关闭自己这一端（FIN），读完服务器还要发送的内容，然后关闭"
            ),
            move || {
                let _ = tx.send(Input::StdinEnd);
            },
        )?;
    }
    {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut line = Vec::new();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(Input::Line(line)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Input::StdinEnd);
        });
    }
    let reader = {
        let conn = conn.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let mut frames = reply_frames(framing);
            loop {
                match recv_reply(&conn, &mut buf, &mut frames) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        let _ = tx.send(Input::PeerEnd);
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Input::PeerError(e));
                        return;
                    }
                }
            }
        })
    };
    let mut result = Ok(());
    let mut shut = false;
    for input in rx {
        match input {
            Input::Line(line) if !shut => {
                let Some(line) = typed(&conn, framing, line) else {
                    continue;
                };
                if let Err(f) = conn.send_all(&line) {
                    result = Err(f.into());
                    // Wake our reader, which waits in recv(), so it can end.
                    let _ = conn.shutdown(How::Both);
                    break;
                }
            }
            Input::Line(_) => {}
            Input::StdinEnd if linger0 => {
                // End without FIN: stop our own reader first (SHUT_RD puts
                // nothing on the wire), then close with a reset below.
                shut = true;
                let _ = conn.shutdown(How::Read);
            }
            Input::StdinEnd => {
                if !shut {
                    shut = true;
                    let _ = conn.shutdown(How::Write);
                }
            }
            Input::PeerEnd => break,
            Input::PeerError(f) => {
                result = Err(f.into());
                break;
            }
        }
    }
    let _ = reader.join();
    if let Ok(conn) = Arc::try_unwrap(conn) {
        if result.is_ok() && !shut {
            conn.ctx.note(
                Stage::Close,
                "peer-closed",
                t!(
                    "the server closed its side first; we close ours",
                    "服务器先关闭了它那一端；我们也关闭我们这一端"
                ),
            );
        }
        if linger0 {
            conn.close_with_reset();
        } else {
            conn.close_settled(SETTLE);
        }
    }
    result
}

/// A typed line as it goes out: as typed with line and raw framing; with
/// utf, without its newline, as one writeUTF frame (None if it cannot be one).
fn typed(conn: &Conn, framing: Framing, line: Vec<u8>) -> Option<Vec<u8>> {
    if framing != Framing::Utf {
        return Some(line);
    }
    let text = String::from_utf8_lossy(&line);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    match framing::encode_utf(text) {
        Ok(frame) => Some(frame),
        Err(problem) => {
            conn.ctx.note(Stage::Transfer, "frame", {
                let problem = too_long(problem).0;
                t!("not sent: {problem}", "没有发送：{problem}")
            });
            None
        }
    }
}

/// The polite end: shutdown(SHUT_WR), read what is left until the peer's
/// FIN (recv returns 0), then close().
fn finish(conn: Conn, peer_closed: bool, frames: &mut Option<Deframer>) -> anyhow::Result<()> {
    let result = if peer_closed {
        Ok(())
    } else {
        drain_to_end(&conn, frames)
    };
    conn.close_settled(SETTLE);
    result
}

/// shutdown(SHUT_WR), then read until the peer's FIN.
fn drain_to_end(conn: &Conn, frames: &mut Option<Deframer>) -> anyhow::Result<()> {
    conn.shutdown(How::Write)?;
    let mut buf = vec![0u8; 4096];
    loop {
        match recv_reply(conn, &mut buf, frames) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(f) if f.is_timeout() => {
                let text = t!(
                    "the server did not close its side in time; closing anyway",
                    "服务器没有及时关闭它那一端；我们照样关闭"
                );
                conn.ctx.note(Stage::Close, "no-reply", text);
                return Ok(());
            }
            Err(f) => return Err(f.into()),
        }
    }
}
