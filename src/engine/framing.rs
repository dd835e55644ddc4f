//! TCP carries a stream of bytes with no message boundaries; framing puts
//! them back. Two ways are used in the lessons:
//!
//! * line framing: each message ends with `\n`;
//! * "UTF" framing, as Java's `DataOutputStream.writeUTF` and
//!   ActionScript's `Socket.writeUTF` write it: a 2-byte big-endian length,
//!   then that many bytes of *modified* UTF-8 (NUL is written as C0 80 and a
//!   character outside the Basic Multilingual Plane as two 3-byte surrogates).

use std::fmt;

/// The largest payload a 2-byte length can announce.
pub const UTF_MAX: usize = 65535;

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
            0x01..=0x7f => {
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
