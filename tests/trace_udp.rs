//! `trace` of a UDP server and client: the datagram calls with their
//! peers, and each datagram on the wire told once, though both programs'
//! ports are captured (and each capture sees it).
#![cfg(target_os = "linux")]

mod common;

use common::*;

#[test]
fn a_udp_exchange_is_told_once_each_way() {
    let dir = std::env::temp_dir().join(format!("sockdemo-trace-udp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = dir.join("udp_server.py");
    let client = dir.join("udp_client.py");
    std::fs::write(
        &server,
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', int(sys.argv[1])))\n\
         data, peer = s.recvfrom(100)\n\
         s.sendto(data.upper(), peer)\n\
         s.close()\n",
    )
    .unwrap();
    std::fs::write(
        &client,
        "import socket, sys\n\
         c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         c.settimeout(10)\n\
         c.sendto(b'hello', ('127.0.0.1', int(sys.argv[1])))\n\
         print(c.recvfrom(100)[0])\n\
         c.close()\n",
    )
    .unwrap();
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let (server, client) = (server.to_string_lossy(), client.to_string_lossy());
    let out = run(
        sockdemo(&[
            "trace",
            "--json",
            "--wait-listen",
            "--run",
            &format!("python3 -u {server} {port}"),
            "--run",
            &format!("python3 -u {client} {port}"),
        ]),
        b"",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let calls: Vec<(&str, &str, i64)> = events
        .iter()
        .filter(|e| e["kind"] == "syscall")
        .map(|e| {
            (
                e["side"].as_str().unwrap(),
                e["call"].as_str().unwrap(),
                e["ret"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    for expected in [
        ("server", "bind", 0),
        ("server", "recvfrom", 5),
        ("server", "sendto", 5),
        ("client", "sendto", 5),
        ("client", "recvfrom", 5),
    ] {
        assert!(calls.contains(&expected), "{expected:?} in {calls:?}");
    }
    assert!(events
        .iter()
        .any(|e| e["kind"] == "note" && e["topic"] == "output" && e["text"] == "C1› b'HELLO'"));
    if capture_allowed() {
        let datagrams: Vec<_> = events.iter().filter(|e| e["kind"] == "packet").collect();
        assert_eq!(datagrams.len(), 2, "one each way, once: {datagrams:?}");
        assert_ne!(datagrams[0]["local"], datagrams[1]["local"]);
    }
}
