//! # sockdemo: sockets made visible
//!
//! sockdemo runs real sockets and shows three things on one timeline: the
//! system calls a program makes, the TCP states the kernel moves its
//! sockets through, and the packets on the wire.
//!
//! ## The flow of the code
//!
//! ```text
//! command line ──► cmd/<subcommand>.rs ──► engine (sockets) ──Event──► render (human | json)
//!    clap             glue: settings          never prints             never touches a socket
//! ```
//!
//! ## Where to read, in the order of the lesson
//!
//! 1. [`engine::server`]: `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()`,
//!    `listen()`, then `accept()` and a thread per client: the server listens.
//! 2. [`engine::client`]: `socket()` and `connect()`: the client requests,
//!    and the kernel's handshake confirms the connection.
//! 3. [`engine::conn`]: `send()`, `recv()`, `shutdown()`, `close()`, and
//!    after every call the kernel's answer about the socket's state.
//! 4. [`engine::observe`]: how that answer is read (`TCP_INFO`, sock_diag).
//! 5. [`engine::event`]: the [`engine::event::Event`] every step becomes.
//! 6. [`render`]: the timeline for people, JSON Lines for programs, and
//!    sequence diagrams for slides (`--diagram`).
//! 7. [`engine::errors`]: what each failure means on the network.
//! 8. [`lessons`]: the textbook beside it (`sockdemo explain`), lessons as data.
//! 9. [`engine::udp`] and [`engine::udp_server`]: UDP for contrast
//!    (`listen --udp`): one socket, `bind()` then `recvfrom()`/`sendto()`,
//!    datagrams and no connection.

pub mod cli;
pub mod cmd;
pub mod engine;
pub mod i18n;
pub mod lessons;
pub mod render;
pub mod sanitize;
