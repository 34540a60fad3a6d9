# Sourced by scripts/cross-check.sh and scripts/sanitize.sh: Debian's Rust toolchain with std's source.
#
# `-Zbuild-std` (std compiled for another target, or with a sanitizer) needs std's source, which the
# rustup stable toolchain used everywhere else does not ship. Debian's rustc-web, cargo-web and
# rust-web-src packages (1.96 in bookworm-security) install /usr/bin/rustc, /usr/bin/cargo and that
# source. They are called by path, with their own target directory, and never replace the rustup
# toolchain: only the scripts that source this file put /usr/bin first in their PATH.

# The toolchain these scripts are written and measured against: bookworm itself carries an older
# 1.85, and 1.96 is built on the same LLVM (22) as the rustup toolchain whose ThreadSanitizer runtime
# sanitize.sh borrows.
DEBIAN_RUST_VERSION=1.96

# Installs the three packages if /usr/bin/cargo, /usr/bin/rustc or std's source is missing (or older
# than DEBIAN_RUST_VERSION), pinned to the bookworm-security 1.96 build when apt would otherwise pick
# bookworm's 1.85. Needs root (CI runs as root); exits with the apt command to run otherwise.
ensure_debian_rust() {
    if [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] &&
        /usr/bin/rustc -V 2>/dev/null | grep -q "^rustc $DEBIAN_RUST_VERSION\."; then
        return 0
    fi
    echo "== installing Debian's rustc-web, cargo-web, rust-web-src $DEBIAN_RUST_VERSION (std's source for -Zbuild-std)"
    apt-get update -qq
    local version
    version=$(apt-cache madison rustc-web | awk -v v="$DEBIAN_RUST_VERSION" '$3 ~ "^" v "\\." { print $3; exit }')
    if [ -z "$version" ]; then
        echo "error: no rustc-web $DEBIAN_RUST_VERSION in apt's sources; add bookworm-security" \
            "(deb http://deb.debian.org/debian-security bookworm-security main) and run apt-get update" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "rustc-web=$version" "cargo-web=$version" "rust-web-src=$version" >/dev/null || {
        echo "error: apt-get install rustc-web=$version cargo-web=$version rust-web-src=$version failed" >&2
        exit 1
    }
}

# Runs cargo from Debian's toolchain: `-Z` flags are allowed (RUSTC_BOOTSTRAP), and rustup's cargo
# and rustc are not on the PATH for this one command.
debian_cargo() {
    PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 /usr/bin/cargo "$@"
}
