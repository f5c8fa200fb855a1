#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a fixed number of
# executions, seeded with regressions/<target>/ (new inputs go to
# corpus/<target>/, crashes to artifacts/<target>/), and prints one line per
# target: executions, crashes, seconds, executions/s.
#   kmod/engine/fuzz/run.sh [-n RUNS] [-t SECONDS] [TARGET...]   RUNS default 1000000
# Needs cargo-fuzz (cargo install cargo-fuzz --locked); nightly flags come
# from RUSTC_BOOTSTRAP=1. The tokenizer target also fuzzes llama.cpp's
# llama-spm vocabulary ($LLAMUX_LLAMA_SRC, fetched if unset).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
runs=1000000
limit=()
while [[ "${1:-}" == -[nt] ]]; do
  case $1 in
    -n) runs=$2 ;;
    -t) limit=(-max_total_time="$2") ;; # stop a target after this many seconds
  esac
  shift 2
done
targets=("$@")
((${#targets[@]})) || targets=(gguf tokenizer policy advise event)
export RUSTC_BOOTSTRAP=1 PATH="$HOME/.cargo/bin:$PATH"
if [[ -z "${LLAMUX_LLAMA_SRC:-}" ]]; then
  LLAMUX_LLAMA_SRC="$(../../../tests/fixtures/get-llama-src.sh)" || exit 1
  export LLAMUX_LLAMA_SRC
fi
# Longest input per target: a GGUF header needs room; text is cut shorter
# for speed (the tokenizer's work grows with the text).
declare -A max_len=([gguf]=4096 [tokenizer]=1024 [policy]=4096 [advise]=4096 [event]=256)
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/last-run.log"
  touch "artifacts/$t/.start"
  t0=$(date +%s)
  cargo fuzz run "$t" "corpus/$t" "regressions/$t" -- -runs="$runs" -max_len="${max_len[$t]:-4096}" \
    "${limit[@]}" -timeout=20 -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  t1=$(date +%s)
  execs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$log" | tail -n1)
  crashes=$(find "artifacts/$t" \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
    -newer "artifacts/$t/.start" | wc -l)
  secs=$((t1 - t0 > 0 ? t1 - t0 : 1))
  printf 'fuzz %-10s execs %10s  crashes %d  %5d s  %6d execs/s  (exit %d, log %s)\n' \
    "$t" "${execs:-?}" "$crashes" "$secs" "$(( ${execs:-0} / secs ))" "$rc" "$HERE/$log"
  ((rc == 0 && crashes == 0)) || status=1
done
exit $status
