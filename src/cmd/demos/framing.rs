//! TCP has no message boundaries; framing restores them. The demo shows a
//! stream merging two sends, a `writeUTF` frame read back as `readUTF`
//! reads it, and the classic mistake: `writeUTFBytes` (no length) read
//! with `readUTF`.

use super::Kit;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::engine::framing::{encode_utf, Deframer, Framing, Piece};
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
            "A length prefix: Java's writeUTF (and ActionScript's) sends 2 bytes of length, big-endian, then the text. The echo server sends the bytes back unchanged, and C2 reads them as readUTF does.",
            "长度前缀：Java（以及 ActionScript）的 writeUTF 先发 2 字节的长度（大端序），再发文本。回显服务器把字节原样送回，C2 像 readUTF 那样读取。"
        ),
    );
    let server = kit.server(4)?;
    let c2 = server.connect_client(&kit.sink, "C2")?;
    kit.pause();
    let frame = encode_utf("hello, 你好")?;
    c2.send_all(&frame)?;
    server.grant("C2");
    read_utf(&c2)?;
    kit.pause();
    server.close_from_client(c2)?;

    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "The classic mistake: the writer uses writeUTFBytes (the text, no length), the reader uses readUTF.",
            "经典错误：写的一方用 writeUTFBytes（只有文本，没有长度），读的一方却用 readUTF。"
        ),
    );
    let c3 = server.connect_client(&kit.sink, "C3")?;
    kit.pause();
    c3.send_all(b"hello")?;
    c3.shutdown(crate::engine::call::How::Write)?;
    // The server echoes, then reads the end of the stream and closes.
    server.grant("C3");
    server.grant("C3");
    read_utf(&c3)?;
    c3.close();
    server.finish()?;
    Ok(())
}

/// Reads one frame as `readUTF` would, with the engine's frame reader:
/// it narrates the length it finds, the message, or what went wrong.
fn read_utf(conn: &Conn) -> anyhow::Result<()> {
    let mut frames = Deframer::new(Framing::Utf, false);
    let mut buf = [0u8; 4096];
    loop {
        let room = frames.room(buf.len());
        match conn.recv(&mut buf[..room])? {
            Received::Bytes(n) => {
                let pieces = frames.push(&conn.ctx, &buf[..n]);
                if pieces.iter().any(Piece::is_frame) {
                    return Ok(());
                }
            }
            Received::End => {
                // The classic mistake ends here: an EOFException in Java.
                frames.finish(&conn.ctx);
                return Ok(());
            }
        }
    }
}
