#!/bin/bash
# The overhead of `sockdemo trace`: 10,000 request/response round trips of
# a Python client (docs/bench/trace_rt.py) against `sockdemo listen`,
# untraced, traced, traced with --one-cpu, and under strace -f, in turns.
# Run from the project's root after `cargo build --release`.
set -u
B=target/release/sockdemo
PORT=${PORT:-9400}
$B listen --port "$PORT" --packets off > /dev/null 2>&1 &
L=$!
trap 'kill $L 2>/dev/null' EXIT
for i in $(seq 50); do ss -ltn | grep -q ":$PORT " && break; sleep 0.1; done
for r in 1 2 3 4 5; do
  echo -n "plain     "; python3 docs/bench/trace_rt.py "$PORT"
  echo -n "trace     "; $B trace --packets off -- python3 docs/bench/trace_rt.py "$PORT" | grep -o "P› .*"
  echo -n "one-cpu   "; $B trace --one-cpu --packets off -- python3 docs/bench/trace_rt.py "$PORT" | grep -o "P› .*"
  echo -n "strace -f "; strace -f -o /dev/null python3 docs/bench/trace_rt.py "$PORT"
done
