#!/usr/bin/env bash
# Build (or reuse) the guest kernel, llamux.ko with the engine, the static
# `llamux` tool and the test models, then run
# tests/guest/tests/module-generate.sh, then module-fpu.sh (FPU-section
# counters, /proc/llamux/bench), each in a 2-CPU guest.
#   tests/guest/test-generate.sh [run-guest.sh options, e.g. --debug...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$HERE/env.sh"
kargs=()
for a in "$@"; do [[ $a == --debug ]] && kargs=(--debug); done
KDIR="$("$HERE/build-kernel.sh" "${kargs[@]}" --print-kdir)"
echo "test-generate: KDIR=$KDIR"
t0=$(date +%s)
make -C "$ROOT/kmod" KDIR="$KDIR"
echo "test-generate: module built in $(( $(date +%s) - t0 )) s"
# Static user-space tool (glibc, +crt-static; build scripts stay dynamic).
(cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
  --target x86_64-unknown-linux-gnu)
BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/llamux"
MODELS="${LLAMUX_TEST_MODELS:-$ROOT/tests/models}"
if [[ ! -f "$MODELS/tiny-q4_k_m.gguf" || ! -f "$MODELS/tiny-mixed.gguf" ]]; then
  if [[ -x "$ROOT/tests/models/make.sh" ]]; then
    "$ROOT/tests/models/make.sh"
  else
    MODELS="$LLAMUX_CACHE/models"; mkdir -p "$MODELS"
    "$LLAMUX_CACHE/venv/bin/python" "$ROOT/tests/models/make.py" --out "$MODELS" \
      --vocab "$LLAMUX_CACHE/llama-cpp-python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf"
  fi
fi
# LLAMUX_GENERATE_TESTS: which guest scripts (default both).
rc=0
for t in ${LLAMUX_GENERATE_TESTS:-module-generate module-fpu}; do
  "$HERE/run-guest.sh" --smp 2 --mem 1G --timeout 900 "$@" \
    --file "$ROOT/kmod/llamux.ko" --file "$BIN" \
    --file "$MODELS/tiny-q4_k_m.gguf" --file "$MODELS/tiny-mixed.gguf" \
    "$HERE/tests/$t.sh" || rc=1
done
exit $rc
