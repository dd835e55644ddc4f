//! Puts captured packets into the timeline: each becomes a `packet` event
//! stamped with the kernel's own time, labelled with its connection (C1…)
//! and the side that sent it, with sequence numbers made relative.

use crate::engine::event::{Proto, Side, Sink, Stage};
use crate::t;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// `--packets`: capture when possible, always (or fail), or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PacketMode {
    Auto,
    On,
    Off,
}

/// How long the timeline holds events back so that packets, read a little
/// later than they happened, still come out before what they caused.
pub const HOLDBACK: std::time::Duration = std::time::Duration::from_millis(300);

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
        t!(
            "no packets: capturing needs CAP_NET_RAW. Run as root, or allow this program once with: sudo setcap cap_net_raw+ep \"$(command -v sockdemo)\"",
            "没有数据包视图：抓包需要 CAP_NET_RAW 权限。请用 root 运行，或者执行一次：sudo setcap cap_net_raw+ep \"$(command -v sockdemo)\""
        )
    } else {
        t!("no packets: {error}", "没有数据包视图：{error}")
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
                sink.remember_labels();
                let stop = Arc::new(AtomicBool::new(false));
                let thread = {
                    let (sink, stop) = (sink.clone(), stop.clone());
                    thread::Builder::new()
                        .name("sockdemo-packets".into())
                        .spawn(move || narrate(capture, &sink, port, &stop))?
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
                    let ctx = crate::engine::conn::Ctx::new(sink, side, proto);
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
fn narrate(_capture: Capture, _sink: &Sink, _port: u16, _stop: &AtomicBool) {}

/// The capture thread: read packets, wait briefly for their connection's
/// label, and put them in the timeline.
#[cfg(target_os = "linux")]
fn narrate(capture: Capture, sink: &Sink, port: u16, stop: &AtomicBool) {
    use crate::engine::event::{Body, Event};
    use crate::engine::observe::packets::Packet;
    use std::collections::{HashMap, VecDeque};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant, SystemTime};

    // A packet's kernel time, on the timeline's clock.
    let (base_real, base_t) = (SystemTime::now(), sink.elapsed());
    let t_of = |p: &Packet| match p.at.duration_since(base_real) {
        Ok(after) => base_t + after.as_secs_f64(),
        Err(before) => (base_t - before.duration().as_secs_f64()).max(0.0),
    };
    // Sequence numbers start at a random value (the ISN); show them from 0.
    let mut first_seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut phase: HashMap<(SocketAddr, SocketAddr), Stage> = HashMap::new();
    let mut pending: VecDeque<(Packet, Instant)> = VecDeque::new();
    // How long a packet may wait for the call that names its connection.
    let patience = Duration::from_millis(150);
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let wait = if stopping {
            Duration::ZERO
        } else {
            Duration::from_millis(25)
        };
        match capture.next(wait) {
            Ok(Some(p)) => {
                // What crossed the wire, at once: a state waiting to be
                // confirmed by it does not wait for the label.
                if p.proto == Proto::Tcp {
                    let flags = crate::engine::event::Flags {
                        syn: p.syn,
                        ack: p.ack,
                        fin: p.fin,
                        rst: p.rst,
                    };
                    sink.wire_record(p.src, p.dst, flags);
                }
                pending.push_back((p, Instant::now()))
            }
            Ok(None) if stopping => {}
            Ok(None) => {}
            Err(_) => return,
        }
        while let Some((p, seen)) = pending.front() {
            let label = sink.label_of(p.src, p.dst);
            if label.is_none() && seen.elapsed() < patience && !stopping {
                break;
            }
            let (p, _) = pending.pop_front().expect("front exists");
            let key = (p.src, p.dst);
            if p.syn || !first_seq.contains_key(&key) {
                first_seq.insert(key, p.seq);
            }
            let seq = p.seq.wrapping_sub(first_seq[&key]);
            let ack = first_seq
                .get(&(p.dst, p.src))
                .map_or(p.ack_no, |isn| p.ack_no.wrapping_sub(*isn));
            let conn_key = if p.src.port() == port {
                (p.dst, p.src)
            } else {
                (p.src, p.dst)
            };
            let stage = stage_of(&p, phase.entry(conn_key).or_insert(Stage::Request));
            let side = if p.src.port() == port {
                Side::Server
            } else {
                Side::Client
            };
            sink.emit_stamped(Event {
                t: t_of(&p),
                side,
                stage,
                proto: p.proto,
                local: Some(p.src),
                remote: Some(p.dst),
                conn: label,
                body: Body::Packet {
                    flags: p.flags(),
                    seq,
                    ack,
                    len: p.len,
                },
            });
        }
        if stopping && pending.is_empty() {
            // One last look: anything still in the socket's queue.
            match capture.next(Duration::ZERO) {
                Ok(Some(p)) => pending.push_back((p, Instant::now())),
                _ => return,
            }
        }
    }
}

/// Which stage of the lesson a packet belongs to, following its connection.
#[cfg(target_os = "linux")]
fn stage_of(p: &crate::engine::observe::packets::Packet, phase: &mut Stage) -> Stage {
    if p.proto == Proto::Udp {
        return Stage::Transfer;
    }
    let stage = if p.rst || p.fin {
        Stage::Close
    } else if p.syn && !p.ack {
        Stage::Request
    } else if p.syn {
        Stage::Confirm
    } else if p.len > 0 {
        Stage::Transfer
    } else {
        // A bare ACK: it completes the handshake, acknowledges data, or a FIN.
        match *phase {
            Stage::Request | Stage::Confirm => Stage::Confirm,
            other => other,
        }
    };
    *phase = match (stage, *phase) {
        (_, Stage::Close) => Stage::Close,
        (Stage::Confirm, Stage::Confirm) if !p.syn => Stage::Transfer,
        (s, _) => s,
    };
    stage
}
