//! `--step`: before each socket call, show the call about to be made and
//! wait for Enter, so a teacher can ask the class "what happens next?".

use crate::engine::call::Call;
use crate::engine::ctx::{Ctx, Gate};
use crate::engine::errors::UsageError;
use crate::engine::event::{Side, Stage};
use crate::t;
use std::io::{BufRead, IsTerminal};
use std::sync::Mutex;

pub struct Stepper {
    /// One question at a time, whichever thread is about to call.
    turn: Mutex<()>,
}

impl Stepper {
    /// A stepper, if stdin is a terminal a person can press Enter on.
    pub fn new() -> anyhow::Result<Stepper> {
        if !std::io::stdin().is_terminal() {
            return Err(UsageError(t!(
                "--step waits for Enter before each socket call, so it needs a terminal on standard input (not a pipe or a file)",
                "--step 在每次套接字调用前等待回车，所以标准输入必须是终端（不能是管道或文件）"
            ))
            .into());
        }
        Ok(Stepper {
            turn: Mutex::new(()),
        })
    }
}

impl Gate for Stepper {
    fn before(&self, ctx: &Ctx, call: &Call) {
        let stage = call.stage(ctx.side == Side::Server);
        self.ask(ctx, stage, call.name());
    }

    fn before_syscall(&self, ctx: &Ctx, stage: Stage, name: &str) {
        self.ask(ctx, stage, name);
    }
}

impl Stepper {
    /// Shows the call about to be made and waits for Enter (q quits).
    fn ask(&self, ctx: &Ctx, stage: Stage, call: &str) {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let who = match (ctx.side, ctx.conn.as_deref()) {
            (Side::Server, Some(c)) => format!("S·{c}"),
            (Side::Server, None) => "S".to_string(),
            (Side::Client, Some(c)) => c.to_string(),
            (Side::Client, None) => "client".to_string(),
        };
        ctx.note(
            stage,
            "step",
            t!(
                "next: {who} calls {call}(). What will happen? Enter runs it, q then Enter quits",
                "下一步：{who} 调用 {call}()。会发生什么？按回车执行，输入 q 再回车退出"
            ),
        );
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if matches!(read, Ok(0) | Err(_)) || line.trim().eq_ignore_ascii_case("q") {
            ctx.note(
                Stage::Close,
                "step",
                t!("stopped by the teacher", "老师停止了演示"),
            );
            // Let the renderer show the last lines before leaving.
            std::thread::sleep(std::time::Duration::from_millis(400));
            std::process::exit(0);
        }
    }
}
