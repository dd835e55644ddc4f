//! The errors a socket program meets, each caused for real on loopback:
//! refused, address in use, reset, broken pipe, timeout.

use super::{free_port, show_failure, Kit};
use crate::engine::client;
use crate::engine::conn::Received;
use crate::engine::event::{Stage, TcpState};
use crate::engine::observe;
use crate::engine::server::open_listener;
use crate::t;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub fn run(kit: &Kit) -> anyhow::Result<()> {
    kit.platform_note();
    refused(kit)?;
    kit.pause();
    in_use(kit)?;
    kit.pause();
    reset_and_broken_pipe(kit)?;
    kit.pause();
    timeout(kit)
}

fn heading(kit: &Kit, text: String) {
    kit.say(Stage::Request, "demo", text);
}

fn refused(kit: &Kit) -> anyhow::Result<()> {
    heading(
        kit,
        t!(
            "1. Connection refused: connect() to a port where nothing listens.",
            "1. 连接被拒绝：connect() 到一个没有人监听的端口。"
        ),
    );
    let closed = free_port(kit)?;
    let _capture = kit.watch(closed.port())?;
    if let Err(lesson) = client::connect(&kit.sink, closed, Some(Duration::from_secs(2)), "C1") {
        show_failure(kit, Some("C1"), &lesson);
    }
    Ok(())
}

fn in_use(kit: &Kit) -> anyhow::Result<()> {
    heading(
        kit,
        t!(
            "2. Address in use: a second server binds the port the first one listens on.",
            "2. 地址已被占用：第二个服务器去绑定第一个服务器正在监听的端口。"
        ),
    );
    let first = open_listener(&kit.sink, SocketAddr::from(([127, 0, 0, 1], 0)), 4)?;
    if let Err(lesson) = open_listener(&kit.sink, first.local, 4) {
        show_failure(kit, None, &lesson);
    }
    first.close();
    Ok(())
}

fn reset_and_broken_pipe(kit: &Kit) -> anyhow::Result<()> {
    heading(
        kit,
        t!(
            "3. Reset and broken pipe: this server accepts C2, then closes with SO_LINGER 0, which sends a reset (RST). C2 then writes twice.",
            "3. 连接重置与管道破裂：这个服务器接受 C2 后，用 SO_LINGER 0 关闭，发出复位（RST）。然后 C2 写两次。"
        ),
    );
    let (listener, _capture) = kit.listener(4)?;
    let c2 = client::connect(
        &kit.sink,
        listener.local,
        Some(Duration::from_secs(5)),
        "C2",
    )?;
    let served = listener.accept_one()?;
    kit.pause();
    served.close_with_reset();
    // Wait (briefly, bounded) until C2's kernel has processed the reset.
    let deadline = Instant::now() + Duration::from_secs(2);
    while observe::tcp_state(&c2.sock) == Some(TcpState::Established) && Instant::now() < deadline {
        // Asking the kernel until it says so: nothing else tells this thread.
        std::thread::sleep(Duration::from_millis(1));
    }
    kit.pause();
    for _ in 0..2 {
        if let Err(failed) = c2.send_all(b"are you there?\n") {
            show_failure(kit, Some("C2"), &failed.lesson());
        }
    }
    // After a reset, reading gives 0 bytes: the connection is over.
    let mut buf = [0u8; 64];
    let _ = c2.recv(&mut buf).map(|r| matches!(r, Received::End));
    c2.close();
    listener.close();
    Ok(())
}

fn timeout(kit: &Kit) -> anyhow::Result<()> {
    heading(
        kit,
        t!(
            "4. Timeout: a server whose accept queue is full (listen backlog 0, one connection already waiting) silently drops new SYNs; connect() gives up after 1 s. That server and the connections that fill its queue are not on the timeline: only C3's side is (strace -f shows their calls).",
            "4. 超时：一个接受队列已满的服务器（listen 的 backlog 为 0，已有一个连接在等）会悄悄丢弃新的 SYN；connect() 在 1 秒后放弃。这个服务器和占满它队列的连接不在时间线上，只显示 C3 这一端（strace -f 能看到它们的调用）。"
        ),
    );
    // The full server is not narrated: it only exists to drop SYNs.
    let full = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    full.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    full.listen(0)?;
    let addr = full
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow::anyhow!("no address"))?;
    // Its SYNs, sent again and again, are worth seeing.
    let _capture = kit.watch(addr.port())?;
    // Fill the queue until a connect from here is no longer answered (a few tries at most).
    let mut waiting = Vec::new();
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => waiting.push(s),
            Err(_) => break,
        }
    }
    if let Err(lesson) = client::connect(&kit.sink, addr, Some(Duration::from_secs(1)), "C3") {
        show_failure(kit, Some("C3"), &lesson);
    }
    drop(waiting);
    Ok(())
}
