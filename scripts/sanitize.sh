#!/usr/bin/env bash
# Memory and thread checks (issues #7 and #12):
#   asan      the integration tests under AddressSanitizer + LeakSanitizer
#   tsan      the threaded tests under ThreadSanitizer, std included, each run TSAN_REPEAT times
#   valgrind  the examples under valgrind memcheck (echo_async + echo_client, echo_callback + echo_client,
#             tasks_and_timers)
# Usage: [TSAN_REPEAT=N] scripts/sanitize.sh [asan|tsan|valgrind]...   (no argument: asan and valgrind)
#
# asan uses the rustup toolchain, whose sanitizer runtimes come with it but which has no std source:
# std itself is not instrumented, evloop's code and its dependencies are, and LeakSanitizer sees every
# allocation.
#
# tsan needs std instrumented too (an uninstrumented Arc, Mutex or thread join is invisible to TSan,
# which then reports races that are not there), so it builds std from source with `-Zbuild-std` on
# Debian's 1.96 toolchain (scripts/debian-rust.sh installs it if missing). That toolchain ships no
# sanitizer runtime; the rustup toolchain's is built from the same LLVM (22), so it is copied into
# Debian's sysroot under the name Debian's rustc links (librustc-stable_rt.tsan.a). Every report is a
# failure: races in evloop are fixed, never suppressed; scripts/tsan.supp may only hold documented
# benign races of dependencies, each with its citation. Races are found by repetition: TSAN_REPEAT
# (default 5) runs of tests/multi_thread.rs, shutdown.rs, executor.rs, faults.rs, signal.rs, timers.rs
# and tcp.rs, and of the 1,000-connection load test against the multi-thread runtime; RELIABILITY.md
# records the 5-run result, and .ci/run runs fewer to stay within CI's time (see there).
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

# The tests TSan runs: every one that has threads of its own (the multi-thread runtime, shutdown,
# spawn_blocking, the signal pipe, timers fired from other threads, TCP on both runtimes).
TSAN_TESTS=(multi_thread shutdown executor faults signal timers tcp)

# Copies rustup's ThreadSanitizer runtime into Debian's sysroot (see the top of this file) unless the
# same file is there already.
install_tsan_runtime() {
    local name=librustc-stable_rt.tsan.a
    local dest=/usr/lib/rustlib/$TARGET/lib
    local src
    src=$(rustc --print sysroot)/lib/rustlib/$TARGET/lib/$name
    [ -f "$src" ] || { echo "no $src: the rustup toolchain ships the TSan runtime there" >&2; exit 1; }
    cmp -s "$src" "$dest/$name" || cp "$src" "$dest/$name"
}

run_tsan() {
    # shellcheck source=scripts/debian-rust.sh
    . scripts/debian-rust.sh
    ensure_debian_rust
    install_tsan_runtime
    local repeat=${TSAN_REPEAT:-5}
    local logs=target/tsan-logs
    mkdir -p $logs
    export EVLOOP_SANITIZER=thread CARGO_TARGET_DIR=target/tsan
    export RUSTFLAGS="-Zsanitizer=thread -Cforce-frame-pointers=yes"
    # halt_on_error=0: every report of a run is printed, and the run still fails (exit code 66).
    export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan.supp"
    # Symbolising the backtraces of the tests' deliberate panics takes seconds each under TSan.
    export RUST_BACKTRACE=0
    local test_args=()
    for t in "${TSAN_TESTS[@]}" load; do test_args+=(--test "$t"); done
    echo "== tsan: building std and the tests with -Zsanitizer=thread"
    local start=$SECONDS
    debian_cargo test -Zbuild-std --target $TARGET --no-run --quiet "${test_args[@]}"
    echo "   built in $((SECONDS - start)) s"
    local failed=()
    for i in $(seq "$repeat"); do
        for t in "${TSAN_TESTS[@]}" load; do
            local args=(--test "$t")
            # The load test against the multi-thread runtime only (the other two servers have no
            # threads of their own).
            [ "$t" = load ] && args+=(echo_1000_connections_of_64_kib_on_each_server)
            start=$SECONDS
            local log=$logs/$t.$i.log
            if EVLOOP_LOAD_SERVERS=multi debian_cargo test -Zbuild-std --target $TARGET --quiet \
                "${args[@]}" -- --test-threads=2 >"$log" 2>&1; then
                echo "   run $i/$repeat $t: ok ($((SECONDS - start)) s)"
            else
                echo "   run $i/$repeat $t: FAILED ($((SECONDS - start)) s, $(grep -c "WARNING: ThreadSanitizer" "$log") reports; $log)"
                failed+=("$t (run $i)")
            fi
        done
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "tsan FAILED: ${failed[*]}; the reports are in $logs/"
        grep -h -A12 "WARNING: ThreadSanitizer" $logs/*.log | head -200
        exit 1
    fi
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
        run_tsan
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
            # Port 0: the kernel picks a free port and the server prints it ("... listening on ADDR").
            # A port picked here could be taken meanwhile (by a connection's ephemeral port).
            echo "== valgrind: $server, loaded by echo_client (also under valgrind)"
            out=$logs/$name.out
            : >"$out"
            # exec: $! is valgrind itself, so the kill below reaches it.
            # shellcheck disable=SC2086
            (exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
                --log-file=$logs/$name.log $ex/$server --addr 127.0.0.1:0 >"$out") &
            pid=$!
            addr=""
            for _ in $(seq 300); do
                addr=$(sed -n 's/.* listening on //p' "$out")
                [ -n "$addr" ] && break
                kill -0 $pid 2>/dev/null || break
                sleep 0.1
            done
            [ -n "$addr" ] || {
                echo "$server did not start under valgrind:"
                cat "$out" $logs/$name.log
                exit 1
            }
            echo "   listening on $addr"
            vg ${name}_client $ex/echo_client --addr "$addr" --conns 20 --msgs 200 --size 512
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
