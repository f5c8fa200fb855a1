#!/usr/bin/env bash
# Opt-in: how good the shipped policies' decisions are with the real model
# (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetched once by fetch.sh), on the
# labelled event sets in tests/eval/, beside static-rule baselines; then
# the latency per decision with the policy prefix cached on 1 and 2 threads.
#   tests/realmodel/eval.sh [--split heldout|tune|all] [--threads N] [--no-latency]
# The held-out split is the default: prompts are tuned on `tune` only
# (docs/advisor.md). Prints what docs/advisor.md quotes.
set -euo pipefail
cd "$(dirname "$0")/../.."
split=heldout threads=2 latency=1
while [ $# -gt 0 ]; do
    case $1 in
        --split) split=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --no-latency) latency=0; shift ;;
        *) echo "usage: tests/realmodel/eval.sh [--split heldout|tune|all] [--threads N] [--no-latency]" >&2; exit 2 ;;
    esac
done
M=$(tests/realmodel/fetch.sh)
cargo build --release -q -p llamux
L=target/release/llamux
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $M"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- policies loader tests/eval || echo ' (dirty)')"

run() {
    local pol=$1 set=$2; shift 2
    echo
    echo "=== $pol on tests/eval/$set.jsonl ($split)"
    $L eval -m "$M" -p "policies/$pol.toml" --events "tests/eval/$set.jsonl" --split "$split" -t "$threads" --progress "$@"
}
run exec-guard exec --baseline tmp-rule --baseline www-data
run exec-guard-closed exec --baseline tmp-rule
run open-guard open --baseline tools --baseline www-data
run sched-advisor sched --baseline cpu50 --baseline preempt50
echo
echo "=== exec-guard without the optional exec fields (argv, owner, mode, age, directory: the probe before issue 27 item 2)"
run exec-guard exec --probe-fields-only

if [ "$latency" = 1 ]; then
    echo
    echo "=== latency per decision, policy prefix cached (exec-guard, $split events)"
    for t in 1 2; do
        $L eval -m "$M" -p policies/exec-guard.toml --events tests/eval/exec.jsonl --split "$split" -t $t --json |
            python3 -c 'import json,sys; v=json.load(sys.stdin); l=v["latency_ms"]; print("threads %d: p50 %.1f ms, p95 %.1f ms, mean %.1f ms; %.1f event tokens on average, prefix %d tokens prefilled once in %.0f ms" % (v["threads"], l["p50"], l["p95"], l["mean"], v["mean_event_tokens"], v["prefix_tokens"], v["prefix_ms"]))'
    done
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
