#!/usr/bin/env bash
# Build the Llamux eBPF object (ebpf/probes) with Debian's rustc-web and
# bpf-linker on LLVM 22 (versions: ebpf/README.md), installing what is missing.
#
#   ebpf/build.sh [--toolchain-only]
#
# Output: target/bpf/llamux-probes.o (BPF ELF), also copied to
# $LLAMUX_CACHE/bpf/llamux-probes.o. `llamux load` reads it from one of the
# places loader/src/bpf/probes.rs lists (these two among them), from
# $LLAMUX_BPF_OBJ or from --bpf-obj; it is never embedded.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
LLAMUX_CACHE="${LLAMUX_CACHE:-$HOME/.cache/llamux}"
BPF_LINKER_VERSION=0.13.0
LLVM_PREFIX=/usr/lib/llvm-22
linker_root="$LLAMUX_CACHE/bpf-linker-$BPF_LINKER_VERSION-llvm22"

log() { echo "ebpf/build.sh: $*" >&2; }

need_pkgs=()
for p in rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
# bpf-linker links libLLVM-22 and needs zlib/zstd/libxml2 development files.
for p in zlib1g-dev libzstd-dev libxml2-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi

# Keep rustup (first on PATH on these machines) out of every step below:
# aya-build and cargo would otherwise pick rustup's toolchains.
clean_path=""
IFS=: read -ra parts <<<"$PATH"
for d in "${parts[@]}"; do
    [ -x "$d/rustup" ] && continue
    case "$d" in */.cargo/bin) continue ;; esac
    clean_path="${clean_path:+$clean_path:}$d"
done
export PATH="$linker_root/bin:$clean_path"
export RUSTC=/usr/bin/rustc CARGO=/usr/bin/cargo
unset RUSTUP_TOOLCHAIN

if ! [ -x "$linker_root/bin/bpf-linker" ]; then
    log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (once, cached in $linker_root)"
    t0=$(date +%s)
    LLVM_PREFIX=$LLVM_PREFIX /usr/bin/cargo install --locked "bpf-linker@$BPF_LINKER_VERSION" \
        --no-default-features --features llvm-22 --root "$linker_root"
    log "bpf-linker built in $(( $(date +%s) - t0 )) s"
fi
[ "${1:-}" = --toolchain-only ] && exit 0

t0=$(date +%s)
cd "$here"
# aya-ebpf uses asm_experimental_arch: allow nightly features for it only.
RUSTC_BOOTSTRAP=aya_ebpf CARGO_TARGET_DIR="$root/target/bpf-build" \
    /usr/bin/cargo build --release -p llamux-probes --target bpfel-unknown-none
obj="$root/target/bpf-build/bpfel-unknown-none/release/llamux-probes"
# A reachable panic ends a program in a call to a noreturn function, which
# the verifier rejects ("last insn is not an exit or jmp"): refuse it here.
if /usr/lib/llvm-22/bin/llvm-objdump -t "$obj" | grep -q panicking; then
    log "error: the BPF object references core::panicking (an indexing or unwrap that can panic):"
    /usr/lib/llvm-22/bin/llvm-objdump -t "$obj" | grep panicking >&2
    exit 1
fi
mkdir -p "$root/target/bpf" "$LLAMUX_CACHE/bpf"
cp "$root/target/bpf-build/bpfel-unknown-none/release/llamux-probes" "$root/target/bpf/llamux-probes.o"
cp "$root/target/bpf/llamux-probes.o" "$LLAMUX_CACHE/bpf/llamux-probes.o"
log "BPF object: $root/target/bpf/llamux-probes.o ($(( $(date +%s) - t0 )) s)"
