#!/usr/bin/env bash
# Formatting and lints for every Rust crate in the tree, each with the
# toolchain that builds it; ends with `lint: N passed, N failed`.
#   tests/lint.sh               every check (the module's needs the guest kernel:
#                               tests/guest/build-kernel.sh builds it once if absent)
#   tests/lint.sh --no-module   the module's kernel-lint build only if that kernel
#                               is already cached (tests/run.sh --no-guest)
# Quick when warm: cargo and kbuild redo only what changed (targets under
# target/lint-*, kmod/kengine/target/clippy, kmod/engine/fuzz/target; the
# eBPF programs and the host-side shared types in separate target folders, as
# their RUSTC_BOOTSTRAP differs).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
module=1
case "${1:-}" in
    --no-module) module=0 ;;
    "") ;;
    *) echo "usage: tests/lint.sh [--no-module]" >&2; exit 2 ;;
esac
. tests/guest/env.sh
log_dir=${LLAMUX_LOG_DIR:-$root/target/test-logs}/lint
mkdir -p "$log_dir"
passed=0 failed=0 failed_names=()

# check NAME CMD...: runs CMD, its output in $log_dir/NAME.log (the tail shown on failure).
check() {
    local name=$1; shift
    local t0=$SECONDS
    if "$@" >"$log_dir/$name.log" 2>&1; then
        passed=$((passed + 1))
        echo "PASS lint $name ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1)) failed_names+=("$name")
        echo "FAIL lint $name: \`$*\` reported (log $log_dir/$name.log):"
        grep -aE '^(error|warning)|^ *--> |^Diff in' "$log_dir/$name.log" | head -40
        tail -n5 "$log_dir/$name.log"
    fi
}

# Debian's rustc-web toolchain with rustup off the PATH: $CARGO_HOME/bin
# comes first in cargo's subcommand search, so call cargo-clippy by path.
debian() {
    env -i HOME="$HOME" PATH=/usr/sbin:/usr/bin:/sbin:/bin ${CARGO_HOME:+CARGO_HOME="$CARGO_HOME"} \
        RUSTC=/usr/bin/rustc CARGO=/usr/bin/cargo "$@"
}

# rustfmt (rustup stable, rustfmt.toml at the root) over every crate.
check fmt-workspace cargo fmt --all --check
check fmt-ebpf cargo fmt --manifest-path ebpf/Cargo.toml --all --check
check fmt-kengine cargo fmt --manifest-path kmod/kengine/Cargo.toml --check
check fmt-fuzz cargo fmt --manifest-path kmod/engine/fuzz/Cargo.toml --check
check fmt-module rustfmt --edition 2021 --check kmod/src/llamux_main.rs

# clippy, rustup stable: the workspace (engine, loader) and the fuzz targets.
check clippy-workspace cargo clippy --workspace --all-targets -- -D warnings
check clippy-fuzz cargo clippy --manifest-path kmod/engine/fuzz/Cargo.toml --all-targets -- -D warnings

# clippy, Debian's rustc-web (rust-web-clippy): kengine as build-engine.sh
# builds it, the eBPF programs for their BPF target and the shared types for
# the host (the loader's `user` feature).
check clippy-kengine debian CARGO_TARGET_DIR="$root/kmod/kengine/target/clippy" \
    /usr/bin/cargo-clippy clippy --manifest-path kmod/kengine/Cargo.toml \
    --target x86_64-unknown-linux-gnu -- -D warnings
check clippy-ebpf-probes debian RUSTC_BOOTSTRAP=aya_ebpf CARGO_TARGET_DIR="$root/target/lint-bpf" \
    /usr/bin/cargo-clippy clippy --manifest-path ebpf/Cargo.toml -p llamux-probes \
    --target bpfel-unknown-none -- -D warnings
check clippy-ebpf-common debian CARGO_TARGET_DIR="$root/target/lint-bpf-host" \
    /usr/bin/cargo-clippy clippy --manifest-path ebpf/Cargo.toml -p llamux-common \
    --features user --all-targets -- -D warnings

# The module's Rust with the kernel's own lint set (`make CLIPPY=1`, the
# -Wclippy::* list in the kernel's Makefile), warnings as errors. Only its
# crate root is compiled, from a copy under target/kmod-lint so kmod/ keeps
# the objects of the real build.
module_lint() {
    local kdir=$1 out=$root/target/kmod-lint
    mkdir -p "$out/src" "$out/kengine/src"
    rsync -a --delete kmod/src/ "$out/src/" &&
        rsync -a kmod/kengine/src/abi.rs "$out/kengine/src/" &&
        { printf 'obj-m := llamux.o\nllamux-y := src/llamux_main.o\n' | cmp -s - "$out/Kbuild" ||
            printf 'obj-m := llamux.o\nllamux-y := src/llamux_main.o\n' >"$out/Kbuild"; } &&
        make -C "$kdir" M="$out" "${LLAMUX_KMAKE_VARS[@]}" CLIPPY=1 \
            CLIPPY_DRIVER=/usr/bin/clippy-driver KRUSTFLAGS=-Dwarnings src/llamux_main.o
}
if ((module)); then
    kdir=$(tests/guest/build-kernel.sh --print-kdir) || kdir=""
else
    kdir=$(tests/guest/build-kernel.sh --print-kdir --if-cached 2>/dev/null) || kdir=""
fi
if [[ -n $kdir ]]; then
    check clippy-module module_lint "$kdir"
elif ((module)); then
    failed=$((failed + 1)) failed_names+=(clippy-module)
    echo "FAIL lint clippy-module: no guest kernel tree (tests/guest/build-kernel.sh --print-kdir failed)"
else
    echo "lint clippy-module not run: no cached guest kernel (tests/run.sh without --no-guest builds it)"
fi

((failed)) && echo "lint failed: ${failed_names[*]}"
echo "lint: $passed passed, $failed failed"
((failed == 0))
