#!/usr/bin/env bash
# Builds the engine (kmod/kengine over kmod/engine) as ONE hard-float,
# kernel-code-model object for llamux.ko; why and how: docs/kernel.md,
# "The engine object: why hard-float, how it is built".
#   kmod/build-engine.sh [OUT.o]     default OUT: kmod/engine_hf.o
# Env: KDIR (optional: its .config decides retpolines, return thunks, SLS,
#      function padding, as the kernel's own Rust gets them),
#      LLX_ENGINE_FEATURES (extra -Ctarget-feature list, e.g. +avx2,+fma).
# Fails if the object needs any symbol besides the module's callbacks and
# the kernel's mem* functions, or holds an out-of-line SIMD intrinsic.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE/engine_hf.o}"
CRATE="$(cd "$HERE/kengine" && pwd -P)"
TARGET=x86_64-unknown-linux-gnu

# Entries the module calls and callbacks the object may leave undefined:
# both lists are read from the one ABI definition (kengine/src/abi.rs).
ABI="$CRATE/src/abi.rs"
mapfile -t EXPORTS < <(awk '/^macro_rules! llx_entries/ {on = 1} /^macro_rules! llx_callbacks/ {on = 0}
  on && match($0, /^ *fn llx_[a-z0-9_]+/) { s = substr($0, RSTART, RLENGTH); sub(/^ *fn /, "", s); print s }' "$ABI")
mapfile -t CALLBACKS < <(awk '/^macro_rules! llx_callbacks/ {on = 1} /^macro_rules! llx_declare/ {on = 0}
  on && match($0, /^ *fn llx_[a-z0-9_]+/) { s = substr($0, RSTART, RLENGTH); sub(/^ *fn /, "", s); print s }' "$ABI")
if ((${#EXPORTS[@]} < 10 || ${#CALLBACKS[@]} < 4)); then
  echo "build-engine: could not read the entries/callbacks from $ABI" >&2
  exit 1
fi
# What the object may leave undefined: module callbacks + kernel string fns.
ALLOWED=("${CALLBACKS[@]}" memcpy memset memmove memcmp bcmp)

RUSTFLAGS="-Ccode-model=kernel -Crelocation-model=static -Cno-redzone=y -Cpanic=abort"
RUSTFLAGS+=" -Cforce-unwind-tables=no -Cforce-frame-pointers=yes -Zplt=yes"
RUSTFLAGS+=" -Zcf-protection=branch -Cjump-tables=no"
# The kernel's own Rust code-generation rules for its .config (arch/x86/Makefile
# and scripts/generate_rust_target.rs in 6.12), so objtool, which checks the
# linked llamux.o, accepts the object and the kernel can patch it like its own
# code. Stack protector: the kernel's Rust has none either (C-only flags).
kconf() { [[ -n "${KCONFIG:-}" ]] && grep -q "^CONFIG_$1=y" "$KCONFIG"; }
KCONFIG=""
if [[ -n "${KDIR:-}" ]]; then
  if [[ ! -f "$KDIR/.config" ]]; then
    echo "build-engine: $KDIR/.config missing: not a configured kernel tree" >&2
    exit 1
  fi
  KCONFIG="$KDIR/.config"
fi
FEATURES="${LLX_ENGINE_FEATURES:-}"
MITIGATIONS=()
add_feature() { FEATURES="${FEATURES:+$FEATURES,}$1"; }
if kconf MITIGATION_RETPOLINE; then
  # Indirect calls/jumps go through the kernel's __x86_indirect_thunk_*,
  # with the cs prefix the kernel's C gets (room to patch them back).
  RUSTFLAGS+=" -Zretpoline-external-thunk -Zindirect-branch-cs-prefix"
  MITIGATIONS+=(retpoline)
fi
if kconf MITIGATION_RETHUNK; then
  RUSTFLAGS+=" -Zfunction-return=thunk-extern --cfg llx_rethunk"
  MITIGATIONS+=(rethunk)
fi
if kconf MITIGATION_SLS; then
  # No rustc flag yet: the LLVM features -mharden-sls=all maps to, as the
  # kernel's own target.json has them (rustc warns that they are unstable).
  add_feature +harden-sls-ijmp,+harden-sls-ret
  RUSTFLAGS+=" --cfg llx_sls"
  MITIGATIONS+=(sls)
fi
if kconf CALL_PADDING; then
  pad="$(sed -n 's/^CONFIG_FUNCTION_PADDING_BYTES=//p' "$KCONFIG")"
  [[ $pad =~ ^[0-9]+$ ]] || { echo "build-engine: CALL_PADDING without FUNCTION_PADDING_BYTES" >&2; exit 1; }
  RUSTFLAGS+=" -Zpatchable-function-entry=$pad,$pad"
  # The trampolines' padding is 16 nops (kengine: entry_padding!).
  [[ $pad == 16 ]] || { echo "build-engine: FUNCTION_PADDING_BYTES=$pad: only 16 is supported" >&2; exit 1; }
  RUSTFLAGS+=" --cfg llx_call_padding"
  MITIGATIONS+=("padding=$pad")
fi
kconf X86_KERNEL_IBT && MITIGATIONS+=(ibt)   # -Zcf-protection=branch: always on
if [[ -n "$FEATURES" ]]; then
  RUSTFLAGS+=" -Ctarget-feature=$FEATURES"
fi

t0=$(date +%s.%N)
# A clean environment: Debian's cargo/rustc-web (matching rust-web-src),
# rustup off the PATH, nothing inherited from kbuild's make (RUSTFLAGS,
# MAKEFLAGS jobserver, ...).
env -i HOME="$HOME" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  ${CARGO_HOME:+CARGO_HOME="$CARGO_HOME"} \
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="$RUSTFLAGS" \
  CARGO_TARGET_DIR="$CRATE/target" \
  /usr/bin/cargo rustc --quiet --release --manifest-path "$CRATE/Cargo.toml" \
    --crate-type staticlib --target "$TARGET" -Zbuild-std=core,alloc
LIB="$CRATE/target/$TARGET/release/libllamux_kengine.a"

tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
ldargs=()
for s in "${EXPORTS[@]}"; do ldargs+=(-u "$s"); done
ld -r "${ldargs[@]}" -o "$tmp" "$LIB"

# Every export must be defined and global.
for s in "${EXPORTS[@]}"; do
  if ! nm -g --defined-only "$tmp" | awk '{print $3}' | grep -qx "$s"; then
    echo "build-engine: $s is not defined in the object" >&2
    exit 1
  fi
done
bad=()
while read -r s; do
  ok=0
  # The kernel's retpoline and return thunks (exported by vmlinux).
  [[ $s == __x86_return_thunk || $s =~ ^__x86_indirect_thunk_r[a-z0-9]+$ ]] && ok=1
  for a in "${ALLOWED[@]}"; do [[ "$s" == "$a" ]] && ok=1; done
  ((ok)) || bad+=("$s")
done < <(nm -u "$tmp" | awk '{print $2}')
if ((${#bad[@]})); then
  echo "build-engine: unexpected undefined symbols: ${bad[*]}" >&2
  exit 1
fi
# Every SIMD intrinsic must be one instruction, not a call.
bash "$HERE/../tests/check-inlined.sh" "$tmp" >/dev/null
mv "$tmp" "$OUT"
trap - EXIT
t1=$(date +%s.%N)
printf 'build-engine: %s (%s bytes, mitigations: %s, undefined: %s) in %.1f s\n' "$OUT" "$(stat -c %s "$OUT")" \
  "${MITIGATIONS[*]:-none}" \
  "$(nm -u "$OUT" | awk '{print $2}' | tr '\n' ' ')" "$(echo "$t1 - $t0" | bc)"
