#!/usr/bin/env bash
# Build (or reuse) the guest kernel, llamux.ko with the engine, the static
# `llamux` tool and the test models, then run
# tests/guest/tests/module-generate.sh, then module-fpu.sh (FPU-section
# counters, /proc/llamux/bench), each in a 2-CPU guest.
#   tests/guest/test-generate.sh [run-guest.sh options, e.g. --debug...]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "$@"
suite_module
suite_llamux
suite_models
# LLAMUX_GENERATE_TESTS: which guest scripts (default both).
rc=0
for t in ${LLAMUX_GENERATE_TESTS:-module-generate module-fpu}; do
  "$HERE/run-guest.sh" --smp 2 --mem 1G --timeout 900 "$@" \
    --file "$ROOT/kmod/llamux.ko" --file "$BIN" \
    --file "$MODELS/tiny-q4_k_m.gguf" --file "$MODELS/tiny-mixed.gguf" \
    "$HERE/tests/$t.sh" | suite_tally || rc=1
done
suite_total
exit $rc
