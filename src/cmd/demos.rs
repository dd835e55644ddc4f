//! The lessons' live demonstrations: each runs real sockets on loopback
//! with the engine and narrates like `tour`, then exits by itself.

use crate::cli::{OutputArgs, TourArgs};
use crate::engine::errors::UsageError;

/// The demos a lesson may name in its header.
pub const NAMES: &[&str] = &[
    "socket",
    "triple",
    "three-stages",
    "handshake",
    "tcp-vs-udp",
    "states",
    "many-clients",
    "send-and-flush",
    "framing",
    "closing",
    "errors",
    "ports",
];

pub fn run(name: &str, output: &OutputArgs) -> anyhow::Result<()> {
    let tour = |clients: u16| {
        super::tour::run(
            &TourArgs {
                clients,
                pace: None,
            },
            output,
        )
    };
    match name {
        "socket" | "three-stages" | "states" => tour(1),
        "triple" => tour(3),
        "many-clients" => tour(5),
        _ if NAMES.contains(&name) => tour(2),
        _ => Err(UsageError(format!(
            "no demo is called '{name}' (known: {})",
            NAMES.join(", ")
        ))
        .into()),
    }
}
