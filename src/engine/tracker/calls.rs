//! How the tracker reads a call record: what made the call return, what
//! the call itself did, what the kernel said right after, and what it meant.

use super::narrate::{self, CallView};
use super::tcp::Step;
use super::{Change, Endpoint, Tracker, REMEMBER_AFTER_CLOSE};
use crate::engine::call::{Call, How, Opt};
use crate::engine::event::{Body, Proto, Source, TcpState};
use crate::engine::evidence::{CallRecord, Errno, SocketId, Who};
use crate::engine::labels::canonical;

impl Tracker {
    pub(super) fn call(&mut self, t: f64, who: &Who, mut rec: CallRecord) {
        let Some(id) = self.ensure(who) else {
            // A call on no socket of ours (getaddrinfo).
            let why = narrate::why(&CallView::bare(&rec.call, &rec.result, who.side, who.proto));
            let body = self.syscall_body(&rec, why, who.fd);
            // A call whose meaning the tracer gave (the close of one
            // descriptor of a socket that stays open) moves no stage: it
            // takes the one its connection has reached.
            let stage = match rec.shown.as_ref().and_then(|s| s.why.as_ref()) {
                Some(_) => crate::engine::event::Stage::Listen,
                None => rec
                    .call
                    .stage(who.side == crate::engine::event::Side::Server),
            };
            return self.tell(t, who, stage, body);
        };
        if self.repeated(id, t, &rec) {
            return;
        }
        if rec.call == Call::Accept {
            return self.accepted(t, id, who, rec);
        }
        self.remember(id, who, &rec);
        if who.proto == Proto::Udp {
            return self.udp_call(t, id, who, rec);
        }
        if matches!((&rec.call, &rec.result), (Call::Recv(_), Ok(0))) {
            // recv() = 0: the peer's FIN came (unless we shut reading ourselves).
            if let Some(ep) = self.eps.get_mut(&id).filter(|ep| !ep.shut_rd) {
                ep.fin_in = true;
                ep.fin_in_at.get_or_insert(t);
            }
        }
        let (pre, post) = implied(&rec, &self.eps[&id]);
        let before = self.apply(id, t, &pre);
        let state_before = before.last().map_or(self.eps[&id].state, |c| c.to);
        let mut after = self.apply_from(id, t, state_before, &post, &rec);
        if let Some(sample) = &rec.sample {
            // The kernel's answer settles both lists: confirm or correct.
            let mut all = before;
            let mut split = all.len();
            all.append(&mut after);
            if !self.reachable(id, all.last().map(|c| c.to), sample) {
                // The steps the call implies do not lead where the kernel
                // is (the peer's FIN came first, unseen): the kernel's word,
                // and the RFC's path to it, stand instead. All after the call.
                all.clear();
                split = 0;
            }
            let mut all = self.correct(id, t, sample, all);
            after = all.split_off(split.min(all.len()));
            self.tell_changes(id, all);
        } else {
            self.tell_changes(id, before);
        }
        let body = self.explained(id, t, &rec, state_before, &after);
        let stage = self.call_stage(&rec, id);
        self.tell(t, who, stage, body);
        self.tell_data(t, who, &mut rec);
        self.tell_changes(id, after);
        if matches!(rec.call, Call::Close) {
            self.forget_at.push_back((t + REMEMBER_AFTER_CLOSE, id));
        }
    }

    /// What a call tells about the socket that later evidence needs: it is
    /// a listener, a UDP socket, it aborts on close, it defers accepts.
    fn remember(&mut self, id: SocketId, who: &Who, rec: &CallRecord) {
        let ok = rec.result.is_ok();
        let udp = who.proto == Proto::Udp;
        if udp && !self.udp.contains(&id) {
            self.udp.push(id);
        }
        let Some(ep) = self.eps.get_mut(&id) else {
            return;
        };
        match &rec.call {
            Call::SetSockOpt(Opt::Linger(Some(d))) if ok => ep.linger0 = d.is_zero(),
            Call::SetSockOpt(Opt::DeferAccept(s)) if ok => ep.defer_accept = *s > 0,
            Call::SetSockOpt(Opt::RecvTimeout(d) | Opt::SendTimeout(d)) if ok => {
                ep.timeout = d.is_some()
            }
            Call::NonBlocking(on) if ok => ep.nonblocking = *on,
            Call::Shutdown(How::Read | How::Both) if ok => ep.shut_rd = true,
            Call::Listen(_) if ok => {
                ep.listener = true;
                self.listeners.push(id);
            }
            _ => {}
        }
    }

    /// Can the socket go from `end` (the state the implied steps reach, or
    /// its own) to the state in `sample`, by the RFC's steps?
    fn reachable(
        &self,
        id: SocketId,
        end: Option<TcpState>,
        sample: &crate::engine::evidence::Sample,
    ) -> bool {
        let Some(ep) = self.eps.get(&id) else {
            return true;
        };
        let end = end.unwrap_or(ep.state);
        let seen = sample.state.unwrap_or(TcpState::Closed);
        let any = super::tcp::Facts {
            our_fin: true,
            their_fin: true,
        };
        // A sample behind the implied state is stale (see `correct`);
        // CLOSED is never behind: it is where every connection ends.
        let behind = seen != TcpState::Closed && super::tcp::path(seen, end, any).is_some();
        seen == end
            || behind
            || super::tcp::path(end, seen, any).is_some()
            || (seen == TcpState::Closed && (ep.reset || ep.linger0 || end == TcpState::SynSent))
    }

    /// accept(): the connection the kernel finished (maybe long ago, seen
    /// in the packets) becomes a socket of the program's.
    fn accepted(&mut self, t: f64, listener: SocketId, who: &Who, rec: CallRecord) {
        let Some(child) = rec.child.clone() else {
            let fd = self.eps.get(&listener).and_then(|ep| ep.fd);
            let body = self.syscall_body(&rec, None, fd);
            return self.tell(t, who, crate::engine::event::Stage::Confirm, body);
        };
        let child_id = child.socket.expect("an accepted socket has an id");
        // The connection may be known already, from its SYN on the wire.
        if let (Some(local), Some(remote)) = (child.local, child.remote) {
            let key = (canonical(local), canonical(remote));
            if let Some(pending) = self.by_pair.get(&key).copied() {
                if let Some(ep) = self.eps.remove(&pending) {
                    self.eps.insert(child_id, ep);
                    self.by_pair.insert(key, child_id);
                }
            }
        }
        self.eps.entry(child_id).or_insert_with(|| {
            // Not seen on the wire: born now, from what accept() says.
            let mut ep = Endpoint::new(&child);
            ep.state = TcpState::Listen;
            ep
        });
        self.ensure(&child);
        let ep = self.eps.get_mut(&child_id).expect("just made");
        ep.fd = child.fd;
        ep.parent = Some(listener);
        // What made accept() return: the handshake, done before it.
        // accept() returned it: its handshake was complete. What was not
        // seen on the wire is filled in, and the kernel's sample says the rest.
        let handshake = self.apply(child_id, t, &[Step::SynIn, Step::AckIn]);
        let mut changes = match &rec.sample {
            Some(sample) => self.correct(child_id, t, sample, handshake),
            None => handshake,
        };
        // Read right after accept() returned, but true before it did.
        for change in &mut changes {
            change.t = change.t.min(t);
        }
        self.tell_changes(child_id, changes);
        let queued_for = self.eps[&child_id].established_at.map(|at| t - at);
        let view = CallView {
            queued_for,
            ..self.view_of(child_id, &rec, TcpState::Listen, t)
        };
        let body = self.syscall_body(&rec, narrate::why(&view), self.eps[&listener].fd);
        let stage = crate::engine::event::Stage::Confirm;
        self.tell(t, &child, stage, body);
    }

    /// UDP: no states, no handshake; the call and its bytes.
    fn udp_call(&mut self, t: f64, id: SocketId, who: &Who, mut rec: CallRecord) {
        let view = self.view_of(id, &rec, TcpState::Closed, t);
        let body = self.syscall_body(&rec, narrate::why(&view), who.fd);
        let stage = rec
            .call
            .stage(who.side == crate::engine::event::Side::Server);
        self.tell(t, who, stage, body);
        self.tell_data(t, who, &mut rec);
        if matches!(rec.call, Call::Close) {
            self.forget_at.push_back((t + REMEMBER_AFTER_CLOSE, id));
        }
    }

    /// Applies steps from the socket's current state; returns the changes.
    fn apply(&mut self, id: SocketId, t: f64, steps: &[Step]) -> Vec<Change> {
        let from = self.eps[&id].state;
        self.apply_steps(id, t, from, steps)
    }

    fn apply_from(
        &mut self,
        id: SocketId,
        t: f64,
        from: TcpState,
        steps: &[Step],
        rec: &CallRecord,
    ) -> Vec<Change> {
        let mut changes = self.apply_steps(id, t, from, steps);
        // An abortive close ends the connection at once, whatever it was in.
        if matches!(rec.call, Call::Close) && steps.contains(&Step::Reset) {
            if let Some(last) = changes.last_mut() {
                last.detail = Some(crate::t!(
                    "aborted: no FIN, no TIME-WAIT",
                    "中止：没有 FIN，也没有 TIME-WAIT"
                ));
            }
        }
        changes
    }

    fn apply_steps(
        &mut self,
        id: SocketId,
        t: f64,
        mut state: TcpState,
        steps: &[Step],
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(ep) = self.eps.get_mut(&id) else {
            return changes;
        };
        for step in steps {
            // A step that already happened (seen in the packets) is not made twice.
            if *step == Step::SynOut && ep.syn_out {
                continue;
            }
            match step {
                Step::SynOut => ep.syn_out = true,
                Step::Reset => ep.reset = true,
                Step::FinOut => {
                    ep.fin_out = true;
                    ep.fin_out_at.get_or_insert(t);
                }
                Step::FinIn => {
                    ep.fin_in = true;
                    ep.fin_in_at.get_or_insert(t);
                }
                _ => {}
            }
            if let Some(next) = super::tcp::step(state, *step) {
                changes.push(Change {
                    t,
                    to: next,
                    source: Source::Inferred,
                    via: None,
                    detail: None,
                });
                state = next;
            }
        }
        changes
    }

    /// The stage a call is told in: its own, or its connection's if later.
    fn call_stage(&self, rec: &CallRecord, id: SocketId) -> crate::engine::event::Stage {
        use crate::engine::event::Stage;
        let ep = &self.eps[&id];
        let server = ep.side == crate::engine::event::Side::Server;
        match (&rec.call, &rec.result) {
            (Call::Recv(_), Ok(0)) => Stage::Close,
            // No answer: the request is all there was.
            (Call::Poll { out: true, .. }, Ok(0)) => Stage::Request,
            (Call::Recv(_) | Call::Send(_), Err(e)) if e.is_reset() => Stage::Close,
            (Call::Close, _) if ep.listener => Stage::Close,
            (call, _) if ep.listener => call.stage(true).min(Stage::Listen).max(Stage::Listen),
            (call, _) => call.stage(server),
        }
    }

    /// The syscall event, with its explanation chosen from the evidence.
    fn explained(
        &self,
        id: SocketId,
        t: f64,
        rec: &CallRecord,
        before: TcpState,
        after: &[Change],
    ) -> Body {
        let ep = &self.eps[&id];
        let started = t - rec.took - 1e-6;
        // The state the call found: packets may have moved it while it ran.
        let found = if ep.captured {
            ep.state_at(started)
        } else {
            before
        };
        let mut view = self.view_of(id, rec, found, t);
        view.after = after.last().map_or(before, |c| c.to);
        // The path just deduced may show the peer closed first.
        view.peer_first |= after.iter().any(|c| c.to == TcpState::CloseWait);
        view.sent = ep
            .last_sent
            .filter(|(at, _)| *at >= started)
            .map(|(_, kind)| kind);
        let fd = ep.fd;
        self.syscall_body(rec, narrate::why(&view), fd)
    }

    fn view_of<'a>(
        &'a self,
        id: SocketId,
        rec: &'a CallRecord,
        before: TcpState,
        t: f64,
    ) -> CallView<'a> {
        let ep = &self.eps[&id];
        // When the call was made (its record is stamped when it returned).
        let started = t - rec.took - 1e-6;
        CallView {
            call: &rec.call,
            result: &rec.result,
            side: ep.side,
            proto: ep.proto,
            label: ep.label.as_deref(),
            local: ep.local,
            before,
            after: ep.state,
            sent: None,
            captured: ep.captured,
            fin_before: ep.fin_out_at.is_some_and(|at| at < started),
            // A socket accept() returned was connected, whatever its state now.
            never_connected: !ep.syn_out && !ep.listener && ep.parent.is_none(),
            their_fin: ep.fin_in,
            peer_first: ep.peer_closed_first(),
            reset: ep.reset,
            linger0: ep.linger0,
            nonblocking: ep.nonblocking,
            timeout: ep.timeout,
            shut_rd: ep.shut_rd,
            unread: rec.unread,
            queue: rec.sample.as_ref().and_then(|s| s.queue),
            queued_for: None,
        }
    }

    fn syscall_body(&self, rec: &CallRecord, why: Option<String>, fd: Option<i64>) -> Body {
        let (ok, ret, error) = match &rec.result {
            Ok(ret) => (true, Some(*ret), None),
            Err(e) => (false, Some(-1), Some(e.text.clone())),
        };
        let (call, args, syscall) = match &rec.shown {
            Some(shown) => (shown.name, shown.args.clone(), None),
            None => (rec.call.name(), rec.call.args(), rec.call.syscall()),
        };
        let fd = fd.filter(|_| !rec.shown.as_ref().is_some_and(|s| s.no_fd));
        let why = rec.shown.as_ref().and_then(|s| s.why.clone()).or(why);
        Body::Syscall {
            call,
            fd,
            args,
            ok,
            ret,
            error,
            syscall,
            took: rec.took,
            why,
        }
    }

    fn tell_data(&mut self, t: f64, who: &Who, rec: &mut CallRecord) {
        if let Some(data) = rec.data.take() {
            let body = Body::Data {
                dir: data.dir,
                bytes: data.bytes,
                text: data.text,
                cut: data.cut,
            };
            self.tell(t, who, crate::engine::event::Stage::Transfer, body);
        }
    }

    /// A failed call just like the one before it on this socket (a timeout
    /// in a loop, accept() at the descriptor limit): counted, not told
    /// again. True when it was.
    fn repeated(&mut self, id: SocketId, t: f64, rec: &CallRecord) -> bool {
        let failure = rec
            .result
            .as_ref()
            .err()
            .map(|e| (rec.call.name(), e.text.clone()));
        let Some(ep) = self.eps.get_mut(&id) else {
            return false;
        };
        if let (Some(run), Some(now)) = (&mut ep.repeat, &failure) {
            if (run.call, &run.error) == (now.0, &now.1) {
                run.count += 1;
                run.last = t;
                return true;
            }
        }
        let ended = std::mem::replace(
            &mut ep.repeat,
            failure.map(|(call, error)| super::Repeat {
                call,
                error,
                count: 0,
                last: t,
            }),
        );
        if let Some(run) = ended.filter(|run| run.count > 0) {
            let who = ep.who(id);
            let (call, n) = (run.call, run.count);
            let error = run.error.split(':').next().unwrap_or("").to_string();
            let mut facts = serde_json::Map::new();
            facts.insert("repeated".into(), n.into());
            facts.insert("call".into(), call.into());
            facts.insert("until".into(), ((run.last * 1e6).round() / 1e6).into());
            let text = crate::t!(
                "{call}() returned -1 {error} {n} more times, the same way",
                "{call}() 又以同样的方式返回了 {n} 次 -1 {error}"
            );
            let stage = rec
                .call
                .stage(ep.side == crate::engine::event::Side::Server);
            let body = Body::Note {
                topic: "repeated",
                text,
                facts,
            };
            // Told now, when the run has ended (its last was at `run.last`).
            self.tell(t, &who, stage, body);
        }
        false
    }
}

/// The steps a call implies: those that made it return (before it), and
/// those it caused (after it).
fn implied(rec: &CallRecord, ep: &Endpoint) -> (Vec<Step>, Vec<Step>) {
    let err = rec.result.as_ref().err();
    let refused = err.is_some_and(|e| e.kind == std::io::ErrorKind::ConnectionRefused);
    let pre = match (&rec.call, &rec.result) {
        (Call::Connect(_), Ok(_)) => vec![Step::SynOut, Step::SynAckIn],
        (Call::Connect(_), Err(_)) if refused => vec![Step::SynOut, Step::Reset],
        (Call::GetSoError(None), Ok(_)) => vec![Step::SynOut, Step::SynAckIn],
        (Call::GetSoError(Some(e)), Ok(_)) if e == "ECONNREFUSED" => {
            vec![Step::SynOut, Step::Reset]
        }
        (Call::Recv(_), Ok(0)) if !ep.shut_rd && ep.state != TcpState::FinWait1 => {
            vec![Step::FinIn]
        }
        (Call::Recv(_) | Call::Send(_), Err(e)) if e.is_reset() => vec![Step::Reset],
        _ => Vec::new(),
    };
    let post = match (&rec.call, &rec.result) {
        (Call::Listen(_), Ok(_)) => vec![Step::Listen],
        (Call::Connect(_), Err(e)) if !refused && is_in_progress(e) => vec![Step::SynOut],
        (Call::Shutdown(How::Write | How::Both), Ok(_)) => vec![Step::FinOut],
        (Call::Close, _) if ep.listener => Vec::new(),
        (Call::Close, _) if ep.linger0 || rec.unread.is_some_and(|n| n > 0) => vec![Step::Reset],
        (Call::Close, _) => vec![Step::FinOut],
        _ => Vec::new(),
    };
    (pre, post)
}

fn is_in_progress(e: &Errno) -> bool {
    #[cfg(unix)]
    {
        e.code == Some(libc::EINPROGRESS) || e.kind == std::io::ErrorKind::WouldBlock
    }
    #[cfg(not(unix))]
    {
        e.kind == std::io::ErrorKind::WouldBlock
    }
}
