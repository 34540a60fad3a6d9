#!/usr/bin/env bash
# Type-checks evloop for every OS it supports besides Linux on x86_64 (issue #12): the library, examples, tests and
# benches (`cargo check --all-targets`), with warnings as errors, with and without `--all-features`.
#
# Usage: scripts/cross-check.sh [TARGET...]   (no argument: every target below)
#
# Nothing is linked or run: `-Zbuild-std` type-checks std and libc for the target from std's source, so
# no SDK, linker or C compiler of the target is needed. That source comes with Debian's 1.96 toolchain
# (scripts/debian-rust.sh installs it if missing); the rustup toolchain is left alone. What runs on
# those platforms is not tested here: see README.md "Status".
#
# Cost: one target directory (target/cross) for all targets and both feature sets, so host build
# scripts and proc macros are built once and the `--all-features` pass re-checks only the crates its
# features change. `-Zbuild-std` alone builds std's default set (std, core, alloc, proc_macro,
# panic_unwind, and test for the test harness); panic_abort is not needed for a check.
#
# Every target and feature set is checked even after a failure; the summary names each that failed, and
# the exit status is 1 if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/debian-rust.sh
. scripts/debian-rust.sh

TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(
    x86_64-apple-darwin
    aarch64-apple-darwin
    x86_64-unknown-freebsd
    x86_64-unknown-netbsd
    x86_64-unknown-openbsd
    x86_64-unknown-dragonfly
    x86_64-linux-android
    aarch64-unknown-linux-gnu
)
# Checked as a library only: Linux on another architecture differs from the host build only in the
# library's arch-specific code (the inline system calls in src/sys/mod.rs), and the Linux-only
# dev-dependencies (ring, for tests/tls.rs) need a C cross-compiler for it.
LIB_ONLY=" aarch64-unknown-linux-gnu "

ensure_debian_rust
export CARGO_TARGET_DIR=$PWD/target/cross CARGO_TERM_COLOR=never
# For the target's crates only: with --target, RUSTFLAGS does not reach build scripts and proc macros,
# and cargo caps lints of registry dependencies, so this denies warnings in evloop's own code.
export RUSTFLAGS="-D warnings"

failed=()
start_all=$SECONDS
for target in "${TARGETS[@]}"; do
    for features in "" "--all-features"; do
        what="$target ${features:-(default features)}"
        echo "== cross-check: $what"
        start=$SECONDS
        scope=--all-targets
        [[ $LIB_ONLY == *" $target "* ]] && scope=--lib
        # shellcheck disable=SC2086
        if debian_cargo check -Zbuild-std --target "$target" $scope $features \
            --message-format short --quiet; then
            echo "   ok: $what ($((SECONDS - start)) s)"
        else
            echo "   FAILED: $what ($((SECONDS - start)) s)"
            failed+=("$what")
        fi
    done
done

echo "== cross-check: ${#TARGETS[@]} targets in $((SECONDS - start_all)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "cross-check FAILED for:"
    printf '   %s\n' "${failed[@]}"
    exit 1
fi
echo "== cross-check: clean"
