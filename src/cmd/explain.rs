//! `sockdemo explain`: the textbook beside the live demos.

use crate::cli::{ExplainArgs, OutputArgs};
use crate::engine::errors::UsageError;
use crate::lessons::{self, Lang, Lesson};
use crate::render::markdown;
use colored::Colorize;
use std::io::Write;

pub fn run(args: &ExplainArgs, output: &OutputArgs) -> anyhow::Result<()> {
    let lang = output.language();
    let settings = output.settings();
    colored::control::set_override(settings.color);
    let all = lessons::load(lang, args.lessons.as_deref())?;
    let Some(topic) = &args.topic else {
        if args.demo {
            return Err(UsageError(format!("--demo needs a lesson: {}", usage_hint(lang))).into());
        }
        return print(&list(&all, lang, output.json, settings.width));
    };
    let found = all
        .iter()
        .find(|l| &l.id == topic || l.order.to_string() == *topic);
    let Some(lesson) = found else {
        let mut message = match lang {
            Lang::En => format!("there is no lesson '{topic}'."),
            Lang::Zh => format!("没有名为“{topic}”的课。"),
        };
        match lessons::suggest(topic, &all) {
            // A near miss: the suggestion, and where the list is.
            Some(near) => message.push_str(&match lang {
                Lang::En => format!(" Did you mean '{near}'? (sockdemo explain lists them all)"),
                Lang::Zh => format!(" 你是不是想看“{near}”？（sockdemo explain 会列出全部）"),
            }),
            // Nothing close: the list, on stderr with the error, so stdout
            // stays clean. Ignoring a failed write: a closed stderr must
            // not turn the usage error (2) into a panic.
            None => {
                let _ =
                    std::io::stderr().write_all(list(&all, lang, false, settings.width).as_bytes());
            }
        }
        return Err(UsageError(message).into());
    };
    if args.demo {
        let Some(demo) = &lesson.demo else {
            return Err(UsageError(match lang {
                Lang::En => format!("the lesson '{}' has no demo", lesson.id),
                Lang::Zh => format!("“{}”这一课没有演示", lesson.id),
            })
            .into());
        };
        return super::demos::run(demo, output, args.diagram.as_deref(), args.diagram_pages);
    }
    // This machine's kernel settings are read now, once, for both outputs.
    let body = lesson.shown_body();
    if output.json {
        let line = serde_json::json!({
            "kind": "lesson", "id": lesson.id, "order": lesson.order, "lang": lang.code(),
            "title": lesson.title, "summary": lesson.summary, "demo": lesson.demo,
            "markdown": body, "try": lessons::try_commands(&body),
        });
        return print(&format!("{line}\n"));
    }
    let text = markdown::render(&body, settings.width);
    if !args.no_pager && super::pager::show(&text) {
        return Ok(());
    }
    print(&text)
}

fn usage_hint(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "sockdemo explain TOPIC --demo (sockdemo explain lists the topics)",
        Lang::Zh => "sockdemo explain 主题 --demo（sockdemo explain 列出所有主题）",
    }
}

/// The lessons in teaching order: number, id, title, summary.
fn list(all: &[Lesson], lang: Lang, json: bool, width: usize) -> String {
    let mut out = String::new();
    if json {
        for l in all {
            let line = serde_json::json!({
                "kind": "lesson", "id": l.id, "order": l.order, "lang": lang.code(),
                "title": l.title, "summary": l.summary, "demo": l.demo,
            });
            out.push_str(&format!("{line}\n"));
        }
        return out;
    }
    let heading = match lang {
        Lang::En => "Lessons (sockdemo explain TOPIC to read one, --demo to see it live):",
        Lang::Zh => "课程（sockdemo explain 主题 阅读一课，加 --demo 观看现场演示）：",
    };
    out.push_str(&format!("{}\n", heading.bold()));
    let id_width = all.iter().map(|l| l.id.len()).max().unwrap_or(0);
    // "  5. tcp-vs-udp     ▶ " then the title and summary, wrapped under the title.
    let indent = " ".repeat(4 + 1 + id_width + 3);
    for l in all {
        let demo = if l.demo.is_some() { "▶" } else { " " };
        let lead = format!("{:>3}. {:<id_width$} {demo} ", l.order, l.id);
        let text = format!("{lead}{} — {}", l.title, l.summary);
        let opts = textwrap::Options::new(width.max(40)).subsequent_indent(&indent);
        for (i, line) in textwrap::wrap(&text, opts).into_iter().enumerate() {
            let line = match line.strip_prefix(lead.as_str()) {
                // Colour the id and the title on the first line only.
                Some(rest) if i == 0 => {
                    let (title, after) = rest.split_at(rest.find(" — ").unwrap_or(rest.len()));
                    let id = format!("{:<id_width$}", l.id);
                    format!(
                        "{:>3}. {} {} {}{after}",
                        l.order,
                        id.cyan(),
                        demo.green(),
                        title.bold()
                    )
                }
                _ => line.into_owned(),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        // `sockdemo explain states | head` closed the pipe: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
