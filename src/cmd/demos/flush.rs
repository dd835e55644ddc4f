//! Writing into a socket: a user-space buffer holds bytes until flush();
//! then Nagle's algorithm and delayed ACKs, measured for real.

use super::Kit;
use crate::engine::conn::Conn;
use crate::engine::event::Stage;
use crate::t;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// `Write` for a narrated connection: every write is a real send().
struct Sends<'a>(&'a Conn);

impl Write for Sends<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send_all(buf).map(|_| buf.len()).map_err(|f| f.error)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn run(kit: &Kit) -> anyhow::Result<()> {
    kit.platform_note();
    buffered(kit)?;
    kit.pause();
    nagle(kit)
}

/// Three writes into a BufWriter: no send() at all until flush().
fn buffered(kit: &Kit) -> anyhow::Result<()> {
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "A user-space buffer (Rust's BufWriter, Java's BufferedOutputStream, C's stdio) collects writes; only flush() hands them to the socket.",
            "用户空间缓冲区（Rust 的 BufWriter、Java 的 BufferedOutputStream、C 的 stdio）先把写入攒起来；只有 flush() 才把它们交给套接字。"
        ),
    );
    let server = kit.server(4)?;
    let conn = server.connect_client(&kit.sink, "C1")?;
    kit.pause();
    let lines: [&[u8]; 3] = [b"line 1\n", b"line 2\n", b"line 3\n"];
    let total: usize = lines.iter().map(|l| l.len()).sum();
    {
        let mut writer = BufWriter::with_capacity(4096, Sends(&conn));
        let mut held = 0;
        for line in lines {
            writer.write_all(line)?;
            held += line.len();
            let n = line.len();
            conn.ctx.note(
                Stage::Transfer,
                "buffered",
                t!(
                    "write({n} bytes) into the buffer: no send(), nothing on the wire yet ({held} bytes waiting in this program)",
                    "write({n} 字节) 写进缓冲区：没有 send()，线路上还什么都没有（本程序里攒着 {held} 字节）"
                ),
            );
        }
        kit.pause();
        conn.ctx.note(
            Stage::Transfer,
            "flush",
            t!(
                "flush(): now the buffer goes to the socket in one send()",
                "flush()：现在缓冲区的内容一次 send() 交给套接字"
            ),
        );
        writer.flush()?;
    }
    server.echo(&conn, total)?;
    kit.pause();
    server.close_from_client(conn)?;
    server.finish()?;
    Ok(())
}

/// How many request/response rounds each way is measured.
const ROUNDS: usize = 20;

/// A write-write-read exchange, timed with Nagle on and with TCP_NODELAY.
fn nagle(kit: &Kit) -> anyhow::Result<()> {
    kit.say(
        Stage::Transfer,
        "demo",
        t!(
            "Nagle's algorithm: a client sends a request as two small writes (4 + 4 bytes) and waits for an 8-byte answer, {ROUNDS} times; the server answers only when it has all 8 bytes. Measured twice: Nagle on, then TCP_NODELAY. These rounds use a client and a server of their own that are not on the timeline: only their times are the lesson (strace -f shows their calls).",
            "Nagle 算法：一个客户端把请求分成两次小写入（4 + 4 字节）发出，然后等 8 字节的回答，共 {ROUNDS} 次；服务器收齐 8 字节才回答。测两遍：先开着 Nagle，再设 TCP_NODELAY。这些回合用的是另外一对不在时间线上的客户端和服务器：本课只看它们的耗时（strace -f 能看到它们的调用）。"
        ),
    );
    // A small request/response server, not narrated: only the times matter here.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let Ok((mut peer, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 8];
            while peer.read_exact(&mut request).is_ok() {
                if peer.write_all(&request).is_err() {
                    break;
                }
            }
        }
    });
    for nodelay in [false, true] {
        let times = measure(addr, nodelay)?;
        let mut sorted = times.clone();
        sorted.sort();
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
        let (median, max) = (ms(sorted[sorted.len() / 2]), ms(sorted[sorted.len() - 1]));
        let slow = times
            .iter()
            .filter(|d| **d > Duration::from_millis(20))
            .count();
        let mut facts = serde_json::Map::new();
        facts.insert("nodelay".into(), nodelay.into());
        facts.insert("rounds".into(), ROUNDS.into());
        facts.insert("median_ms".into(), median.into());
        facts.insert("max_ms".into(), max.into());
        facts.insert("slow_rounds".into(), slow.into());
        let text = if nodelay {
            t!(
                "measured with TCP_NODELAY: median {median} ms, slowest {max} ms, {slow} of {ROUNDS} rounds over 20 ms: each small write goes out at once",
                "设置 TCP_NODELAY 后实测：中位数 {median} 毫秒，最慢 {max} 毫秒，{ROUNDS} 轮中有 {slow} 轮超过 20 毫秒：每次小写入都立刻发出"
            )
        } else {
            t!(
                "measured with Nagle on: median {median} ms, slowest {max} ms, {slow} of {ROUNDS} rounds over 20 ms. A slow round is Nagle holding the second write until the first is ACKed, while the server delays its ACK (about 40 ms on Linux) hoping to send it with an answer",
                "开着 Nagle 实测：中位数 {median} 毫秒，最慢 {max} 毫秒，{ROUNDS} 轮中有 {slow} 轮超过 20 毫秒。慢的那几轮，是 Nagle 扣住第二次写入、等第一次被确认，而服务器推迟 ACK（Linux 上约 40 毫秒），想把它和回答一起发出"
            )
        };
        kit.story
            .note_with(Stage::Transfer, "measured", text, facts);
        kit.pause();
    }
    let _ = server.join();
    Ok(())
}

fn measure(addr: SocketAddr, nodelay: bool) -> anyhow::Result<Vec<Duration>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(nodelay)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut answer = [0u8; 8];
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        stream.write_all(b"HEAD")?;
        stream.write_all(b"BODY")?;
        stream.read_exact(&mut answer)?;
        times.push(start.elapsed());
    }
    Ok(times)
}
