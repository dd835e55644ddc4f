//! What the commands share: the narrator's voice for a whole run (the
//! summary, the platform note, Ctrl-C), and the addresses a person types.

use crate::cli::{OutputArgs, Target};
use crate::engine::call::Call;
use crate::engine::ctx::Ctx;
use crate::engine::errors::{self, Lesson};
use crate::engine::event::Stage;
use crate::engine::sink::Sink;
use crate::t;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, Ordering};

/// A person reads what the server sends: show more of it than in a tour.
pub const PREVIEW_FOR_PEOPLE: usize = 240;

/// The sink, asking the teacher before every socket call when `--step` is on.
pub fn stepping(sink: Sink, output: &OutputArgs) -> anyhow::Result<Sink> {
    Ok(if output.step {
        sink.with_stepper(std::sync::Arc::new(super::step::Stepper::new()?))
    } else {
        sink
    })
}

/// The signal that stopped the command (0: none), for `main` to choose the
/// exit status (128 + its number, as a shell reports a death by signal).
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

/// The exit status a command chose for itself (`trace` returns its
/// program's); 0 when it chose none.
static EXIT_STATUS: AtomicI32 = AtomicI32::new(0);

/// Ends the command with `status` (when it returns Ok).
pub fn exit_with(status: i32) {
    EXIT_STATUS.store(status, Ordering::SeqCst);
}

/// The exit status the command chose, if it chose one.
pub fn chosen_exit() -> Option<i32> {
    match EXIT_STATUS.load(Ordering::SeqCst) {
        0 => None,
        status => Some(status),
    }
}

/// The signal that stopped the command, if one did: SIGINT (Ctrl-C) 2,
/// SIGHUP 1, SIGTERM 15.
pub fn stopped_by() -> Option<i32> {
    match STOPPED_BY.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP: say why, then `stop()`, and
/// remember the signal for the exit status (130 after SIGINT, 143 after
/// SIGTERM). A second signal leaves at once (128 + its number), in case
/// stopping hangs.
///
/// On Unix the signals come through signal-hook's iterator: a thread of
/// our own receives each one with its number (the handler only wakes it),
/// so this code may take locks and emit events, which a signal handler
/// must not. Elsewhere `ctrlc` brings Ctrl-C.
pub fn on_ctrl_c(ctx: &Ctx, why: String, stop: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    let ctx = ctx.clone();
    on_signal(move || {
        ctx.note(Stage::Close, "stopping", why.clone());
        stop();
    })
}

/// [`on_ctrl_c`] without the note, for a command with no timeline (`watch`).
pub fn on_signal(stop: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    let on_signal = move |signal: i32| {
        if STOPPED_BY
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            std::process::exit(128 + signal);
        }
        stop();
    };
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new()
            .name("sockdemo-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    on_signal(signal);
                }
            })?;
    }
    #[cfg(not(unix))]
    {
        // Windows' Ctrl-C, which C and Rust number as SIGINT.
        const SIGINT: i32 = 2;
        ctrlc::set_handler(move || on_signal(SIGINT))?;
    }
    Ok(())
}

/// How to reach `addr` from this machine: a server on every interface
/// (0.0.0.0, ::) is reached through loopback.
pub fn here(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Said once where the kernel cannot be asked about states.
pub fn platform_text() -> String {
    t!(
        "this OS does not let sockdemo read TCP states from the kernel: the states shown are inferred from the protocol",
        "这个操作系统不允许 sockdemo 从内核读取 TCP 状态：下面显示的状态都是根据协议推断的"
    )
}

/// The summary of a server run, as a note with its numbers as facts.
pub fn summary_note(ctx: &Ctx, s: &crate::engine::server::Summary) {
    let mut facts = serde_json::Map::new();
    facts.insert("clients".into(), s.clients.into());
    facts.insert("refused".into(), s.refused.into());
    facts.insert("peak".into(), s.peak.into());
    facts.insert("bytes_in".into(), s.bytes_in.into());
    facts.insert("bytes_out".into(), s.bytes_out.into());
    facts.insert("silenced".into(), s.silenced.into());
    facts.insert("cut".into(), s.cut.into());
    facts.insert("after_fin".into(), s.after_fin.into());
    let (clients, peak, refused, bytes_in, bytes_out) =
        (s.clients, s.peak, s.refused, s.bytes_in, s.bytes_out);
    let noun = if clients == 1 { "client" } else { "clients" };
    let mut text = t!(
        "summary: served {clients} {noun} (at most {peak} at once, {refused} refused); {bytes_in} bytes in, {bytes_out} bytes out",
        "总结：服务了 {clients} 个客户端（同时最多 {peak} 个，拒绝 {refused} 个）；收到 {bytes_in} 字节，发出 {bytes_out} 字节"
    );
    // Only what happened: the rarer outcomes are said when they occurred.
    let silenced = s.silenced;
    if silenced > 0 {
        text += &t!(
            "; {silenced} closed for sending nothing or for a half-sent message",
            "；{silenced} 个因长时间不发送或消息只发了一半而被关闭"
        );
    }
    let after_fin = s.after_fin;
    if after_fin > 0 {
        text += &t!(
            "; {after_fin} bytes came after our FIN at stop (read, not echoed)",
            "；停止时在我们的 FIN 之后又收到 {after_fin} 字节（已读取，未回显）"
        );
    }
    let cut = s.cut;
    if cut > 0 {
        let (noun, was) = if cut == 1 {
            ("client", "was")
        } else {
            ("clients", "were")
        };
        text += &t!(
            "; {cut} {noun} did not close within the grace period and {was} reset",
            "；{cut} 个客户端没有在宽限时间内关闭，被重置（RST）"
        );
    }
    ctx.note_with(Stage::Close, "summary", text, facts);
}

/// Host name → addresses. An IP address needs no lookup.
pub fn resolve(target: &Target, ctx: &Ctx) -> Result<Vec<SocketAddr>, Lesson> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    // getaddrinfo(3) reads /etc/hosts and asks DNS: no socket of ours yet.
    let lookup = || -> std::io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()?
            .collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no addresses",
            ));
        }
        Ok(addrs)
    };
    let addrs = ctx
        .call(Call::GetAddrInfo(target.host.clone()), lookup)
        .map_err(|f| errors::unresolved(&target.host, &f.error))?;
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    let (host, list) = (&target.host, list.join(", "));
    let mut facts = serde_json::Map::new();
    facts.insert(
        "addresses".into(),
        serde_json::json!(addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>()),
    );
    ctx.note_with(
        Stage::Request,
        "resolved",
        t!("the name {host} means {list}", "名字 {host} 对应 {list}"),
        facts,
    );
    Ok(addrs)
}

/// For `--host 0.0.0.0` or `::`: every address of this machine, and the exact
/// command a student on the network should type for each.
pub fn announce_addresses(ctx: &Ctx, addr: SocketAddr, only_v6: Option<bool>, connect: &str) {
    let port = addr.port();
    let ipv6 = addr.is_ipv6();
    if ipv6 {
        // On Linux an IPv6 socket bound to :: also takes IPv4 clients unless
        // IPV6_V6ONLY is set (net.ipv6.bindv6only decides the default).
        let text = match only_v6 {
            Some(true) => t!(
                "IPV6_V6ONLY is on: only IPv6 clients can connect; IPv4 clients need a second server on 0.0.0.0",
                "IPV6_V6ONLY 已打开：只有 IPv6 客户端能连接；IPv4 客户端需要另一个监听 0.0.0.0 的服务器"
            ),
            _ => t!(
                "IPV6_V6ONLY is off: IPv4 clients are accepted too, and appear as IPv4-mapped IPv6 addresses such as ::ffff:192.0.2.7",
                "IPV6_V6ONLY 未打开：IPv4 客户端也能连接，它们会显示为 IPv4 映射的 IPv6 地址，例如 ::ffff:192.0.2.7"
            ),
        };
        ctx.note(Stage::Listen, "dual-stack", text);
    }
    let accepts_v4 = !ipv6 || only_v6 != Some(true);
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let mut told = 0;
    for iface in interfaces
        .iter()
        .filter(|i| !i.is_loopback() && !i.is_link_local())
    {
        let ip = iface.ip();
        if (ip.is_ipv4() && !accepts_v4) || (ip.is_ipv6() && !ipv6) {
            continue;
        }
        let target = SocketAddr::new(ip, port);
        let name = &iface.name;
        let command = format!("{connect} {target}");
        let mut facts = serde_json::Map::new();
        facts.insert("interface".into(), name.clone().into());
        facts.insert("ip".into(), ip.to_string().into());
        facts.insert("command".into(), command.clone().into());
        ctx.note_with(
            Stage::Listen,
            "address",
            t!(
                "on {name}: {ip}. Students on that network type: {command}",
                "网络接口 {name}：{ip}。同一网络上的学生输入：{command}"
            ),
            facts,
        );
        told += 1;
    }
    if told == 0 {
        ctx.note(
            Stage::Listen,
            "address",
            t!(
                "this machine has no network address besides loopback: only programs on it can connect",
                "这台机器除了回环地址之外没有别的网络地址：只有本机上的程序能连接"
            ),
        );
    }
}
