//! Across a real (virtual) network: two network namespaces joined by a veth
//! pair, made and removed by the test (root only, as in CI). The server
//! listens in one, the client connects from the other; both see the two
//! different addresses, in the 5-tuples and in the packets.

#![cfg(target_os = "linux")]

mod common;
use common::*;
use std::process::Command;

/// Two namespaces and the veth pair between them; removed when dropped.
struct TwoHosts {
    a: String,
    b: String,
}

impl TwoHosts {
    const A_IP: &'static str = "10.231.0.1";
    const B_IP: &'static str = "10.231.0.2";

    /// The two hosts, or None (and a line saying why) without root.
    fn if_root() -> Option<TwoHosts> {
        if !is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        Some(TwoHosts::new())
    }

    fn new() -> TwoHosts {
        // Unique per test: tests of one binary run at the same time.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = (std::process::id() % 10_000) * 10
            + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hosts = TwoHosts {
            a: format!("sdA{id}"),
            b: format!("sdB{id}"),
        };
        let (va, vb) = (format!("vA{id}"), format!("vB{id}"));
        for ns in [&hosts.a, &hosts.b] {
            let status = Command::new("ip")
                .args(["netns", "add", ns])
                .status()
                .expect("run ip");
            assert!(status.success(), "ip netns add {ns}");
        }
        join_namespaces(
            &hosts.a,
            &va,
            &["10.231.0.1/24"],
            &hosts.b,
            &vb,
            &["10.231.0.2/24"],
        );
        hosts
    }

    /// sockdemo ARGS inside namespace `ns`.
    fn sockdemo(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, bin()]).args(args);
        cmd.env("LC_ALL", "C.UTF-8").env_remove("LANG");
        cmd
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn listen_in_one_namespace_connect_from_another() {
    let Some(hosts) = TwoHosts::if_root() else {
        return;
    };
    let mut server = Running::start(hosts.sockdemo(
        &hosts.a,
        &[
            "listen",
            "--host",
            TwoHosts::A_IP,
            "--port",
            "0",
            "--json",
            "--packets",
            "on",
        ],
    ));
    let addr = server.listening_addr();
    assert!(addr.starts_with(TwoHosts::A_IP), "{addr}");
    let out = run(
        hosts.sockdemo(
            &hosts.b,
            &[
                "connect",
                &addr,
                "--send",
                "across",
                "--json",
                "--packets",
                "on",
            ],
        ),
        b"",
    );
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout, out.stderr);
    let client = out.events();

    // The client's 5-tuple: its own address is B's, the server's is A's.
    let tuple = client
        .iter()
        .find(|e| e["topic"] == "tuple")
        .expect("client tuple");
    let client_addr = tuple["local"].as_str().unwrap().to_string();
    assert!(client_addr.starts_with(TwoHosts::B_IP), "{client_addr}");
    assert_eq!(tuple["remote"], addr.as_str());

    // The client's packets: B → A and A → B, each frame once (a veth is not
    // loopback: both directions are real, different frames).
    let packets: Vec<(String, String, String)> = client
        .iter()
        .filter(|e| e["kind"] == "packet")
        .map(|e| {
            (
                e["local"].as_str().unwrap().into(),
                e["remote"].as_str().unwrap().into(),
                e["flags"].as_str().unwrap().into(),
            )
        })
        .collect();
    let handshake: Vec<_> = packets
        .iter()
        .take(3)
        .map(|p| (p.0.as_str(), p.1.as_str(), p.2.as_str()))
        .collect();
    assert_eq!(
        handshake,
        [
            (client_addr.as_str(), addr.as_str(), "SYN"),
            (addr.as_str(), client_addr.as_str(), "SYN,ACK"),
            (client_addr.as_str(), addr.as_str(), "ACK")
        ],
        "{packets:?}"
    );
    assert_eq!(
        packets.iter().filter(|p| p.2 == "SYN").count(),
        1,
        "each frame once"
    );

    // The server saw the same connection from its side.
    server.wait_event("the server's close of C1", |e| {
        e["call"] == "close" && e["conn"] == "C1"
    });
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    let events = parse_lines(&lines.join("\n"));
    let accept = events
        .iter()
        .find(|e| e["call"] == "accept" && e["ok"] == true)
        .unwrap();
    assert_eq!(accept["remote"], client_addr.as_str());
    assert_eq!(accept["local"], addr.as_str());
    assert!(events.iter().any(|e| e["kind"] == "packet"
        && e["flags"] == "SYN"
        && e["local"] == client_addr.as_str()));
}

/// The classroom: a server on every interface (--host 0.0.0.0) prints the
/// machine's real addresses and the exact command to type; a student on the
/// other host types it and is served.
#[cfg(target_os = "linux")]
#[test]
fn classroom_on_every_interface() {
    let Some(hosts) = TwoHosts::if_root() else {
        return;
    };
    let mut server = Running::start(hosts.sockdemo(
        &hosts.a,
        &[
            "listen",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--json",
            "--packets",
            "off",
        ],
    ));
    let addr = server.listening_addr();
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
    let port = addr.rsplit(':').next().unwrap().to_string();
    let announced = server.wait_event("the address of the veth", |e| {
        e["topic"] == "address" && e["ip"] == TwoHosts::A_IP
    });
    let command = announced["command"].as_str().unwrap().to_string();
    assert_eq!(
        command,
        format!("sockdemo connect {}:{port}", TwoHosts::A_IP)
    );
    // The student types exactly that command, on the other host.
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    let mut args = words.clone();
    args.extend(["--send", "hello teacher", "--json", "--packets", "off"]);
    let out = run(hosts.sockdemo(&hosts.b, &args), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let echo = out
        .events()
        .into_iter()
        .find(|e| e["kind"] == "data" && e["dir"] == "in")
        .expect("the echo");
    assert_eq!(echo["text"], "hello teacher\\n");
    let accept = server.wait_event("accept", |e| e["call"] == "accept" && e["ok"] == true);
    assert!(
        accept["remote"]
            .as_str()
            .unwrap()
            .starts_with(TwoHosts::B_IP),
        "{accept}"
    );
    assert_eq!(
        accept["local"],
        format!("{}:{port}", TwoHosts::A_IP).as_str(),
        "the accepted socket has the real local address"
    );
    drop(server);
}
