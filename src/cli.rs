//! The command line, and nothing else: clap definitions and the parsers
//! that turn what a user types into addresses, with errors that say what is expected.

use crate::engine::capture::PacketMode;
use crate::engine::framing::Framing;
use crate::lessons::Lang;
use crate::render::ColorChoice;
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "sockdemo",
    version,
    about = "See sockets work: the calls a program makes, the states the kernel moves through, the bytes on the wire.",
    long_about = "sockdemo teaches network sockets by making them visible.\n\n\
        Start with `sockdemo tour`: a server and three clients on this machine, the whole story in one timeline.\n\
        Then open two terminals: `sockdemo listen` in one, `sockdemo connect` in the other.",
    after_help = "Examples:\n  sockdemo tour\n  sockdemo explain\n  sockdemo explain tcp-vs-udp --demo\n  sockdemo listen --port 8888\n  sockdemo connect 127.0.0.1:8888 --send hello\n  sockdemo listen --port 0 --json"
)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print one JSON object per event (JSON Lines) instead of the timeline
    #[arg(short = 'j', long, global = true)]
    pub json: bool,
    /// When to colour the output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// From the command's own --packets (see [`TeachArgs`]).
    #[arg(skip = PacketMode::Auto)]
    pub packets: PacketMode,
    /// From the command's own --step (see [`TeachArgs`]).
    #[arg(skip)]
    pub step: bool,
    /// Language of lessons and explanations (default: from LC_ALL/LC_MESSAGES/LANG; JSON stays English)
    #[arg(long, global = true, value_enum, value_name = "LANG")]
    pub lang: Option<Lang>,
}

/// The options of the commands that make sockets (listen, connect, tour,
/// explain --demo, trace): not global, so that `watch`, `completions` and
/// `man` do not list options that would do nothing there.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Teaching")]
pub struct TeachArgs {
    /// Show the packets on the wire (TCP segments, UDP datagrams): auto captures when allowed (needs CAP_NET_RAW)
    #[arg(long, value_enum, default_value_t = PacketMode::Auto, value_name = "WHEN")]
    pub packets: PacketMode,
    /// Before each socket call, show it and wait for Enter (q quits): for a class to guess what happens next
    #[arg(long)]
    pub step: bool,
}

impl Command {
    /// The command's teaching options, where it has them.
    pub fn teach(&self) -> Option<&TeachArgs> {
        match self {
            Command::Listen(a) => Some(&a.teach),
            Command::Connect(a) => Some(&a.teach),
            Command::Tour(a) => Some(&a.teach),
            Command::Explain(a) => Some(&a.teach),
            Command::Trace(a) => Some(&a.teach),
            _ => None,
        }
    }
}

impl OutputArgs {
    /// Output settings for this run: colour, width, and (when packets may
    /// be captured) a short wait so packets land in time order.
    pub fn settings(&self) -> crate::render::Settings {
        crate::render::Settings::resolve(self.json, self.color)
    }

    /// The language asked for, or the environment's.
    pub fn language(&self) -> Lang {
        self.lang.unwrap_or_else(Lang::from_env)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a TCP server (or a UDP one, --udp) that narrates every socket call and echoes what clients send
    #[command(
        after_help = "Examples:\n  sockdemo listen                          (127.0.0.1:8888; then: sockdemo connect 8888)\n  sockdemo listen -p 0 --host 0.0.0.0       (the whole class; prints what students type)\n  sockdemo listen --chat --host 0.0.0.0     (a class chat)\n  sockdemo listen -u -p 9999                (UDP)"
    )]
    Listen(ListenArgs),
    /// Connect to a server (TCP, or UDP with --udp), send lines (from stdin or --send), print what comes back
    #[command(
        after_help = "Examples:\n  sockdemo connect 8888                     (type lines; Ctrl-D or Ctrl-C ends)\n  sockdemo connect 192.168.1.20:8888 -s hello\n  sockdemo connect 8888 --framing utf -s hi  (a Java readUTF server)\n  sockdemo connect -u 9999 -s ping          (UDP)"
    )]
    Connect(ConnectArgs),
    /// One server and several clients in one process: the whole story, start to finish
    #[command(
        after_help = "Examples:\n  sockdemo tour\n  sockdemo tour -c 1 --step                 (one call at a time, Enter to go on)\n  sockdemo tour --diagram tour.svg --diagram-pages"
    )]
    Tour(TourArgs),
    /// Read a lesson (alone: list the lessons in teaching order)
    #[command(
        after_help = "Examples:\n  sockdemo explain                          (the list)\n  sockdemo explain handshake\n  sockdemo explain 4 --demo\n  sockdemo explain states --lang zh"
    )]
    Explain(ExplainArgs),
    /// A live table of the kernel's TCP and UDP sockets: states, queues, timers (Linux)
    #[command(
        long_about = "A live table of the kernel's TCP and UDP sockets, read through sock_diag as `ss` does, \
            refreshed in place a few times per second: protocol, state, addresses, queues, timers, and what each state means.\n\n\
            Without --port it shows the sockets on loopback (127.0.0.1, ::1) and on the wildcard addresses (0.0.0.0, ::). \
            Linux only. Ctrl-C stops.",
        after_help = "Examples:\n  sockdemo watch --port 8888            (then, elsewhere: sockdemo listen --port 8888)\n  sockdemo watch --port 8888 --count 1 --json"
    )]
    Watch(WatchArgs),
    /// Run your own program (any language) and narrate its sockets: calls, states, packets (Linux)
    #[command(
        long_about = "Runs a program and shows the timeline of its sockets as it runs: every socket call it makes \
            with its real arguments and result, the kernel's TCP state of each of its sockets, and its packets when capture is allowed. \
            The program is followed with ptrace, as strace does; it needs no change and no recompile, and no root.\n\n\
            Its own output is shown on the timeline, marked with its tag (S›, C1›). Python and C buffer output that goes to a pipe: \
            run python3 -u, or flush, to see it line by line. sockdemo exits with the program's exit status.\n\n\
            Linux only.",
        after_help = "Examples:\n  sockdemo trace -- python3 -u client.py\n  sockdemo trace --run 'python3 -u server.py' --run 'python3 -u client.py'\n  sockdemo trace --json -- ./client 127.0.0.1 8888"
    )]
    Trace(TraceArgs),
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  sockdemo completions bash > ~/.local/share/bash-completion/completions/sockdemo\n  sockdemo completions zsh > ~/.zfunc/_sockdemo\n  sockdemo completions fish > ~/.config/fish/completions/sockdemo.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into DIR
    #[command(
        after_help = "Examples:\n  sockdemo man | man -l -\n  sockdemo man ~/.local/share/man/man1"
    )]
    Man {
        /// Write sockdemo.1 and one page per command (sockdemo-listen.1, …) here
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// A program to run, as one string ('java Server 8888'); repeat for several: the first is S, the next C1, C2…
    #[arg(short = 'r', long = "run", value_name = "COMMAND")]
    pub run: Vec<String>,
    /// Start each --run program after the first only once the first has a listening socket (or a bound UDP socket)
    #[arg(short = 'w', long)]
    pub wait_listen: bool,
    /// Run the programs and the tracer on one CPU: a traced call costs far less (no wake-up of another CPU), but the programs' threads share that CPU
    #[arg(long)]
    pub one_cpu: bool,
    /// When the programs have ended, write the timeline as a sequence diagram to FILE (.svg or .mmd)
    #[arg(long, value_name = "FILE", value_parser = parse_diagram_path)]
    pub diagram: Option<std::path::PathBuf>,
    /// With --diagram FILE.svg: one page per stage (and per 9 rows) for slides: FILE-1.svg, FILE-2.svg…
    #[arg(long, requires = "diagram")]
    pub diagram_pages: bool,
    /// The program to run and its arguments, after --
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
    #[command(flatten)]
    pub teach: TeachArgs,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The lesson to read: its id (tcp-vs-udp) or number (5)
    pub topic: Option<String>,
    /// Run the lesson's live demonstration on this machine instead of showing the text
    #[arg(long)]
    pub demo: bool,
    /// Read lessons from this folder too (DIR/en/*.md, DIR/zh/*.md); they replace ours with the same id
    #[arg(long, value_name = "DIR")]
    pub lessons: Option<std::path::PathBuf>,
    /// With --demo: when it ends, write the demo as a sequence diagram to FILE (.svg picture or .mmd Mermaid text)
    #[arg(long, value_name = "FILE", requires = "demo", value_parser = parse_diagram_path)]
    pub diagram: Option<std::path::PathBuf>,
    /// With --diagram FILE.svg: one page per stage (and per 9 rows) for slides: FILE-1.svg, FILE-2.svg…
    #[arg(long, requires = "diagram")]
    pub diagram_pages: bool,
    /// Print the lesson straight to the terminal, without $PAGER (or less) even when it is longer than the window
    #[arg(long)]
    pub no_pager: bool,
    #[command(flatten)]
    pub teach: TeachArgs,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 (every interface), ::1, ::
    #[arg(short = 'H', long, default_value = "127.0.0.1", value_parser = parse_host_ip)]
    pub host: IpAddr,
    /// Port to listen on (0 lets the OS choose a free one; the chosen port is printed)
    #[arg(short = 'p', long, default_value_t = 8888)]
    pub port: u16,
    /// How many finished handshakes may wait for accept() (listen's backlog)
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(i32).range(0..=65535))]
    pub backlog: i32,
    /// Serve at most this many clients at once; more are told "server full" and closed
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_clients: u64,
    /// At most this many clients at once from one address (loopback, this machine's own programs, is not limited)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_per_host: u64,
    /// Close a client that sends nothing for SECS seconds, so others can connect (0: never)
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_limit)]
    pub idle_timeout: Duration,
    /// Close a client that leaves a line or frame half-sent for SECS seconds (0: never)
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_limit)]
    pub partial_timeout: Duration,
    /// At a stop (Ctrl-C, SIGTERM): how long clients get to read the rest of their echo and close, after the server's FIN, before they are reset
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_limit)]
    pub grace: Duration,
    /// Only read and narrate; do not echo back what clients send
    #[arg(long)]
    pub no_echo: bool,
    /// A class chat: each client's line goes to every other client, labelled (C3: hello)
    #[arg(long)]
    pub chat: bool,
    /// With --chat: show every recv() and send() of the relay (the screen otherwise shows one line per message; --json always has them)
    #[arg(long, requires = "chat")]
    pub verbose: bool,
    /// Wait SECS before each accept(): connections finish their handshake and wait in the accept queue meanwhile
    #[arg(long, value_name = "SECS", value_parser = parse_pace, allow_negative_numbers = true)]
    pub accept_delay: Option<Duration>,
    /// Speak UDP instead of TCP: one socket, bind() then recvfrom()/sendto(); no listen(), no accept(), no connections
    #[arg(short = 'u', long, conflicts_with_all = ["backlog", "max_clients", "max_per_host", "idle_timeout", "partial_timeout", "grace"])]
    pub udp: bool,
    /// How the echo cuts the stream into messages: raw bytes, lines, or Java's writeUTF/readUTF frames (each shown)
    #[arg(long, value_enum, default_value_t = Framing::Raw, value_name = "HOW", conflicts_with_all = ["udp", "chat"])]
    pub framing: Framing,
    #[command(flatten)]
    pub teach: TeachArgs,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Where to connect: HOST:PORT, [IPv6]:PORT, or just PORT (on 127.0.0.1)
    #[arg(default_value = "127.0.0.1:8888", value_parser = parse_target)]
    pub target: Target,
    /// Give up connecting after SECS seconds
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub timeout: Option<Duration>,
    /// Send TEXT as one message (a line, or as --framing says) and wait for its echo (repeatable); without it, lines come from stdin
    #[arg(short = 's', long, value_name = "TEXT")]
    pub send: Vec<String>,
    /// With --send (with --udp, for stdin lines too): how long to wait for each echo
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs, allow_negative_numbers = true)]
    pub wait: Duration,
    /// End with SO_LINGER 0: close() sends a reset (RST) instead of FIN, and the server sees "connection reset"
    #[arg(long)]
    pub linger0: bool,
    /// Speak UDP instead of TCP: connect() sends nothing, each line is one datagram, and no reply may ever come
    #[arg(short = 'u', long)]
    pub udp: bool,
    /// How each message goes out and replies are read: lines, raw text (no newline added), or writeUTF frames (Java, ActionScript)
    #[arg(long, value_enum, default_value_t = Framing::Line, value_name = "HOW", conflicts_with = "udp")]
    pub framing: Framing,
    #[command(flatten)]
    pub teach: TeachArgs,
}

#[derive(Args, Debug)]
pub struct TourArgs {
    /// How many clients (C1, C2, …) connect to the one server
    #[arg(short = 'c', long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub clients: u16,
    /// The pause after each stage, per 15 lines it printed (at least one, at most four): slow (3 s), normal (1.5 s), fast (0.5 s), none, or seconds. Default: normal on a terminal, none otherwise
    #[arg(long, value_name = "PACE", value_parser = parse_pace, allow_negative_numbers = true)]
    pub pace: Option<Duration>,
    /// Tell every call of every client (by default each kind of call is explained the first time only, and a client whose events were the same as C1's is told in one line per stage)
    #[arg(long)]
    pub verbose: bool,
    /// When the tour ends, write it as a sequence diagram to FILE: .svg (a picture for slides) or .mmd (Mermaid text)
    #[arg(long, value_name = "FILE", value_parser = parse_diagram_path)]
    pub diagram: Option<std::path::PathBuf>,
    /// With --diagram FILE.svg: one page per stage (and per 9 rows) for slides: FILE-1.svg, FILE-2.svg…
    #[arg(long, requires = "diagram")]
    pub diagram_pages: bool,
    #[command(flatten)]
    pub teach: TeachArgs,
}

/// `--diagram FILE`: the extension chooses the format, so it is checked now.
fn parse_diagram_path(s: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(s);
    crate::render::diagram::Format::from_path(&path)?;
    Ok(path)
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only sockets whose local or remote port is PORT (default: every socket on loopback and wildcard addresses)
    #[arg(short = 'p', long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Stop after N refreshes (every refresh counts, shown or not)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Seconds between two looks at the kernel's table
    #[arg(long, value_name = "SECS", default_value = "0.25", value_parser = parse_interval, allow_negative_numbers = true)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs.is_finite() && (0.05..=60.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("expected seconds from 0.05 to 60, such as 0.25 or 1".into())
    }
}

/// A place to connect to, as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

const TARGET_HELP: &str =
    "expected HOST:PORT, [IPv6]:PORT or PORT, for example 127.0.0.1:8888 or [::1]:8888";

pub fn parse_target(s: &str) -> Result<Target, String> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']': {TARGET_HELP}"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing :PORT after ']': {TARGET_HELP}"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{host}' is not an IPv6 address: {TARGET_HELP}"))?;
        (host.to_string(), port)
    } else if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
        (Ipv4Addr::LOCALHOST.to_string(), s)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("no port: {TARGET_HELP}"))?;
        if host.contains(':') {
            return Err(format!(
                "write IPv6 addresses in brackets, like [::1]:8888 ({TARGET_HELP})"
            ));
        }
        if host.is_empty() {
            return Err(format!("no host: {TARGET_HELP}"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(format!(
                "'{}' is not a host name or address: {TARGET_HELP}",
                crate::sanitize::escape(host.as_bytes())
            ));
        }
        (host.to_string(), port)
    };
    let port: u32 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number: ports are 1 to 65535"))?;
    match port {
        0 => Err("port 0 cannot be connected to: ports are 1 to 65535".into()),
        1..=65535 => Ok(Target {
            host,
            port: port as u16,
        }),
        _ => Err(format!(
            "port {port} is too large: ports are 1 to 65535 (16 bits)"
        )),
    }
}

fn parse_host_ip(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| {
            "expected an IP address of this machine: 127.0.0.1, 0.0.0.0, ::1 or ::".to_string()
        })
}

/// Seconds for a limit: 0 turns it off (Duration::ZERO).
fn parse_limit(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs.is_finite() && (0.0..=86_400.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("expected seconds from 0 (off) to 86400, such as 300".into())
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("expected a number of seconds above 0, such as 2 or 0.5".into())
    }
}

fn parse_pace(s: &str) -> Result<Duration, String> {
    let named = match s {
        "slow" => Some(3.0),
        "normal" => Some(1.5),
        "fast" => Some(0.5),
        "none" => Some(0.0),
        _ => None,
    };
    let secs: f64 = match named {
        Some(secs) => secs,
        None => s.parse().map_err(|_| {
            format!("'{s}' is not a pace: slow, normal, fast, none, or seconds such as 0.8")
        })?,
    };
    if secs.is_finite() && (0.0..=10.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("expected seconds from 0 to 10, such as 0.5".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| parse_target(s).map(|t| (t.host, t.port));
        assert_eq!(t("127.0.0.1:8888"), Ok(("127.0.0.1".into(), 8888)));
        assert_eq!(t("[::1]:9"), Ok(("::1".into(), 9)));
        assert_eq!(t("localhost:80"), Ok(("localhost".into(), 80)));
        assert_eq!(t("7000"), Ok(("127.0.0.1".into(), 7000)));
        assert!(t("127.0.0.1:70000").unwrap_err().contains("1 to 65535"));
        assert!(t("::1:8888").unwrap_err().contains("brackets"));
        assert!(t("127.0.0.1").unwrap_err().contains("no port"));
        assert!(t("127.0.0.1:0").is_err());
        assert!(t("[::1]").is_err());
        assert!(t("a b:1").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

/// The engine's and the renderer's choices, as clap offers them: the
/// engine knows nothing of clap, so the command line says how each is typed.
macro_rules! value_enum {
    ($ty:ty { $($variant:expr => $name:literal : $help:literal),+ $(,)? }) => {
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                let all = [$(($variant, $name, $help)),+];
                all.into_iter()
                    .find(|(v, _, _)| v == self)
                    .map(|(_, name, help)| clap::builder::PossibleValue::new(name).help(help))
            }
        }
    };
}

value_enum!(PacketMode {
    PacketMode::Auto => "auto": "capture when allowed (root or CAP_NET_RAW); say once when not",
    PacketMode::On => "on": "capture, or fail with the reason",
    PacketMode::Off => "off": "never capture",
});

value_enum!(ColorChoice {
    ColorChoice::Auto => "auto": "colour on a terminal, unless NO_COLOR is set or TERM=dumb",
    ColorChoice::Always => "always": "always colour",
    ColorChoice::Never => "never": "never colour",
});

value_enum!(Framing {
    Framing::Raw => "raw": "No framing: bytes as each recv() returns them",
    Framing::Line => "line": "Each message ends with a newline (\\n)",
    Framing::Utf => "utf": "Java's and ActionScript's writeUTF/readUTF: a 2-byte big-endian length, then that many bytes of (modified) UTF-8",
});
