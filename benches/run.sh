#!/usr/bin/env bash
# The benchmark suite in one command: evloop's echo servers against tokio, smol, libevent and a
# hand-written mio loop, then the microbenchmarks. Method: ../shared/BENCHMARKING.md and the
# "Echo servers" section of BENCHMARKS.md, which this script rewrites.
#
#   benches/run.sh              full suite (under 15 minutes on 2 cores); rewrites BENCHMARKS.md
#   benches/run.sh --quick      smoke run (about 2 minutes); prints the tables, leaves BENCHMARKS.md alone
#   benches/run.sh --check      for CI: checks this script's syntax and builds everything, runs nothing
#   benches/run.sh --http --no-echo --no-micro   only the HTTP benchmark (about 5 minutes)
#   benches/run.sh --instructions  user-space instructions per round trip (callgrind), servers and micro
#   benches/run.sh --scale      C100K: 1,000 / 10,000 / 100,000 connections per server (as root)
#
# Options: --write / --no-write (BENCHMARKS.md), --no-micro (also skips benches/process.rs and fs.rs),
#          --no-echo, --no-install, --reps N, --secs S,
#          --http (also the HTTP benchmark: hyper on evloop against hyper on tokio, driven by wrk; its
#          tables are printed and saved as http.md, BENCHMARKS.md's "HTTP" section is written by hand),
#          --servers "mio tokio-ct ..." (default: every server that exists), --scenarios "pp64x50 ...",
#          --unpinned "..." (servers run without taskset; default: the multi-threaded ones,
#          "evloop-async-mt evloop-async-mt@base tokio-mt"; every other server is pinned to core 0,
#          the client to core 1).
# Before/after: BASE_EXAMPLES=DIR (the release examples of another build, e.g. an older commit built
# in a worktree) adds the servers "evloop-async@base", "evloop-async-mt@base", "evloop-callback@base",
# "evloop-callback-raw@base", run from DIR in the same alternation (and by --instructions); name them
# in --servers.
# Needs root (or sudo) only to apt-get install what is missing: libevent-dev, strace, linux-perf, gcc
# (and wrk, valgrind with --http).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 CHECK=0 INSTRUCTIONS=0 SCALE=0 WRITE="" MICRO=1 ECHO_SUITE=1 HTTP=0 INSTALL=1 REPS="" SECS="" ONLY_SERVERS="" ONLY_SCENARIOS=""
# Multi-threaded servers are not pinned: pinned to one core, their second worker would only take turns
# with the first. Unpinned, they share core 1 with the load generator (the report says so).
UNPINNED="evloop-async-mt evloop-async-mt@base tokio-mt"
COMMAND_LINE=$(echo "benches/run.sh $*" | sed "s/ *$//")
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --check) CHECK=1 ;;
        --instructions) INSTRUCTIONS=1 ;;
        --scale) SCALE=1 ;;
        --write) WRITE=1 ;;
        --no-write) WRITE=0 ;;
        --no-micro) MICRO=0 ;;
        --no-echo) ECHO_SUITE=0 ;;
        --http) HTTP=1 ;;
        --no-install) INSTALL=0 ;;
        --reps) REPS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --servers) ONLY_SERVERS=$2; shift ;;
        --scenarios) ONLY_SCENARIOS=$2; shift ;;
        --unpinned) UNPINNED=$2; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
# --check: what CI can afford. Installs nothing, measures nothing; fails if anything does not build.
if ((CHECK)); then
    bash -n "$0"
    echo "== run.sh --check: building the benches and examples (release)"
    cargo build --release --benches --examples
    cargo build --release --features hyper --example http_server
    if ! command -v cc >/dev/null; then
        echo "run.sh --check: skipped benches/libevent_echo.c: no C compiler (apt-get install gcc)"
    elif [ ! -f /usr/include/event2/bufferevent.h ]; then
        echo "run.sh --check: skipped benches/libevent_echo.c: libevent's headers are not installed (apt-get install libevent-dev)"
    else
        TARGET=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
        cc -O2 -Wall -Werror -o "$TARGET/release/libevent_echo" benches/libevent_echo.c -levent
        echo "run.sh --check: benches/libevent_echo.c compiled"
    fi
    echo "run.sh --check: ok"
    exit 0
fi
if ((QUICK)); then
    REPS=${REPS:-1} SECS=${SECS:-1} WARMUP=0.3 IDLE_CONNS=2000 WRITE=${WRITE:-0}
    SYSCALL_SCENARIOS="pp64x50" STRACE_SCENARIOS="pp64x50" HTTP_SECS=1 CALLGRIND_SECS=2
else
    REPS=${REPS:-3} SECS=${SECS:-2} WARMUP=0.5 IDLE_CONNS=10000 WRITE=${WRITE:-1}
    SYSCALL_SCENARIOS="pp64x1 pp64x50 pp64x1000 stream16k" STRACE_SCENARIOS="pp64x50"
    HTTP_SECS=5 CALLGRIND_SECS=15
fi

# --- What the suite needs on a fresh Debian machine ------------------------------------------------
missing=()
command -v strace >/dev/null || missing+=(strace)
command -v perf >/dev/null || missing+=(linux-perf)
command -v cc >/dev/null || missing+=(gcc)
command -v taskset >/dev/null || missing+=(util-linux)
[ -f /usr/include/event2/bufferevent.h ] || missing+=(libevent-dev)
if ((HTTP)); then
    command -v wrk >/dev/null || missing+=(wrk)
    command -v valgrind >/dev/null || missing+=(valgrind)
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ((${#missing[@]})); then
    ((INSTALL)) || { echo "run.sh: missing ${missing[*]} (and --no-install given)" >&2; exit 1; }
    echo "== installing ${missing[*]}"
    $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Syscalls are counted with perf on the syscall tracepoints (cheap enough not to change what the
# server does); strace -c is the cross-check, and the fallback where perf cannot count them.
[ -d /sys/kernel/tracing/events ] || $SUDO mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
COUNTER=strace
if perf stat -x, -e raw_syscalls:sys_enter -- true 2>&1 | grep -q '^[0-9]'; then
    COUNTER=perf
else
    echo "run.sh: perf cannot count syscall tracepoints here: syscalls are counted with strace -c" >&2
fi

# 10,000 idle connections need that many descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_CONNS + 1000)); then
    IDLE_CONNS=$(($(ulimit -n) - 1000))
    echo "run.sh: RLIMIT_NOFILE is $(ulimit -n): the idle scenario opens $IDLE_CONNS connections" >&2
fi

# --- Build ------------------------------------------------------------------------------------------
echo "== building (release)"
TARGET=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
bench_exe() { # the executable of a bench target, built in release mode
    cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1
}
cargo build --release --bench echo
ECHO=$(bench_exe echo)
[ -x "$ECHO" ] || { echo "run.sh: could not locate the echo bench binary" >&2; exit 1; }
EVLOOP_EXAMPLES=()
for ex in echo_async echo_callback echo_callback_raw; do
    [ -f "examples/$ex.rs" ] || continue
    if cargo build --release --example "$ex"; then
        EVLOOP_EXAMPLES+=("$ex")
    else
        echo "run.sh: examples/$ex.rs does not build: left out of this run" >&2
    fi
done
cc -O2 -Wall -o "$TARGET/release/libevent_echo" benches/libevent_echo.c -levent

server_cmd() { # the command line of a server, before --addr
    case $1 in
        evloop-async) echo "$TARGET/release/examples/echo_async" ;;
        evloop-async-mt) echo "$TARGET/release/examples/echo_async --threads 2" ;;
        evloop-callback) echo "$TARGET/release/examples/echo_callback" ;;
        evloop-callback-raw) echo "$TARGET/release/examples/echo_callback_raw" ;;
        libevent) echo "$TARGET/release/libevent_echo" ;;
        evloop-*@base)
            [ -n "${BASE_EXAMPLES:-}" ] || { echo "run.sh: $1 needs BASE_EXAMPLES=DIR (see --help)" >&2; exit 2; }
            server_cmd "${1%@base}" | sed "s#^$TARGET/release/examples#$BASE_EXAMPLES#" ;;
        *) echo "$ECHO server $1" ;;
    esac
}
SERVERS=()
for ex in "${EVLOOP_EXAMPLES[@]}"; do
    case $ex in
        echo_async) SERVERS+=(evloop-async evloop-async-mt) ;;
        echo_callback) SERVERS+=(evloop-callback) ;;
        echo_callback_raw) SERVERS+=(evloop-callback-raw) ;;
    esac
done
SERVERS+=(tokio-ct tokio-mt smol mio libevent)
if [ -n "$ONLY_SERVERS" ]; then read -r -a SERVERS <<<"$ONLY_SERVERS"; fi

# name | client arguments. Every run: a fresh server on core 0 (unless in UNPINNED), the client on core 1.
SCENARIOS=(
    "pp64x1|--type pp --conns 1 --size 64"
    "pp64x50|--type pp --conns 50 --size 64"
    "pp64x1000|--type pp --conns 1000 --size 64"
    "stream16k|--type stream --conns 1 --size 16384 --window 262144"
    "rate20k|--type rate --conns 100 --size 64 --rate 20000"
    "fair|--type fair --conns 100 --size 64"
    "idle|--type idle --conns $IDLE_CONNS"
)

# --- Instructions (--instructions) ------------------------------------------------------------------
# Each server runs pinned to core 0 under callgrind, twice: for RTS_SHORT and for RTS_LONG round trips
# of 64 B ping-pong from the load generator (`--rts`, core 1), then gets SIGTERM, which makes callgrind
# write its totals. (long - short) / (RTS_LONG - RTS_SHORT) is the user-space cost of a round trip with
# startup, accepting, the wait probe and shutdown cancelled out. Same for the microbenchmarks
# (`micro --iters N`, one case and one runtime per process). Instruction counts do not depend on the
# machine's load, but wrap the script in `flock` where others benchmark too (it shares their cores).
# Connection counts: INSTR_CONNS="50 1000" in the environment. INSTR_CACHE=1 also simulates the caches
# (callgrind --cache-sim=yes, the host's cache sizes): each cell then adds the L1 data misses and the
# last-level misses (reads + writes) per round trip, as "instructions (D1 misses / LL misses)".
if ((INSTRUCTIONS)); then
    command -v valgrind >/dev/null || { echo "run.sh: --instructions needs valgrind (apt-get install valgrind)" >&2; exit 1; }
    OUT="$TARGET/bench-results/instr-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$OUT"
    RTS_SHORT=${RTS_SHORT:-10000} RTS_LONG=${RTS_LONG:-60000}
    INSTR_CONNS=${INSTR_CONNS:-"50 1000"}
    SPID=""
    trap 'if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi' EXIT
    callgrind_total() { grep -E '^(summary|totals):' "$1" | tail -1 | awk '{print $2}'; }
    # The totals as "Ir D1-misses LL-misses" (cache simulation) or "Ir" (without).
    callgrind_fields() {
        grep -E '^(summary|totals):' "$1" | tail -1 |
            awk -v cache="${INSTR_CACHE:-0}" '{ if (cache == 1) print $2, $6 + $7, $9 + $10; else print $2 }'
    }
    CG_OPTS=()
    if [ "${INSTR_CACHE:-0}" = 1 ]; then CG_OPTS=(--cache-sim=yes); fi
    instr_run() { # label conns rts -> prints the server's instruction total
        local label=$1 conns=$2 rts=$3 port cmd f
        port=$((7400 + RANDOM % 900))
        while "$ECHO" wait --addr "127.0.0.1:$port" --timeout 0 2>/dev/null; do port=$((port + 1)); done
        f="$OUT/cg-$label-$conns-$rts.out"
        read -r -a cmd <<<"$(server_cmd "$label")"
        taskset -c 0 valgrind -q --tool=callgrind "${CG_OPTS[@]}" --callgrind-out-file="$f" "${cmd[@]}" \
            --addr "127.0.0.1:$port" >>"$OUT/server-$label.log" 2>&1 &
        SPID=$!
        "$ECHO" wait --addr "127.0.0.1:$port" --timeout 60 2>>"$OUT/run.log" || { echo "$label did not start" >&2; return 1; }
        taskset -c 1 "$ECHO" client --addr "127.0.0.1:$port" --server-pid "$SPID" --label "$label" \
            --type pp --size 64 --conns "$conns" --rts "$rts" >>"$OUT/client.log" 2>>"$OUT/run.log" ||
            { echo "$label: client failed (see $OUT/run.log)" >&2; kill "$SPID"; wait "$SPID"; SPID=""; return 1; }
        kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
        callgrind_fields "$f"
    }
    echo "== instructions per round trip: ($RTS_LONG - $RTS_SHORT round trips), servers: ${SERVERS[*]}"
    TABLE="$OUT/instructions.md"
    {
        echo "| server | $(for c in $INSTR_CONNS; do printf '%s conns | ' "$c"; done | sed 's/ | $//') |"
        echo "|---|$(for _ in $INSTR_CONNS; do printf -- '---:|'; done)"
    } >"$TABLE"
    for s in "${SERVERS[@]}"; do
        row="| $s |"
        for c in $INSTR_CONNS; do
            a=$(instr_run "$s" "$c" "$RTS_SHORT") && b=$(instr_run "$s" "$c" "$RTS_LONG") &&
                v=$(awk -v a="$a" -v b="$b" -v n=$((RTS_LONG - RTS_SHORT)) 'BEGIN {
                    split(a, x, " "); split(b, y, " ")
                    printf "%.0f", (y[1] - x[1]) / n
                    if (3 in y) printf " (%.1f / %.2f)", (y[2] - x[2]) / n, (y[3] - x[3]) / n
                }') ||
                v="failed"
            echo "   $s, $c conns: $v instructions per round trip (totals $a, $b)"
            row="$row $v |"
        done
        echo "$row" >>"$TABLE"
    done
    if ((MICRO)); then
        cargo bench --bench micro --no-run 2>/dev/null
        MICRO_EXE=$(bench_exe micro)
        ITERS_SHORT=${ITERS_SHORT:-2000} ITERS_LONG=${ITERS_LONG:-22000}
        echo >>"$TABLE"
        echo "| microbenchmark | runtime | instructions per operation |" >>"$TABLE"
        echo "|---|---|---:|" >>"$TABLE"
        for case in "spawn+join" "yield" "timer arm+cancel, 0 pending" "ping-pong (round trip)"; do
            while IFS= read -r rt; do
                t=()
                for n in "$ITERS_SHORT" "$ITERS_LONG"; do
                    f="$OUT/cg-micro-${rt//[^a-z]/_}-$n.out"
                    taskset -c 0 valgrind -q --tool=callgrind --callgrind-out-file="$f" \
                        "$MICRO_EXE" --iters "$n" --runtime "$rt" --exact "$case" >/dev/null 2>>"$OUT/run.log"
                    t+=("$(callgrind_total "$f")")
                done
                v=$(awk -v a="${t[0]}" -v b="${t[1]}" -v n=$((ITERS_LONG - ITERS_SHORT)) 'BEGIN{printf "%.0f", (b-a)/n}')
                echo "   $case, $rt: $v instructions per operation"
                echo "| $case | $rt | $v |" >>"$TABLE"
            done < <("$MICRO_EXE" --list-runtimes --exact "$case" 2>/dev/null)
        done
    fi
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), command: $COMMAND_LINE"
    cat "$TABLE"
    exit 0
fi

# --- C100K (--scale) ----------------------------------------------------------------------------------
# For each connection count (SCALE_CONNS="1000 10000 100000") and server (SCALE_SERVERS), a fresh server
# under `prlimit --nofile` (pinned to core 0 unless multi-threaded) and the `scale` client on core 1 in
# a process of its own (see benches/echo/client/scale.rs for what it measures). No sysctl is changed:
# the run checks that the kernel's limits suffice and stops if they do not.
if ((SCALE)); then
    OUT="$TARGET/bench-results/scale-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$OUT"
    SCALE_CONNS=${SCALE_CONNS:-"1000 10000 100000"}
    SCALE_SERVERS=${SCALE_SERVERS:-"evloop-async evloop-async-mt evloop-callback tokio-ct libevent"}
    max=0; for n in $SCALE_CONNS; do ((n > max)) && max=$n; done
    need=$((max + 2000))
    nr_open=$(cat /proc/sys/fs/nr_open) somaxconn=$(cat /proc/sys/net/core/somaxconn)
    read -r plo phi </proc/sys/net/ipv4/ip_local_port_range
    echo "== kernel: fs.nr_open=$nr_open fs.file-max=$(cat /proc/sys/fs/file-max) somaxconn=$somaxconn ports $plo-$phi"
    ((nr_open >= need)) || { echo "run.sh: fs.nr_open ($nr_open) < $need: sysctl -w fs.nr_open=$need for the run" >&2; exit 1; }
    ((phi - plo > 20000)) || { echo "run.sh: fewer than 20,000 ephemeral ports: widen net.ipv4.ip_local_port_range" >&2; exit 1; }
    # Raising the hard limit needs CAP_SYS_RESOURCE, which root in a container may lack.
    if (($(ulimit -Hn) < need)) && ! prlimit --pid $$ --nofile="$need:$need" 2>/dev/null; then
        echo "run.sh: cannot raise RLIMIT_NOFILE to $need (hard limit $(ulimit -Hn); raising it needs CAP_SYS_RESOURCE): lower SCALE_CONNS below $(($(ulimit -Hn) - 2000))" >&2
        exit 1
    fi
    SPID="" NET=$(( (RANDOM % 200) + 1 ))
    trap 'if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi' EXIT
    RESULTS="$OUT/results.txt"; : >"$RESULTS"
    for n in $SCALE_CONNS; do
        for s in $SCALE_SERVERS; do
            port=$((7400 + RANDOM % 900))
            while "$ECHO" wait --addr "127.0.0.1:$port" --timeout 0 2>/dev/null; do port=$((port + 1)); done
            read -r -a cmd <<<"$(server_cmd "$s")"
            pin=(taskset -c 0); [[ " $UNPINNED " == *" $s "* ]] && pin=()
            prlimit --nofile=$need:$need "${pin[@]}" "${cmd[@]}" --addr "127.0.0.1:$port" >>"$OUT/server-$s.log" 2>&1 &
            SPID=$!
            "$ECHO" wait --addr "127.0.0.1:$port" --timeout 10 2>>"$OUT/run.log" || { echo "$s did not start" >&2; continue; }
            NET=$((NET % 250 + 1))  # fresh source addresses: the last run's ports are in TIME_WAIT
            active=$((n < 1000 ? n : 1000))
            if ! timeout 300 taskset -c 1 "$ECHO" client --type scale --addr "127.0.0.1:$port" --server-pid "$SPID" \
                --label "$s" --conns "$n" --active "$active" --secs "${SECS:-3}" --src-net "$NET" \
                >"$OUT/last.txt" 2>>"$OUT/run.log"; then
                echo "   $s, $n connections: client failed (see $OUT/run.log)"
            fi
            grep '^RESULT' "$OUT/last.txt" >>"$RESULTS" || true
            sed -n 's/^  /   /p' "$OUT/last.txt"
            kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null || true; SPID=""
        done
    done
    echo "== results: $RESULTS (measured $(date -u '+%Y-%m-%d %H:%M UTC') at $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    exit 0
fi

# --- Running ----------------------------------------------------------------------------------------
OUT="$TARGET/bench-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RESULTS="$OUT/results.txt" LOG="$OUT/run.log"
: >"$RESULTS"
SPID=""
cleanup() { if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

PORT=7400
run_one() { # label name run(measure|perf|strace) client-args...
    local label=$1 name=$2 run=$3; shift 3
    local addr cmd
    # Skip ports someone else listens on: the client must never measure a stranger.
    for _ in $(seq 200); do
        PORT=$((PORT >= 8399 ? 7400 : PORT + 1))
        "$ECHO" wait --addr "127.0.0.1:$PORT" --timeout 0 2>/dev/null || break
    done
    addr="127.0.0.1:$PORT"
    read -r -a cmd <<<"$(server_cmd "$label")"
    local pin=(taskset -c 0)
    if [[ " $UNPINNED " == *" $label "* ]]; then pin=(); fi
    "${pin[@]}" "${cmd[@]}" --addr "$addr" >>"$OUT/server-$label.log" 2>&1 &
    SPID=$!
    if ! "$ECHO" wait --addr "$addr" --timeout 10 2>>"$LOG" || ! kill -0 "$SPID" 2>/dev/null; then
        echo "   $label did not start (see $OUT/server-$label.log)" | tee -a "$LOG"
        cleanup; SPID=""; return 0
    fi
    local extra=()
    [ "$run" = measure ] || extra=(--syscalls "$run")
    if ! timeout $((${SECS%.*} + 90)) taskset -c 1 "$ECHO" client --addr "$addr" --server-pid "$SPID" \
        --label "$label" --name "$name" --secs "$SECS" --warmup "$WARMUP" "$@" "${extra[@]}" \
        >"$OUT/last.txt" 2>>"$LOG"; then
        echo "   $label $name ($run): client failed (see $LOG)" | tee -a "$LOG"
    fi
    grep '^RESULT' "$OUT/last.txt" >>"$RESULTS" || true
    sed -n 's/^  /   /p' "$OUT/last.txt"
    if ! kill -0 "$SPID" 2>/dev/null; then echo "   $label exited during the run" | tee -a "$LOG"; fi
    cleanup; SPID=""
}

START=$(date +%s)
load=$(cut -d' ' -f1 /proc/loadavg)
if ((ECHO_SUITE)); then
echo "== echo servers: ${SERVERS[*]} (unpinned: ${UNPINNED:-none})"
echo "== $REPS repetition(s) of ${SECS} s per server and scenario; results in $OUT"
echo "== load average before the run: $load (a busy machine makes every figure noisier)"
for entry in "${SCENARIOS[@]}"; do
    name=${entry%%|*}
    read -r -a args <<<"${entry#*|}"
    if [ -n "$ONLY_SCENARIOS" ] && [[ " $ONLY_SCENARIOS " != *" $name "* ]]; then continue; fi
    echo "-- $name"
    n=${#SERVERS[@]}
    for ((rep = 0; rep < REPS; rep++)); do
        # Rotate the order each repetition, so no server always follows the same one.
        for ((k = 0; k < n; k++)); do
            run_one "${SERVERS[$(((k + rep) % n))]}" "$name" measure "${args[@]}"
        done
    done
    if [[ " $SYSCALL_SCENARIOS " == *" $name "* ]]; then
        for s in "${SERVERS[@]}"; do run_one "$s" "$name" "$COUNTER" "${args[@]}"; done
    fi
    if [ "$COUNTER" = perf ] && [[ " $STRACE_SCENARIOS " == *" $name "* ]]; then
        for s in "${SERVERS[@]}"; do run_one "$s" "$name" strace "${args[@]}"; done
    fi
done
echo "== echo suite took $(($(date +%s) - START)) s"
fi

# --- HTTP (--http): hyper on evloop against hyper on tokio, driven by wrk -----------------------------
# Every server pinned to core 0 (the multi-threaded ones too: their CPU per request is what is
# compared), wrk pinned to core 1. Servers alternate within each repetition, rotated each time.
HTTP_TABLE=""
if ((HTTP)); then
    HTTP_START=$(date +%s)
    echo "== HTTP: building examples/http_server (feature hyper) and benches/http"
    cargo build --release --features hyper --example http_server
    cargo build --release --bench http
    HTTP_EXE=$(bench_exe http)
    [ -x "$HTTP_EXE" ] || { echo "run.sh: could not locate the http bench binary" >&2; exit 1; }
    HTTP_RESULTS="$OUT/http-results.txt"
    : >"$HTTP_RESULTS"
    http_cmd() { # the command line of an HTTP server, before --addr
        case $1 in
            evloop-ct) echo "$TARGET/release/examples/http_server" ;;
            evloop-mt) echo "$TARGET/release/examples/http_server --threads 2" ;;
            tokio-ct) echo "$HTTP_EXE server --flavor current_thread" ;;
            tokio-mt) echo "$HTTP_EXE server --flavor multi_thread --threads 2" ;;
        esac
    }
    http_start() { # label [wrapper...]: starts the server on core 0, sets SPID and ADDR
        local label=$1 cmd; shift
        for _ in $(seq 200); do
            PORT=$((PORT >= 8399 ? 7400 : PORT + 1))
            "$ECHO" wait --addr "127.0.0.1:$PORT" --timeout 0 2>/dev/null || break
        done
        ADDR="127.0.0.1:$PORT"
        read -r -a cmd <<<"$(http_cmd "$label")"
        taskset -c 0 "$@" "${cmd[@]}" --addr "$ADDR" >>"$OUT/http-server-$label.log" 2>&1 &
        SPID=$!
        # Under valgrind a server takes seconds to start.
        if ! "$ECHO" wait --addr "$ADDR" --timeout 60 2>>"$LOG" || ! kill -0 "$SPID" 2>/dev/null; then
            echo "   $label did not start (see $OUT/http-server-$label.log)" | tee -a "$LOG"
            cleanup; SPID=""; return 1
        fi
    }
    HTTP_SERVERS=(evloop-ct tokio-ct evloop-mt tokio-mt)
    echo "== HTTP: ${HTTP_SERVERS[*]}, $REPS repetition(s) of wrk -t1 -cN -d${HTTP_SECS}s at N = 50 and 1000"
    for conns in 50 1000; do
        echo "-- $conns connections"
        n=${#HTTP_SERVERS[@]}
        for ((rep = 0; rep < REPS; rep++)); do
            for ((k = 0; k < n; k++)); do
                label=${HTTP_SERVERS[$(((k + rep) % n))]}
                http_start "$label" || continue
                if ! timeout $((HTTP_SECS + 60)) taskset -c 1 "$HTTP_EXE" wrk --addr "$ADDR" \
                    --conns "$conns" --secs "$HTTP_SECS" --server-pid "$SPID" --label "$label" \
                    --rep "$rep" >"$OUT/last.txt" 2>>"$LOG"; then
                    echo "   $label $conns conns: wrk failed (see $LOG)" | tee -a "$LOG"
                fi
                grep '^RESULT' "$OUT/last.txt" >>"$HTTP_RESULTS" || true
                sed -n 's/^  /   /p' "$OUT/last.txt"
                if ! kill -0 "$SPID" 2>/dev/null; then echo "   $label exited during the run" | tee -a "$LOG"; fi
                cleanup; SPID=""
            done
        done
    done
    # Instructions per request: each server under callgrind, one fixed wrk run at 50 connections,
    # then SIGTERM (callgrind writes its file on the way out). The same server started and stopped
    # with no request measures startup and exit, which is subtracted.
    echo "== HTTP: user-space instructions per request (callgrind, wrk -t1 -c50 -d${CALLGRIND_SECS}s)"
    cg_total() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" 2>/dev/null | tail -1; }
    for label in "${HTTP_SERVERS[@]}"; do
        cg="$OUT/callgrind-http-$label-startup.out"
        http_start "$label" valgrind --tool=callgrind --callgrind-out-file="$cg" || continue
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
        SPID=""
        startup=$(cg_total "$cg")
        cg="$OUT/callgrind-http-$label.out"
        http_start "$label" valgrind --tool=callgrind --callgrind-out-file="$cg" || continue
        wrk_out=$(timeout $((CALLGRIND_SECS + 60)) taskset -c 1 wrk -t1 -c50 -d"${CALLGRIND_SECS}s" "http://$ADDR/" 2>&1 || true)
        echo "$wrk_out" >"$OUT/callgrind-http-$label.wrk.txt"
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
        SPID=""
        requests=$(echo "$wrk_out" | sed -n 's/^ *\([0-9]*\) requests in .*/\1/p')
        instructions=$(cg_total "$cg")
        errors=$(echo "$wrk_out" | grep -E 'Socket errors|Non-2xx' | tr -s ' ' | paste -sd';' - || true)
        if [ -n "$requests" ] && [ -n "$instructions" ] && [ -n "$startup" ]; then
            echo "CALLGRIND label=$label requests=$requests instructions=$instructions startup=$startup" >>"$HTTP_RESULTS"
            echo "   $label: $requests requests, $instructions instructions ($startup of them startup and exit), $(((instructions - startup) / requests)) per request${errors:+ ($errors)}"
        else
            echo "   $label: no callgrind total (see $cg and $OUT/http-server-$label.log)" | tee -a "$LOG"
        fi
    done
    HTTP_TABLE="$OUT/http.md"
    "$HTTP_EXE" report "$HTTP_RESULTS" >"$HTTP_TABLE"
    echo "== HTTP took $(($(date +%s) - HTTP_START)) s"
fi

# --- Microbenchmarks ----------------------------------------------------------------------------------
MICRO_TABLE=""
if ((MICRO)) && [ -f benches/micro.rs ]; then
    echo "== microbenchmarks"
    MICRO_EXE=$(bench_exe micro || true)
    if [ -x "$MICRO_EXE" ]; then
        q=(); ((QUICK)) && q=(--quick)
        timeout 600 taskset -c 1 "$MICRO_EXE" "${q[@]}" >"$OUT/micro.txt" 2>>"$LOG" || echo "run.sh: micro failed (see $LOG)"
        MICRO_TABLE=$OUT/micro.txt
    else
        echo "run.sh: benches/micro.rs does not build: skipped" | tee -a "$LOG"
    fi
fi

# --- Child processes (benches/process.rs: spawn + wait against tokio::process), with the micro ones ---
PROCESS_TABLE=""
if ((MICRO)) && [ -f benches/process.rs ]; then
    echo "== child processes"
    PROCESS_EXE=$(bench_exe process || true)
    q=(); ((QUICK)) && q=(--quick)
    if [ -x "$PROCESS_EXE" ] && timeout 600 "$PROCESS_EXE" "${q[@]}" >"$OUT/process.txt" 2>>"$LOG"; then
        PROCESS_TABLE=$OUT/process.txt
    else
        echo "run.sh: benches/process.rs failed or does not build: skipped (see $LOG)" | tee -a "$LOG"
    fi
fi

# --- Files: evloop::fs against tokio::fs and std::fs (benches/fs.rs prints its own table) -------------
FS_TABLE=""
if ((MICRO)) && [ -f benches/fs.rs ]; then
    echo "== files (benches/fs.rs)"
    FS_EXE=$(bench_exe fs || true)
    if [ -x "$FS_EXE" ]; then
        fs_args=(); ((QUICK)) && fs_args=(--reps 1 --mib 64)
        timeout 600 "$FS_EXE" "${fs_args[@]}" >"$OUT/fs.txt" 2>>"$LOG" || echo "run.sh: fs failed (see $LOG)"
        FS_TABLE=$OUT/fs.txt
    else
        echo "run.sh: benches/fs.rs does not build: skipped" | tee -a "$LOG"
    fi
fi

# --- Report -------------------------------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MACHINE="$(nproc) cores, ${CPU:-unknown CPU}, Linux $(uname -r), load average $load at the start"
report=("$ECHO" report "$RESULTS" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --machine "$MACHINE"
    --command "$COMMAND_LINE" --commit "$(git rev-parse --short HEAD 2>/dev/null || echo '?')")
# Only the servers of this run that were unpinned.
unpinned_here=()
for s in "${SERVERS[@]}"; do
    if [[ " $UNPINNED " == *" $s "* ]]; then unpinned_here+=("$s"); fi
done
if ((${#unpinned_here[@]})); then report+=(--unpinned "${unpinned_here[*]}"); fi
((WRITE)) && report+=(--update BENCHMARKS.md)
echo
if ((ECHO_SUITE)); then "${report[@]}" | tee "$OUT/tables.md"; fi
if [ -n "$MICRO_TABLE" ]; then
    echo "## Microbenchmarks (this run)"
    cat "$MICRO_TABLE"
fi
if [ -n "$PROCESS_TABLE" ]; then
    echo "## Child processes (this run)"
    cat "$PROCESS_TABLE"
fi
if [ -n "$HTTP_TABLE" ]; then
    echo "## HTTP (this run; raw results: $HTTP_RESULTS)"
    cat "$HTTP_TABLE"
fi
if [ -n "$FS_TABLE" ]; then
    echo "## Files (this run)"
    cat "$FS_TABLE"
fi
echo "== total $(($(date +%s) - START)) s; raw results: $RESULTS"
