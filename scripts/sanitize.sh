#!/usr/bin/env bash
# Memory and thread checks (issue #7 item 4):
#   asan      the integration tests under AddressSanitizer + LeakSanitizer
#   tsan      the integration tests under ThreadSanitizer (see the caveat below)
#   valgrind  the examples under valgrind memcheck (echo_async + echo_client, echo_callback + echo_client,
#             tasks_and_timers)
# Usage: scripts/sanitize.sh [asan|tsan|valgrind]...   (no argument: asan and valgrind)
#
# The sanitizer runtimes ship with this toolchain, but rust-src does not, so std cannot be rebuilt with
# the sanitizer (-Zbuild-std). For ASan that only means std itself is not instrumented: evloop's code and
# its dependencies are, and LeakSanitizer sees every allocation. For TSan it means std's own
# synchronisation (Arc, Mutex, channels, thread join) is invisible, so TSan reports races inside std that
# are not there; `tsan` is therefore opt-in and its result is advisory (see RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(asan valgrind)

# Tests that re-run the test binary as a child, count descriptors, or time CPU are still run; tests that
# need the full-size load are #[ignore]d as in the normal suite.
run_sanitizer() {
    local san=$1
    shift
    echo "== $san: cargo test --tests ($*)"
    # EVLOOP_SANITIZER: the tests skip their resident-memory bounds (the sanitizer's allocator
    # quarantines freed memory); everything else is checked as in the normal suite.
    EVLOOP_SANITIZER=$san RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=$san -Cforce-frame-pointers=yes" \
        RUSTDOCFLAGS="-Zsanitizer=$san" CARGO_TARGET_DIR=target/$san \
        cargo test --no-fail-fast --target $TARGET --tests "$@" -- --test-threads=2
}

for step in "${STEPS[@]}"; do
    case $step in
    asan)
        # detect_leaks: LeakSanitizer runs at exit of every test binary (and of their child processes).
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1 \
            LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp" \
            run_sanitizer address
        ;;
    tsan)
        TSAN_OPTIONS="halt_on_error=0 report_signal_unsafe=0" \
            run_sanitizer thread
        ;;
    valgrind)
        command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind"; exit 1; }
        cargo build --examples
        ex=target/debug/examples
        logs=target/valgrind
        mkdir -p $logs
        # Each run logs to its own file; the check is memcheck's own "ERROR SUMMARY: 0 errors".
        vg() {
            local name=$1
            shift
            valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
                --log-file=$logs/$name.log "$@"
        }
        clean() {
            grep -q "ERROR SUMMARY: 0 errors" $logs/$1.log || {
                echo "memcheck errors in $1:"
                cat $logs/$1.log
                exit 1
            }
            echo "   $1: $(grep "ERROR SUMMARY" $logs/$1.log | sed 's/^==[0-9]*== //')"
        }
        echo "== valgrind: tasks_and_timers"
        vg tasks_and_timers $ex/tasks_and_timers >/dev/null
        clean tasks_and_timers
        for server in "echo_async" "echo_async --threads 2" "echo_callback"; do
            name=$(echo "$server" | tr -d ' -')
            port=$((17000 + RANDOM % 20000))
            echo "== valgrind: $server on 127.0.0.1:$port, loaded by echo_client (also under valgrind)"
            # exec: $! is valgrind itself, so the kill below reaches it.
            # shellcheck disable=SC2086
            (exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
                --log-file=$logs/$name.log $ex/$server --addr 127.0.0.1:$port >/dev/null) &
            pid=$!
            for _ in $(seq 200); do
                (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
                sleep 0.1
            done
            vg ${name}_client $ex/echo_client --addr 127.0.0.1:$port --conns 20 --msgs 200 --size 512
            # The servers run until killed: SIGTERM ends them without destructors, so their leak report
            # is not meaningful (leaks count only as errors when "definitely lost"), but every invalid
            # read, write or free made while serving is.
            kill -TERM $pid
            wait $pid || true
            for _ in $(seq 100); do grep -q "ERROR SUMMARY" $logs/$name.log && break; sleep 0.1; done
            clean $name
            clean ${name}_client
        done
        ;;
    *)
        echo "unknown step $step (asan, tsan, valgrind)"
        exit 2
        ;;
    esac
done
echo "== sanitize.sh: ${STEPS[*]} clean"
