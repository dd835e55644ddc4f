//! Puts captured packets into the evidence: each is recorded with the
//! kernel's own timestamp, and the capture's watermark tells the timeline
//! how far it has read, so nothing is told before the packets that came
//! earlier. (Which connection a packet belongs to is the tracker's work.)

use crate::engine::ctx::Ctx;
use crate::engine::event::{Proto, Side, Stage};
use crate::engine::sink::{Sink, Watermark};
use crate::t;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// `--packets`: capture when possible, always (or fail), or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketMode {
    Auto,
    On,
    Off,
}

/// A running capture for one port.
pub struct PacketWatch {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Says "no packets" at most once per run, however many servers a demo opens.
static SAID_NO_PACKETS: AtomicBool = AtomicBool::new(false);

/// The explanation when capturing is not allowed or not possible here.
pub fn why_no_packets(error: &std::io::Error) -> String {
    if matches!(error.kind(), std::io::ErrorKind::PermissionDenied) {
        // The binary that runs now (after `cargo run`, it is not on PATH).
        let exe = running_binary();
        t!(
            "no packets: capturing needs CAP_NET_RAW. Run as root, or allow this program once with: sudo setcap cap_net_raw+ep {exe}",
            "没有数据包视图：抓包需要 CAP_NET_RAW 权限。请用 root 运行，或者执行一次：sudo setcap cap_net_raw+ep {exe}"
        )
    } else {
        t!("no packets: {error}", "没有数据包视图：{error}")
    }
}

/// The path of the running sockdemo, quoted for a shell where needed.
fn running_binary() -> String {
    match std::env::current_exe() {
        Ok(path) => {
            let path = crate::sanitize::text(&path.to_string_lossy()).into_owned();
            if path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
            {
                path
            } else {
                format!("'{}'", path.replace('\'', "'\\''"))
            }
        }
        Err(_) => "\"$(command -v sockdemo)\"".into(),
    }
}

impl PacketWatch {
    /// Starts capturing TCP and UDP on `port` (the server's port). With
    /// `Auto`, a capture that cannot start is one note; with `On`, an error.
    pub fn start(sink: &Sink, port: u16, mode: PacketMode) -> anyhow::Result<Option<PacketWatch>> {
        PacketWatch::start_for(sink, port, mode, Proto::Tcp)
    }

    /// [`start`](Self::start) for a program that speaks `proto`: the one
    /// note, if capturing cannot start, carries that protocol.
    pub fn start_for(
        sink: &Sink,
        port: u16,
        mode: PacketMode,
        proto: Proto,
    ) -> anyhow::Result<Option<PacketWatch>> {
        PacketWatch::start_as(sink, port, mode, proto, Side::Server)
    }

    /// [`start_for`](Self::start_for) for a program on `side` (a client's
    /// note belongs to the client, at its request stage).
    pub fn start_as(
        sink: &Sink,
        port: u16,
        mode: PacketMode,
        proto: Proto,
        side: Side,
    ) -> anyhow::Result<Option<PacketWatch>> {
        if mode == PacketMode::Off {
            return Ok(None);
        }
        match open(port) {
            Ok(capture) => {
                let mark = sink.add_capture();
                let stop = Arc::new(AtomicBool::new(false));
                let thread = {
                    let (sink, stop) = (sink.clone(), stop.clone());
                    thread::Builder::new()
                        .name("sockdemo-packets".into())
                        .spawn(move || record(capture, &sink, &mark, &stop))?
                };
                Ok(Some(PacketWatch {
                    stop,
                    thread: Some(thread),
                }))
            }
            Err(e) if mode == PacketMode::On => {
                let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    "permission"
                } else {
                    "unsupported"
                };
                Err(crate::engine::errors::Lesson {
                    summary: format!("--packets on: {e}"),
                    explanation: why_no_packets(&e),
                    code,
                }
                .into())
            }
            Err(e) => {
                if !SAID_NO_PACKETS.swap(true, Ordering::Relaxed) {
                    let ctx = Ctx::new(sink, side, proto);
                    let stage = if side == Side::Server {
                        Stage::Listen
                    } else {
                        Stage::Request
                    };
                    ctx.note(stage, "packets", why_no_packets(&e));
                }
                Ok(None)
            }
        }
    }

    /// Stops the capture after the packets already seen are in the timeline.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PacketWatch {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(target_os = "linux")]
type Capture = crate::engine::observe::packets::Capture;
#[cfg(not(target_os = "linux"))]
struct Capture;

#[cfg(target_os = "linux")]
fn open(port: u16) -> std::io::Result<Capture> {
    let capture = Capture::open(port)?;
    // Linux switches packet timestamping on for the whole system through a
    // deferred work item, a moment after the first socket asks for it
    // (net_enable_timestamp). Until then frames carry no time of their own
    // and are stamped when read: too late to be ordered. Let it settle once.
    static SETTLED: std::sync::Once = std::sync::Once::new();
    SETTLED.call_once(|| thread::sleep(std::time::Duration::from_millis(50)));
    Ok(capture)
}

#[cfg(not(target_os = "linux"))]
fn open(_port: u16) -> std::io::Result<Capture> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "packet capture (AF_PACKET) is Linux-only",
    ))
}

#[cfg(not(target_os = "linux"))]
fn record(_capture: Capture, _sink: &Sink, mark: &Watermark, _stop: &AtomicBool) {
    mark.ended.store(true, Ordering::SeqCst);
}

/// Frames the kernel dropped before the capture read them: said, so that
/// a missing packet is never taken for one that was not sent.
#[cfg(target_os = "linux")]
fn tell_drops(sink: &Sink, who: &crate::engine::evidence::Who, n: u32) {
    use crate::engine::evidence::What;
    let mut facts = serde_json::Map::new();
    facts.insert("packets_dropped".into(), n.into());
    sink.record(
        who.clone(),
        What::Note {
            stage: Stage::Transfer,
            topic: "capture-drops",
            text: crate::t!(
                "{n} packets went by faster than the capture could read them: the kernel dropped its copies (the connections lost nothing), so they are not shown",
                "有 {n} 个数据包经过得太快，抓包来不及读取：内核丢弃了给抓包的副本（连接本身没有丢任何东西），所以没有显示"
            ),
            facts,
        },
    );
}

/// The capture thread: read every packet queued so far, record it, then
/// move the watermark: every packet stamped before it is now recorded.
#[cfg(target_os = "linux")]
fn record(mut capture: Capture, sink: &Sink, mark: &Watermark, stop: &AtomicBool) {
    use crate::engine::evidence::{Flags, Seen, What, Who};
    use crate::engine::sink::{now_ns, CAPTURE_MARGIN_NS};
    use std::time::{Duration, UNIX_EPOCH};

    let nobody = Who::nobody(Side::Server, Proto::Tcp);
    let mut busy = false;
    let mut counted = std::time::Instant::now();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping || counted.elapsed() >= Duration::from_millis(250) {
            counted = std::time::Instant::now();
            if let Ok(n @ 1..) = capture.drops() {
                tell_drops(sink, &nobody, n);
            }
        }
        // Read the clock first: whatever the kernel stamped before it
        // (less a margin) is in the capture's queue by now.
        let vouch = now_ns().saturating_sub(CAPTURE_MARGIN_NS);
        let mut read = 0;
        loop {
            match capture.next(Duration::ZERO) {
                Ok(Some(p)) => {
                    read += 1;
                    let ns =
                        p.at.duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos() as u64);
                    let seen = Seen {
                        proto: p.proto,
                        src: p.src,
                        dst: p.dst,
                        flags: Flags {
                            syn: p.syn,
                            ack: p.ack,
                            fin: p.fin,
                            rst: p.rst,
                            psh: p.psh,
                        },
                        seq: p.seq,
                        ack_no: p.ack_no,
                        len: p.len,
                    };
                    sink.record_packet(sink.t_of(ns), nobody.clone(), What::Packet(seen));
                }
                Ok(None) => break,
                Err(_) => {
                    mark.ended.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
        mark.ns.fetch_max(vouch, Ordering::SeqCst);
        if stopping {
            mark.ended.store(true, Ordering::SeqCst);
            return;
        }
        if busy && read > 0 {
            // A busy wire: take what came every millisecond, rather than
            // waking for every packet (the threads being watched need the CPU).
            thread::sleep(Duration::from_millis(1));
        } else {
            // Wait for the next packet, but move the watermark on at least
            // this often while the wire is quiet.
            let _ = capture.wait(Duration::from_millis(5));
        }
        busy = read > 0;
    }
}
