//! Packets on the wire in the timeline (Linux, CAP_NET_RAW: these tests
//! run as root, as CI does).

mod common;
use common::*;
use serde_json::Value;

fn packets(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e["kind"] == "packet")
        .map(|e| {
            (
                e["conn"].as_str().unwrap_or("?").to_string(),
                e["side"].as_str().unwrap().to_string(),
                e["flags"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The tour shows each connection's handshake, data and close on the
/// wire, in order, once each (loopback sees every frame twice).
#[cfg(target_os = "linux")]
#[test]
fn tour_shows_syn_synack_ack_and_fin_in_order() {
    if !is_root() {
        eprintln!("skipped: capturing packets needs root (CAP_NET_RAW)");
        return;
    }
    let out = run(sockdemo(&["tour", "--json", "--packets", "on"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let all = packets(&events);
    for c in ["C1", "C2", "C3"] {
        let mine: Vec<(&str, &str)> = all
            .iter()
            .filter(|p| p.0 == c)
            .map(|p| (p.1.as_str(), p.2.as_str()))
            .collect();
        assert_eq!(
            &mine[..3],
            [("client", "SYN"), ("server", "SYN,ACK"), ("client", "ACK")],
            "{c}: the three-way handshake, once each: {mine:?}"
        );
        let fin_from_client = mine
            .iter()
            .position(|p| *p == ("client", "FIN,ACK"))
            .expect("client FIN");
        let fin_from_server = mine
            .iter()
            .position(|p| *p == ("server", "FIN,ACK"))
            .expect("server FIN");
        assert!(
            fin_from_client < fin_from_server,
            "{c}: the client closes first"
        );
        assert!(
            mine.iter().any(|p| p.1.contains("PSH")),
            "{c}: data was pushed"
        );
    }
    // Each packet comes before the kernel state it caused: C1's SYN-ACK
    // before C1's ESTABLISHED (read with TCP_INFO after connect() returned).
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let synack = at(&|e| e["kind"] == "packet" && e["conn"] == "C1" && e["flags"] == "SYN,ACK");
    let established = at(&|e| {
        e["kind"] == "state"
            && e["side"] == "client"
            && e["conn"] == "C1"
            && e["to"] == "ESTABLISHED"
    });
    assert!(synack < established);
    // Times never go backwards.
    let times: Vec<f64> = events
        .iter()
        .filter(|e| e["kind"] != "error")
        .map(|e| e["t"].as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1] + 1e-6),
        "events in time order"
    );
    // Sequence numbers are relative: the SYN is 0, the data starts at 1.
    let syn = events
        .iter()
        .find(|e| e["kind"] == "packet" && e["flags"] == "SYN")
        .unwrap();
    assert_eq!(syn["seq"], 0);
}

/// A reset is on the wire too: the closing demo's C2 leaves with RST.
#[cfg(target_os = "linux")]
#[test]
fn a_reset_is_seen_on_the_wire() {
    if !is_root() {
        eprintln!("skipped: capturing packets needs root (CAP_NET_RAW)");
        return;
    }
    let out = run(
        sockdemo(&["explain", "closing", "--demo", "--json", "--packets", "on"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let all = packets(&out.events());
    assert!(
        all.iter()
            .any(|p| p.0 == "C2" && p.1 == "client" && p.2.contains("RST")),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|p| p.0 == "C1" && p.2.contains("RST")),
        "C1 closes politely"
    );
}

/// --packets off: no packet events at all.
#[test]
fn packets_off() {
    let out = run(sockdemo(&["tour", "--json", "--packets", "off"]), b"");
    assert_eq!(out.code(), 0);
    assert!(packets(&out.events()).is_empty());
}

/// Without CAP_NET_RAW, auto says why in one line and carries on; on fails
/// with the same explanation.
#[cfg(target_os = "linux")]
#[test]
fn without_permission_auto_explains_and_on_fails() {
    if !is_root() {
        eprintln!("skipped: needs root to drop to an unprivileged user");
        return;
    }
    // A copy of the binary that the unprivileged user can run.
    let dir = std::env::temp_dir().join(format!("sockdemo-nocap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin_copy = dir.join("sockdemo");
    std::fs::copy(bin(), &bin_copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin_copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin_copy.to_str().unwrap(),
        ])
        .args(args);
        cmd.env("LC_ALL", "C.UTF-8").env_remove("LANG");
        run(cmd, b"")
    };
    let out = as_nobody(&["tour", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let notes: Vec<_> = events.iter().filter(|e| e["topic"] == "packets").collect();
    assert_eq!(notes.len(), 1, "one line says why");
    assert!(notes[0]["text"].as_str().unwrap().contains("CAP_NET_RAW"));
    assert!(notes[0]["text"]
        .as_str()
        .unwrap()
        .contains("setcap cap_net_raw+ep"));
    assert!(packets(&events).is_empty());
    let out = as_nobody(&["tour", "--packets", "on"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr.contains("CAP_NET_RAW"), "{}", out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With packets, the states too short to poll (SYN-SENT, SYN-RECEIVED,
/// LAST-ACK) are shown as seen in the packets; without, as inferred.
#[cfg(target_os = "linux")]
#[test]
fn short_states_come_from_the_packets() {
    if !is_root() {
        eprintln!("skipped: capturing packets needs root (CAP_NET_RAW)");
        return;
    }
    let sources = |packets: &str| {
        let out = run(
            sockdemo(&["tour", "--json", "--clients", "2", "--packets", packets]),
            b"",
        );
        assert_eq!(out.code(), 0, "{}", out.stderr);
        out.events()
            .into_iter()
            .filter(|e| {
                e["kind"] == "state"
                    && ["SYN-SENT", "SYN-RECEIVED", "LAST-ACK"].contains(&e["to"].as_str().unwrap())
            })
            .map(|e| e["source"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let with = sources("on");
    assert_eq!(with.len(), 6, "{with:?}");
    assert!(with.iter().all(|s| s == "packet"), "{with:?}");
    let without = sources("off");
    assert!(without.iter().all(|s| s == "inferred"), "{without:?}");
}
