#!/usr/bin/env bash
# Kernel-level fault test for gossamer (DESIGN.md section 7).
#
# Five `gossamer run` processes, each in its own network namespace, joined by a bridge that
# lives in a sixth namespace (the root namespace is never touched). Faults are injected with
# nftables (or iptables) inside the node namespaces: the kernel has no netem.
#
#   phase 1  all 5 nodes see 5 members alive
#   phase 2  20% random loss on every namespace; writes on several nodes; all nodes get all keys
#   phase 3  loss removed, all 5 alive again; full partition {1,2} | {3,4,5} with writes on
#            both sides (including the same key on both sides), held until each side has
#            declared the other dead AND reaped it (its ids gone from `members --json`), and
#            for at least PARTITION_SECS
#   phase 4  heal; the halves, which have forgotten each other, re-merge only through seed
#            re-probing: within HEAL_SECS every node has every key, all agree on the shared
#            key, all see 5 alive
#
# The nodes run from a TOML file (`gossamer run --config`) with fast SWIM timings (probe
# 500 ms, suspicion 1 s, reap 5 s, seed backoff 0.5..4 s), so that a ~15 s partition outlasts
# the reap timeout. The measured times (death, reap, re-merge) are printed.
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
PARTITION_SECS=15              # the partition lasts at least this long, and until both sides reaped
DOWN_WAIT_SECS=30              # each side must declare the other dead within this of the partition
REAP_WAIT_SECS=15              # ...and reap it within this of that (reap timeout 5 s, checked
                               # every 1.25 s): counted from the deaths, as the reap timeout is,
                               # since an unconfirmed suspicion is stretched by the accuser's
                               # local health (Lifeguard) and deaths come 5 to 25 s in
HEAL_SECS=20                   # deadline for the re-merge after the heal: a dial across the line
                               # hangs until the 10 s QUIC handshake timeout, then backoff <= 4 s
# SWIM timings of every node (the [gossip] table of its config file).
PROBE_MS=500
PROBE_TIMEOUT_MS=250
SUSPICION_MULT=2               # suspicion timeout 2 * max(1, log10 5) * 500 ms = 1 s
REAP_MS=5000                   # the engine looks for reapable members every 5 s: reaped 5..10 s after death
SEED_FLOOR_MS=500
SEED_CAP_MS=4000
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
# "id:status" of the members among IDS... that node i still lists (empty: all reaped), or
# "?" if its admin API did not answer.
listed_among() {
    local i=$1; shift
    local out
    out=$(g "$i" members --json 2>/dev/null) || { echo "?"; return; }
    awk -F'"' -v want=" $* " '
        $2 == "id"     { id = $4 }
        $2 == "status" { if (index(want, " " id " ")) printf "%s:%s ", id, $4 }' <<<"$out"
}
# side_sees_other "1 2" "3 4 5" reaped|down: every node of the first side no longer lists
# any node of the second (reaped), or lists them as dead at most (down).
side_sees_other() {
    local mine=$1 other=$2 how=$3 i j l
    local -a ids=()
    for j in $other; do ids+=("n$j"); done
    for i in $mine; do
        l=$(listed_among "$i" "${ids[@]}")
        if [[ $how == reaped ]]; then
            [[ -z $l ]] || { LAST="n$i still lists: $l"; return 1; }
        else
            [[ $l != *"?"* && $l != *:alive* && $l != *:suspect* ]] || { LAST="n$i lists: $l"; return 1; }
        fi
    done
    return 0
}
halves_see_each_other() {  # halves_see_each_other reaped|down
    side_sees_other "${A[*]}" "${B[*]}" "$1" && side_sees_other "${B[*]}" "${A[*]}" "$1"
}
# Prometheus counter NAME of node i (empty if unavailable: no curl, or no answer).
metric() {
    run_in "$1" curl -s --max-time 2 "http://$ADMIN/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'
}
metrics_line() {
    local i r="" s=""
    command -v curl >/dev/null 2>&1 || { echo "(no curl: counters unavailable)"; return; }
    for i in $(seq 1 $N); do
        r+=" $(metric "$i" gossamer_refutations_total)"
        s+=" $(metric "$i" gossamer_seed_attempts_total)"
    done
    echo "refutations n1..n$N:$r; seed attempts n1..n$N:$s"
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
secs() { printf '%d.%ds' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }   # ms -> "12.3s"

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

# Seeds: every node seeds n1 AND n3 (but not itself), one node on each side of the partition
# below. Once the halves have reaped each other, nobody probes, gossips to or syncs with the
# forgotten half any more; the only way back is a node dialing a configured seed that is not
# a live member (backoff SEED_FLOOR_MS..SEED_CAP_MS) and joining through it, after which the
# members the other side reaped are told they are dead and refute with a higher incarnation.
# With n1 as the only seed, side {1,2} would never re-contact side {3,4,5}: n1 has no seed
# but itself and n2's seed (n1) stays live; the merge would hang on side B's dials to n1
# alone (and never happen if n1 were down). With a seed on each side, both halves dial.
for i in $(seq 1 $N); do
    seeds=""
    for s in 1 3; do [[ $s -ne $i ]] && seeds+="${seeds:+, }\"$(addr "$s"):$PORT\""; done
    cat >"$TMP/n$i.toml" <<TOML
node_id = "n$i"
listen = "$(addr "$i"):$PORT"
admin = "$ADMIN"
certs = "$CERTS"
seeds = [$seeds]

[gossip]
probe_interval_ms = $PROBE_MS
probe_timeout_ms = $PROBE_TIMEOUT_MS
suspicion_mult = $SUSPICION_MULT
reap_timeout_ms = $REAP_MS
seed_backoff_floor_ms = $SEED_FLOOR_MS
seed_backoff_cap_ms = $SEED_CAP_MS
gossip_interval_ms = 200
sync_interval_ms = 1000
TOML
    # Not through a shell function: `ip netns exec` execs env, which execs gossamer, so $! is
    # the node's own pid and SIGTERM at cleanup reaches it (a graceful leave).
    ip netns exec "$(ns "$i")" env RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 "$BIN" run --config "$TMP/n$i.toml" \
        >"$TMP/n$i.log" 2>&1 &
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
wait_until 20 all_see_alive $N || fail "phase 2: not all $N alive everywhere within 20s of removing the loss ($LAST)"
log "phase 2: loss removed, all see $N alive; $(metrics_line)"

# ---------------------------------------------------------------- phase 3
A=(1 2); B=(3 4 5)
log "phase 3: partition {${A[*]}} | {${B[*]}} until each side has reaped the other (and >= ${PARTITION_SECS}s), writes on both sides"
for i in "${A[@]}"; do fw_block "$i" "${B[@]}" || fail "partition rules on n$i"; done
for i in "${B[@]}"; do fw_block "$i" "${A[@]}" || fail "partition rules on n$i"; done
P_START=$(date +%s)
P_START_NS=$(date +%s%N)
# Each side must first declare the other dead (suspicion timeout 1 s after a failed probe)...
wait_until "$DOWN_WAIT_SECS" halves_see_each_other down \
    || fail "phase 3: the sides did not declare each other dead within ${DOWN_WAIT_SECS}s of the partition ($LAST)"
DOWN_AT=$(date +%s)
T_DOWN=$(ms_since "$P_START_NS")
log "phase 3: each side lists the other as dead (or no longer) $(secs "$T_DOWN") into the partition (first poll that saw it)"
for w in "${A[@]}" "${B[@]}"; do
    write "$w" "part/n$w" "p-$w"
    EXPECT+=("part/n$w=p-$w")
done
write 1 shared from-A-1
write 4 shared from-B-4
sleep 1
write 2 shared from-A-2     # a later write on each side, so both sides have local history
write 5 shared from-B-5
# Sanity: the partition must really isolate. Within ~2 s the same side converges, the other not.
sleep 2
v1=$(g 1 kv get shared 2>/dev/null); v3=$(g 3 kv get shared 2>/dev/null)
g 1 kv get part/n3 >/dev/null 2>&1 && fail "phase 3: n1 received part/n3 across the partition (rules ineffective?)"
g 3 kv get part/n1 >/dev/null 2>&1 && fail "phase 3: n3 received part/n1 across the partition (rules ineffective?)"
log "phase 3: side A sees shared='$v1', side B sees shared='$v3'; no key crossed the partition"
# ...and then forget it (reap) before the heal.
left=$(( REAP_WAIT_SECS - ($(date +%s) - DOWN_AT) ))
wait_until "$left" halves_see_each_other reaped \
    || fail "phase 3: the sides did not reap each other within ${REAP_WAIT_SECS}s of declaring each other dead ($LAST)"
T_REAPED=$(ms_since "$P_START_NS")
log "phase 3: each side has reaped the other (its ids absent from members --json) $(secs "$T_REAPED") into the partition (first poll that saw it)"
for i in $(seq 1 $N); do log "phase 3:   n$i lists $(listed_among "$i" n1 n2 n3 n4 n5)"; done
remaining=$(( PARTITION_SECS - ($(date +%s) - P_START) ))
(( remaining > 0 )) && sleep "$remaining"
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a node exited during the partition (pid $pid)"; done
log "phase 3: OK, partition held for $(( $(date +%s) - P_START ))s ($(fw_dropped part) packets dropped by the partition rules); $(metrics_line)"

# ---------------------------------------------------------------- phase 4
log "phase 4: healing the partition; waiting (<= ${HEAL_SECS}s) for $N alive everywhere, every key everywhere, agreement on 'shared'"
declare -a LOG_LINES=()
for i in $(seq 1 $N); do LOG_LINES[i]=$(wc -l <"$TMP/n$i.log"); done
for i in $(seq 1 $N); do fw_unblock "$i"; done
H_START=$(date +%s)
H_START_NS=$(date +%s%N)
wait_until "$HEAL_SECS" all_see_alive $N \
    || fail "phase 4: membership did not re-merge within ${HEAL_SECS}s of the heal ($LAST)"
log "phase 4: all see $N alive $(secs "$(ms_since "$H_START_NS")") after the heal (first poll that saw it)"
SHARED_VALUE=""
left=$(( HEAL_SECS - ($(date +%s) - H_START) ))
(( left < 1 )) && left=1
wait_until "$left" healed from-A-1 from-B-4 from-A-2 from-B-5 \
    || fail "phase 4: cluster did not heal within ${HEAL_SECS}s ($LAST)"
log "phase 4: OK, $(secs "$(ms_since "$H_START_NS")") after the heal all nodes hold all ${#EXPECT[@]} keys, agree on shared='$SHARED_VALUE', see $N alive"
for i in $(seq 1 $N); do
    j=$(tail -n +"$(( LOG_LINES[i] + 1 ))" "$TMP/n$i.log" | grep -o 'joined through seed.*' | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ';')
    log "phase 4:   n$i since the heal: ${j:-no seed join}"
done
log "phase 4: $(metrics_line)"

log "PASS"
echo "PASS"
exit 0
