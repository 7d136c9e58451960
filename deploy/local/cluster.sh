#!/usr/bin/env bash
# A three-node gossamer cluster on 127.0.0.1, started from node1.toml, node2.toml and
# node3.toml beside this script (one datacenter per node). Everything it creates lives in
# deploy/local/run/ (ignored by git): certificates, data, logs and pid files.
#
#   deploy/local/cluster.sh start    certificates (first time), then the three nodes
#   deploy/local/cluster.sh check    waits until every node sees 3 alive members and a key
#                                    written on node1 is read on node3; prints the status
#   deploy/local/cluster.sh status   members and status as seen by node1
#   deploy/local/cluster.sh stop     SIGTERM (the nodes leave gracefully), then waits
#   deploy/local/cluster.sh clean    stop, then delete run/
#
# The binary: $GOSSAMER_BIN, else target/release/gossamer of this repository, else
# `gossamer` on PATH. Ports: QUIC 27101-27103/udp, admin API 27201-27203/tcp (loopback).
# Every wait has a deadline ($GOSSAMER_CHECK_TIMEOUT seconds for `check`, default 60).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="$here/run"
nodes=(node1 node2 node3)
admin_of() { echo "127.0.0.1:2720${1#node}"; }

bin="${GOSSAMER_BIN:-}"
if [ -z "$bin" ]; then
  if [ -x "$repo/target/release/gossamer" ]; then
    bin="$repo/target/release/gossamer"
  elif command -v gossamer >/dev/null 2>&1; then
    bin="$(command -v gossamer)"
  else
    echo "no gossamer binary: run 'cargo build --release' first, or set GOSSAMER_BIN" >&2
    exit 2
  fi
fi
case "$bin" in /*) ;; *) bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" ;; esac

# The pid recorded for a node, if that process is still a gossamer node.
live_pid() {
  local f="$run/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "run --config $1.toml" || return 1
  echo "$pid"
}

alive_count() {
  "$bin" members --admin "$(admin_of "$1")" --json 2>/dev/null | grep -c '"status": "alive"' || true
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 200 ms until it succeeds.
wait_until() {
  local secs="$1" what="$2"
  shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "timed out after ${secs}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

start() {
  mkdir -p "$run/certs" "$run/data"
  if [ ! -f "$run/certs/ca.pem" ]; then
    echo "creating a CA and node certificates in $run/certs"
    "$bin" certs init --dir "$run/certs" --cluster local >/dev/null
  fi
  for n in "${nodes[@]}"; do
    [ -f "$run/certs/$n.pem" ] || "$bin" certs issue --dir "$run/certs" --node "$n" --ip 127.0.0.1 >/dev/null
  done
  cd "$here"
  for n in "${nodes[@]}"; do
    "$bin" run --check --config "$n.toml" >/dev/null
  done
  for n in "${nodes[@]}"; do
    if pid="$(live_pid "$n")"; then
      echo "$n already running (pid $pid)"
      continue
    fi
    NO_COLOR=1 nohup "$bin" run --config "$n.toml" >"$run/$n.log" 2>&1 </dev/null &
    echo $! >"$run/$n.pid"
    echo "$n started (pid $!, admin $(admin_of "$n"), log $run/$n.log)"
  done
  for n in "${nodes[@]}"; do
    if ! wait_until 20 "$n's admin API" "$bin" status --admin "$(admin_of "$n")" >/dev/null 2>&1; then
      tail -n 20 "$run/$n.log" >&2 || true
      exit 1
    fi
  done
  echo "cluster started; next: $0 check"
}

all_alive() {
  local n
  for n in "${nodes[@]}"; do
    [ "$(alive_count "$n")" = "${#nodes[@]}" ] || return 1
  done
}

replicated() {
  [ "$("$bin" kv get local/check --admin "$(admin_of node3)" 2>/dev/null)" = "$1" ]
}

check() {
  local timeout="${GOSSAMER_CHECK_TIMEOUT:-60}" n
  for n in "${nodes[@]}"; do
    live_pid "$n" >/dev/null || { echo "$n is not running (start it with: $0 start)" >&2; exit 1; }
  done
  if ! wait_until "$timeout" "3 alive members on every node" all_alive; then
    for n in "${nodes[@]}"; do echo "$n sees $(alive_count "$n") alive" >&2; done
    exit 1
  fi
  echo "all ${#nodes[@]} nodes see ${#nodes[@]} alive members"
  local value="written at $(date +%s%N)"
  "$bin" kv set local/check "$value" --admin "$(admin_of node1)"
  wait_until "$timeout" "the key written on node1 to reach node3" replicated "$value"
  echo "a key written on node1 was read on node3"
  "$bin" status --admin "$(admin_of node1)"
}

status() {
  "$bin" members --admin "$(admin_of node1)"
  echo
  "$bin" status --admin "$(admin_of node1)"
}

stop() {
  local n pid
  for n in "${nodes[@]}"; do
    if pid="$(live_pid "$n")"; then
      kill -TERM "$pid"
      if ! wait_until 15 "$n (pid $pid) to exit" eval "! kill -0 $pid 2>/dev/null"; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
      echo "$n stopped"
    fi
    rm -f "$run/$n.pid"
  done
}

case "${1:-}" in
  start) start ;;
  check) check ;;
  status) status ;;
  stop) stop ;;
  clean) stop; rm -rf "$run"; echo "removed $run" ;;
  *)
    echo "usage: $0 start|check|status|stop|clean" >&2
    exit 2
    ;;
esac
