//! Bytes from the network never reach the terminal raw.
//!
//! A peer could send an escape sequence that recolours, clears or retitles
//! the teacher's terminal, or text that reorders itself (bidirectional
//! overrides). Everything that is not plainly printable is shown escaped,
//! the way Rust writes it in a string literal: `\n`, `\x1b`, `\u{202e}`.

/// Escapes every byte of `bytes`.
pub fn escape(bytes: &[u8]) -> String {
    preview(bytes, usize::MAX).0
}

/// Escapes at most about `max_chars` characters of `bytes`. Returns the
/// preview and how many bytes were left out of it.
pub fn preview(bytes: &[u8], max_chars: usize) -> (String, usize) {
    let mut out = String::new();
    let mut shown_chars = 0usize;
    let mut consumed = 0usize;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown_chars >= max_chars {
                return (out, bytes.len() - consumed);
            }
            let before = out.len();
            push_char(&mut out, c);
            shown_chars += out[before..].chars().count();
            consumed += c.len_utf8();
        }
        for b in chunk.invalid() {
            if shown_chars >= max_chars {
                return (out, bytes.len() - consumed);
            }
            // Not UTF-8: show the byte's value.
            out.push_str(&format!("\\x{b:02x}"));
            shown_chars += 4;
            consumed += 1;
        }
    }
    (out, 0)
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        // C0 controls (ESC is \x1b) and DEL.
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if is_invisible_or_control(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        c => out.push(c),
    }
}

/// C1 controls (a terminal may treat U+009B as the start of an escape
/// sequence), and format characters that hide or reorder text.
fn is_invisible_or_control(c: char) -> bool {
    matches!(c as u32,
        0x80..=0x9f
        | 0xad
        | 0x061c
        | 0x180e
        | 0x200b..=0x200f
        | 0x2028..=0x202e
        | 0x2060..=0x206f
        | 0xfeff
        | 0xfff9..=0xfffb
        | 0xe0000..=0xe007f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(escape(b"hi\n"), "hi\\n");
        assert_eq!(escape(b"\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(escape(b"a\xffb"), "a\\xffb");
        assert_eq!(escape("\u{202e}evil".as_bytes()), "\\u{202e}evil");
        assert_eq!(escape("\u{9b}2J".as_bytes()), "\\u{009b}2J");
        assert_eq!(escape("你好".as_bytes()), "你好");
        assert_eq!(escape(b"back\\slash \"q\""), "back\\\\slash \\\"q\\\"");
    }

    #[test]
    fn long_input_is_cut_with_a_count() {
        let data = vec![b'x'; 1000];
        let (text, cut) = preview(&data, 10);
        assert_eq!(text, "xxxxxxxxxx");
        assert_eq!(cut, 990);
        let (text, cut) = preview("日本語です".as_bytes(), 2);
        assert_eq!(text, "日本");
        assert_eq!(cut, 9);
    }

    proptest! {
        /// Whatever arrives, the preview holds no control character at all.
        #[test]
        fn no_control_characters_survive(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = escape(&bytes);
            prop_assert!(text.chars().all(|c| !c.is_control() && !is_invisible_or_control(c)), "{text:?}");
        }

        /// The preview plus the count of what was cut accounts for every byte.
        #[test]
        fn cut_counts_the_rest(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..80) {
            let (text, cut) = preview(&bytes, max);
            prop_assert!(cut <= bytes.len());
            if cut == 0 {
                prop_assert_eq!(text, escape(&bytes));
            }
        }
    }
}
