//! `sockdemo tour`: the whole lesson in one process and one timeline.
//!
//! One server S and clients C1, C2, C3 on 127.0.0.1: the server listens,
//! each client requests, each connection is confirmed, a message goes each
//! way, and each connection closes. See [`super::kit`] for how the story is
//! paced without scripting any result.

use super::kit::Kit;
use crate::cli::{OutputArgs, TourArgs};
use crate::engine::conn::Conn;
use crate::engine::event::Stage;
use crate::t;
use std::net::SocketAddr;

pub fn run(args: &TourArgs, output: &OutputArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.diagram {
        // A bad path fails before the timeline starts, not after its header.
        super::diagram::replace::check(path)?;
    }
    let (kit, renderer) = Kit::start(output, args.pace, Some(args.verbose), None)?;
    let title = format!("sockdemo tour --clients {}", args.clients);
    let result = super::diagram::after(
        args.diagram.as_deref(),
        args.diagram_pages,
        &kit,
        &title,
        || tour(&kit, args.clients),
    );
    renderer.finish(output.json, result)
}

/// The tour with `clients` clients, on a kit a demo may share.
pub fn tour(kit: &Kit, clients: u16) -> anyhow::Result<()> {
    let clients_en = if clients == 1 {
        "1 client".to_string()
    } else {
        format!("{clients} clients")
    };
    kit.say(
        Stage::Listen,
        "tour",
        t!(
            "The tour: one server S and {clients_en} on this machine (127.0.0.1). Every line is a real socket \
             call or the kernel's own answer; a state marked inferred was deduced, not observed.",
            "导览：一台服务器 S 和 {clients} 个客户端，都在本机（127.0.0.1）上。每一行都是真实的套接字调用\
             或内核自己的回答；标为“推断”的状态是推导出来的，不是观测到的。"
        ),
    );
    kit.platform_note();

    // Stage 1: the server listens.
    let server = kit.server(16)?;
    let addr = server.addr;
    let mut conns: Vec<Conn> = Vec::new();

    // Stages 2 and 3, one client at a time: the client requests, the
    // server confirms and hands the new socket to a thread of its own.
    kit.pause_stage();
    for i in 1..=clients {
        let label = format!("C{i}");
        conns.push(server.connect_client(&kit.sink, &label)?);
    }

    // Transfer: each client sends a line; its server thread echoes it.
    kit.pause_stage();
    for conn in &conns {
        let label = conn.ctx.conn.clone().unwrap_or_default();
        let message = format!("hello from {label}\n");
        conn.send_all(message.as_bytes())?;
        server.echo(conn, message.len())?;
    }

    // Close: the client half-closes, the server reads end-of-stream
    // (CLOSE-WAIT) and closes, the client reads it and ends in TIME-WAIT.
    let client_addrs: Vec<SocketAddr> = conns.iter().filter_map(|c| c.ctx.local).collect();
    kit.pause_stage();
    for conn in conns {
        server.close_from_client(conn)?;
    }

    // The kernel's own table for this port, as `ss` would show it.
    kit.pause_stage();
    match kit.rows_of(addr, &client_addrs) {
        Ok(rows) => {
            let port = addr.port();
            kit.table(
                Stage::Close,
                t!(
                    "the kernel's socket table for port {port} (sock_diag), after every close():",
                    "所有 close() 之后，内核中端口 {port} 的套接字表（sock_diag）："
                ),
                &rows,
            );
        }
        Err(e) => kit.say(
            Stage::Close,
            "table",
            t!(
                "the kernel's socket table is not available here: {e}",
                "这里无法读取内核的套接字表：{e}"
            ),
        ),
    }
    let summary = server.finish()?;
    crate::cmd::shared::summary_note(&kit.story, &summary);
    Ok(())
}
