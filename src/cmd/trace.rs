//! `sockdemo trace`: runs the student's own programs and narrates their
//! sockets (see [`crate::engine::trace`]).

use crate::cli::{OutputArgs, TraceArgs};
use crate::engine::errors::UsageError;
use crate::engine::event::Side;
use crate::engine::recorder::Recorder;
use crate::engine::trace::{self, Options, Program};
use crate::render::diagram::Format;
use crate::render::{self, human::Layout};
use crate::t;

pub fn run(args: &TraceArgs, output: &OutputArgs) -> anyhow::Result<()> {
    let programs = programs(args)?;
    let settings = output.settings();
    let layout = if programs.len() > 1 {
        Layout::Columns
    } else {
        Layout::Single
    };
    if let Some(path) = &args.diagram {
        // A typo in the folder fails now, not after the whole run.
        super::diagram::replace::check(path)?;
    }
    let recorder = args.diagram.as_ref().map(|_| Recorder::new());
    let (sink, renderer) = render::start(settings, layout, Side::Client, recorder.clone());
    let options = Options {
        packets: output.packets,
        wait_listen: args.wait_listen,
        one_cpu: args.one_cpu,
    };
    let result = super::shared::stepping(sink, output).and_then(|sink| {
        // A signal to sockdemo is passed on to the programs: they end,
        // and the trace ends with them. (Ctrl-C on the terminal reaches
        // them by itself: they are in its foreground group.)
        super::shared::on_signal(|| {
            if let Some(signal) = super::shared::stopped_by().filter(|s| *s != 2) {
                trace::pass_on(signal);
            }
        })?;
        trace::run(&sink, &programs, options)
    });
    let result = result.map(|ended| super::shared::exit_with(ended.status));
    let result = renderer.finish(output.json, result);
    if let (Ok(()), Some(path), Some(recorder)) = (&result, &args.diagram, &recorder) {
        let format = Format::from_path(path).map_err(UsageError)?;
        let title = programs
            .iter()
            .map(|p| p.argv.join(" "))
            .collect::<Vec<_>>()
            .join(" + ");
        let events = recorder.snapshot();
        let shown = super::diagram::write(path, format, args.diagram_pages, &events, &title)?;
        eprintln!("sockdemo: the sequence diagram is in {shown}");
    }
    result
}

/// The programs to run: the --run strings, then the one after `--`.
fn programs(args: &TraceArgs) -> anyhow::Result<Vec<Program>> {
    let mut argvs = Vec::new();
    for command in &args.run {
        let words = shell_words::split(command).map_err(|e| {
            UsageError(t!(
                "--run {command:?}: {e}; quote the whole command once, for example --run 'python3 server.py 8888'",
                "--run {command:?}：{e}；请把整条命令用引号括起来，例如 --run 'python3 server.py 8888'"
            ))
        })?;
        if words.is_empty() {
            return Err(UsageError(t!("--run needs a command", "--run 需要一条命令")).into());
        }
        argvs.push(words);
    }
    if !args.program.is_empty() {
        argvs.push(args.program.clone());
    }
    if argvs.is_empty() {
        return Err(UsageError(t!(
            "trace needs a program: sockdemo trace -- python3 client.py, or --run 'COMMAND' (repeat it for a server and its clients)",
            "trace 需要一个程序：sockdemo trace -- python3 client.py，或者 --run '命令'（服务器和客户端各写一次）"
        ))
        .into());
    }
    let several = argvs.len() > 1;
    Ok(argvs
        .into_iter()
        .enumerate()
        .map(|(i, argv)| Program {
            tag: match (several, i) {
                (false, _) => "P".into(),
                (true, 0) => "S".into(),
                (true, n) => format!("C{n}"),
            },
            argv,
        })
        .collect())
}
