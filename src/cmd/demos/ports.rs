//! Ports: the OS picks a client's port (ephemeral) from a range, a server
//! can ask for any free port with port 0, and ports below 1024 are privileged.

use super::{show_failure, Kit};
use crate::engine::event::Stage;
use crate::engine::server::open_listener;
use crate::t;
use std::net::SocketAddr;

pub fn run(kit: &Kit) -> anyhow::Result<()> {
    kit.platform_note();
    if let Some((low, high)) = ephemeral_range() {
        let mut facts = serde_json::Map::new();
        facts.insert("low".into(), low.into());
        facts.insert("high".into(), high.into());
        kit.story.note_with(
            Stage::Listen,
            "ephemeral-range",
            t!(
                "this kernel picks ephemeral (client) ports from {low} to {high} (/proc/sys/net/ipv4/ip_local_port_range)",
                "这个内核从 {low} 到 {high} 之间挑选临时（客户端）端口（/proc/sys/net/ipv4/ip_local_port_range）"
            ),
            facts,
        );
    }
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "The server binds port 0: \"any free port\". Then three clients connect; none of them calls bind(), yet each gets a port.",
            "服务器绑定端口 0，意思是“任意空闲端口”。然后三个客户端连接；它们都没有调用 bind()，却都得到了端口。"
        ),
    );
    let server = kit.server(8)?;
    let mut conns = Vec::new();
    for i in 1..=3 {
        kit.pause();
        let label = format!("C{i}");
        let conn = server.connect_client(&kit.sink, &label)?;
        conns.push(conn);
    }
    let ports: Vec<String> = conns
        .iter()
        .filter_map(|c| c.ctx.local)
        .map(|a| a.port().to_string())
        .collect();
    let (list, server_port) = (ports.join(", "), server.addr.port());
    kit.say(
        Stage::Confirm,
        "ephemeral",
        t!(
            "the clients got ports {list} from the OS, all talking to the one server port {server_port}",
            "客户端从操作系统得到了端口 {list}，都在和同一个服务器端口 {server_port} 通信"
        ),
    );
    for conn in conns {
        kit.pause();
        server.close_from_client(conn)?;
    }
    server.finish()?;
    kit.pause();

    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "Ports below 1024 are privileged: here a server tries port 1 (tcpmux, unused today).",
            "1024 以下的端口是特权端口：这里一个服务器尝试绑定端口 1（tcpmux，如今已无人使用）。"
        ),
    );
    match open_listener(&kit.sink, SocketAddr::from(([127, 0, 0, 1], 1)), 1) {
        Ok(listener) => {
            kit.say(
                Stage::Listen,
                "privileged",
                t!(
                    "it worked: this program runs as root (or has CAP_NET_BIND_SERVICE), which may bind ports below 1024; an ordinary user gets EACCES",
                    "成功了：本程序以 root 身份运行（或拥有 CAP_NET_BIND_SERVICE），可以绑定 1024 以下的端口；普通用户会得到 EACCES"
                ),
            );
            listener.close();
        }
        Err(lesson) => show_failure(kit, None, &lesson),
    }
    Ok(())
}

/// Linux's ephemeral port range, if this is Linux.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>());
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}
