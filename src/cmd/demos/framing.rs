//! TCP has no message boundaries; framing restores them. The demo shows a
//! stream merging two sends, a `writeUTF` frame read back as `readUTF`
//! reads it, and the classic mistake: `writeUTFBytes` (no length) read
//! with `readUTF`.

use super::Kit;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::engine::framing::{encode_utf, UtfReader};
use crate::render::sanitize;
use crate::t;

pub fn run(kit: &Kit) -> anyhow::Result<()> {
    kit.platform_note();
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "First the problem: TCP delivers bytes, not messages.",
            "先看问题所在：TCP 交付的是字节，而不是消息。"
        ),
    );
    super::udp::two_sends_one_recv(kit)?;
    kit.pause();

    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "A length prefix: Java's writeUTF (and ActionScript's) sends 2 bytes of length, big-endian, then the text. The echo server sends the bytes back unchanged, and C1 reads them as readUTF does.",
            "长度前缀：Java（以及 ActionScript）的 writeUTF 先发 2 字节的长度（大端序），再发文本。回显服务器把字节原样送回，C1 像 readUTF 那样读取。"
        ),
    );
    let server = kit.server(4)?;
    let c1 = server.connect_client(&kit.sink, "C1")?;
    kit.pause();
    let frame = encode_utf("hello, 你好")?;
    c1.send_all(&frame)?;
    server.grant("C1");
    read_utf(&c1)?;
    kit.pause();
    server.close_from_client(c1)?;

    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "The classic mistake: the writer uses writeUTFBytes (the text, no length), the reader uses readUTF.",
            "经典错误：写的一方用 writeUTFBytes（只有文本，没有长度），读的一方却用 readUTF。"
        ),
    );
    let c2 = server.connect_client(&kit.sink, "C2")?;
    kit.pause();
    c2.send_all(b"hello")?;
    c2.shutdown_write()?;
    // The server echoes, then reads the end of the stream and closes.
    server.grant("C2");
    server.grant("C2");
    read_utf(&c2)?;
    c2.close();
    server.finish()?;
    Ok(())
}

/// Reads one frame as `readUTF` would, narrating the length it finds.
fn read_utf(conn: &Conn) -> anyhow::Result<()> {
    let mut reader = UtfReader::default();
    let mut told_length = false;
    let mut buf = [0u8; 4096];
    loop {
        if let (false, Some(len)) = (told_length, reader.announced()) {
            told_length = true;
            let (hi, lo) = ((len >> 8) as u8, (len & 0xff) as u8);
            let shown = sanitize::escape(&[hi, lo]);
            conn.ctx.note(
                Stage::Transfer,
                "frame",
                t!(
                    "readUTF(): the first 2 bytes \"{shown}\" = 0x{len:04x} = {len}: it now waits for {len} bytes of text",
                    "readUTF()：前 2 个字节 \"{shown}\" = 0x{len:04x} = {len}：它接着要等 {len} 字节的文本"
                ),
            );
        }
        if let Some(frame) = reader.next_frame() {
            match frame {
                Ok(text) => {
                    let shown = sanitize::escape(text.as_bytes());
                    conn.ctx.note(
                        Stage::Transfer,
                        "frame",
                        t!(
                            "readUTF() returns \"{shown}\": one whole message",
                            "readUTF() 返回 \"{shown}\"：一条完整的消息"
                        ),
                    );
                }
                Err(e) => conn.ctx.error(
                    Stage::Transfer,
                    "frame",
                    format!("readUTF(): {e}"),
                    String::new(),
                ),
            }
            return Ok(());
        }
        match conn.recv(&mut buf)? {
            Received::Bytes(n) => reader.push(&buf[..n]),
            Received::End => {
                if let Some(problem) = reader.at_end() {
                    conn.ctx.error(
                        Stage::Transfer,
                        "frame",
                        format!("readUTF(): EOFException: {problem}"),
                        t!(
                            "The writer sent no length, so readUTF took the first two letters as one. In Java this is an EOFException at the end of the stream; while the stream stays open, readUTF simply waits, forever.",
                            "写的一方没有发长度，于是 readUTF 把头两个字母当成了长度。在 Java 里，流结束时这会抛出 EOFException；只要流不结束，readUTF 就一直等下去。"
                        ),
                    );
                }
                return Ok(());
            }
        }
    }
}
