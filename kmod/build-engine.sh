#!/usr/bin/env bash
# Builds the engine (kmod/kengine over kmod/engine) as ONE hard-float,
# kernel-code-model object for llamux.ko; see shared notes toolchain.md
# "Floating point and SIMD inside the module".
#   kmod/build-engine.sh [OUT.o]     default OUT: kmod/engine_hf.o
# Env: KDIR (optional: its .config decides return thunks),
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
if [[ -n "${LLX_ENGINE_FEATURES:-}" ]]; then
  RUSTFLAGS+=" -Ctarget-feature=$LLX_ENGINE_FEATURES"
fi
if [[ -n "${KDIR:-}" && -f "$KDIR/.config" ]] && grep -q '^CONFIG_MITIGATION_RETHUNK=y' "$KDIR/.config"; then
  # The trampolines' plain `ret` would then also need the thunk.
  echo "build-engine: kernel has MITIGATION_RETHUNK: not supported yet" >&2
  exit 1
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
printf 'build-engine: %s (%s bytes, undefined: %s) in %.1f s\n' "$OUT" "$(stat -c %s "$OUT")" \
  "$(nm -u "$OUT" | awk '{print $2}' | tr '\n' ' ')" "$(echo "$t1 - $t0" | bc)"
