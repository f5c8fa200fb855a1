#!/usr/bin/env bash
# Build (or reuse) the kernel, llamux.ko, the static `llamux` tool and the
# test models, then run tests/guest/tests/module-load.sh (loading: progress,
# interrupts, EFBIG/ENOMEM, KV size and f16 KV, page cache of a disk model)
# in a 2-CPU, 2 GiB guest with tiny-q4_k_m.gguf also attached as /dev/vda
# and tests/models shared over 9p.
#   tests/guest/test-load.sh [run-guest.sh options, e.g. --debug...]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "$@"
suite_module
suite_llamux
suite_models
exec "$HERE/run-guest.sh" --smp 2 --mem 2G --timeout 600 "$@" \
  --file "$ROOT/kmod/llamux.ko" --file "$BIN" \
  --file "$MODELS/tiny-q4_k_m.gguf" --file "$MODELS/tiny-mixed.gguf" \
  --disk "$MODELS/tiny-q4_k_m.gguf" --share "$MODELS" \
  "$HERE/tests/module-load.sh"
