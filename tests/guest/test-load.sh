#!/usr/bin/env bash
# Build (or reuse) the kernel, llamux.ko, the static `llamux` tool and the
# test models, then run tests/guest/tests/module-load.sh (loading: progress,
# interrupts, EFBIG/ENOMEM, KV size and f16 KV, page cache of a disk model)
# in a 2-CPU, 2 GiB guest with tiny-q4_k_m.gguf also attached as /dev/vda
# and tests/models shared over 9p.
#   tests/guest/test-load.sh [run-guest.sh options, e.g. --debug...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$HERE/env.sh"
kargs=()
for a in "$@"; do [[ $a == --debug ]] && kargs=(--debug); done
KDIR="$("$HERE/build-kernel.sh" "${kargs[@]}" --print-kdir)"
make -C "$ROOT/kmod" KDIR="$KDIR"
(cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
  --target x86_64-unknown-linux-gnu)
BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/llamux"
MODELS="$ROOT/tests/models"
[[ -f "$MODELS/tiny-q4_k_m.gguf" && -f "$MODELS/tiny-mixed.gguf" ]] || "$ROOT/tests/models/make.sh"
exec "$HERE/run-guest.sh" --smp 2 --mem 2G --timeout 600 "$@" \
  --file "$ROOT/kmod/llamux.ko" --file "$BIN" \
  --file "$MODELS/tiny-q4_k_m.gguf" --file "$MODELS/tiny-mixed.gguf" \
  --disk "$MODELS/tiny-q4_k_m.gguf" --share "$MODELS" \
  "$HERE/tests/module-load.sh"
