#!/usr/bin/env bash
# Opt-in: the real model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetch.sh) through
# llamux.ko in a guest. The model directory is shared read-only over 9p (not
# copied into the initramfs); the guest (tests/guest/tests/realmodel.sh) loads
# it into the module, asks a coding question in ChatML with greedy sampling
# and checks the module's token ids equal `llamux run` in the same guest, then
# lets the exec-guard policy be decided by this model in the kernel and checks
# each decision equals `llamux advise`.
# With "latency" in PARTS, also the kernel advisor's decision latency as a
# ratio to user space in the same guest (LLAMUX-PERF ratio_p50=...).
#   tests/realmodel/guest.sh [N_TOKENS [PARTS]]   (default 32, "gen advise";
#                                                  e.g. 8 "advise latency")
# Env: LLAMUX_REAL_MEM (guest memory, default 3G), LLAMUX_REAL_TIMEOUT (s,
# default 3600), LLAMUX_REAL_LOG (serial log), LLAMUX_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/guest/env.sh"
n=${1:-32} parts=${2:-gen advise}
model=$("$here/fetch.sh")
"$root/tests/guest/setup.sh"
make -C "$root/kmod" KDIR="$("$root/tests/guest/build-kernel.sh" --print-kdir)"
"$root/ebpf/build.sh"
(cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -q -p llamux \
    --target x86_64-unknown-linux-gnu)
log=${LLAMUX_REAL_LOG:-$LLAMUX_CACHE/logs/realmodel.log}
rc=0
"$root/tests/guest/run-guest.sh" --smp 2 --mem "${LLAMUX_REAL_MEM:-3G}" \
    --timeout "${LLAMUX_REAL_TIMEOUT:-3600}" --append "lsm=bpf" \
    --log "$log" \
    --share "$(dirname "$model")" \
    --file "$root/kmod/llamux.ko" \
    --file "$root/target/x86_64-unknown-linux-gnu/release/llamux:/bin/llamux" \
    --file "$root/target/bpf/llamux-probes.o:/usr/lib/llamux/llamux-probes.o" \
    --file "$root/policies/exec-guard.toml:/llamux/policies/exec-guard.toml" \
    --file "$root/tests/eval/exec.jsonl:/llamux/exec.jsonl" \
    "$root/tests/guest/tests/realmodel.sh" "/mnt/host/$(basename "$model")" "$n" "$parts" || rc=$?

# The same question (as in tests/guest/tests/realmodel.sh) on this host's
# CPU: the ids should not depend on the machine (the same kernels,
# deterministic arithmetic). `--isa avx2`: the guest's level under TCG, so
# both sides run the same kernels on the same (repacked) layout.
kernel_ids=$(grep -a '^kernel ids:' "$log" | tail -1 | sed 's/^kernel ids: *//' | tr -d '\r')
if [ -n "$kernel_ids" ]; then
    host_ids=$("$root/target/x86_64-unknown-linux-gnu/release/llamux" --isa avx2 run -m "$model" -t 2 --instruct -n "$n" \
        --temperature 0 --json -p "Write a Python function is_prime(n)." | sed -n 's/.*"generated_tokens":\[\([^]]*\)\].*/\1/p')
    echo "host ids:   $host_ids"
    if [ "$host_ids" = "$kernel_ids" ]; then
        echo "host: the guest kernel's $n ids equal llamux run on this host"
    else
        echo "host: FAIL the guest kernel's ids differ from llamux run on this host"
        rc=1
    fi
fi
exit $rc
