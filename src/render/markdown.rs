//! Markdown for the terminal: headings, emphasis, lists, code, quotes and
//! tables, wrapped to the width and coloured (or plain when piped).
//! Code blocks are never wrapped, so ASCII diagrams keep their shape.
//!
//! Every text the Markdown holds goes through [`sanitize::text`] before it
//! is styled (see [`cleaned`]); the only escape sequences in the output
//! are the renderer's own colours.

use crate::sanitize;
use colored::Colorize;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::borrow::Cow;
use textwrap::core::display_width;

/// Renders `markdown` for a terminal `width` columns wide.
pub fn render(markdown: &str, width: usize) -> String {
    let mut r = Renderer {
        width: width.clamp(40, 160),
        ..Renderer::default()
    };
    let parser = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    );
    for event in parser.map(cleaned) {
        r.event(event);
    }
    r.flush_block();
    let mut out = r.out.trim_end().to_string();
    out.push('\n');
    out
}

/// What the parser hands over, cleaned like network bytes. The lesson's
/// text was cleaned when it was read, but a character reference turns
/// plain ASCII into the very characters that were escaped (`&#27;` is ESC,
/// `&#x202E;` a right-to-left override), so the parser's output is cleaned
/// again: text, inline code, HTML (shown as text) and link targets. Cleaning
/// twice changes nothing, and ordinary text is not copied.
fn cleaned(event: Event<'_>) -> Event<'_> {
    fn clean(text: CowStr<'_>) -> CowStr<'_> {
        match sanitize::text(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(escaped) => escaped.into(),
        }
    }
    match event {
        Event::Text(text) => Event::Text(clean(text)),
        Event::Code(code) => Event::Code(clean(code)),
        Event::Html(html) => Event::Html(clean(html)),
        Event::InlineHtml(html) => Event::InlineHtml(clean(html)),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: clean(dest_url),
            title,
            id,
        }),
        other => other,
    }
}

/// Stands for a soft line break until the paragraph is complete. It is a
/// private-use character, which [`cleaned`] text can no longer contain.
const SOFT_BREAK: char = '\u{e000}';

/// Wide (CJK) characters are written without spaces between them.
fn is_wide(c: char) -> bool {
    display_width(c.encode_utf8(&mut [0; 4])) > 1
}

fn resolve_soft_breaks(text: &str) -> String {
    // The neighbours of a break, skipping the escape sequences of colours.
    let visible: Vec<char> = {
        let mut out = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut wide_around = Vec::new();
    for (i, c) in visible.iter().enumerate() {
        if *c == SOFT_BREAK {
            let before = visible[..i]
                .iter()
                .rev()
                .find(|c| **c != SOFT_BREAK)
                .copied();
            let after = visible[i + 1..].iter().find(|c| **c != SOFT_BREAK).copied();
            wide_around.push(before.is_some_and(is_wide) && after.is_some_and(is_wide));
        }
    }
    let mut breaks = wide_around.into_iter();
    text.chars()
        .filter_map(|c| match c {
            SOFT_BREAK => (!breaks.next().unwrap_or(false)).then_some(' '),
            c => Some(c),
        })
        .collect()
}

#[derive(Default)]
struct Renderer {
    width: usize,
    out: String,
    /// The inline text of the block being built, with styles applied.
    line: String,
    /// Nesting of inline styles.
    bold: usize,
    italic: usize,
    heading: Option<HeadingLevel>,
    /// Open lists: the next number, or None for bullets.
    lists: Vec<Option<u64>>,
    /// The marker of the list item whose first paragraph is being built.
    item_marker: Option<String>,
    quote: usize,
    code: Option<String>,
    code_text: String,
    link: Option<String>,
    table: Option<Vec<Vec<String>>>,
    cell: String,
}

impl Renderer {
    fn indent(&self) -> usize {
        self.lists.len().saturating_sub(1) * 3 + if self.lists.is_empty() { 0 } else { 3 }
    }

    fn quote_prefix(&self) -> String {
        "│ ".repeat(self.quote)
    }

    fn push_text(&mut self, text: &str) {
        if self.table.is_some() {
            self.cell.push_str(text);
            return;
        }
        let mut styled = text.normal();
        if self.bold > 0 || self.heading.is_some() {
            styled = styled.bold();
        }
        if self.italic > 0 {
            styled = styled.italic();
        }
        if matches!(
            self.heading,
            Some(HeadingLevel::H1) | Some(HeadingLevel::H2)
        ) {
            styled = styled.yellow();
        }
        self.line.push_str(&styled.to_string());
    }

    /// Ends a paragraph, heading or list item's text: wrap it and write it.
    fn flush_block(&mut self) {
        if self.line.trim().is_empty() {
            self.line.clear();
            return;
        }
        let text = resolve_soft_breaks(&std::mem::take(&mut self.line));
        let base = " ".repeat(self.indent().saturating_sub(if self.item_marker.is_some() {
            3
        } else {
            0
        }));
        let quote = self.quote_prefix();
        let (first, rest) = match self.item_marker.take() {
            Some(marker) => (
                format!("{quote}{base}{marker:<3}"),
                format!("{quote}{base}   "),
            ),
            None => (format!("{quote}{base}"), format!("{quote}{base}")),
        };
        let opts = textwrap::Options::new(self.width)
            .initial_indent(&first)
            .subsequent_indent(&rest)
            .word_separator(textwrap::WordSeparator::UnicodeBreakProperties);
        for line in textwrap::wrap(&text, opts) {
            self.out.push_str(line.trim_end());
            self.out.push('\n');
        }
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                if self.code.is_some() {
                    self.code_text.push_str(&text);
                } else {
                    self.push_text(&text);
                }
            }
            Event::Code(code) => {
                if self.table.is_some() {
                    self.cell.push_str(&code);
                } else {
                    let shown = format!("`{code}`");
                    self.line
                        .push_str(&if colored::control::SHOULD_COLORIZE.should_colorize() {
                            code.cyan().to_string()
                        } else {
                            shown
                        });
                }
            }
            // A line break inside a paragraph is a space between words, but
            // nothing between two Chinese characters: decided when the
            // paragraph is complete and both neighbours are known.
            Event::SoftBreak => self.line.push(SOFT_BREAK),
            Event::HardBreak => {
                self.flush_block();
            }
            Event::Rule => {
                self.flush_block();
                self.blank_line();
                self.out
                    .push_str(&"─".repeat(self.width.min(60)).dimmed().to_string());
                self.out.push('\n');
            }
            Event::Html(html) | Event::InlineHtml(html) => self.push_text(&html),
            Event::FootnoteReference(_) | Event::TaskListMarker(_) => {}
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            // A list item's first paragraph stays on the marker's line.
            Tag::Paragraph if self.item_marker.is_none() => self.blank_line(),
            Tag::Heading { level, .. } => {
                self.flush_block();
                self.blank_line();
                self.heading = Some(level);
                if level == HeadingLevel::H1 {
                    // A lesson's title: no extra marker, the style says it.
                } else if level == HeadingLevel::H2 {
                    self.push_text("■ ");
                }
            }
            Tag::BlockQuote(_) => {
                self.flush_block();
                self.blank_line();
                self.quote += 1;
            }
            Tag::CodeBlock(kind) => {
                self.flush_block();
                self.blank_line();
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some(info);
                self.code_text.clear();
            }
            Tag::List(first) => {
                self.flush_block();
                if self.lists.is_empty() {
                    self.blank_line();
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.flush_block();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}.");
                        *n += 1;
                        m
                    }
                    _ => "•".to_string(),
                };
                self.item_marker = Some(marker);
            }
            Tag::Emphasis => self.italic += 1,
            Tag::Strong => self.bold += 1,
            Tag::Link { dest_url, .. } => self.link = Some(dest_url.to_string()),
            Tag::Table(_) => {
                self.flush_block();
                self.blank_line();
                self.table = Some(Vec::new());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = &mut self.table {
                    t.push(Vec::new());
                }
            }
            Tag::TableCell => self.cell.clear(),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.flush_block(),
            TagEnd::Heading(_) => {
                self.flush_block();
                self.heading = None;
            }
            TagEnd::BlockQuote(_) => {
                self.flush_block();
                self.quote = self.quote.saturating_sub(1);
            }
            TagEnd::CodeBlock => {
                let info = self.code.take().unwrap_or_default();
                let text = std::mem::take(&mut self.code_text);
                let pad = " ".repeat(self.indent() + 4);
                let quote = self.quote_prefix();
                // A diagram is never rewrapped (it would fall apart): one
                // wider than the window is shown whole, with a word first.
                let widest = text
                    .lines()
                    .map(|l| display_width(&quote) + pad.len() + display_width(l))
                    .max()
                    .unwrap_or(0);
                if widest > self.width && info != "try" {
                    let note = crate::t!(
                        "(the block below is {widest} columns wide, more than this window: widen it, or read the lesson in less -S and scroll sideways)",
                        "（下面这段有 {widest} 列宽，超过了这个窗口：把窗口拉宽，或者用 less -S 阅读并左右滚动）"
                    );
                    for line in textwrap::wrap(&note, self.width) {
                        self.out.push_str(&format!("{quote}{}\n", line.dimmed()));
                    }
                }
                for line in text.trim_end_matches('\n').lines() {
                    let shown = if info == "try" {
                        format!("$ {line}").green().bold().to_string()
                    } else {
                        line.cyan().to_string()
                    };
                    self.out.push_str(&format!("{quote}{pad}{shown}\n"));
                }
            }
            TagEnd::List(_) => {
                self.flush_block();
                self.lists.pop();
            }
            TagEnd::Item => self.flush_block(),
            TagEnd::Emphasis => self.italic = self.italic.saturating_sub(1),
            TagEnd::Strong => self.bold = self.bold.saturating_sub(1),
            TagEnd::Link => {
                if let Some(url) = self.link.take() {
                    if !self.line.contains(&url) {
                        self.push_text(&format!(" ({url})"));
                    }
                }
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.cell);
                if let Some(row) = self.table.as_mut().and_then(|t| t.last_mut()) {
                    row.push(cell.trim().to_string());
                }
            }
            TagEnd::Table => {
                if let Some(rows) = self.table.take() {
                    self.table_out(&rows);
                }
            }
            _ => {}
        }
    }

    /// A table as aligned columns; cells too wide for the terminal wrap.
    fn table_out(&mut self, rows: &[Vec<String>]) {
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        if columns == 0 {
            return;
        }
        let mut widths = vec![0usize; columns];
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(display_width(cell));
            }
        }
        // Shrink the widest columns until the table fits.
        let budget = self.width.saturating_sub(2 + 3 * (columns - 1));
        while widths.iter().sum::<usize>() > budget {
            let widest = (0..columns).max_by_key(|&i| widths[i]).unwrap_or(0);
            if widths[widest] <= 8 {
                break;
            }
            widths[widest] -= 1;
        }
        for (r, row) in rows.iter().enumerate() {
            let wrapped: Vec<Vec<String>> = (0..columns)
                .map(|i| {
                    let cell = row.get(i).map(String::as_str).unwrap_or("");
                    let opts = textwrap::Options::new(widths[i].max(1))
                        .word_separator(textwrap::WordSeparator::UnicodeBreakProperties);
                    textwrap::wrap(cell, opts)
                        .into_iter()
                        .map(|c| c.into_owned())
                        .collect()
                })
                .collect();
            let height = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
            for h in 0..height {
                let mut line = String::from("  ");
                for (i, cell_lines) in wrapped.iter().enumerate() {
                    let text = cell_lines.get(h).map(String::as_str).unwrap_or("");
                    let pad = widths[i].saturating_sub(display_width(text));
                    let text = if r == 0 {
                        text.bold().to_string()
                    } else {
                        text.to_string()
                    };
                    line.push_str(&text);
                    if i + 1 < columns {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(&" │ ".dimmed().to_string());
                    }
                }
                self.out.push_str(line.trim_end());
                self.out.push('\n');
            }
            if r == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
                self.out
                    .push_str(&format!("  {}\n", rule.join("─┼─").dimmed()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(md: &str, width: usize) -> String {
        colored::control::set_override(false);
        render(md, width)
    }

    #[test]
    fn paragraphs_wrap_and_code_does_not() {
        let long = "word ".repeat(30);
        let diagram = "+---------------------------------------------------------------------+";
        let out = plain(&format!("{long}\n\n```\n{diagram}\n```\n"), 40);
        assert!(
            out.lines()
                .filter(|l| l.starts_with("word"))
                .all(|l| display_width(l) <= 40),
            "{out}"
        );
        assert!(out.contains(diagram), "diagrams keep their shape");
    }

    #[test]
    fn lists_headings_and_try_blocks() {
        let out = plain("# Title\n\n## Part\n\n- one\n- two\n\n1. first\n2. second\n\n```try\nsockdemo tour\n```\n", 60);
        assert!(out.contains("Title"));
        assert!(out.contains("■ Part"));
        assert!(
            out.contains("•  one") && out.contains("1. first") && out.contains("2. second"),
            "{out}"
        );
        assert!(out.contains("$ sockdemo tour"));
        assert!(
            plain("call `listen()` now", 60).contains("`listen()`"),
            "plain inline code keeps its backticks"
        );
    }

    #[test]
    fn chinese_wraps_between_characters() {
        let text = "套接字是应用程序与传输层之间的接口。".repeat(6);
        let out = plain(&text, 40);
        assert!(out.lines().count() > 2, "{out}");
        assert!(out.lines().all(|l| display_width(l) <= 40), "{out}");
        // No line starts with a closing punctuation mark (UAX #14).
        assert!(out.lines().all(|l| !l.starts_with('。')), "{out}");
    }

    #[test]
    fn line_breaks_join_chinese_without_a_space() {
        let out = plain("套接字是\n接口。It is\nan interface.", 60);
        assert!(out.contains("套接字是接口。It is an interface."), "{out}");
    }

    /// Character references cannot smuggle in what the loader escaped, and
    /// a code span is cleaned too.
    /// (With colours on, the binary is checked in tests/lessons.rs.)
    #[test]
    fn character_references_are_escaped_too() {
        let out = plain(
            "# T&#x1b;]52;c;eA==&#7;\n\na &#27;[2J b &#x202E;c &#x200D; `\u{85}` [x](http://e/&#x1b;)\n\n<b>&#xFE0F;</b>\n",
            60,
        );
        assert!(
            out.chars().all(|c| c == '\n' || !sanitize::must_escape(c)),
            "{out:?}"
        );
        for escaped in [
            "T\\x1b]52;c;eA==\\x07",
            "a \\x1b[2J b \\u{202e}c \\u{200d}",
            "`\\u{0085}`",
            "(http://e/\\x1b)",
            "<b>\\u{fe0f}</b>",
        ] {
            assert!(out.contains(escaped), "{escaped} in {out:?}");
        }
    }

    #[test]
    fn tables_line_up() {
        let out = plain("| a | bb |\n|---|---|\n| TCP | 连接 |\n", 60);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        let bar = |l: &str| display_width(&l[..l.find('│').unwrap()]);
        assert_eq!(bar(lines[0]), bar(lines[2]));
    }
}
