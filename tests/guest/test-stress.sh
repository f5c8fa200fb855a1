#!/usr/bin/env bash
# Hostile use of /proc/llamux in a 2-CPU guest: exact errnos for empty,
# oversized, split and non-UTF-8 writes on every writable file, concurrent
# writers/readers, signals, model replace while busy, and an unload/reload
# loop (tests/guest/tests/module-stress.sh, with the static helper procio.c);
# then model paths that are no file (FIFO, directory, character device)
# refused at once, with rmmod right after (tests/guest/tests/module-paths.sh).
#   tests/guest/test-stress.sh [--debug] [run-guest.sh options...] [-- LOOPS]
set -euo pipefail
opts=() targs=()
while (($#)); do
  case "$1" in --) shift; targs=("$@"); break ;; *) opts+=("$1") ;; esac
  shift
done
. "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "${opts[@]}"
suite_module >&2
OUT="$ROOT/target/guest"
mkdir -p "$OUT"
cc -static -O2 -Wall -o "$OUT/procio" "$HERE/procio.c"
suite_models >&2
rc=0
"$HERE/run-guest.sh" --smp 2 --mem 1G "${opts[@]}" \
  --file "$ROOT/kmod/llamux.ko" --file "$OUT/procio" \
  --file "$MODELS/tiny-q4_k_m.gguf" --file "$MODELS/tiny-mixed.gguf" \
  "$HERE/tests/module-stress.sh" "${targs[@]}" | suite_tally || rc=1
"$HERE/run-guest.sh" --smp 2 --mem 1G "${opts[@]}" \
  --file "$ROOT/kmod/llamux.ko" --file "$OUT/procio" --file "$MODELS/tiny-q4_k_m.gguf" \
  "$HERE/tests/module-paths.sh" | suite_tally || rc=1
suite_total
exit $rc
