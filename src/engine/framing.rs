//! TCP carries a stream of bytes with no message boundaries; framing puts
//! them back. `--framing` chooses one of three ways:
//!
//! * raw: no framing at all, bytes as each `recv()` returns them;
//! * line framing: each message ends with `\n`;
//! * "UTF" framing, as Java's `DataOutputStream.writeUTF` and
//!   ActionScript's `Socket.writeUTF` write it: a 2-byte big-endian length,
//!   then that many bytes of *modified* UTF-8 (NUL is written as C0 80 and a
//!   character outside the Basic Multilingual Plane as two 3-byte surrogates).
//!
//! The first half of this file is pure byte work ([`UtfReader`],
//! [`LineReader`], [`encode_utf`]); the second, [`Deframer`], is what the
//! server and the client use: it narrates every message it cuts out.

use crate::engine::ctx::Ctx;
use crate::engine::event::Stage;
use crate::sanitize;
use crate::t;
use std::fmt;

/// The largest payload a 2-byte length can announce.
pub const UTF_MAX: usize = 65535;

/// The longest line kept in memory. A longer one is handed on in pieces of
/// this size, so a client that never sends a newline cannot make the
/// server's memory grow.
pub const LINE_MAX: usize = 64 * 1024;

/// `--framing`: the rule that cuts the byte stream back into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No framing: bytes as each recv() returns them
    Raw,
    /// Each message ends with a newline (\n)
    Line,
    /// Java's and ActionScript's writeUTF/readUTF: a 2-byte big-endian length, then that many bytes of (modified) UTF-8
    Utf,
}

impl Framing {
    /// The word on the command line: `raw`, `line`, `utf`.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Raw => "raw",
            Framing::Line => "line",
            Framing::Utf => "utf",
        }
    }

    /// What a server with this framing does (`echo`: and sends back), and
    /// how to talk to it.
    pub fn explain(self, addr: std::net::SocketAddr, echo: bool) -> Option<String> {
        let back = match (self, echo) {
            (_, false) => t!(
                " (--no-echo: nothing is sent back)",
                "（--no-echo：什么都不回送）"
            ),
            (Framing::Line, true) => t!(
                " and echoed as one; a line over 65536 bytes is echoed in pieces",
                "，并作为一个整体回显；超过 65536 字节的行分段回显"
            ),
            (_, true) => t!(" and echoed as a frame", "，并作为一帧回显"),
        };
        match self {
            Framing::Raw => None,
            Framing::Line => Some(t!(
                "--framing line: a message ends with a newline; each whole line is shown{back}",
                "--framing line：一条消息以换行符结束；每个完整的行都会显示出来{back}"
            )),
            Framing::Utf => Some(t!(
                "--framing utf: a message is a 2-byte big-endian length, then that many bytes of (modified) UTF-8, as Java's writeUTF/readUTF and ActionScript's Socket.writeUTF/readUTF. Each message is shown{back}. Talk to it with: sockdemo connect --framing utf {addr}",
                "--framing utf：一条消息是 2 字节的大端序长度，后跟这么多字节的（修改版）UTF-8，与 Java 的 writeUTF/readUTF、ActionScript 的 Socket.writeUTF/readUTF 相同。每条消息都会显示出来{back}。用这个命令和它对话：sockdemo connect --framing utf {addr}"
            )),
        }
    }

    /// The bytes that send `text` as one message in this framing. Fails for
    /// `utf` when the text is over 65535 bytes.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, FrameError> {
        match self {
            Framing::Raw => Ok(text.as_bytes().to_vec()),
            Framing::Line => Ok(format!("{text}\n").into_bytes()),
            Framing::Utf => encode_utf(text),
        }
    }
}

/// Encodes `text` as `writeUTF` does. Fails if the encoding is over 65535 bytes
/// (Java throws UTFDataFormatException there).
pub fn encode_utf(text: &str) -> Result<Vec<u8>, FrameError> {
    let body = to_modified_utf8(text);
    if body.len() > UTF_MAX {
        return Err(FrameError::TooLong(body.len()));
    }
    let mut frame = Vec::with_capacity(body.len() + 2);
    frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Java's modified UTF-8 for the characters of `text`.
pub fn to_modified_utf8(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for unit in text.encode_utf16() {
        match unit {
            0x0001..=0x007f => out.push(unit as u8),
            // NUL and U+0080..U+07FF take two bytes.
            0x0000 | 0x0080..=0x07ff => {
                out.push(0xc0 | (unit >> 6) as u8);
                out.push(0x80 | (unit & 0x3f) as u8);
            }
            // Everything else, surrogate halves included, takes three.
            _ => {
                out.push(0xe0 | (unit >> 12) as u8);
                out.push(0x80 | ((unit >> 6) & 0x3f) as u8);
                out.push(0x80 | (unit & 0x3f) as u8);
            }
        }
    }
    out
}

/// Decodes Java's modified UTF-8, as `readUTF` does.
pub fn from_modified_utf8(bytes: &[u8]) -> Result<String, FrameError> {
    let mut units: Vec<u16> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let bad = |at: usize| FrameError::BadText(at);
    while i < bytes.len() {
        let b = bytes[i];
        let cont = |k: usize| {
            bytes
                .get(i + k)
                .copied()
                .filter(|c| c & 0xc0 == 0x80)
                .ok_or(bad(i))
        };
        match b {
            // writeUTF never writes a 0 byte (NUL is C0 80), but readUTF
            // accepts one as NUL, and so do we.
            0x00..=0x7f => {
                units.push(b as u16);
                i += 1;
            }
            0xc0..=0xdf => {
                let c1 = cont(1)?;
                units.push(((b as u16 & 0x1f) << 6) | (c1 as u16 & 0x3f));
                i += 2;
            }
            0xe0..=0xef => {
                let (c1, c2) = (cont(1)?, cont(2)?);
                units.push(
                    ((b as u16 & 0x0f) << 12) | ((c1 as u16 & 0x3f) << 6) | (c2 as u16 & 0x3f),
                );
                i += 3;
            }
            _ => return Err(bad(i)),
        }
    }
    String::from_utf16(&units).map_err(|_| FrameError::BadText(bytes.len()))
}

/// What a frame reader can find wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The text does not fit a 2-byte length.
    TooLong(usize),
    /// The bytes are not (modified) UTF-8; the offset of the first bad byte.
    BadText(usize),
    /// The stream ended inside a frame: `expected` bytes were announced, `got` came.
    Truncated { expected: usize, got: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong(n) => {
                write!(f, "{n} bytes do not fit a 2-byte length (at most 65535)")
            }
            FrameError::BadText(at) => write!(f, "not valid (modified) UTF-8 at byte {at}"),
            FrameError::Truncated { expected, got } => {
                write!(
                    f,
                    "the stream ended after {got} of {expected} announced bytes"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Collects bytes as they arrive and hands out whole "UTF" frames.
#[derive(Default)]
pub struct UtfReader {
    buf: Vec<u8>,
}

impl UtfReader {
    /// Adds bytes from one recv().
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many more bytes may be pushed before the buffer could hold more
    /// than one whole frame (2 + 65535 bytes). Read at most this much, and
    /// memory per reader stays bounded whatever the peer sends. After every
    /// whole frame has been taken out it is at least 1.
    pub fn room(&self) -> usize {
        (2 + UTF_MAX).saturating_sub(self.buf.len())
    }

    /// The 2 bytes of the next frame's length, once they are here.
    pub fn length_bytes(&self) -> Option<[u8; 2]> {
        (self.buf.len() >= 2).then(|| [self.buf[0], self.buf[1]])
    }

    /// How many bytes are buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The length the next frame announces, once its 2 bytes are here.
    pub fn announced(&self) -> Option<usize> {
        (self.buf.len() >= 2).then(|| u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize)
    }

    /// The next whole frame, if all its bytes have arrived.
    pub fn next_frame(&mut self) -> Option<Result<String, FrameError>> {
        let len = self.announced()?;
        if self.buf.len() < 2 + len {
            return None;
        }
        let body: Vec<u8> = self.buf.drain(..2 + len).skip(2).collect();
        Some(from_modified_utf8(&body))
    }

    /// At end of stream: what was left unfinished, if anything.
    pub fn at_end(&self) -> Option<FrameError> {
        match self.announced() {
            Some(expected) => Some(FrameError::Truncated {
                expected,
                got: self.buf.len() - 2,
            }),
            None if !self.buf.is_empty() => Some(FrameError::Truncated {
                expected: 2,
                got: self.buf.len(),
            }),
            None => None,
        }
    }
}

/// What a [`LineReader`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinePiece {
    /// A whole line, its `\n` included.
    Line(Vec<u8>),
    /// [`LINE_MAX`] bytes of a line whose newline has not come (yet).
    Overlong(Vec<u8>),
}

/// Collects bytes as they arrive and hands out whole lines, or pieces of a
/// line too long to keep.
pub struct LineReader {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new(LINE_MAX)
    }
}

impl LineReader {
    /// A reader that keeps at most `limit` bytes of one line.
    pub fn new(limit: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            limit: limit.max(1),
        }
    }

    /// How many more bytes may be pushed without holding more than the
    /// limit. After every piece has been taken out it is at least 1.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Adds bytes from one recv().
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole line, or a piece of an overlong one.
    pub fn next_piece(&mut self) -> Option<LinePiece> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(end) if end < self.limit => {
                Some(LinePiece::Line(self.buf.drain(..=end).collect()))
            }
            _ if self.buf.len() >= self.limit => {
                Some(LinePiece::Overlong(self.buf.drain(..self.limit).collect()))
            }
            _ => None,
        }
    }

    /// At end of stream: the bytes after the last newline, if any.
    pub fn at_end(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// What a [`Deframer`] cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole message, encoded again in the same framing: what an echo
    /// server sends back (a line with its newline, a writeUTF frame).
    Message(Vec<u8>),
    /// Bytes that are not a whole message: a raw chunk, a piece of an
    /// overlong line, a line's last bytes at the end of the stream.
    Bytes(Vec<u8>),
    /// A frame that could not be decoded. There is nothing to send back.
    Broken,
}

impl Piece {
    /// Whether this was one frame of the peer's (decoded or not): what a
    /// client counts when it waits for as many replies as it sent.
    pub fn is_frame(&self) -> bool {
        matches!(self, Piece::Message(_) | Piece::Broken)
    }

    /// The bytes an echo sends back for it.
    pub fn echo(&self) -> &[u8] {
        match self {
            Piece::Message(bytes) | Piece::Bytes(bytes) => bytes,
            Piece::Broken => &[],
        }
    }
}

/// How many characters of a message a note shows.
const SHOWN_CHARS: usize = 200;

/// A note about one whole message, with its length and text as facts.
fn frame_note(ctx: &Ctx, len: usize, message: String, text: String) {
    let mut facts = serde_json::Map::new();
    facts.insert("length".into(), len.into());
    facts.insert("message".into(), message.into());
    ctx.note_with(Stage::Transfer, "frame", text, facts);
}

/// A message as a note shows it: escaped, cut after [`SHOWN_CHARS`], and
/// quoted. Returns the escaped preview too (for the `message` fact).
fn quoted(bytes: &[u8]) -> (String, String) {
    let (text, cut) = sanitize::preview(bytes, SHOWN_CHARS);
    let quoted = if cut == 0 {
        format!("\"{text}\"")
    } else {
        t!(
            "\"{text}…\" (+{cut} bytes)",
            "\"{text}…\"（另有 {cut} 字节）"
        )
    };
    (text, quoted)
}

/// What went wrong with a frame, in the narration's language.
fn problem_text(problem: &FrameError) -> String {
    match *problem {
        FrameError::TooLong(n) => t!(
            "{n} bytes do not fit a 2-byte length (at most 65535)",
            "{n} 字节放不进 2 字节的长度（最多 65535）"
        ),
        FrameError::BadText(at) => t!(
            "not valid (modified) UTF-8 at byte {at}",
            "在第 {at} 字节处不是有效的（修改版）UTF-8"
        ),
        FrameError::Truncated { expected, got } => t!(
            "the stream ended after {got} of {expected} announced bytes",
            "宣布了 {expected} 字节，流却在到了 {got} 字节后结束了"
        ),
    }
}

/// One side's reading of a stream with a [`Framing`]: it cuts the bytes of
/// each recv() into messages, narrates each one (notes with the topic
/// `frame`, and an error with the code `frame` for a frame that cannot be
/// decoded), and hands back what an echo server sends back.
///
/// Memory is bounded: read at most [`room`](Self::room) bytes at a time,
/// and it never holds more than one frame (2 + 65535 bytes) or one
/// [`LINE_MAX`] piece of a line.
pub struct Deframer {
    framing: Framing,
    utf: UtfReader,
    lines: LineReader,
    /// The length of the frame being waited for has been told.
    told_waiting: bool,
    /// Bytes of the current line already handed on in pieces.
    long_line: usize,
    /// Whether what is cut out is echoed (a server), so the notes say so.
    echoing: bool,
}

impl Deframer {
    /// A reader for `framing`; `echoing` when what it hands back is sent back.
    pub fn new(framing: Framing, echoing: bool) -> Deframer {
        Deframer {
            framing,
            utf: UtfReader::default(),
            lines: LineReader::default(),
            told_waiting: false,
            long_line: 0,
            echoing,
        }
    }

    /// How many bytes the next recv() may bring: at most `buffer`, and never
    /// more than keeps this reader within its bound. Always at least 1 (a
    /// recv() into no room would return 0, which means end of stream).
    pub fn room(&self, buffer: usize) -> usize {
        let room = match self.framing {
            Framing::Raw => buffer,
            Framing::Line => self.lines.room(),
            Framing::Utf => self.utf.room(),
        };
        room.min(buffer).max(1)
    }

    /// Is a message begun and not finished (a line without its newline, a
    /// frame shorter than its length says)?
    pub fn partial(&self) -> bool {
        match self.framing {
            Framing::Raw => false,
            Framing::Line => self.lines.room() < LINE_MAX,
            Framing::Utf => self.utf.buffered() > 0,
        }
    }

    /// Takes the bytes of one recv() and returns what they complete.
    pub fn push(&mut self, ctx: &Ctx, bytes: &[u8]) -> Vec<Piece> {
        match self.framing {
            Framing::Raw => vec![Piece::Bytes(bytes.to_vec())],
            Framing::Line => {
                self.lines.push(bytes);
                let mut pieces = Vec::new();
                while let Some(piece) = self.lines.next_piece() {
                    pieces.push(self.line_piece(ctx, piece));
                }
                pieces
            }
            Framing::Utf => {
                self.utf.push(bytes);
                let mut pieces = Vec::new();
                while let Some(piece) = self.utf_frame(ctx) {
                    pieces.push(piece);
                }
                pieces
            }
        }
    }

    /// At end of stream (recv() returned 0): reports what was left
    /// unfinished, and returns what an echo still sends back.
    pub fn finish(&mut self, ctx: &Ctx) -> Vec<Piece> {
        match self.framing {
            Framing::Raw => Vec::new(),
            Framing::Line => self.line_end(ctx),
            Framing::Utf => self.utf_end(ctx),
        }
    }

    fn line_piece(&mut self, ctx: &Ctx, piece: LinePiece) -> Piece {
        match piece {
            LinePiece::Line(line) if self.long_line > 0 => {
                let total = self.long_line + line.len();
                self.long_line = 0;
                ctx.note(
                    Stage::Transfer,
                    "frame",
                    t!(
                        "the long line ends: {total} bytes in all, newline included",
                        "这个长行结束了：共 {total} 字节，包括换行符"
                    ),
                );
                Piece::Bytes(line)
            }
            LinePiece::Line(line) => {
                let (len, (message, text)) = (line.len(), quoted(&line));
                frame_note(
                    ctx,
                    len,
                    message,
                    t!(
                        "a whole line, {len} bytes: {text}",
                        "一个完整的行，{len} 字节：{text}"
                    ),
                );
                Piece::Message(line)
            }
            LinePiece::Overlong(part) => {
                if self.long_line == 0 {
                    let limit = LINE_MAX;
                    let how = if self.echoing {
                        t!(
                            "it is echoed in pieces of {limit} bytes as they come",
                            "它按每段 {limit} 字节随到随回显"
                        )
                    } else {
                        t!(
                            "it is taken in pieces of {limit} bytes",
                            "它按每段 {limit} 字节处理"
                        )
                    };
                    ctx.note(
                        Stage::Transfer,
                        "frame",
                        t!(
                            "no newline in the first {limit} bytes of this line: {how}, so memory per client stays bounded",
                            "这一行的前 {limit} 字节里没有换行符：{how}，这样每个客户端占用的内存有上限"
                        ),
                    );
                }
                self.long_line += part.len();
                Piece::Bytes(part)
            }
        }
    }

    fn line_end(&mut self, ctx: &Ctx) -> Vec<Piece> {
        let rest = self.lines.at_end();
        let total = self.long_line + rest.as_ref().map_or(0, Vec::len);
        self.long_line = 0;
        if total == 0 {
            return Vec::new();
        }
        let text = rest
            .as_deref()
            .map(|rest| quoted(rest).1)
            .unwrap_or_default();
        let echoed = if self.echoing && rest.is_some() {
            t!(" It is echoed as it is.", "它按原样回显。")
        } else {
            String::new()
        };
        ctx.note(
            Stage::Transfer,
            "frame",
            t!(
                "the stream ended in the middle of a line: {total} bytes without a newline (the last ones: {text}).{echoed}",
                "流在一行的中间结束了：{total} 字节没有换行符（最后的字节：{text}）。{echoed}"
            ),
        );
        rest.map(Piece::Bytes).into_iter().collect()
    }

    /// The next whole frame, narrated; `None` when more bytes are needed.
    fn utf_frame(&mut self, ctx: &Ctx) -> Option<Piece> {
        let len = self.utf.announced()?;
        let Some(frame) = self.utf.next_frame() else {
            if !self.told_waiting {
                self.told_waiting = true;
                let raw = self.utf.length_bytes().unwrap_or_default();
                let (bytes, have) = (sanitize::escape(&raw), self.utf.buffered() - 2);
                ctx.note(
                    Stage::Transfer,
                    "frame",
                    t!(
                        "readUTF: the first 2 bytes \"{bytes}\" = 0x{len:04x} = {len}: it waits for {len} bytes of text ({have} here so far)",
                        "readUTF：前 2 个字节 \"{bytes}\" = 0x{len:04x} = {len}：它要等 {len} 字节的文本（目前到了 {have} 字节）"
                    ),
                );
            }
            return None;
        };
        self.told_waiting = false;
        let problem = match frame.and_then(|text| encode_utf(&text).map(|again| (text, again))) {
            Ok((text, again)) => {
                let (message, shown) = quoted(text.as_bytes());
                frame_note(
                    ctx,
                    len,
                    message,
                    t!(
                        "readUTF: 0x{len:04x} = {len} bytes → {shown}",
                        "readUTF：0x{len:04x} = {len} 字节 → {shown}"
                    ),
                );
                return Some(Piece::Message(again));
            }
            Err(e) => problem_text(&e),
        };
        let next = if self.echoing {
            t!(
                "Nothing is echoed for it. The length said where it ends, so the next frame is found right after it, and the server goes on.",
                "这一帧不回显。长度说明了它在哪里结束，所以紧接其后就能找到下一帧，服务器继续处理。"
            )
        } else {
            t!(
                "The length said where it ends, so the next frame is found right after it.",
                "长度说明了它在哪里结束，所以紧接其后就能找到下一帧。"
            )
        };
        ctx.error(
            Stage::Transfer,
            "frame",
            t!(
                "readUTF: UTFDataFormatException: the frame of length {len} is {problem}",
                "readUTF：UTFDataFormatException：长度为 {len} 的帧{problem}"
            ),
            t!(
                "The 2-byte length was read and the whole frame arrived, but its bytes are not text in (modified) UTF-8: Java's readUTF throws UTFDataFormatException here. {next}",
                "2 字节的长度读到了，整帧也都到了，但它的字节不是（修改版）UTF-8 文本：Java 的 readUTF 在这里会抛出 UTFDataFormatException。{next}"
            ),
        );
        Some(Piece::Broken)
    }

    fn utf_end(&mut self, ctx: &Ctx) -> Vec<Piece> {
        let Some(problem) = self.utf.at_end() else {
            return Vec::new();
        };
        let lost = if self.echoing {
            t!(" Nothing is echoed for it.", "这一帧不回显。")
        } else {
            String::new()
        };
        let (error, text) = match (problem, self.utf.length_bytes()) {
            (FrameError::Truncated { got, .. }, None) => (
                t!(
                    "readUTF: EOFException: the stream ended inside a frame's 2-byte length ({got} byte of it came)",
                    "readUTF：EOFException：流在一帧的 2 字节长度之内就结束了（只到了 {got} 字节）"
                ),
                t!(
                    "Every frame starts with 2 bytes of length; the peer closed after sending only part of them. Java's readUTF throws EOFException here.{lost}",
                    "每一帧都以 2 字节的长度开头；对端只发了其中一部分就关闭了。Java 的 readUTF 在这里会抛出 EOFException。{lost}"
                ),
            ),
            (problem, Some(raw)) => {
                let looks_like_text = raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
                let hint = if looks_like_text {
                    let shown = sanitize::escape(&raw);
                    t!(
                        " The 2 length bytes are \"{shown}\": they look like text. The writer probably sent text without a length (writeUTFBytes, or a plain line), and readUTF took its first two letters as the length.",
                        "这 2 个长度字节是 \"{shown}\"：看起来像文本。写的一方很可能发的是没有长度的文本（writeUTFBytes，或普通的一行），而 readUTF 把头两个字母当成了长度。"
                    )
                } else {
                    String::new()
                };
                let problem = problem_text(&problem);
                (
                    t!(
                        "readUTF: EOFException: {problem}",
                        "readUTF：EOFException：{problem}"
                    ),
                    t!(
                        "The peer closed the connection (FIN) before the whole frame arrived. Java's readUTF throws EOFException at the end of the stream; while the stream stays open, it simply waits.{hint}{lost}",
                        "整帧到达之前，对端就关闭了连接（FIN）。流结束时，Java 的 readUTF 会抛出 EOFException；只要流还开着，它就一直等下去。{hint}{lost}"
                    ),
                )
            }
            (problem, None) => {
                let problem = problem_text(&problem);
                (t!("readUTF: {problem}", "readUTF：{problem}"), lost)
            }
        };
        ctx.error(
            Stage::Transfer,
            "frame",
            error,
            text.trim_start().to_string(),
        );
        vec![Piece::Broken]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_java_byte_for_byte() {
        // new DataOutputStream(out).writeUTF("hello") writes 00 05 68 65 6c 6c 6f.
        assert_eq!(encode_utf("hello").unwrap(), b"\x00\x05hello");
        // NUL is C0 80, "é" is C3 A9, "你" is E4 BD A0.
        assert_eq!(to_modified_utf8("\0é你"), b"\xc0\x80\xc3\xa9\xe4\xbd\xa0");
        // U+1F600 is the surrogate pair D83D DE00, three bytes each.
        assert_eq!(to_modified_utf8("😀"), b"\xed\xa0\xbd\xed\xb8\x80");
        assert!(matches!(
            encode_utf(&"x".repeat(65536)),
            Err(FrameError::TooLong(65536))
        ));
    }

    #[test]
    fn the_classic_mistake() {
        // writeUTFBytes("hello") sends no length; readUTF takes "he" as one.
        let mut reader = UtfReader::default();
        reader.push(b"hello");
        assert_eq!(reader.announced(), Some(0x6865));
        assert_eq!(0x6865, 26725);
        assert!(reader.next_frame().is_none());
        assert_eq!(
            reader.at_end(),
            Some(FrameError::Truncated {
                expected: 26725,
                got: 3
            })
        );
    }

    #[test]
    fn frames_split_and_joined_across_reads() {
        let mut reader = UtfReader::default();
        let mut stream = encode_utf("one").unwrap();
        stream.extend(encode_utf("two").unwrap());
        for byte in &stream {
            reader.push(std::slice::from_ref(byte));
        }
        assert_eq!(reader.next_frame(), Some(Ok("one".into())));
        assert_eq!(reader.next_frame(), Some(Ok("two".into())));
        assert_eq!(reader.next_frame(), None);
        assert_eq!(reader.at_end(), None);
    }

    #[test]
    fn read_utf_accepts_a_plain_nul_byte() {
        // writeUTF writes NUL as C0 80, but Java's readUTF also takes 00.
        assert_eq!(from_modified_utf8(b"a\0b"), Ok("a\0b".into()));
        assert_eq!(from_modified_utf8(b"a\xc0\x80b"), Ok("a\0b".into()));
        assert_eq!(from_modified_utf8(b"\xff"), Err(FrameError::BadText(0)));
    }

    #[test]
    fn lines_split_joined_and_too_long() {
        let mut reader = LineReader::new(8);
        reader.push(b"one\ntw");
        assert_eq!(
            reader.next_piece(),
            Some(LinePiece::Line(b"one\n".to_vec()))
        );
        assert_eq!(reader.next_piece(), None);
        reader.push(b"o\n0123456789");
        assert_eq!(
            reader.next_piece(),
            Some(LinePiece::Line(b"two\n".to_vec()))
        );
        // Ten bytes and no newline: the first eight go on as a piece.
        assert_eq!(
            reader.next_piece(),
            Some(LinePiece::Overlong(b"01234567".to_vec()))
        );
        assert_eq!(reader.next_piece(), None);
        assert_eq!(reader.room(), 6);
        assert_eq!(reader.at_end(), Some(b"89".to_vec()));
        assert_eq!(reader.at_end(), None);
    }

    /// Collects what a [`Deframer`] narrates, as (kind, topic or code, text).
    fn narrated(run: impl FnOnce(&Ctx)) -> Vec<(String, String, String)> {
        use crate::engine::event::{Body, Proto, Side};
        let ((), events) = crate::engine::timeline::collect(|sink| {
            run(&Ctx::new(sink, Side::Server, Proto::Tcp));
        });
        events
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Note { topic, text, .. } => Some(("note".into(), topic.into(), text)),
                Body::Error { code, error, .. } => Some(("error".into(), code.into(), error)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn utf_frames_are_narrated_and_a_bad_one_is_skipped() {
        let mut stream = b"\x00\x01\xff".to_vec();
        stream.extend(encode_utf("你好, é").unwrap());
        let mut pieces = Vec::new();
        let told = narrated(|ctx| {
            let mut frames = Deframer::new(Framing::Utf, true);
            pieces = frames.push(ctx, &stream);
            pieces.extend(frames.push(ctx, b"\x00\x10abc"));
            pieces.extend(frames.finish(ctx));
        });
        assert_eq!(
            pieces,
            vec![
                Piece::Broken,
                Piece::Message(encode_utf("你好, é").unwrap()),
                Piece::Broken
            ]
        );
        assert_eq!(told[0].1, "frame");
        assert!(told[0].2.contains("not valid (modified) UTF-8"), "{told:?}");
        assert_eq!(told[1].2, "readUTF: 0x000a = 10 bytes → \"你好, é\"");
        assert!(told[2].2.contains("it waits for 16 bytes"), "{told:?}");
        assert_eq!(told[3].0, "error");
        assert!(
            told[3]
                .2
                .contains("the stream ended after 3 of 16 announced bytes"),
            "{told:?}"
        );
    }

    #[test]
    fn a_long_line_goes_on_in_pieces() {
        let line = vec![b'x'; 100 * 1024];
        let mut echoed = Vec::new();
        let told = narrated(|ctx| {
            let mut lines = Deframer::new(Framing::Line, true);
            let mut rest: &[u8] = &line;
            while !rest.is_empty() {
                let room = lines.room(4096);
                let (now, later) = rest.split_at(room.min(rest.len()));
                for piece in lines.push(ctx, now) {
                    assert!(piece.echo().len() <= LINE_MAX);
                    echoed.extend_from_slice(piece.echo());
                }
                rest = later;
            }
            assert_eq!(echoed.len(), LINE_MAX, "the first piece goes on at once");
            for piece in lines.finish(ctx) {
                echoed.extend_from_slice(piece.echo());
            }
        });
        assert_eq!(echoed, line);
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(told[0].2.contains("no newline in the first 65536 bytes"));
        assert!(told[1].2.contains("102400 bytes without a newline"));
    }

    proptest! {
        // Each case pushes up to 200 KB through both readers: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn memory_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..200_000), chunk in 1usize..9000) {
            // Whatever arrives, reading at most `room` at a time keeps the
            // buffers within one frame, or one piece of a line.
            let (sink, _evidence) = crate::engine::sink::Sink::new();
            let ctx = Ctx::new(&sink, crate::engine::event::Side::Server, crate::engine::event::Proto::Tcp);
            for framing in [Framing::Line, Framing::Utf] {
                let mut frames = Deframer::new(framing, true);
                let mut rest: &[u8] = &bytes;
                while !rest.is_empty() {
                    let room = frames.room(chunk);
                    prop_assert!(room >= 1);
                    let (now, later) = rest.split_at(room.min(rest.len()));
                    frames.push(&ctx, now);
                    prop_assert!(frames.utf.buffered() <= 2 + UTF_MAX);
                    prop_assert!(frames.lines.buf.len() < LINE_MAX);
                    rest = later;
                }
                frames.finish(&ctx);
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips(text in "\\PC{0,200}") {
            let frame = encode_utf(&text).unwrap();
            let mut reader = UtfReader::default();
            reader.push(&frame);
            prop_assert_eq!(reader.next_frame(), Some(Ok(text)));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut reader = UtfReader::default();
            reader.push(&bytes);
            while let Some(_frame) = reader.next_frame() {}
            let _ = reader.at_end();
        }
    }
}
