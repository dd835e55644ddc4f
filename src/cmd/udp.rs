//! `sockdemo listen --udp` and `sockdemo connect --udp`: the same two
//! terminals as TCP, with datagrams instead of a connection.
//!
//! The server is [`crate::engine::udp_server`]; the client is a connected
//! [`UdpEndpoint`]: `connect()` (nothing on the wire), then for each line one
//! `send()` and one `recv()` that may wait in vain, then `close()`.

use crate::cli::{ConnectArgs, ListenArgs, OutputArgs};
use crate::engine::capture::{PacketMode, PacketWatch};
use crate::engine::ctx::Ctx;
use crate::engine::errors::UsageError;
use crate::engine::event::{Proto, Side, Stage};
use crate::engine::server::StopHandle;
use crate::engine::sink::Sink;
use crate::engine::udp::{self, UdpEndpoint};
use crate::engine::udp_server::{self, UdpSummary, MAX_DATAGRAM};
use crate::render::{self, human::Layout};
use crate::t;
use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::time::Duration;

/// `listen --udp`: options that only mean something for TCP are refused
/// with the reason, before anything runs. (`--backlog` and `--max-clients`
/// have defaults, so clap itself refuses them when they are typed.)
pub fn listen(args: &ListenArgs, output: &OutputArgs) -> anyhow::Result<()> {
    refuse(args.accept_delay.is_some(), || {
        t!(
            "--accept-delay does not go with --udp: UDP has no accept() and no accept queue; datagrams wait in the socket's receive buffer",
            "--accept-delay 不能和 --udp 一起用：UDP 没有 accept()，也没有接受队列；数据报在套接字的接收缓冲区里等待"
        )
    })?;
    refuse(args.chat, || {
        t!(
            "--chat does not go with --udp: the chat is a TCP room of connected clients",
            "--chat 不能和 --udp 一起用：聊天室是由已连接的 TCP 客户端组成的"
        )
    })?;
    let settings = output.settings();
    let (sink, renderer) = render::start(settings, Layout::Single, Side::Server, None);
    let renderer = renderer.with_proto(Proto::Udp);
    let result =
        super::shared::stepping(sink, output).and_then(|sink| serve(args, &sink, output.packets));
    renderer.finish(output.json, result)
}

fn serve(args: &ListenArgs, sink: &Sink, packets: PacketMode) -> anyhow::Result<()> {
    let endpoint = udp_server::open(sink, SocketAddr::new(args.host, args.port))?;
    let addr = endpoint
        .ctx
        .local
        .unwrap_or(SocketAddr::new(args.host, args.port));
    let mut ctx = Ctx::new(sink, Side::Server, Proto::Udp);
    ctx.local = Some(addr);
    let capture = PacketWatch::start_for(sink, addr.port(), packets, Proto::Udp)?;
    ready_note(&ctx, addr);
    if addr.ip().is_unspecified() {
        let only_v6 = addr
            .is_ipv6()
            .then(|| socket2::SockRef::from(&endpoint.sock).only_v6().ok())
            .flatten();
        super::shared::announce_addresses(&ctx, addr, only_v6, "sockdemo connect --udp");
    }

    let stop = StopHandle::new();
    {
        // Ctrl-C (SIGINT) and SIGTERM stop the server; the summary follows.
        let stop = stop.clone();
        super::shared::on_ctrl_c(
            &ctx,
            t!(
                "stopping: no more recvfrom(). No peer is told: UDP has no connection to end, so there is no FIN to send",
                "正在停止：不再 recvfrom()。不会通知任何对端：UDP 没有需要结束的连接，所以没有 FIN 可发"
            ),
            move || stop.stop(),
        )?;
    }
    let summary = udp_server::serve(endpoint, !args.no_echo, &stop);
    if let Some(capture) = capture {
        capture.stop();
    }
    summary_note(&ctx, &summary);
    Ok(())
}

/// Where to send datagrams, and the command that does it.
fn ready_note(ctx: &Ctx, addr: SocketAddr) {
    let here = super::shared::here(addr);
    let reach = if addr.ip().is_loopback() {
        t!(
            " Only programs on this machine can reach it; --host 0.0.0.0 opens it to the network.",
            " 只有本机上的程序能发到这里；--host 0.0.0.0 会向网络开放。"
        )
    } else {
        String::new()
    };
    let mut facts = serde_json::Map::new();
    facts.insert("addr".into(), addr.to_string().into());
    ctx.note_with(
        Stage::Listen,
        "ready",
        t!(
            "receiving datagrams on {addr} (UDP). In another terminal: sockdemo connect --udp {here}. Ctrl-C stops.{reach}",
            "正在 {addr}（UDP）上接收数据报。在另一个终端运行：sockdemo connect --udp {here}。按 Ctrl-C 停止。{reach}"
        ),
        facts,
    );
}

/// The summary of a UDP server run, as a note with its numbers as facts.
/// (The TCP summary counts clients; UDP has none, only datagrams and the
/// addresses they came from.)
fn summary_note(ctx: &Ctx, s: &UdpSummary) {
    let mut facts = serde_json::Map::new();
    facts.insert("peers".into(), s.peers.into());
    facts.insert("datagrams_in".into(), s.datagrams_in.into());
    facts.insert("datagrams_out".into(), s.datagrams_out.into());
    facts.insert("bytes_in".into(), s.bytes_in.into());
    facts.insert("bytes_out".into(), s.bytes_out.into());
    let (peers, d_in, d_out, bytes_in, bytes_out) = (
        s.peers,
        s.datagrams_in,
        s.datagrams_out,
        s.bytes_in,
        s.bytes_out,
    );
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let (s_peers, s_in, s_out) = (plural(peers), plural(d_in), plural(d_out));
    ctx.note_with(
        Stage::Close,
        "summary",
        t!(
            "summary: {d_in} datagram{s_in} in ({bytes_in} bytes) from {peers} peer{s_peers}; {d_out} datagram{s_out} out ({bytes_out} bytes)",
            "总结：从 {peers} 个对端收到 {d_in} 个数据报（{bytes_in} 字节）；发出 {d_out} 个数据报（{bytes_out} 字节）"
        ),
        facts,
    );
}

/// A usage error (exit status 2) if a TCP-only option was `given`, with the reason.
fn refuse(given: bool, why: impl FnOnce() -> String) -> anyhow::Result<()> {
    if given {
        Err(UsageError(why()).into())
    } else {
        Ok(())
    }
}

/// `connect --udp`: `--timeout` and `--linger0` are about TCP's handshake
/// and its goodbye, which UDP does not have; they are refused with the reason.
pub fn connect(args: &ConnectArgs, output: &OutputArgs) -> anyhow::Result<()> {
    refuse(args.timeout.is_some(), || {
        t!(
            "--timeout does not go with --udp: it limits how long TCP's handshake may take, and UDP has none (connect() on UDP returns at once). --wait SECS sets how long to wait for each reply",
            "--timeout 不能和 --udp 一起用：它限制 TCP 握手能用多久，而 UDP 没有握手（UDP 上的 connect() 立刻返回）。--wait 秒数 决定每个回复等多久"
        )
    })?;
    refuse(args.linger0, || {
        t!(
            "--linger0 does not go with --udp: it makes TCP end with a reset (RST) instead of FIN, and UDP sends neither: its close() puts nothing on the wire",
            "--linger0 不能和 --udp 一起用：它让 TCP 用复位（RST）代替 FIN 结束连接，而 UDP 两者都不发送：它的 close() 不往线路上发任何东西"
        )
    })?;
    let settings = output.settings();
    let (sink, renderer) = render::start(settings, Layout::Single, Side::Client, None);
    let renderer = renderer.with_proto(Proto::Udp);
    let result =
        super::shared::stepping(sink, output).and_then(|sink| client(args, &sink, output.packets));
    renderer.finish(output.json, result)
}

fn client(args: &ConnectArgs, sink: &Sink, packets: PacketMode) -> anyhow::Result<()> {
    let ctx = Ctx::new(sink, Side::Client, Proto::Udp);
    let addrs = super::shared::resolve(&args.target, &ctx)?;
    let Some(&target) = addrs.first() else {
        anyhow::bail!("no address to send to");
    };
    if addrs.len() > 1 {
        // TCP tries each address until a handshake succeeds. UDP has no
        // handshake, so nothing says which address has a server.
        ctx.note(
            Stage::Request,
            "first-address",
            t!(
                "the name has several addresses; UDP has no handshake to find out which one has a server, so this client uses the first: {target}",
                "这个名字对应好几个地址；UDP 没有握手，无法知道哪个地址上有服务器，所以这个客户端使用第一个：{target}"
            ),
        );
    }
    // Watch the wire before the first datagram goes out; stopped (after
    // the last packets are in) when this function returns.
    let _capture = PacketWatch::start_as(sink, target.port(), packets, Proto::Udp, Side::Client)?;
    let mut endpoint = UdpEndpoint::open(sink, Side::Client, Some("C1"), target)?;
    endpoint.connect(target)?;
    endpoint.preview_in = super::shared::PREVIEW_FOR_PEOPLE;
    endpoint.set_read_timeout(Some(args.wait))?;
    // One datagram back, whole, however long: the buffer fits any datagram.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let result = if args.send.is_empty() {
        from_stdin(&endpoint, &mut buf, args.wait)
    } else {
        args.send.iter().try_for_each(|text| {
            exchange(
                &endpoint,
                format!("{text}\n").as_bytes(),
                &mut buf,
                args.wait,
            )
        })
    };
    // Even after a failure: closing is one more thing UDP does silently.
    endpoint.close();
    result
}

/// No --send: each line typed on stdin is one datagram, newline included.
fn from_stdin(endpoint: &UdpEndpoint, buf: &mut [u8], wait: Duration) -> anyhow::Result<()> {
    endpoint.ctx.note(
        Stage::Transfer,
        "interactive",
        t!(
            "type lines to send them, one datagram per line; end with Ctrl-D (end of input)",
            "输入一行就发送一行，每行一个数据报；按 Ctrl-D（输入结束）结束"
        ),
    );
    let mut stdin = io::stdin().lock();
    loop {
        let mut line = Vec::new();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => exchange(endpoint, &line, buf, wait)?,
        }
    }
}

/// send() one datagram, then wait for one datagram back.
fn exchange(
    endpoint: &UdpEndpoint,
    datagram: &[u8],
    buf: &mut [u8],
    wait: Duration,
) -> anyhow::Result<()> {
    let peer = endpoint
        .ctx
        .remote
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let failed = |call, e: &io::Error| anyhow::Error::new(udp::explain_failure(call, peer, e));
    endpoint
        .send(datagram)
        .map_err(|f| failed("send", &f.error))?;
    match endpoint.recv(buf) {
        Ok(_) => Ok(()),
        Err(f) if f.is_timeout() => {
            let secs = format!("{:.1}", wait.as_secs_f64());
            endpoint.ctx.note(
                Stage::Transfer,
                "no-reply",
                t!(
                    "no reply within {secs} s. UDP promises nothing: the datagram or its echo may be lost, and nobody sends it again (no retransmission). Or the server does not answer (--no-echo)",
                    "{secs} 秒内没有回复。UDP 什么也不保证：数据报或它的回声可能丢了，也没有谁会重发（没有重传）。也可能服务器不回答（--no-echo）"
                ),
            );
            Ok(())
        }
        Err(f) => Err(failed("recv", &f.error)),
    }
}
