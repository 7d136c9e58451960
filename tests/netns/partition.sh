#!/usr/bin/env bash
# Kernel-level fault test for gossamer (DESIGN.md section 7).
#
# Five `gossamer run` processes, each in its own network namespace, joined by a bridge that
# lives in a sixth namespace (the root namespace is never touched). Faults are injected with
# nftables (or iptables) inside the node namespaces: the kernel has no netem.
#
#   phase 1  all 5 nodes see 5 members alive
#   phase 2  20% random loss on every namespace; writes on several nodes; all nodes get all keys
#   phase 3  loss removed; full partition {1,2} | {3,4,5} for ~10 s with writes on both sides,
#            including the same key on both sides
#   phase 4  heal; every node has every key, all agree on the shared key, all see 5 alive
#
# Usage: tests/netns/partition.sh [PATH_TO_GOSSAMER]   (or $GOSSAMER_BIN;
#        default: target/release/gossamer under the repository root)
# Needs: root, iproute2 (`ip`), nftables (`nft`) or iptables. Otherwise prints `SKIP: ...`, exit 0.
# Result: `PASS` (exit 0) or `FAIL: <reason>` (exit 1) with the tail of every node's log.

set -uo pipefail
export LC_ALL=C

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-${GOSSAMER_BIN:-$REPO_ROOT/target/release/gossamer}}"

N=5
SUBNET=10.213.0                # private /24, only ever configured inside our namespaces
PORT=7946                      # QUIC listen port (per namespace)
ADMIN=127.0.0.1:7947           # admin API on each namespace's own loopback
LOSS_PCT=20
PARTITION_SECS=10
PREFIX="gsm-$$"
BRNS="$PREFIX-br"

skip() { echo "SKIP: $*"; exit 0; }

# ---------------------------------------------------------------- prerequisites
[[ $(id -u) -eq 0 ]] || skip "must run as root (network namespaces and nftables/iptables)"
command -v ip >/dev/null 2>&1 || skip "'ip' (iproute2) not found"
FW="${GSM_FW:-}"             # GSM_FW=nft|iptables forces one; default: nft if present
if [[ -n $FW ]]; then
    [[ $FW == nft || $FW == iptables ]] || skip "GSM_FW must be nft or iptables, not '$FW'"
    command -v "$FW" >/dev/null 2>&1 || skip "GSM_FW=$FW requested but '$FW' not found"
elif command -v nft >/dev/null 2>&1; then
    FW=nft
elif command -v iptables >/dev/null 2>&1; then
    FW=iptables
else
    skip "neither 'nft' (nftables) nor 'iptables' found"
fi
[[ -x "$BIN" ]] || skip "gossamer binary not found or not executable at $BIN (build with cargo build --release, or pass its path / set GOSSAMER_BIN)"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
# Probe that namespaces can actually be created here (e.g. not inside an unprivileged container).
if ! ip netns add "$PREFIX-probe" 2>/dev/null; then
    skip "cannot create network namespaces (ip netns add failed)"
fi
if [[ $FW == nft ]]; then
    ip netns exec "$PREFIX-probe" nft add table inet gsmprobe 2>/dev/null || { ip netns del "$PREFIX-probe"; skip "nft cannot create tables in a namespace (nf_tables unavailable?)"; }
else
    ip netns exec "$PREFIX-probe" iptables -m statistic --mode random --probability 0.5 -A INPUT -i lo -j ACCEPT 2>/dev/null \
        || { ip netns del "$PREFIX-probe"; skip "iptables cannot add rules with -m statistic in a namespace"; }
fi
ip netns del "$PREFIX-probe"

# ---------------------------------------------------------------- state and cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/gossamer-netns.XXXXXX")"
declare -a PIDS=()
CREATED_NS=()
START_NS=$(date +%s%N)

ns() { echo "$PREFIX-$1"; }
addr() { echo "$SUBNET.$1"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    # Give nodes a moment to leave, then make sure nothing survives in our namespaces.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.2
    done
    for n in "${CREATED_NS[@]}"; do
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for n in "${CREATED_NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM

elapsed() {
    local now=$(date +%s%N)
    printf '%6.1fs' "$(( (now - START_NS) / 1000000 ))e-3"
}
log() { echo "[$(elapsed)] $*"; }

fail() {
    echo "FAIL: $*"
    for i in $(seq 1 $N); do
        echo "----- node n$i log (tail) : $TMP/n$i.log -----"
        tail -n 40 "$TMP/n$i.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g'    # strip colours
    done
    exit 1
}

run_in() { local i=$1; shift; ip netns exec "$(ns "$i")" "$@"; }
g() { local i=$1; shift; run_in "$i" timeout 3 "$BIN" "$@" --admin "$ADMIN"; }

# wait_until SECS CMD...: poll CMD every 0.5 s until it succeeds (0) or SECS have passed (1).
wait_until() {
    local secs=$1; shift
    local end=$(( $(date +%s) + secs ))
    while :; do
        "$@" && return 0
        (( $(date +%s) >= end )) && return 1
        sleep 0.5
    done
}

# ---------------------------------------------------------------- firewall helpers
# Every node namespace gets a table `gsm` with chains `loss` and `part` jumped to from the
# input and output hooks for traffic on eth0 only (loopback, i.e. the admin API, is never hit).
fw_init() {
    local i=$1
    if [[ $FW == nft ]]; then
        run_in "$i" nft -f - <<EOF
table inet gsm {
    chain loss { }
    chain part { }
    chain input {
        type filter hook input priority 0; policy accept;
        iifname "eth0" jump part
        iifname "eth0" jump loss
    }
    chain output {
        type filter hook output priority 0; policy accept;
        oifname "eth0" jump part
    }
}
EOF
    else
        run_in "$i" iptables -N GSM_LOSS
        run_in "$i" iptables -N GSM_PART
        run_in "$i" iptables -A INPUT -i eth0 -j GSM_PART
        run_in "$i" iptables -A INPUT -i eth0 -j GSM_LOSS
        run_in "$i" iptables -A OUTPUT -o eth0 -j GSM_PART
    fi
}

# Random loss on ingress of every namespace: each packet crosses exactly one receiver, so the
# end-to-end loss per packet is LOSS_PCT.
fw_loss_on() {
    local i=$1 pct=$2
    if [[ $FW == nft ]]; then
        run_in "$i" nft add rule inet gsm loss numgen random mod 100 '<' "$pct" counter drop
    else
        run_in "$i" iptables -A GSM_LOSS -m statistic --mode random --probability "$(awk -v p="$pct" 'BEGIN { printf "%.2f", p / 100 }')" -j DROP
    fi
}
fw_loss_off() {
    local i=$1
    if [[ $FW == nft ]]; then run_in "$i" nft flush chain inet gsm loss
    else run_in "$i" iptables -F GSM_LOSS; fi
}
# Packets dropped so far by the rules of one chain (loss|part), summed over all namespaces.
fw_dropped() {
    local chain=$1 i total=0 c
    for i in $(seq 1 $N); do
        if [[ $FW == nft ]]; then
            c=$(run_in "$i" nft list chain inet gsm "$chain" | grep -oE 'packets [0-9]+' | awk '{s+=$2} END {print s+0}')
        else
            local ch=GSM_LOSS; [[ $chain == part ]] && ch=GSM_PART
            c=$(run_in "$i" iptables -L "$ch" -nvx | awk 'NR>2 {s+=$1} END {print s+0}')
        fi
        total=$(( total + c ))
    done
    echo "$total"
}
# Drop everything to and from the given peers.
fw_block() {
    local i=$1; shift
    local p
    for p in "$@"; do
        if [[ $FW == nft ]]; then
            run_in "$i" nft add rule inet gsm part ip saddr "$(addr "$p")" counter drop
            run_in "$i" nft add rule inet gsm part ip daddr "$(addr "$p")" counter drop
        else
            run_in "$i" iptables -A GSM_PART -s "$(addr "$p")" -j DROP
            run_in "$i" iptables -A GSM_PART -d "$(addr "$p")" -j DROP
        fi
    done
}
fw_unblock() {
    local i=$1
    if [[ $FW == nft ]]; then run_in "$i" nft flush chain inet gsm part
    else run_in "$i" iptables -F GSM_PART; fi
}

# ---------------------------------------------------------------- checks
# Number of members with status "alive" that node i reports.
alive_count() {
    local out
    out=$(g "$1" members --json 2>/dev/null) || { echo 0; return; }
    grep -oE '"status"[[:space:]]*:[[:space:]]*"alive"' <<<"$out" | wc -l
}
all_see_alive() {
    local want=$1 i c
    for i in $(seq 1 $N); do
        c=$(alive_count "$i")
        [[ $c -eq $want ]] || { LAST="n$i sees $c alive"; return 1; }
    done
    return 0
}

# EXPECT: lines "key=value" that every node must hold.
declare -a EXPECT=()
write() {  # write NODE KEY VALUE
    g "$1" kv set "$2" "$3" >/dev/null 2>>"$TMP/cli.err" || fail "kv set $2 on n$1 failed: $(tail -n 3 "$TMP/cli.err")"
}
node_has_all() {
    local i=$1 list kv
    list=$(g "$i" kv list 2>/dev/null) || { LAST="kv list on n$i failed"; return 1; }
    for kv in "${EXPECT[@]}"; do
        grep -qxF -- "$kv" <<<"$list" || { LAST="n$i lacks $kv"; return 1; }
    done
    return 0
}
all_have_all() {
    local i
    for i in $(seq 1 $N); do node_has_all "$i" || return 1; done
    return 0
}
# All nodes hold the same value for KEY, and it is one of the written values.
shared_agrees() {
    local key=$1; shift
    local i v first=""
    for i in $(seq 1 $N); do
        v=$(g "$i" kv get "$key" 2>/dev/null) || { LAST="n$i lacks $key"; return 1; }
        [[ -z $first ]] && first=$v
        [[ $v == "$first" ]] || { LAST="n1..n$i disagree on $key: '$first' vs '$v'"; return 1; }
    done
    local ok=1 w
    for w in "$@"; do [[ $first == "$w" ]] && ok=0; done
    [[ $ok -eq 0 ]] || { LAST="$key = '$first' is none of the written values"; return 1; }
    SHARED_VALUE=$first
    return 0
}
healed() { all_have_all && shared_agrees shared "$@" && all_see_alive $N; }

# ---------------------------------------------------------------- setup
log "setup: binary $BIN, firewall $FW, namespaces $PREFIX-{br,1..$N}, subnet $SUBNET.0/24, tmp $TMP"

ip netns add "$BRNS" || fail "ip netns add $BRNS"
CREATED_NS+=("$BRNS")
ip -n "$BRNS" link set lo up
ip -n "$BRNS" link add br0 type bridge || fail "cannot create bridge"
ip -n "$BRNS" link set br0 up

for i in $(seq 1 $N); do
    n=$(ns "$i")
    ip netns add "$n" || fail "ip netns add $n"
    CREATED_NS+=("$n")
    ip -n "$n" link set lo up
    # Created inside the bridge namespace, the peer moved straight into the node namespace.
    ip -n "$BRNS" link add "veth$i" type veth peer name eth0 netns "$n" || fail "veth for n$i"
    ip -n "$BRNS" link set "veth$i" master br0
    ip -n "$BRNS" link set "veth$i" up
    ip -n "$n" addr add "$(addr "$i")/24" dev eth0
    ip -n "$n" link set eth0 up
    fw_init "$i" || fail "firewall setup in $n"
done

CERTS="$TMP/certs"
"$BIN" certs init --dir "$CERTS" --cluster netns-test >"$TMP/certs.log" 2>&1 || { cat "$TMP/certs.log"; fail "certs init"; }
for i in $(seq 1 $N); do
    "$BIN" certs issue --dir "$CERTS" --node "n$i" --ip "$(addr "$i")" >>"$TMP/certs.log" 2>&1 \
        || { cat "$TMP/certs.log"; fail "certs issue n$i"; }
done

for i in $(seq 1 $N); do
    seeds=()
    for s in 1 3; do [[ $s -ne $i ]] && seeds+=(--seed "$(addr "$s"):$PORT"); done
    # Not through a shell function: `ip netns exec` execs env, which execs gossamer, so $! is
    # the node's own pid and SIGTERM at cleanup reaches it (a graceful leave).
    ip netns exec "$(ns "$i")" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "$BIN" run --node-id "n$i" --listen "$(addr "$i"):$PORT" \
        --admin "$ADMIN" --certs "$CERTS" "${seeds[@]}" >"$TMP/n$i.log" 2>&1 &
    PIDS+=($!)
done
log "setup: started $N nodes (pids ${PIDS[*]})"

# ---------------------------------------------------------------- phase 1
LAST=""
log "phase 1: waiting until all $N nodes see $N members alive"
wait_until 20 all_see_alive $N || fail "phase 1: membership did not converge within 20s ($LAST)"
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a node exited early (pid $pid)"; done
log "phase 1: OK, all nodes see $N alive"

# ---------------------------------------------------------------- phase 2
log "phase 2: ${LOSS_PCT}% random ingress loss on every node namespace; writing keys on n1, n3, n5"
for i in $(seq 1 $N); do fw_loss_on "$i" "$LOSS_PCT" || fail "cannot add loss rule on n$i"; done
for w in 1 3 5; do
    for k in 1 2 3 4 5; do
        write "$w" "loss/n$w/k$k" "v-$w-$k"
        EXPECT+=("loss/n$w/k$k=v-$w-$k")
        sleep 0.2            # spread the writes so they meet the loss on separate datagrams
    done
done
wait_until 30 all_have_all || fail "phase 2: keys did not converge under ${LOSS_PCT}% loss within 30s ($LAST)"
log "phase 2: OK, all nodes hold all ${#EXPECT[@]} keys under loss ($(fw_dropped loss) packets dropped by the loss rules)"
for i in $(seq 1 $N); do fw_loss_off "$i"; done

# ---------------------------------------------------------------- phase 3
A=(1 2); B=(3 4 5)
log "phase 3: loss removed; partition {${A[*]}} | {${B[*]}} for ${PARTITION_SECS}s with writes on both sides"
for i in "${A[@]}"; do fw_block "$i" "${B[@]}" || fail "partition rules on n$i"; done
for i in "${B[@]}"; do fw_block "$i" "${A[@]}" || fail "partition rules on n$i"; done
P_START=$(date +%s)
sleep 1
for w in "${A[@]}" "${B[@]}"; do
    write "$w" "part/n$w" "p-$w"
    EXPECT+=("part/n$w=p-$w")
done
write 1 shared from-A-1
write 4 shared from-B-4
sleep 2
write 2 shared from-A-2     # a later write on each side, so both sides have local history
write 5 shared from-B-5
# Sanity: the partition must really isolate. Within ~3 s the same side converges, the other not.
sleep 3
v1=$(g 1 kv get shared 2>/dev/null); v3=$(g 3 kv get shared 2>/dev/null)
g 1 kv get part/n3 >/dev/null 2>&1 && fail "phase 3: n1 received part/n3 across the partition (rules ineffective?)"
g 3 kv get part/n1 >/dev/null 2>&1 && fail "phase 3: n3 received part/n1 across the partition (rules ineffective?)"
log "phase 3: side A sees shared='$v1', side B sees shared='$v3'; no key crossed the partition"
remaining=$(( PARTITION_SECS - ($(date +%s) - P_START) ))
(( remaining > 0 )) && sleep "$remaining"
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a node exited during the partition (pid $pid)"; done
log "phase 3: OK, partition held for $(( $(date +%s) - P_START ))s ($(fw_dropped part) packets dropped by the partition rules)"

# ---------------------------------------------------------------- phase 4
log "phase 4: healing the partition; waiting for keys, agreement on 'shared' and $N alive everywhere"
for i in $(seq 1 $N); do fw_unblock "$i"; done
SHARED_VALUE=""
wait_until 45 healed from-A-1 from-B-4 from-A-2 from-B-5 \
    || fail "phase 4: cluster did not heal within 45s ($LAST)"
log "phase 4: OK, all nodes hold all ${#EXPECT[@]} keys, agree on shared='$SHARED_VALUE', see $N alive"

log "PASS"
echo "PASS"
exit 0
