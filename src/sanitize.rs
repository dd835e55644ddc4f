//! Bytes from the network, and a teacher's lesson text, never reach the
//! terminal raw.
//!
//! A peer could send an escape sequence that recolours, clears or retitles
//! the teacher's terminal (CSI 2J), or writes to its clipboard (OSC 52), or
//! text that reorders itself (bidirectional overrides) or hides (zero-width
//! and other invisible characters). Everything that is not plainly visible
//! is shown escaped, the way Rust writes it in a string literal: `\n`,
//! `\x1b`, `\u{202e}`.
//!
//! What is escaped comes from the Unicode Character Database through
//! `icu_properties` (see docs/dependencies.md), not from a hand-kept list:
//!
//! - the general categories Cc (controls: C0, DEL, C1), Cf (format: bidi
//!   controls, zero-width joiners and spaces, the BOM, Arabic number signs
//!   such as U+0600, musical formatting such as U+1D173, tag characters),
//!   Zl and Zp (the line and paragraph separators), Co (private use: no
//!   agreed glyph, a font may draw anything) and Cn (unassigned code points
//!   and noncharacters: a newer terminal may give them a meaning);
//! - every Default_Ignorable_Code_Point (Unicode's list of what a renderer
//!   shows as nothing when it has no special support): variation selectors
//!   (U+FE00–FE0F, U+E0100–E01EF), U+034F, U+180B–180F, U+17B4 and U+17B5,
//!   and the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, which are
//!   letters but draw nothing.
//!
//! What stays: letters of every script (CJK included), digits,
//! punctuation, symbols and emoji, spaces (U+0020, U+00A0, U+3000: each
//! takes visible room, as does the braille blank U+2800, which is an
//! ordinary symbol and not default-ignorable), and combining marks such as
//! U+0301, which attach to the letter before them (`e` + U+0301 is `é`).
//!
//! Emoji sequences: the zero-width joiner (U+200D, Cf) and the emoji
//! presentation selector (U+FE0F, a variation selector) are escaped like
//! any other invisible character, so 👩‍💻 is shown as `👩\u{200d}💻` and ❤️ as
//! `❤\u{fe0f}`. Every piece stays visible; what is lost is only the joined
//! glyph, and a joiner is exactly what can hide between two letters.

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{CodePointMapData, CodePointSetData};
use std::borrow::Cow;
use std::fmt::Write;

/// Escapes every byte of `bytes`, for text shown between quotes (a
/// network message): line breaks, `\` and `"` are escaped too.
pub fn escape(bytes: &[u8]) -> String {
    preview(bytes, usize::MAX).0
}

/// Escapes at most about `max_chars` characters of `bytes`. Returns the
/// preview and how many bytes were left out of it.
///
/// This runs on every `recv()` and `send()` the timeline shows, so plain
/// ASCII, by far the most common case, is copied a run at a time; only the
/// bytes beyond it are decoded and looked up one character at a time. Only
/// the part that is shown is ever read, however large the buffer.
pub fn preview(bytes: &[u8], max_chars: usize) -> (String, usize) {
    let mut out = String::with_capacity(bytes.len().min(max_chars).min(4096));
    let mut shown_chars = 0usize;
    let mut at = 0usize;
    while at < bytes.len() {
        if shown_chars >= max_chars {
            return (out, bytes.len() - at);
        }
        let room = max_chars - shown_chars;
        let run = bytes[at..]
            .iter()
            .take(room)
            .take_while(|b| is_plain_ascii(**b))
            .count();
        if run > 0 {
            // Printable ASCII is UTF-8 on its own: no decoding needed.
            out.push_str(std::str::from_utf8(&bytes[at..at + run]).unwrap_or_default());
            shown_chars += run;
            at += run;
            continue;
        }
        match next_char(&bytes[at..]) {
            Ok(c) => {
                shown_chars += push_quoted(&mut out, c);
                at += c.len_utf8();
            }
            Err(invalid) => {
                // Not UTF-8: show the value of each byte that is not.
                for b in &bytes[at..at + invalid] {
                    let _ = write!(out, "\\x{b:02x}");
                }
                shown_chars += 4 * invalid;
                at += invalid;
            }
        }
    }
    (out, 0)
}

/// Text meant to be read as it is (a lesson): every character the terminal
/// would obey or hide is escaped exactly as [`escape`] escapes it, but the
/// line breaks and tabs that lay the text out stay, and so do `\` and `"`,
/// which are only characters here. Escaping is idempotent, so text cleaned
/// twice is the same as text cleaned once. Borrows when nothing needs
/// escaping, which is the usual case.
pub fn text(text: &str) -> Cow<'_, str> {
    let is_kept = |c: char| c == '\n' || c == '\t' || !must_escape(c);
    if text.chars().all(is_kept) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_kept(c) {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// Would the terminal obey this character, or show nothing for it?
pub fn must_escape(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    /// Cc, Cf, Co and Cn (Cs cannot be a `char`), and the two separators
    /// that are line breaks in disguise.
    const HIDDEN: GeneralCategoryGroup = GeneralCategoryGroup::Other
        .union(GeneralCategoryGroup::LineSeparator)
        .union(GeneralCategoryGroup::ParagraphSeparator);
    HIDDEN.contains(CodePointMapData::<GeneralCategory>::new().get(c))
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// ASCII that is shown as itself inside a quoted preview.
fn is_plain_ascii(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"'
}

/// The first character of `bytes`, or how many bytes at its start are not
/// UTF-8 (at least one), grouped the way `str::from_utf8` reports them.
fn next_char(bytes: &[u8]) -> Result<char, usize> {
    // A character is at most 4 bytes: decode no more than that.
    let window = &bytes[..bytes.len().min(4)];
    let valid = match std::str::from_utf8(window) {
        Ok(s) => s,
        Err(e) if e.valid_up_to() > 0 => {
            std::str::from_utf8(&window[..e.valid_up_to()]).unwrap_or_default()
        }
        // A sequence cut short by the end of the bytes: all of it is invalid.
        Err(e) => return Err(e.error_len().unwrap_or(window.len())),
    };
    valid.chars().next().ok_or(1)
}

/// Pushes `c` as a quoted preview shows it; returns the characters pushed.
fn push_quoted(out: &mut String, c: char) -> usize {
    let before = out.len();
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        c if must_escape(c) => push_escaped(out, c),
        c => {
            out.push(c);
            return 1;
        }
    }
    // Escapes are ASCII: one byte is one character.
    out.len() - before
}

/// The escape of a character [`must_escape`] picked.
fn push_escaped(out: &mut String, c: char) {
    let _ = match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\0' => out.write_str("\\0"),
        // C0 controls (ESC is \x1b) and DEL.
        c if c.is_ascii() => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:04x}}}", c as u32),
    };
}

#[cfg(test)]
mod tests;
