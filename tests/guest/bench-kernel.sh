#!/usr/bin/env bash
# Opt-in benchmark (issue 25): kernel/user speed ratios of prefill and decode
# at 1 and 2 threads on tiny-q4_k_m, tiny-mixed and the real model
# (Qwen2.5-Coder-1.5B Q4_K_M, tests/realmodel/fetch.sh), all in ONE 2-CPU
# guest: `llamux bench --kernel` runs the same protocol (pp16, tg32, medians
# of the repetitions) in user space and in llamux.ko, interleaved over 3
# rounds. Prints a table of the ratios (kernel/user of the medians).
#   tests/guest/bench-kernel.sh [run-guest.sh options...]
# Env: LLAMUX_BENCH_THREADS ("1 2"), LLAMUX_BENCH_ARGS (tiny models, default
#   "-p 16 -n 32 -r 3 --rounds 3"), LLAMUX_BENCH_REAL_ARGS (the real model,
#   default "-p 16 -n 32 -r 1 --rounds 3"; one TCG decode token of it takes
#   seconds), LLAMUX_BENCH_REAL=0 (skip the real model), LLAMUX_BENCH_LOG.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$HERE/env.sh"
KDIR="$("$HERE/build-kernel.sh" --print-kdir)"
make -C "$ROOT/kmod" KDIR="$KDIR" >&2
(cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
  --target x86_64-unknown-linux-gnu)
BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/llamux"
MODELS="${LLAMUX_TEST_MODELS:-$ROOT/tests/models}"
[[ -f "$MODELS/tiny-q4_k_m.gguf" && -f "$MODELS/tiny-mixed.gguf" ]] || "$ROOT/tests/models/make.sh" >&2
commas() { tr ' ' ',' <<<"$1"; }
args=("$(commas "${LLAMUX_BENCH_ARGS:--p 16 -n 32 -r 3 --rounds 3}")" /llamux/tiny-q4_k_m.gguf /llamux/tiny-mixed.gguf)
share=()
if [[ ${LLAMUX_BENCH_REAL:-1} != 0 ]]; then
  real=$("$ROOT/tests/realmodel/fetch.sh")
  share=(--share "$(dirname "$real")")
  args+=(-- "$(commas "${LLAMUX_BENCH_REAL_ARGS:--p 16 -n 32 -r 1 --rounds 3}")" "/mnt/host/$(basename "$real")")
fi
log=${LLAMUX_BENCH_LOG:-$LLAMUX_CACHE/logs/bench-kernel.log}
mkdir -p "$(dirname "$log")"
echo "bench-kernel: $(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- kmod loader || echo '+changes'), host load: $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
"$HERE/run-guest.sh" --smp 2 --mem "${LLAMUX_BENCH_MEM:-4G}" --timeout "${LLAMUX_BENCH_TIMEOUT:-7200}" \
  --log "$log" "${share[@]}" "$@" \
  --file "$ROOT/kmod/llamux.ko" --file "$BIN" \
  --file "$MODELS/tiny-q4_k_m.gguf" --file "$MODELS/tiny-mixed.gguf" \
  "$HERE/tests/bench-kernel.sh" "$(commas "${LLAMUX_BENCH_THREADS:-1 2}")" "${args[@]}" || rc=$?
echo "bench-kernel: done $(date -u +%FT%TZ), host load: $(cut -d' ' -f1-3 /proc/loadavg)"
# The table: one row per LLAMUX-BENCH line of the log.
printf '%-34s %7s %9s %9s %7s %9s %9s %7s\n' model threads pp_user pp_kern pp_ratio tg_user tg_kern tg_ratio
grep -a '^LLAMUX-BENCH ' "$log" | tr -d '\r' | while read -r _ name threads json; do
  num() { sed -n "s/.*\"$1\":{[^}]*\"$2\":\([0-9.e+-]*\).*/\1/p" <<<"$json"; }
  printf '%-34s %7s %9.2f %9.2f %7.3f %9.2f %9.2f %7.3f\n' "$name" "${threads#threads=}" \
    "$(num pp user_median_ts)" "$(num pp kernel_median_ts)" "$(num pp ratio)" \
    "$(num tg user_median_ts)" "$(num tg kernel_median_ts)" "$(num tg ratio)"
done
exit $rc
