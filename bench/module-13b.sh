#!/usr/bin/env bash
# The CodeLlama-13B-shaped model (7.87 GB, random Q4_K_M weights) in the
# module, in a 12 GiB, 2-CPU guest with the file as the read-only disk
# /dev/vda (not in the initramfs). Opt-in, not part of tests/run.sh.
#   bench/module-13b.sh
#   LLAMUX_13B_TOKENS=4 bench/module-13b.sh    # fewer tokens (TCG is slow)
#   LLAMUX_13B_TOKENS=2 LLAMUX_13B_PROMPT=def bench/module-13b.sh   # shortest run
# Env: LLAMUX_13B_TOKENS (16), LLAMUX_13B_CTX (64), LLAMUX_13B_KV (f16),
#      LLAMUX_13B_MEM (12G), LLAMUX_13B_TIMEOUT (seconds, 10800),
#      LLAMUX_13B_LOG (serial log, /tmp/big-module-13b.log), LLAMUX_13B_PROMPT (one
#      word; default "def quicksort(arr):").
# Prints load time and rate, resident memory (meminfo) with the page cache
# kept and dropped, in-kernel and user-space decode tokens/s in the same
# guest and whether their token ids are equal (BENCH13B lines, then a summary).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. tests/guest/env.sh
M13=$LLAMUX_CACHE/models/codellama-13b-shape-q4_k_m.gguf
if [ ! -f "$M13" ]; then
    echo "== writing $M13 (bench/make-13b.py)" >&2
    mkdir -p "$(dirname "$M13")"
    py=$(tests/fixtures/setup-python.sh)
    vocab=$(tests/fixtures/get-llama-src.sh)/models/ggml-vocab-llama-spm.gguf
    "$py" bench/make-13b.py --vocab "$vocab" --out "$M13" >&2
fi
KDIR="$(tests/guest/build-kernel.sh --print-kdir)"
make -C kmod KDIR="$KDIR" >&2
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
    --target x86_64-unknown-linux-gnu >&2
BIN=$ROOT/target/x86_64-unknown-linux-gnu/release/llamux
LOG=${LLAMUX_13B_LOG:-/tmp/big-module-13b.log}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "== host: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
tests/guest/run-guest.sh --smp 2 --mem "${LLAMUX_13B_MEM:-12G}" --timeout "${LLAMUX_13B_TIMEOUT:-10800}" \
    --log "$LOG" --quiet --disk "$M13" \
    --file kmod/llamux.ko --file "$BIN" \
    tests/guest/tests/bench-13b.sh "${LLAMUX_13B_TOKENS:-16}" "${LLAMUX_13B_CTX:-64}" "${LLAMUX_13B_KV:-f16}" \
    ${LLAMUX_13B_PROMPT:+"$LLAMUX_13B_PROMPT"} \
    | tee "$OUT" >&2 || true
grep -a '^BENCH13B\|^LLAMUX-TEST\|^guest:' "$LOG"
echo "== summary ($(date -u +%Y-%m-%d), $(uname -m), 2 vCPUs TCG under qemu, host load $(cut -d' ' -f1-3 /proc/loadavg))"
grep -a '^BENCH13B' "$LOG" | sed 's/^BENCH13B //'
grep -aq '^guest: [0-9]* passed, 0 failed' "$LOG"
