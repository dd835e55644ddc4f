//! The sanitizer against the Unicode Character Database itself: the
//! characters to escape are drawn from `icu_properties`' ranges of each
//! category, not from the sanitizer's own predicate, so a category or a
//! property it forgets shows up here as a character that gets through.

use super::*;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{CodePointMapData, CodePointSetData};
use proptest::prelude::*;
use std::sync::OnceLock;

/// Every `char` that must never reach the terminal as itself, from the
/// UCD's ranges: general categories Cc, Cf, Zl, Zp, Co, Cn, and the
/// Default_Ignorable_Code_Point property.
fn hidden_chars() -> &'static [char] {
    static HIDDEN: OnceLock<Vec<char>> = OnceLock::new();
    HIDDEN.get_or_init(|| {
        let categories = CodePointMapData::<GeneralCategory>::new();
        let mut ranges: Vec<std::ops::RangeInclusive<u32>> = Vec::new();
        for group in [
            GeneralCategoryGroup::Control,
            GeneralCategoryGroup::Format,
            GeneralCategoryGroup::LineSeparator,
            GeneralCategoryGroup::ParagraphSeparator,
            GeneralCategoryGroup::PrivateUse,
            GeneralCategoryGroup::Unassigned,
        ] {
            ranges.extend(categories.iter_ranges_for_group(group));
        }
        ranges.extend(CodePointSetData::new::<DefaultIgnorableCodePoint>().iter_ranges());
        let mut chars: Vec<char> = ranges
            .into_iter()
            .flatten()
            .filter_map(char::from_u32)
            .collect();
        chars.sort_unstable();
        chars.dedup();
        chars
    })
}

fn is_hidden(c: char) -> bool {
    hidden_chars().binary_search(&c).is_ok()
}

#[test]
fn the_database_agrees_with_std_on_controls() {
    // A second source for Cc, so the drawing itself is checked.
    for c in (0..=0x10ffff).filter_map(char::from_u32) {
        if c.is_control() {
            assert!(is_hidden(c), "U+{:04X}", c as u32);
        }
    }
    assert!(
        hidden_chars().len() > 900_000,
        "Cn and Co are most of Unicode"
    );
}

#[test]
fn every_hidden_character_is_escaped() {
    for &c in hidden_chars() {
        let alone = escape(c.encode_utf8(&mut [0; 4]).as_bytes());
        assert!(
            alone.is_ascii() && !alone.chars().any(|e| e.is_ascii_control()),
            "U+{:04X} became {alone:?}",
            c as u32
        );
        let cleaned = text(&c.to_string()).into_owned();
        if c != '\n' && c != '\t' {
            assert_eq!(cleaned, alone, "U+{:04X}: text and escape agree", c as u32);
        }
    }
}

#[test]
fn every_other_character_is_kept() {
    for c in (0..=0x10ffff).filter_map(char::from_u32) {
        if is_hidden(c) || c == '\\' || c == '"' {
            continue;
        }
        let s = c.to_string();
        assert_eq!(escape(s.as_bytes()), s, "U+{:04X}", c as u32);
        assert_eq!(text(&s), s, "U+{:04X}", c as u32);
    }
}

/// The characters the issue named, one by one.
#[test]
fn the_characters_the_issue_named() {
    let named = (0x0600..=0x0605) // Arabic number signs (Cf)
        .chain([0x06dd]) // Arabic end of ayah (Cf)
        .chain(0x1d173..=0x1d17a) // musical beams and slurs (Cf)
        .chain([0x3164, 0x115f, 0x1160, 0xffa0]) // Hangul fillers (Lo, ignorable)
        .chain(0xfe00..=0xfe0f) // variation selectors, U+FE0F among them (Mn)
        .chain(0xe0100..=0xe01ef) // variation selectors supplement
        .chain([0x034f, 0x17b4, 0x17b5, 0x180b, 0x180f]) // other ignorables
        .chain([0x202e, 0x200d, 0xfeff, 0x2028, 0x2029, 0xe000, 0x10ffff]);
    for n in named {
        let c = char::from_u32(n).unwrap();
        let s = c.to_string();
        assert_eq!(escape(s.as_bytes()), format!("\\u{{{n:04x}}}"), "U+{n:04X}");
        assert_eq!(text(&s), format!("\\u{{{n:04x}}}"), "U+{n:04X}");
    }
}

#[test]
fn escapes_what_a_terminal_would_obey() {
    assert_eq!(escape(b"hi\n"), "hi\\n");
    assert_eq!(escape(b"\x1b[31mred\x07"), "\\x1b[31mred\\x07");
    assert_eq!(escape(b"\x1b]52;c;aGk=\x07"), "\\x1b]52;c;aGk=\\x07");
    assert_eq!(escape(b"a\xffb"), "a\\xffb");
    assert_eq!(escape(b"cut \xe4\xbd"), "cut \\xe4\\xbd");
    assert_eq!(escape("\u{202e}evil".as_bytes()), "\\u{202e}evil");
    assert_eq!(escape("\u{9b}2J".as_bytes()), "\\u{009b}2J");
    assert_eq!(escape(b"\x7f\0\t\r"), "\\x7f\\0\\t\\r");
    assert_eq!(escape(b"back\\slash \"q\""), "back\\\\slash \\\"q\\\"");
}

/// Ordinary text of any script passes unchanged.
#[test]
fn ordinary_text_is_untouched() {
    for s in [
        "套接字是应用程序与传输层之间的接口。「连接」，（端口）！",
        "caf\u{e9}",   // é as one code point
        "cafe\u{301}", // é as e + COMBINING ACUTE ACCENT (Mn, not ignorable)
        "🙂 👍 ❤ 🇨🇳",  // emoji base characters and a flag (regional indicators)
        "Привет, мир — ελληνικά — עברית — العربية",
        "a\u{a0}b\u{3000}c\u{2800}d", // spaces that take room, the braille blank
    ] {
        assert_eq!(escape(s.as_bytes()), s);
        assert_eq!(text(s), s);
        assert!(matches!(text(s), Cow::Borrowed(_)), "nothing copied");
    }
}

/// Emoji sequences lose their joiner and presentation selector, visibly.
#[test]
fn emoji_sequences_show_their_joiners() {
    assert_eq!(escape("👩\u{200d}💻".as_bytes()), "👩\\u{200d}💻");
    assert_eq!(text("❤\u{fe0f}"), "❤\\u{fe0f}");
}

#[test]
fn lesson_text_keeps_its_layout() {
    assert_eq!(
        text("line one\n\tcode \\n \"quoted\"\n"),
        "line one\n\tcode \\n \"quoted\"\n"
    );
    assert_eq!(
        text("\x1b[2J\x1b]52;c;aGk=\x07\u{202e}"),
        "\\x1b[2J\\x1b]52;c;aGk=\\x07\\u{202e}"
    );
    assert_eq!(text("a\r\nb"), "a\\r\nb");
    let once = text("\u{200b}x\x1b").into_owned();
    assert_eq!(text(&once), once, "cleaning twice changes nothing");
}

#[test]
fn long_input_is_cut_with_a_count() {
    let data = vec![b'x'; 1000];
    let (shown, cut) = preview(&data, 10);
    assert_eq!(shown, "xxxxxxxxxx");
    assert_eq!(cut, 990);
    let (shown, cut) = preview("日本語です".as_bytes(), 2);
    assert_eq!(shown, "日本");
    assert_eq!(cut, 9);
    let (shown, cut) = preview(b"ab\ncd", 3);
    assert_eq!(
        (shown.as_str(), cut),
        ("ab\\n", 2),
        "an escape is not split"
    );
}

/// One character drawn from the hidden set, from the UCD's ranges.
fn hidden_char() -> impl Strategy<Value = char> {
    (0..hidden_chars().len()).prop_map(|i| hidden_chars()[i])
}

/// Ordinary characters: ASCII letters, CJK, accents, emoji.
fn ordinary_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::char::range('a', 'z'),
        proptest::char::range('\u{4e00}', '\u{9fa5}'),
        Just('\u{301}'),
        Just('é'),
        proptest::char::range('\u{1f600}', '\u{1f64f}'),
        Just(' '),
    ]
}

proptest! {
    /// Whatever arrives, the preview holds no control character at all.
    #[test]
    fn no_control_characters_survive(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let shown = escape(&bytes);
        prop_assert!(shown.chars().all(|c| !is_hidden(c)), "{shown:?}");
    }

    /// Hidden characters mixed into ordinary text: none survives, in a
    /// preview or in lesson text, and the ordinary text is all still there,
    /// in order.
    #[test]
    fn hidden_characters_in_ordinary_text(
        mix in proptest::collection::vec(prop_oneof![hidden_char(), ordinary_char()], 0..200)
    ) {
        let input: String = mix.iter().collect();
        let ordinary: String = mix.iter().filter(|c| !is_hidden(**c)).collect();
        let shown = escape(input.as_bytes());
        prop_assert!(shown.chars().all(|c| !is_hidden(c)), "{shown:?}");
        let cleaned = text(&input);
        prop_assert!(cleaned.chars().all(|c| !is_hidden(c) || c == '\n' || c == '\t'), "{cleaned:?}");
        // Taking the escapes out again gives back the ordinary text.
        let mut rest = cleaned.as_ref();
        for c in ordinary.chars() {
            let at = rest.find(c);
            prop_assert!(at.is_some(), "{c:?} lost from {cleaned:?}");
            rest = &rest[at.unwrap() + c.len_utf8()..];
        }
    }

    /// The preview plus the count of what was cut accounts for every byte.
    #[test]
    fn cut_counts_the_rest(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..80) {
        let (shown, cut) = preview(&bytes, max);
        prop_assert!(cut <= bytes.len());
        if cut == 0 {
            prop_assert_eq!(shown, escape(&bytes));
        } else {
            // What was shown is the escape of the bytes before the cut.
            prop_assert_eq!(shown, escape(&bytes[..bytes.len() - cut]));
        }
    }
}
