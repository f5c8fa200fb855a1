#!/usr/bin/env bash
# AI-assisted syscalls end to end in guests: builds the BPF object
# (ebpf/build.sh) and a static `llamux`, then boots one guest per
# tests/guest/tests/advisor-*.sh with the tiny test model, the policies,
# llamux.ko (make -C kmod) and the BPF object, and sums the steps into one
# `guest: N passed, N failed`.
#   tests/guest/test-advisor.sh [advisor-NAME ...] [-- run-guest.sh options]
# LLAMUX_BIN=FILE uses a prebuilt static llamux instead of building one.
set -uo pipefail
names=() opts=()
while (($#)); do
  case "$1" in --) shift; opts=("$@"); break ;; *) names+=("$1") ;; esac
  shift
done
. "$(dirname "${BASH_SOURCE[0]}")/suite.sh" "${opts[@]+"${opts[@]}"}"
summary() { echo "guest: $1 passed, $2 failed"; exit $(( $2 > 0 )); }

t0=$(date +%s)
"$ROOT/ebpf/build.sh" >&2 || { echo "LLAMUX-TEST FAIL bpf-build: ebpf/build.sh failed"; summary 0 1; }
OBJ="$ROOT/target/bpf/llamux-probes.o"
if [[ -z "${LLAMUX_BIN:-}" ]]; then
  suite_llamux >&2 || { echo "LLAMUX-TEST FAIL loader-build: static llamux did not build"; summary 0 1; }
  LLAMUX_BIN="$BIN"
fi
# llamux.ko for advisor-kernel.sh (the kernel module's advisor), built
# against the kernel the guests boot (the debug one with `-- --debug`).
suite_module >&2 || { echo "LLAMUX-TEST FAIL module-build: make -C kmod failed"; summary 0 1; }
MODEL="${LLAMUX_ADVISOR_MODEL:-$ROOT/tests/models/tiny-q8_0.gguf}"
[[ -f "$MODEL" ]] || "$ROOT/tests/models/make.sh" >&2
echo "test-advisor: builds took $(( $(date +%s) - t0 )) s" >&2

files=(--file "$ROOT/kmod/llamux.ko" --file "$LLAMUX_BIN:/bin/llamux" --file "$OBJ:/usr/lib/llamux/llamux-probes.o" --file "$MODEL:/llamux/model.gguf")
for p in "$ROOT"/policies/*.toml; do files+=(--file "$p:/llamux/policies/$(basename "$p")"); done
((${#names[@]})) || names=($(cd "$HERE/tests" && ls advisor-*.sh | sed 's/\.sh$//'))
P=0 F=0
for n in "${names[@]}"; do
  # 600 s: under TCG on a busy host the relay decides slowly.
  out="$("$HERE/run-guest.sh" --quiet --smp 2 --mem 1G --timeout 600 --append "lsm=bpf" "${files[@]}" "${opts[@]}" "$HERE/tests/$n.sh" 2>&1)"
  printf '%s\n' "$out" | grep -vE '^guest: [0-9]+ passed' | sed "s/^/[$n] /"
  line="$(printf '%s\n' "$out" | grep -E '^guest: [0-9]+ passed, [0-9]+ failed' | tail -1)"
  if [[ -z "$line" ]]; then
    echo "LLAMUX-TEST FAIL $n: run-guest.sh printed no summary"; F=$((F + 1)); continue
  fi
  P=$((P + $(echo "$line" | awk '{print $2}')))
  F=$((F + $(echo "$line" | awk '{print $4}')))
done
summary "$P" "$F"
